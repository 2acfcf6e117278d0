r"""Probe curves of one supervised run: value accuracy and policy top-1 per n against FLOPs.

    python scripts/plot_learning.py --run=runs/learn30 --out=docs/img/learning_long_run.png

Reads ``<run>/metrics.jsonl`` (the ``probe/<set>/n<k>/...`` rows written at every eval) and
``run.json`` (FLOPs per token, tokens per update) and draws a 2 x 3 grid: value accuracy (top)
and policy top-1 (bottom) at n = 3, 4, 5, for the walk and the start probe sets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from train.metrics import read_jsonl  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a supervised run directory")
    ap.add_argument("--out", required=True, help="the PNG to write")
    a = ap.parse_args(argv)
    rec = json.load(open(os.path.join(a.run, "run.json"), encoding="utf-8"))
    per_step = rec["train_flops"] / max(rec["steps"], 1)
    rows = [r for r in read_jsonl(os.path.join(a.run, "metrics.jsonl"))
            if "probe/walk/n3/value_acc" in r and r["step"] > 0]
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    for col, n in enumerate((3, 4, 5)):
        for row, (metric, what) in enumerate((("value_acc", "value accuracy"),
                                              ("policy_top1", "policy top-1 keeps solvable"))):
            ax = axes[row, col]
            for probe in ("walk", "start"):
                key = f"probe/{probe}/n{n}/{metric}"
                pts = [(r["step"] * per_step, r[key]) for r in rows if key in r]
                ax.plot(*zip(*pts, strict=True), marker=".", label=f"{probe} states")
            ax.set_xscale("log")
            ax.set_title(f"{what}, held-out, n={n}", fontsize=10)
            ax.grid(alpha=0.3)
            if row == 1:
                ax.set_xlabel("training FLOPs")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    tmp = a.out + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, a.out)  # atomic: never a half-written figure
    print(f"wrote {a.out} ({len(rows)} evals of {a.run})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
