r"""Copy a sweep's small records into the repository, from which the report regenerates.

    python scripts/export_records.py --runs='runs/sweep_cpu/C*' \
        --extra=runs/sweep_cpu/sweep.json,runs/sweep_cpu/prediction.json \
        --baselines='runs/sweep_cpu/baseline_uniform/*/search_eval/results.json' \
        --out=results/sweep_cpu

Per run directory: ``run.json``, ``config.json`` and ``metrics.jsonl`` (a few kB each; no
checkpoints, no TensorBoard files) into ``<out>/<run>/``; ``--extra`` files into ``<out>/``;
each ``--baselines`` results file into ``<out>/baselines/<its workdir name>.json``. Every file is
written atomically; machine paths inside ``run.json`` stay as recorded.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

RUN_FILES = ("run.json", "config.json", "metrics.jsonl")


def _copy(src: str, dst: str) -> None:
    from scaling.run_json import write_text

    with open(src, encoding="utf-8") as f:
        write_text(dst, f.read())


def export(runs: list[str], extra: list[str], baselines: list[str], out: str) -> int:
    n = 0
    for run in runs:
        if not os.path.isfile(os.path.join(run, "run.json")):
            continue  # unfinished
        dst = os.path.join(out, os.path.basename(os.path.normpath(run)))
        os.makedirs(dst, exist_ok=True)
        for name in RUN_FILES:
            if os.path.isfile(os.path.join(run, name)):
                _copy(os.path.join(run, name), os.path.join(dst, name))
        n += 1
    for path in extra:
        if os.path.isfile(path):
            _copy(path, os.path.join(out, os.path.basename(path)))
    for path in baselines:
        name = os.path.basename(os.path.dirname(os.path.dirname(path)))  # <workdir>/search_eval/
        os.makedirs(os.path.join(out, "baselines"), exist_ok=True)
        _copy(path, os.path.join(out, "baselines", f"{name}.json"))
    return n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", required=True, help="glob of run directories")
    p.add_argument("--extra", default="", help="comma list of files for <out>/")
    p.add_argument("--baselines", default="", help="glob of search.eval results.json files")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    runs = sorted(d for d in glob.glob(a.runs) if os.path.isdir(d))
    if not runs:
        print(f"error: --runs={a.runs!r} matches no directory.", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    n = export(runs, [x for x in a.extra.split(",") if x],
               sorted(glob.glob(a.baselines)) if a.baselines else [], a.out)
    print(f"[export_records] {n} runs -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
