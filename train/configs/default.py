r"""The ``make run`` job: search-and-learn from scratch, ``train/configs/search.py`` under the run
name ``default``; the same arguments (``size=d<K>``, ``runlocal``, ...) and the same result.

    python -m train.main --config=train/configs/default.py --workdir=runs/default
    python -m train.main --config=train/configs/default.py:runlocal --workdir=/tmp/smoke

The small fixed-dataset supervised job on g24 is ``train/configs/g24_supervised.py``.
"""

import ml_collections

from train.configs import search


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = search.get_config(arg)
    c.unlock()
    c.name = "default"
    c.lock()
    return c
