r"""Search-and-learn on the Game of 24 from scratch (AlphaZero-style), minutes on 2 CPU cores.

    python -m train.main --config=train/configs/search.py --workdir=runs/sl

A 2-layer, 64-wide policy/value transformer (packed numbers, set layout, result-aware pair head;
0.15M parameters, 7 positions per 4-slot state) learns from scratch in 24 iterations of 128
self-play problems x 32 Gumbel simulations per move + 48 updates of 128 states. What it reaches
(100 held-out ``g24`` test problems, played trajectory, against uniform-prior MCTS) is measured
in docs/search_and_learn.md; hindsight relabelling is off by default (it lowered the solve rate
on every seed tried).
Arguments (``--config=train/configs/search.py:arg=value,...``): ``size=d<K>`` (model depth),
``width=W`` (d_model; 0 = the depth rule 64*K; 32-wide heads either way),
``encoding=`` / ``layout=`` / ``pool=`` (the state representation,
``common.apply_representation``; default packed / set / attn; ``results=false`` drops the
result-aware pair head and soft-OR value that packed and numeric get by default:
docs/learning.md),
``iterations=N``, ``curriculum=g24+n5+n6``
(classes opened in order; states get as many slots as the largest class), ``relabel=true``
(hindsight relabelling on, for ablations), ``init=supervised:<workdir>`` or ``init=hf:<dir>``
(start from a checkpoint instead of scratch), ``runlocal`` (a seconds-long smoke test). Other
modes read their sections of this config: ``--mode=ttt`` (section ``ttt``), ``--mode=grpo``
(``grpo``), ``--mode=compare --runs=A,B``.

Sections beyond ``common.base_config`` (lists are tuples, None means "derive it" / "none"):
- ``sl``: iterations, self-play batch/simulations/considered actions/gumbel scale, train steps
  per iteration (``train.steps`` is replaced by iterations x train_steps), replay buffer capacity,
  ``time_limit_s`` (None = none; the run ends, evaluated and saved, after the iteration passing it),
  ``stream_share`` (share of train steps on a batch of the labelled stream, ``data.mixture``),
  curriculum classes + threshold, training-pool size per class, in-tree solutions as targets,
  ``policy_targets`` ("solutions": one-hot moves of solved episodes, expert-iteration style;
  "search": the search's improved policy on every state, AlphaZero style; "exact": uniform over
  the moves the exact labeller keeps solvable), ``value_targets`` ("outcome": the episode's
  result; "exact": the exact label of every visited state, ``train.relabel.exact_rows``).
- ``relabel``: hindsight ``enabled``, ``ratio`` (share of eligible unsolved episodes relabelled),
  ``max_value`` (largest |target| relabelled; None = what the tokenizer encodes exactly).
- ``eval``: ``sets`` (a tuple of ``search.sweep`` split specs: ("g24:test:100", "n5:test:50"),
  or "tot100" with ``csv`` = the ToT 24.csv), ``simulations`` ((8, 32)), ``max_considered``,
  ``seed`` (on the command line ``--config.eval.simulations=8,32``); the
  search is ``search.eval``'s deterministic Gumbel search (``gumbel_scale=0``).
- ``init``: ``source`` scratch | supervised | hf, ``path``.
- ``ttt``: ``source`` (the run to adapt; None = ``--workdir``), ``targets`` (the LoRA'd
  layers, a tuple), search and LoRA sizes; ``grpo``; ``compare``: ``runs`` (a tuple of
  workdirs, or ``--runs``).
"""

import ml_collections

from train.configs import common

DEFAULTS = {"size": "d2", "width": 64, "iterations": 24, "curriculum": "g24", "relabel": False,
            "init": "", "runlocal": False, "encoding": "packed", "layout": "set", "pool": "attn",
            "results": True}


