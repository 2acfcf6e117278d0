r"""Learn the game: supervised policy/value training on the unlimited labelled stream (2-core CPU).

    python -m train.main --config=train/configs/supervised.py --workdir=runs/supervised
    python -m train.main --config=train/configs/supervised.py:encoding=digits,layout=causal \
        --workdir=runs/sup_digits

Trains on ``search.stream`` (a mixture of n = 2..5 start problems, numbers 1..13, targets 1..100
for n = 4 and 1..999 otherwise, value labels balanced at every n, evaluation sets and the ToT
24.csv puzzles excluded) and scores the value per n on held-out walk states and on held-out start
states (``probe/walk/...``, ``probe/start/...``: accuracy, AUC, spread, policy top-1). What it
reaches, and the representation study that picked these defaults: ``docs/learning.md``.

Arguments (``:key=value,...``):
- ``size=d<K>``: depth K; ``width`` (d_model, default 128), ``head_dim`` (default 32: several
  narrow heads; one 128-wide head collapsed the value to a constant);
- ``encoding``: ``packed`` (one position per number embedded from value features of the
  rational: 9 positions for 6 slots), ``numeric`` (the same features on a sign + numerator +
  denominator field after a slot marker: 30 positions), ``whole`` (one token per integer up to
  1000: 37) or ``digits`` (4 digit tokens per part: 79);
- ``layout``: ``set`` (bidirectional attention, one shared slot marker, per-field positions: the
  network is exactly invariant to slot order) or ``causal`` (the LM layout, slot markers S0..);
- ``pool``: value read from ``summary`` | ``mean`` | ``attn`` (pooling over the live slots);
- ``results`` (default true; ignored by token encodings): the pair head also embeds the exact
  result of every move and its relation to the target, and the value is a soft-OR over the
  moves' child logits (``pool`` is then ignored);
- ``qknorm``; ``lr``, ``batch``, ``steps``, ``warmup``; ``mixture`` (``+`` separates items, e.g.
  ``n2:1+n3:1+g4_t100:2``); ``n_max`` (slots, default 6); ``runlocal`` (a seconds-long smoke test).
"""

import ml_collections

from train.configs import common

DEFAULTS = {"size": "d3", "width": 128, "head_dim": 32, "encoding": "packed", "layout": "set",
            "pool": "attn", "qknorm": False, "lr": 1e-3, "batch": 128, "steps": 6000,
            "warmup": 200, "mixture": "n2:1+n3:1+g4_t100:3+n4:1+n5:3", "n_max": 6,
            "results": True, "runlocal": False}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = common.parse_arg(arg, DEFAULTS)
    c = common.base_config()
    c.name, c.mode = "supervised", "supervised"
    c.data.source, c.data.mixture = "stream", a["mixture"].replace("+", ",")
    # problem_class only supplies the rules (fractions, use_all); "n2" allows any n_max >= 2, and
    # the stream checks n_max against the mixture itself.
    c.data.problem_class, c.data.n_max = "n2", a["n_max"]
    c.data.eval_examples, c.data.probe_examples, c.data.eval_batches = 2048, 2048, 0
    common.apply_size(c, a["size"])
    common.apply_representation(c, a["encoding"], a["layout"], a["pool"], a["width"],
                                a["head_dim"], a["results"])
    c.model.qk_norm = a["qknorm"]
    c.train.steps, c.train.batch_size, c.train.learning_rate = a["steps"], a["batch"], a["lr"]
    c.train.warmup_steps, c.train.min_lr_ratio = a["warmup"], 0.05
    c.train.log_every, c.train.eval_every = 50, 500
    c.checkpoint.every, c.checkpoint.keep = 500, 2
    c.search_eval.splits, c.search_eval.budgets = ("g4_t100:test:100", "n5:test:100"), (8, 32)
    c.search_eval.csv = common.default_csv()
    if c.search_eval.csv:
        c.search_eval.splits += ("tsllm362", "tot100")
    if a["runlocal"]:
        common.runlocal(c)
        c.data.eval_examples = c.data.probe_examples = 64
    c.lock()
    return c
