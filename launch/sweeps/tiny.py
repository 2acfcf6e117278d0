r"""A CPU-sized IsoFLOP grid: 2 budgets x 3 depths of the tiny supervised sweep config (minutes).

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

from train.configs import sweep_tiny


def get_config() -> ml_collections.ConfigDict:
    # The real CPU sweep's grid (train/configs/sweep_tiny.py:grid), cut to 2 budgets and a third
    # of its compute so that it finishes in minutes.
    c = sweep_tiny.grid_config()
    c.total_flops = 4e12
    c.num_budgets = 2
    c.root = "runs/sweep_tiny"
    return c
