r"""Run every ``benchmarks/bench_*.py`` (discovered by glob) and collect their JSON in one file.

    python -m benchmarks.run_all                 # each module with --quick
    python -m benchmarks.run_all --full          # without --quick
    python -m benchmarks.run_all --only=game,solver --out_dir=bench_out

Each module runs in its own process
(``python -m benchmarks.<name> [--quick] --out=<dir>/<name>.json``) so that JAX / XLA settings do
not leak between them; its printed table is passed through. The summary ``<out_dir>/all.json``
maps module name to its JSON (or to the error). The exit code is non-zero if any module failed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time

from scaling import run_json

HERE = os.path.dirname(os.path.abspath(__file__))


def discover() -> list[str]:
    """Module names ``bench_*`` next to this file, sorted."""
    return sorted(
        os.path.splitext(os.path.basename(p))[0]
        for p in glob.glob(os.path.join(HERE, "bench_*.py"))
    )


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="run without --quick")
    ap.add_argument("--only", default="", help="comma-separated substrings of module names")
    ap.add_argument("--out_dir", default="bench_out")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per module")
    args = ap.parse_args(argv)
    names = discover()
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        names = [n for n in names if any(k in n for k in keys)]
        if not names:
            raise ValueError(f"--only={args.only!r} matches none of {discover()}.")
    os.makedirs(args.out_dir, exist_ok=True)
    summary, failed = {}, []
    for name in names:
        out = os.path.join(args.out_dir, f"{name}.json")
        cmd = [sys.executable, "-m", f"benchmarks.{name}", f"--out={out}"] + (
            [] if args.full else ["--quick"]
        )
        print(f"=== {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=os.path.dirname(HERE), timeout=args.timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = -1
        wall = time.perf_counter() - t0
        if rc == 0 and os.path.isfile(out):
            with open(out, encoding="utf-8") as fh:
                summary[name] = {"wall_s": wall, "result": json.load(fh)}
        else:
            failed.append(name)
            summary[name] = {"wall_s": wall, "error": "timeout" if rc == -1 else f"exit code {rc}"}
    run_json.write_json(os.path.join(args.out_dir, "all.json"), summary)
    print(
        f"=== {len(names) - len(failed)}/{len(names)} benchmarks ok; summary in "
        f"{os.path.join(args.out_dir, 'all.json')}" + (f"; failed: {failed}" if failed else "")
    )
    if failed:
        raise SystemExit(1)
    return summary


if __name__ == "__main__":
    main()
