r"""Search evals of finished sweep runs: solve rate vs simulations, merged into each run.json.

    python scripts/sweep_eval.py --runs='runs/sweep_cpu/C*' --splits=g24:test:107 \
        --methods=mcts --budgets=1,4,16,64,256

For every run directory (``run.json`` + ``checkpoints/``) the network of the newest checkpoint is
rebuilt from the run's own ``config.json`` (``train.run_model.load_run_model``: model and tokenizer
exactly as trained, states with the run's ``Rules.n_max`` slots; supervised and search-and-learn
checkpoints) and handed to ``search.sweep.evaluate_run``, which writes
``<run>/search_eval/`` (the latest call's results) and merges ``search_evals`` entries
(``scaling.run_json.SearchEval``) into ``run.json`` (``scaling.run_json.merge_entries``: an
entry replaces one of the same split, method and budget). Only the budgets that ``run.json``
lacks for some requested (split, method) are searched, so the command is a cache like
``launch.sweep``: rerun it after more runs finish, or with more budgets (pairs that already had
such a budget are searched again and replaced). All runs share one process, so JAX starts once.
Records that still carry the sweep's shared ``config.name`` are renamed after their directory
(`name_run`), so the report tells the runs apart.

One run's sweep is ``python -m train.main --mode=eval`` (``train.run_model.eval_checkpoint``);
this script adds the many-runs loop, the budget cache and the run naming of a scaling grid.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from collections.abc import Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # `python scripts/sweep_eval.py` from anywhere
    sys.path.insert(0, REPO)


def name_run(workdir: str) -> str:
    """Names the record after its directory when it still carries the config's shared name.

    Every run of a ``launch.sweep`` grid records ``config.name`` (the same for all of them), and
    ``scaling`` labels curves and frontier points by ``run.json["name"]``; the directory name
    (``C<budget>_d<depth>``) tells them apart. Returns the name the record ends up with.
    """
    from scaling import run_json

    rec = run_json.read_record(workdir)
    base = os.path.basename(os.path.normpath(workdir))
    if rec.get("name") == rec.get("config", {}).get("name") and rec.get("name") != base:
        rec["name"] = base
        run_json.write_record(workdir, rec)  # atomic: scaling never reads half a record
    return rec["name"]


def missing_budgets(workdir: str, splits: Sequence[str], methods: Sequence[str],
                    budgets: Sequence[int]) -> list[int]:
    """The budgets for which ``run.json`` lacks an entry of some requested split and method
    variant (``search.sweep.variants``: ``mcts`` reports ``mcts`` and ``mcts_tree``, ``sample``
    reports ``sample_pass`` and ``sample_majority``), whatever network label entries carry."""
    from search.sweep import variants

    with open(os.path.join(workdir, "run.json"), encoding="utf-8") as f:
        have = {(e["split"], e["method"], int(e["simulations"]))
                for e in json.load(f).get("search_evals", [])}
    want = [(s, v) for s in splits for m in methods for v in variants(m)]
    return [b for b in budgets if any((s, v, b) not in have for s, v in want)]


def evaluate_runs(run_dirs: Sequence[str], splits: Sequence[str], methods: Sequence[str],
                  budgets: Sequence[int], batch_size: int = 128,
                  progress: bool = False, csv_path: str | None = None) -> dict[str, str]:
    """Evaluate every finished run of ``run_dirs``; returns {run dir: evaluated | cached | why}."""
    from train import run_model

    out = {}
    for workdir in run_dirs:
        if not os.path.isfile(os.path.join(workdir, "run.json")):
            out[workdir] = "no run.json (not finished)"
            continue
        name_run(workdir)
        todo = missing_budgets(workdir, splits, methods, budgets)
        if not todo:
            out[workdir] = "cached"
            continue
        t0 = time.time()
        csv = csv_path or run_model.run_config(workdir).get("search_eval", {}).get("csv") or None
        run_model.search_evaluate(workdir, splits, methods, todo, batch_size=batch_size,
                                  name=name_run(workdir), progress=progress, csv_path=csv)
        out[workdir] = f"evaluated budgets {todo} in {time.time() - t0:.0f} s"
        print(f"[sweep_eval] {workdir}: {out[workdir]}", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, help="glob of run directories")
    p.add_argument("--splits", default="g24:test:107", help="comma list (search.sweep splits)")
    p.add_argument("--methods", default="mcts", help="comma list (search.sweep methods)")
    p.add_argument("--budgets", default="1,4,16,64,256", help="comma list of simulations")
    p.add_argument("--batch_size", type=int, default=128, help="problems per jitted call")
    p.add_argument("--csv", default=None, help="ToT 24.csv for the csv splits (default: the "
                   "run config's search_eval.csv)")
    a = p.parse_args(argv)
    runs = sorted(d for d in glob.glob(a.runs) if os.path.isdir(d))
    if not runs:
        print(f"error: --runs={a.runs!r} matches no directory.", file=sys.stderr)
        return 2
    try:
        budgets = [int(b) for b in a.budgets.split(",") if b.strip()]
        status = evaluate_runs(runs, [s for s in a.splits.split(",") if s],
                               [m for m in a.methods.split(",") if m], budgets, a.batch_size,
                               progress=sys.stderr.isatty(), csv_path=a.csv)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for workdir, s in status.items():
        print(f"{workdir}: {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
