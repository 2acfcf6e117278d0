r"""A CPU-sized IsoFLOP grid: 2 budgets x 3 depths of the default supervised config (minutes).

    python -m launch.sweep --grid=launch/sweeps/tiny.py --backend=print
    python -m launch.sweep --grid=launch/sweeps/tiny.py --backend=local
    python -m scaling.main --runs='runs/sweep_tiny/*' --out=runs/sweep_tiny/report

Fields (any can be overridden: ``--grid.total_flops=3e13``):
- ``train_config``: the train config file (with an optional ``:arg``); each run adds ``size=d<K>``.
- ``overrides``: comma-separated ``config`` overrides for every run (``data.n_max=4`` ->
  ``--config.data.n_max=4``); they also enter the FLOP accounting (sequence length, batch).
- ``total_flops, num_budgets, budget_ratio, sizes_per_budget, depths, tokens_per_param,
  min_steps``: ``scaling.sweep.design_isoflop_sweep`` (runs shorter than ``min_steps`` or than
  the config's warmup are dropped).
- ``root``: parent of the run directories (``<root>/<run name>``) and of ``sweep.json``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.train_config = "train/configs/default.py"
    c.overrides = ("data.n_max=4,tokenizer.number_encoding=whole,tokenizer.whole_max=40,"
                   "train.batch_size=32,train.warmup_steps=5,train.eval_every=50,"
                   "checkpoint.every=50")
    c.total_flops = 4e12
    c.num_budgets = 2
    c.budget_ratio = 3.0
    c.sizes_per_budget = 3
    c.depths = "1,2,3"
    c.tokens_per_param = 20.0
    c.min_steps = 20
    c.root = "runs/sweep_tiny"
    return c
