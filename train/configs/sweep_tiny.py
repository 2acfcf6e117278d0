r"""Tiny IsoFLOP sweep on 2 CPU cores: 3 budgets x depths 1-3 of supervised g24 training (~40 min).

    bash scripts/cpu_sweep.sh                      # the whole sweep: train, search evals, report
    python -m train.main --config=train/configs/sweep_tiny.py:size=d2 --workdir=runs/sweep_cpu/d2
    python -m launch.sweep --grid=train/configs/sweep_tiny.py:grid --backend=print  # the plan

One file, two configs. ``get_config("grid")`` is the ``launch.sweep`` grid: budgets
``total_flops / (sizes * (1 + r + r^2))`` x (1, r, r^2) with r = 3, three depths per budget, each
run's ``train.steps`` derived from its budget by ``scaling.sweep.design_isoflop_sweep`` (steps =
budget / (train FLOPs per token x batch x seq_len)). Every other argument gives the train config
of one run (``size=d<K>``, ``runlocal``): the whole ``g24`` train split (1112 problems, ~5.5k
solver-labelled states) with 4 slots and one token per whole number (27 tokens per state), batch
32, a fixed learning rate for every size, eval loss over the whole ``val`` split (143 problems)
at update 0 and at the end only, one checkpoint at the end (``scripts/sweep_eval.py`` reads it).
What it reaches (measured, docs/scaling.md "Real CPU sweep"): eval loss 2.68-3.35 (3.45
untrained). d1 (66k non-embedding parameters) is best at every budget, so the IsoFLOP minimum
lies below the sampled sizes. Gumbel MCTS on the 107 held-out g24 test problems solves 0.79-0.86
at 256 simulations per move with d1, against 0.40 for uniform-prior MCTS.
"""

import ml_collections

from train.configs import common

GRID_ROOT = "runs/sweep_cpu"


def grid_config() -> ml_collections.ConfigDict:
    """The ``launch.sweep`` grid over this file's train config (fields: launch/sweeps/tiny.py)."""
    g = ml_collections.ConfigDict()
    g.train_config = "train/configs/sweep_tiny.py"
    g.overrides = ""
    g.total_flops = 1.2e13
    g.num_budgets = 3
    g.budget_ratio = 3.0
    g.sizes_per_budget = 3
    g.depths = "1,2,3"
    g.tokens_per_param = 20.0
    g.min_steps = 20
    g.root = GRID_ROOT
    return g


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if (arg or "").strip() == "grid":
        return grid_config()
    args = common.parse_arg(arg, {"size": "d1", "runlocal": False})
    c = common.base_config()
    c.name = "sweep_tiny"
    c.data.problem_class, c.data.n_max = "g24", 4
    c.data.num_problems, c.data.eval_num_problems, c.data.eval_batches = 1112, 143, 0
    c.tokenizer.number_encoding, c.tokenizer.whole_max = "whole", 40
    c.train.steps, c.train.batch_size, c.train.learning_rate = 1000, 32, 3e-3
    # Runs are 20..10k updates: a short warmup, evals only at update 0 and at the end.
    c.train.warmup_steps, c.train.log_every, c.train.eval_every = 5, 50, 1_000_000
    c.checkpoint.every, c.checkpoint.keep = 1_000_000, 1
    common.apply_size(c, args["size"])
    if args["runlocal"]:
        common.runlocal(c)
    c.lock()
    return c
