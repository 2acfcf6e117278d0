r"""Learning curves of number representations: each variant trains on the stream for the SAME
wall-clock budget, side by side in one invocation, scored per n on held-out states.

    python -m benchmarks.bench_learning --minutes=5 --out=bench_out/learning.json
    python -m benchmarks.bench_learning --variants=numeric_set,digits_causal --minutes=2
    python -m benchmarks.bench_learning --quick          # 2 variants x 40 s (smoke test)

Each variant is ``train/configs/supervised.py:<args>`` run as its own process (one JAX runtime each)
with ``--config.train.time_limit_s``; the runs go one after another on the same machine, so each
gets the same cores. From every run's ``metrics.jsonl`` it prints, per variant and n, value
accuracy / AUC / spread and policy top-1 on held-out walk states (``probe/walk``) and on held-out
start states (``probe/start``), with the training FLOPs reached, and draws value accuracy and
policy top-1 at n = 3, 4, 5 against training FLOPs (``--plot``, default
``docs/img/learning_curves.png``).
A variant whose value collapsed (spread ~0 at every n) is flagged.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchmarks import common

# name -> supervised.py argument string. The first is the study's pick (docs/learning.md).
VARIANTS = {
    "packed_set_results": "encoding=packed,layout=set",
    "packed_set": "encoding=packed,layout=set,pool=attn,results=false",
    "packed_causal": "encoding=packed,layout=causal,pool=summary,results=false",
    "numeric_set": "encoding=numeric,layout=set,pool=attn,results=false",
    "whole_set": "encoding=whole,layout=set,pool=attn",
    "digits_set": "encoding=digits,layout=set,pool=attn",
    "numeric_causal": "encoding=numeric,layout=causal,pool=summary,results=false",
    "whole_causal": "encoding=whole,layout=causal,pool=summary",
    "digits_causal": "encoding=digits,layout=causal,pool=summary",
    "whole_causal_1head": "encoding=whole,layout=causal,pool=summary,head_dim=128",
    # levers on the pick: learning rate, a mixture weighted towards n = 4, width
    "packed_set_results_lr3e-3": "encoding=packed,layout=set,lr=3e-3",
    "packed_set_results_mix_n4": "encoding=packed,layout=set,mixture=n3:1+g4_t100:4+n4:2+n5:2",
    "packed_set_results_w192": "encoding=packed,layout=set,width=192",
}
NS = (2, 3, 4, 5)
METRICS = ("value_acc", "value_auc", "value_spread", "policy_top1")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_variant(name: str, args: str, root: str, seconds: float, extra: list[str]) -> str:
    """Trains one variant (skipped when its run.json exists); returns its workdir."""
    work = os.path.join(root, name)
    if os.path.exists(os.path.join(work, "run.json")):
        return work
    os.makedirs(root, exist_ok=True)
    cmd = [sys.executable, "-m", "train.main", f"--config=train/configs/supervised.py:{args}",
           f"--workdir={work}", f"--config.train.time_limit_s={seconds}", *extra]
    with open(os.path.join(root, f"{name}.log"), "w") as log:
        subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
    return work


def curves(work: str) -> list[dict]:
    """Rows of ``metrics.jsonl`` that carry probe metrics, with the FLOPs reached so far."""
    rows, flops = [], 0.0
    with open(os.path.join(work, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            flops = r.get("perf/train_flops", flops)
            if any(k.startswith("probe/") for k in r):
                rows.append({**r, "flops": flops})
    return rows


def summary(work: str) -> dict:
    rec = json.load(open(os.path.join(work, "run.json")))
    fm = rec["final_metrics"]
    out = {"train_flops": rec["train_flops"], "steps": rec["steps"], "params": rec["params"],
           "wall_time_s": rec["wall_time_s"], "collapsed": bool(fm.get("probe/walk/collapsed")),
           "eval_loss": fm.get("eval/loss")}
    for probe in ("walk", "start"):
        for n in NS:
            for m in METRICS:
                key = f"probe/{probe}/n{n}/{m}"
                if key in fm:
                    out[f"{probe}/n{n}/{m}"] = fm[key]
    return out


def table(results: dict) -> str:
    head = ("| variant | steps | train FLOPs | " +
            " | ".join(f"walk n{n} val acc / AUC" for n in NS) +
            " | start n4 val acc | start n5 val acc | walk n4 pol top1 | collapsed |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    fmt = lambda x: "-" if x is None else f"{x:.3f}"
    for name, r in results.items():
        cells = [f"{fmt(r.get(f'walk/n{n}/value_acc'))} / {fmt(r.get(f'walk/n{n}/value_auc'))}"
                 for n in NS]
        lines.append(f"| {name} | {r['steps']} | {r['train_flops']:.2e} | " + " | ".join(cells) +
                     f" | {fmt(r.get('start/n4/value_acc'))} | {fmt(r.get('start/n5/value_acc'))}"
                     f" | {fmt(r.get('walk/n4/policy_top1'))} | "
                     f"{'YES' if r['collapsed'] else ''} |")
    return "\n".join(lines)


def plot(all_curves: dict, path: str, probes: tuple[str, ...] = ("walk",)) -> None:
    """Value accuracy (top row) and policy top-1 (bottom row) at n = 3, 4, 5 on the held-out
    ``probes`` sets (walk and/or start states) against training FLOPs, one line per variant and
    probe set; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5), sharex=True)
    for row, (metric, label) in enumerate((("value_acc", "value accuracy"),
                                           ("policy_top1", "policy top-1 keeps solvable"))):
        for col, n in enumerate((3, 4, 5)):
            ax = axes[row, col]
            for name, rows in all_curves.items():
                for probe in probes:
                    key = f"probe/{probe}/n{n}/{metric}"
                    pts = [(r["flops"], r[key]) for r in rows if key in r and r["flops"] > 0]
                    if pts:
                        ax.plot(*zip(*pts, strict=True), marker="o", ms=3,
                                label=name if len(probes) == 1 else f"{name}, {probe} states")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{label}, held-out {' / '.join(probes)} states, n={n}", fontsize=10)
            ax.grid(alpha=0.3)
            if row == 1:
                ax.set_xlabel("training FLOPs")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)  # a half-written figure is never visible
    plt.close(fig)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--minutes", type=float, default=5.0, help="wall-clock budget per variant")
    ap.add_argument("--root", default="runs/bench_learning")
    ap.add_argument("--plot", default="docs/img/learning_curves.png")
    ap.add_argument("--quick", action="store_true", help="2 variants x 40 s, small eval sets")
    ap.add_argument("--eval_every", type=int, default=250, help="updates between probe evals")
    ap.add_argument("--out", default="bench_out/bench_learning.json")
    args = ap.parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; allowed {sorted(VARIANTS)}.")
    seconds, root, plot_path = args.minutes * 60, args.root, args.plot
    extra = [f"--config.train.eval_every={args.eval_every}"]
    if args.quick:
        names, seconds, root = names[:2], 40.0, args.root + "_quick"
        plot_path = os.path.join(root, "learning_curves.png")
        extra = ["--config.data.eval_examples=256", "--config.data.probe_examples=256",
                 "--config.train.eval_every=100"]
    results, all_curves = {}, {}
    for name in names:
        work = run_variant(name, VARIANTS[name], root, seconds, extra)
        results[name], all_curves[name] = summary(work), curves(work)
    print(f"Learning curves, {seconds / 60:g} min per variant (held-out states; acc / AUC):")
    print(table(results))
    plot(all_curves, plot_path)
    print(f"plot: {plot_path}")
    return common.write_json({"minutes": seconds / 60, "variants": {n: VARIANTS[n] for n in names},
                              "results": results}, args.out)


if __name__ == "__main__":
    main()
