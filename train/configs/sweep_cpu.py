r"""One run of the CPU IsoFLOP sweep: supervised training on the labelled stream (n <= 4), sized by
depth and width.

    python -m train.main --config=train/configs/sweep_cpu.py:size=d2w48 --workdir=runs/sw/d2w48 \
        --config.train.steps=2000
    make sweep-cpu      # the whole sweep (launch/sweeps/cpu.py): train, search evals, fits, report

The grid (``launch/sweeps/cpu.py``) gives every run its ``size`` and ``train.steps``; everything
else is fixed here, so runs differ only in N and D:
- data: ``search.stream`` with mixture ``n2:1,n3:1,g4_t100:3,n4:1`` on 4 slots (no example is
  repeated; every evaluation set and all 1,362 ToT puzzles are excluded); every run reads the
  same stream from example 0, so at equal D two runs saw the same examples;
- the representation of ``train/configs/supervised.py`` (packed numbers, set layout, result-aware
  pair head, soft-OR value) with heads of 16 (several narrow heads at every width >= 32: the
  layout that does not collapse the value, docs/learning.md);
- AdamW at one learning rate for every size, 50 warm-up updates, cosine decay over the run's own
  length (so a run of D tokens is the compute-optimal schedule for D, as in Chinchilla);
- the fitted loss: ``eval/loss`` (policy CE + value BCE) on 2,048 held-out stream states from the
  ``val`` hash split, identical for every run; probes give the value spread for the collapse check;
- search evals (``scripts/sweep_eval.py``): TS-LLM-362 (with the ToT csv) and 100 held-out
  ``g4_t100`` test problems.

Argument ``size=d<K>w<W>`` (depth K, width W; W a multiple of 16) and ``runlocal``.
"""

import re

import ml_collections

from train.configs import common, supervised

MIXTURE = "n2:1+n3:1+g4_t100:3+n4:1"
HEAD_DIM = 16


def parse_size(size: str) -> tuple[int, int]:
    """``"d2w48"`` -> (2, 48)."""
    m = re.fullmatch(r"d(\d+)w(\d+)", size)
    if not m or int(m[1]) < 1 or int(m[2]) < 8 or int(m[2]) % 8:
        raise ValueError(f"config argument size={size!r} is invalid; allowed d<K>w<W> with K >= 1 "
                         "and W a multiple of 8 (e.g. d2w48).")
    return int(m[1]), int(m[2])


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = common.parse_arg(arg, {"size": "d1w32", "runlocal": False})
    depth, width = parse_size(a["size"])
    c = supervised.get_config(f"size=d{depth},width={width},head_dim={HEAD_DIM},mixture={MIXTURE},"
                              "n_max=4,batch=64,lr=3e-3,warmup=50,steps=1000"
                              + (",runlocal" if a["runlocal"] else ""))
    c.unlock()
    c.name = "sweep_cpu"
    # eval/loss and the probes at update 0 and at the end only; one checkpoint, at the end
    # (scripts/sweep_eval.py searches with it).
    c.train.log_every, c.train.eval_every = 100, 1_000_000
    c.checkpoint.every, c.checkpoint.keep = 1_000_000, 1
    c.search_eval.splits = ("g4_t100:test:100",) + (("tsllm362",) if c.search_eval.csv else ())
    c.search_eval.budgets = (1, 4, 16, 64, 256)
    if a["runlocal"]:
        c.train.log_every = 2
    c.lock()
    return c
