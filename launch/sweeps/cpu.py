r"""The CPU IsoFLOP sweep (``make sweep-cpu``): 4 budgets x 6 sizes (depth 1-4, width 16-128) of
``train/configs/sweep_cpu.py`` on the labelled stream, the largest budget held out and predicted.

    python -m launch.sweep --grid=launch/sweeps/cpu.py --backend=print      # the plan
    python -m launch.sweep --grid=launch/sweeps/cpu.py --backend=local --budgets=0,1,2
    bash scripts/cpu_sweep.sh                                              # everything

Fields (any can be overridden: ``--grid.total_flops=3e13``):
- ``train_config``: the train config file; each run adds ``size=<one of sizes>``;
- ``overrides``: comma-separated ``section.field=value`` for every run (enter the FLOP accounting);
- ``sizes``: candidate ``size=`` arguments (``d<K>w<W>``, ordered by N below), or ``depths``
  (``"1,2,3"``) for depth-only configs;
- ``total_flops, num_budgets, budget_ratio, sizes_per_budget, tokens_per_param, min_steps,
  max_steps``:
  ``scaling.sweep.design_isoflop_sweep`` (per budget, the ``sizes_per_budget`` sizes whose N is
  closest in log to the prior optimum sqrt(C / (6 * tokens_per_param)); runs shorter than
  ``min_steps`` or the config's warm-up are dropped);
- ``root``: parent of the run directories and of ``sweep.json``.

Sizes, non-embedding N on 4 slots: d1w8 5.9k, d2w8 6.7k, d1w16 13.8k, d4w16 23k, d1w32 35k,
d3w32 60k, d2w48 92k, d4w48 148k, d3w64 200k, d3w96 420k (the result-aware heads set the floor).
Budgets 5e10 x (1, 3, 9, 27).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    g = ml_collections.ConfigDict()
    g.train_config = "train/configs/sweep_cpu.py"
    g.overrides = ""
    g.sizes = "d1w8,d2w8,d1w16,d4w16,d1w32,d3w32,d2w48,d4w48,d3w64,d3w96"
    g.depths = ""
    g.num_budgets = 4
    g.budget_ratio = 3.0
    g.sizes_per_budget = 6
    g.total_flops = 6 * 5e10 * (1 + 3 + 9 + 27)  # 1.2e13: the smallest budget is 5e10
    # The prior optimum: ~100 tokens per parameter (the first budget's lowest loss sat at 71,
    # below Chinchilla's 20), so the windows are centred on smaller models than Chinchilla's.
    g.tokens_per_param = 100.0
    g.min_steps = 100
    g.max_steps = 21_000  # ~6 min of updates of the smallest models on 2 CPU cores
    g.root = "runs/sweep_cpu"
    return g
