r"""Tiny CPU run: supervised policy/value training on Game-of-24 solver labels, a few minutes.

    python -m train.main --config=train/configs/g24_supervised.py --workdir=runs/g24_sup
    python -m train.main --config=train/configs/g24_supervised.py:size=d2 --workdir=runs/d2

Generates its datasets on first use under ``<workdir>/../data`` (1000 training problems of class
``g24`` -> 5000 labelled states; 100 held-out ``val`` problems -> 500). A d1 model (d_model 64,
66k non-embedding parameters, 83-token states) trains 1000 updates of 64 states. What it
reaches: docs/train.md.
Arguments: ``size=d<K>`` (depth K, d_model = 64*K) and ``runlocal`` (a 10-step smoke test).
The stream-trained "learn the game" job is ``train/configs/supervised.py``.
"""

import ml_collections

from train.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = common.parse_arg(arg, {"size": "d1", "runlocal": False})
    c = common.base_config()
    c.name = "g24_supervised"
    c.data.problem_class = "g24"
    c.data.num_problems, c.data.eval_num_problems, c.data.eval_batches = 1000, 100, 0
    c.train.steps, c.train.batch_size, c.train.learning_rate = 1000, 64, 3e-3
    c.train.warmup_steps, c.train.log_every, c.train.eval_every = 50, 25, 250
    c.checkpoint.every = 250
    common.apply_size(c, args["size"])
    if args["runlocal"]:
        common.runlocal(c)
    c.lock()
    return c
