r"""Compare finished runs (``--mode=compare``): a markdown + JSON table and solve-rate curves.

    python -m train.main --config=train/configs/search.py --mode=compare \
        --runs=runs/sl,runs/sl_hindsight,runs/grpo --workdir=runs/compare

Reads each run's ``run.json`` (``scaling.run_json``) and writes ``compare.md``, ``compare.json`` and
``curves.png`` to ``--workdir``: one row per (split, method, simulations[, epochs]) with each run's
played-trajectory solve rate and 95% Wilson interval, then per run the compute used (non-embedding
parameters, training FLOPs, self-play search FLOPs, eval search FLOPs per problem) and wall time.
``--runs`` may also be given as ``--config.compare.runs=A,B``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from scaling import run_json


def load_runs(runs: Sequence[str]) -> dict[str, dict]:
    out = {}
    for d in runs:
        rec = run_json.read_record(d)
        if rec is None:
            raise FileNotFoundError(f"--runs: {d!r} has no run.json; pass finished run workdirs.")
        out[os.path.basename(os.path.normpath(d)) or d] = rec
    if not out:
        raise ValueError("--runs is empty; pass comma-separated run workdirs, e.g. "
                         "--runs=runs/sl,runs/grpo.")
    return out


def _key(e: dict) -> tuple:
    return (e["split"], e["method"], int(e["simulations"]), int(e.get("epochs", 0)))


def table(recs: dict[str, dict]) -> dict[str, Any]:
    """``{"rows": [{split, method, simulations, epochs, "runs": {<run>: {solve_rate, ci,
    search_flops_per_problem}}}], "runs": {<run>: compute and wall time}}``."""
    rows: dict[tuple, dict] = {}
    for name, rec in recs.items():
        for e in rec.get("search_evals", []):
            row = rows.setdefault(_key(e), dict(zip(("split", "method", "simulations", "epochs"),
                                                    _key(e), strict=True), runs={}))
            row["runs"][name] = {"solve_rate": e["solve_rate"], "ci": e.get("solve_rate_ci"),
                                 "search_flops_per_problem": e.get("search_flops_per_problem")}
    runs = {name: {"mode": rec.get("mode", "supervised"), "params": rec["params"],
                   "train_flops": rec["train_flops"], "steps": rec["steps"],
                   "selfplay_search_flops": rec.get("selfplay_search_flops", 0.0),
                   "wall_time_s": rec["wall_time_s"], "device_kind": rec["device_kind"],
                   "git_commit": rec.get("git_commit")} for name, rec in recs.items()}
    return {"rows": [rows[k] for k in sorted(rows)], "runs": runs}


def markdown(t: dict[str, Any]) -> str:
    names = list(t["runs"])
    lines = ["| split | method | sims | epochs | " + " | ".join(names) + " |",
             "|---|---|---:|---:|" + "---:|" * len(names)]
    for r in t["rows"]:
        cells = []
        for n in names:
            c = r["runs"].get(n)
            cells.append("" if c is None else f"{c['solve_rate']:.3f}" + (
                f" [{c['ci'][0]:.2f}, {c['ci'][1]:.2f}]" if c.get("ci") else ""))
        lines.append(f"| {r['split']} | {r['method']} | {r['simulations']} | "
                     f"{r['epochs'] or ''} | " + " | ".join(cells) + " |")
    lines += ["", "| run | mode | params (non-emb) | train FLOPs | self-play search FLOPs | "
              "updates | wall time (s) | device |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for n, r in t["runs"].items():
        lines.append(f"| {n} | {r['mode']} | {r['params']:,} | {r['train_flops']:.3g} | "
                     f"{r['selfplay_search_flops']:.3g} | {r['steps']} | {r['wall_time_s']:.0f} | "
                     f"{r['device_kind']} |")
    return "\n".join(lines) + "\n"


def plot_curves(recs: dict[str, dict], path: str) -> str | None:
    """Solve rate vs iteration (runs with a ``history``), uniform baseline dashed; None if none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    drawn = False
    for name, rec in recs.items():
        hist = rec.get("history") or []
        keys = sorted({(e["split"], e["simulations"]) for h in hist for e in h["entries"]
                       if e["method"] == "mcts"})
        for split, sims in keys:
            pts = [(h["iteration"], e["solve_rate"]) for h in hist for e in h["entries"]
                   if (e["split"], e["simulations"], e["method"]) == (split, sims, "mcts")]
            line, = ax.plot(*zip(*pts, strict=True), marker="o", ms=3,
                            label=f"{name}: {split}, {sims} sims")
            drawn = True
            for b in rec.get("search_evals", []):
                if (b["method"], b["split"], b["simulations"]) == ("uniform_mcts", split, sims):
                    ax.axhline(b["solve_rate"], ls="--", color=line.get_color(), lw=1,
                               label=f"uniform-prior MCTS, {sims} sims")
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("search-and-learn iteration")
    ax.set_ylabel("played-trajectory solve rate")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(config, workdir: str, runs: Sequence[str] = ()) -> dict[str, Any]:
    runs = list(runs) or list(config.compare.runs)
    recs = load_runs(runs)
    t = table(recs)
    os.makedirs(workdir, exist_ok=True)
    md = markdown(t)
    run_json.write_text(os.path.join(workdir, "compare.md"), md)
    run_json.write_json(os.path.join(workdir, "compare.json"), t)
    png = plot_curves(recs, os.path.join(workdir, "curves.png"))
    print(md, flush=True)
    return {"compare_md": os.path.join(workdir, "compare.md"), "curves": png,
            "rows": len(t["rows"])}
