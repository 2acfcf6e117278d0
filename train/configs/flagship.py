r"""The flagship: supervised warm start on the labelled stream, then search-and-learn to n = 6.

    python -m train.main --config=train/configs/flagship.py:cpu --workdir=runs/flagship
    python -m train.main --config=train/configs/flagship.py:gpu --workdir=runs/flagship_gpu
    python -m train.main --config=train/configs/flagship.py:runlocal --workdir=/tmp/flagship

``--mode=flagship`` (``train.flagship``) runs two phases in one workdir and resumes either:

1. **warm start** (``<workdir>/warm``, ``train.supervised``): policy/value training on
   ``search.stream``, a mixture of n = 2..5 start problems (targets 1..100 at n = 4, 1..999
   otherwise), every evaluation problem and all 1,362 ToT puzzles excluded;
2. **search-and-learn** (``<workdir>``, ``train.search_and_learn``) from the warm-start weights:
   Gumbel MCTS self-play with the learned value and exact terminal rewards on a curriculum
   g4_t100 -> n5 -> n6 (targets 1..999), a replay buffer, the search's improved policy as the
   policy target and the exact label of every visited state as the value target;

then exports the network in the HF format to ``<workdir>/export`` (``nnx_models.hf``). Both
phases stop at their time limit (``train.time_limit_s``, ``sl.time_limit_s``) with a checkpoint.
What it reaches, the evaluation command and the ablations: docs/flagship.md.

Presets: ``cpu`` (default; 0.78M parameters, <= 60 minutes on 2 CPU cores), ``gpu`` (d6 x 384:
11.3M parameters, batch and simulations scaled for one H100/H200 in an hour), ``runlocal``
(seconds). Other arguments: ``warm_minutes``, ``sl_minutes`` (the time limits),
``policy=search|solutions|exact``, ``value=exact|outcome``, ``stream_share`` (share of phase-2
updates on stream batches instead of the replay buffer) (ablations).
"""

import math

import ml_collections

from train.configs import common, search

# The sets docs/flagship.md reports, excluded from training (the stream and the curriculum);
# XoT-137 needs its own csv (search.eval --csv=xot_game24_test.csv) and is inside the 1,362.
EVAL_SETS = ("tsllm362", "tot100", "n5:test:200", "n6:test:200", "countdown6:test:200")
DEFAULTS = {"cpu": False, "gpu": False, "runlocal": False, "warm_minutes": 32.0,
            "sl_minutes": 22.0, "policy": "search", "value": "exact",
            "stream_share": 0.5}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = common.parse_arg(arg, DEFAULTS)
    if a["cpu"] + a["gpu"] + a["runlocal"] > 1:
        raise ValueError(f"config arguments {arg!r}: pick one of cpu, gpu, runlocal.")
    c = common.base_config()
    c.name, c.mode = "flagship", "flagship"
    search.add_sections(c)
    csv = common.default_csv()
    # The model: packed numbers, set layout, result-aware pair head (docs/learning.md).
    depth, width = (6, 384) if a["gpu"] else (3, 128)
    common.apply_size(c, f"d{depth}")
    common.apply_representation(c, "packed", "set", "attn", width, 32, True)
    # SwiGLU (Llama's MLP, hidden 8/3 x width rounded to 64) so the export loads in transformers.
    c.model.mlp, c.model.mlp_dim = "swiglu", 64 * math.ceil(8 * width / 3 / 64)
    c.data.source, c.data.mixture = "stream", "n2:1,n3:1,g4_t100:3,n4:1,n5:3"
    c.data.problem_class, c.data.n_max = "n2", 6  # rules only; 6 slots for the n6 curriculum
    c.data.eval_examples = c.data.probe_examples = 2048
    sets = tuple(s for s in EVAL_SETS if csv or ":" in s)  # csv sets need the csv
    c.data.eval_batches, c.data.exclude = 0, ",".join(sets)
    c.data.exclude_csv = c.eval.csv = csv
    # Phase 1 (warm start): the train section; its search_eval is left to docs/flagship.md.
    c.train.steps, c.train.batch_size, c.train.learning_rate = 14000, 128, 1e-3
    c.train.warmup_steps, c.train.min_lr_ratio = 200, 0.05
    c.train.log_every, c.train.eval_every, c.train.time_limit_s = 50, 1000, 60 * a["warm_minutes"]
    c.checkpoint.every, c.checkpoint.keep = 500, 2
    # --mode=eval on the finished workdir: the whole table of docs/flagship.md.
    c.search_eval.splits = sets
    c.search_eval.budgets, c.search_eval.csv = (1, 4, 8, 32, 64), csv
    c.search_eval.methods = ("mcts", "uniform_mcts", "exhaustive_dfs")
    # Phase 2 (search-and-learn): sl + eval + its own optimizer schedule (train.* is phase 1's).
    c.flagship = ml_collections.ConfigDict(dict(sl_learning_rate=3e-4, sl_warmup_steps=20))
    c.sl.curriculum, c.sl.curriculum_threshold = ("g4_t100", "n5", "n6"), 0.7
    c.sl.iterations, c.sl.selfplay_batch, c.sl.selfplay_simulations = 200, 128, 32
    c.sl.train_steps, c.sl.buffer_capacity, c.sl.train_problems = 32, 40000, 4000
    c.sl.policy_targets, c.sl.value_targets = a["policy"], a["value"]
    c.sl.stream_share = a["stream_share"]  # half the updates on fresh stream batches
    c.sl.eval_every, c.sl.time_limit_s = 15, 60 * a["sl_minutes"]
    c.eval.sets = tuple(s for s in ("tsllm362", "n6:test:200") if csv or ":" in s)
    c.eval.simulations = (32,)
    c.init.source = "supervised"  # init.path is set by train.flagship to <workdir>/warm
    if a["gpu"]:
        c.model.dtype, c.model.param_dtype = "bfloat16", "float32"
        c.train.batch_size, c.train.steps, c.train.learning_rate = 1024, 20000, 6e-4
        c.sl.selfplay_batch, c.sl.selfplay_simulations, c.sl.train_steps = 1024, 64, 64
        c.sl.buffer_capacity, c.sl.train_problems = 200000, 20000
        c.train.time_limit_s, c.sl.time_limit_s = 60 * 25.0, 60 * 30.0
    if a["runlocal"]:
        common.runlocal(c)
        # One 64-wide layer: the same code path, a fraction of the compile time.
        common.apply_size(c, "d1")
        common.apply_representation(c, "packed", "set", "attn", 64, 32, True)
        c.model.mlp, c.model.mlp_dim = "swiglu", 64 * math.ceil(8 * 64 / 3 / 64)
        c.data.eval_examples = c.data.probe_examples = 64
        c.train.time_limit_s = c.sl.time_limit_s = None
        c.sl.iterations, c.sl.selfplay_batch, c.sl.selfplay_simulations = 2, 8, 4
        c.sl.train_steps, c.sl.buffer_capacity, c.sl.train_problems = 2, 512, 20
        c.sl.eval_every, c.eval.sets, c.eval.simulations = 1, ("n5:test:4",), (2,)
        c.search_eval.splits, c.search_eval.budgets = ("n5:test:4",), (2,)
    c.lock()
    return c