def add_sections(c: ml_collections.ConfigDict) -> None:
    """The search-and-learn / ttt / grpo / compare sections with their CPU defaults."""
    c.sl = ml_collections.ConfigDict(dict(
        iterations=24, selfplay_batch=128, selfplay_simulations=32, max_considered=16,
        gumbel_scale=1.0, train_steps=48, buffer_capacity=20000, curriculum=("g24",),
        curriculum_threshold=0.6, train_problems=1000, tree_solutions=True,
        eval_every=common.optional(4, int),
        policy_targets="solutions", value_targets="outcome",
        time_limit_s=common.optional(None, float),
        stream_share=0.0))
    # Off by default: on the 2-core default run it lowered the 32-simulation solve rate on all
    # three seeds tried (0.20-0.29 with vs 0.39-0.52 without; docs/search_and_learn.md).
    c.relabel = ml_collections.ConfigDict(dict(
        enabled=False, ratio=1.0, max_value=common.optional(None, int)))
    c.eval = ml_collections.ConfigDict(dict(
        sets=("g24:test:100",), csv="", simulations=(8, 32), max_considered=16, seed=0))
    c.init = ml_collections.ConfigDict(dict(source="scratch", path=""))
    c.ttt = ml_collections.ConfigDict(dict(
        source=common.optional(None, str), simulations=8, rollouts=8, epochs=4, lora_steps=8,
        lora_rank=4, lora_alpha=8.0, learning_rate=3e-3, targets=("wq", "wv", "w_up"),
        batch_size=32))
    c.grpo = ml_collections.ConfigDict(dict(
        iterations=24, problems=32, group=8, temperature=1.0, steps_per_iter=4,
        kl_coef=0.0, normalize=False, value_weight=1.0))
    c.compare = ml_collections.ConfigDict(dict(runs=()))


def apply_args(c: ml_collections.ConfigDict, args: dict) -> None:
    common.apply_size(c, args["size"])
    # 32-wide heads at every width (one 128-wide head collapsed the value), 4x MLP.
    width = args["width"] or 64 * c.model.depth
    common.apply_representation(c, args["encoding"], args["layout"], args["pool"], width, 32,
                                args["results"])
    if args["encoding"] == "whole":
        c.tokenizer.whole_max = 200  # every Game-of-24 intermediate but a few products fits
    c.sl.iterations = args["iterations"]
    # "+" separates classes inside the argument string (commas separate arguments there);
    # --config.sl.curriculum=g24,n5 takes commas.
    c.sl.curriculum = tuple(n for n in args["curriculum"].split("+") if n)
    c.relabel.enabled = args["relabel"]
    if args["init"]:
        source, _, path = args["init"].partition(":")
        c.init.source, c.init.path = source, path
    from search import problems  # states get as many slots as the largest class needs

    names = c.sl.curriculum
    if not names:
        raise ValueError(f"config argument curriculum={args['curriculum']!r} is empty; allowed "
                         "class names joined by '+', e.g. g24+n5.")
    c.data.problem_class = names[0]
    c.data.n_max = max(problems.get_class(n).n_range[1] for n in names)
    if args["runlocal"]:
        common.runlocal(c)
        c.sl.iterations, c.sl.selfplay_batch, c.sl.selfplay_simulations = 2, 16, 4
        c.sl.train_steps, c.sl.buffer_capacity, c.sl.train_problems = 3, 512, 40
        c.sl.eval_every, c.eval.sets, c.eval.simulations = 1, ("g24:test:8",), (2, 4)
        c.grpo.iterations, c.grpo.problems, c.grpo.group = 2, 8, 4
        c.ttt.rollouts, c.ttt.epochs, c.ttt.lora_steps = 2, 2, 2


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = common.parse_arg(arg, DEFAULTS)
    c = common.base_config()
    c.name, c.mode = "search_and_learn", "search_and_learn"
    add_sections(c)
    c.train.batch_size, c.train.learning_rate, c.train.warmup_steps = 128, 3e-3, 20
    c.train.min_lr_ratio = 0.3
    c.checkpoint.every, c.checkpoint.keep = 4, 2
    apply_args(c, args)
    c.lock()
    return c
