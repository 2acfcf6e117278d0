r"""Probe curves of one supervised run: value accuracy and policy top-1 per n against FLOPs.

    python scripts/plot_learning.py --run=runs/learn30 --out=docs/img/learning_long_run.png

The figure of ``benchmarks.bench_learning`` (``curves`` + ``plot``) for one run, with both probe
sets: held-out walk states and start states.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import bench_learning  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a supervised run directory")
    ap.add_argument("--out", required=True, help="the PNG to write")
    ap.add_argument("--name", default="30 min", help="the run's label in the legend")
    a = ap.parse_args(argv)
    rows = bench_learning.curves(a.run)
    bench_learning.plot({a.name: rows}, a.out, probes=("walk", "start"))
    print(f"wrote {a.out} ({len(rows)} evals of {a.run})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
