r"""Tiny CPU run: supervised policy/value training on Game-of-24 solver labels, a few minutes.

    python -m train.main --config=train/configs/default.py --workdir=runs/default
    python -m train.main --config=train/configs/default.py:size=d2 --workdir=runs/d2

The dataset is generated on first use under ``<workdir>/../data``. A d1 model (d_model 64, about
0.1M parameters) should bring ``eval/loss`` well below its start within the 300 updates, with
policy top-1 accuracy (a move that keeps the state solvable) rising above chance.
Arguments: ``size=d<K>`` (depth K, d_model = 64*K) and ``runlocal`` (a 10-step smoke test).
"""

import ml_collections

from train.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = common.parse_arg(arg, {"size": "d1", "runlocal": False})
    c = common.base_config()
    c.name = "default"
    c.data.problem_class = "g24"
    c.data.num_problems, c.data.eval_num_problems = 400, 100
    c.train.steps, c.train.batch_size, c.train.learning_rate = 300, 64, 3e-3
    c.train.warmup_steps, c.train.log_every, c.train.eval_every = 20, 10, 100
    c.checkpoint.every = 100
    common.apply_size(c, args["size"])
    if args["runlocal"]:
        common.runlocal(c)
    c.lock()
    return c
