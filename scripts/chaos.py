r"""Soak test of resume and recovery (not part of ``make test``): kill runs at random moments,
corrupt checkpoints now and then, resume, and check the end result against uninterrupted runs.

    nice -n 15 python scripts/chaos.py --kills=30              # default: 30 kills per job
    nice -n 15 python scripts/chaos.py --kills=8 --time_limit_s=600 --jobs=supervised

For each job (a tiny supervised run and a tiny search-and-learn run, ``python -m train.main`` in
subprocesses) it first runs an uninterrupted reference, then starts the same command in a fresh
workdir and, up to ``--kills`` times, kills it at a random moment: at a random time after the
start (often still importing or compiling), after a random number of new metrics rows, or while
orbax writes a checkpoint (its temporary directory exists); by SIGKILL or SIGTERM (preemption:
the run saves and exits 0). After a kill it damages the newest checkpoint with probability
``--corrupt_p`` (a data file truncated or zeroed, ``meta/metadata`` or ``state/_METADATA`` cut;
only when an older checkpoint exists, so one always restores), then resumes; every damaged step
must end up in ``checkpoints/corrupt-<step>``. After the kills
(or ``--time_limit_s``, split between the jobs) it lets the run finish and compares: the whole
newest checkpoint (parameters, optimizer state, RNG, replay buffer) bit for bit, ``run.json``
without its wall times (and git commit), and that no step's train row appears twice in
``metrics.jsonl``. Prints a table and exits 1 if any job differs. Nothing imports this file.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))  # tests/helpers.py, shared with test_faults

from helpers import corrupt_checkpoint  # noqa: E402

# Tiny runs of a few seconds of compute each; checkpoints often, so kills land near saves.
# ROWS: at most this many new metrics rows before a "rows" kill (a row per update / iteration).
ROWS = {"supervised": 12, "search_and_learn": 3}
JOBS = {
    "supervised": ["--config=train/configs/g24_supervised.py:runlocal", "--config.data.n_max=4",
                   "--config.data.num_problems=60", "--config.data.eval_num_problems=20",
                   "--config.data.eval_batches=0", "--config.tokenizer.number_encoding=whole",
                   "--config.tokenizer.whole_max=40", "--config.model.depth=1",
                   "--config.train.batch_size=16", "--config.train.steps=150",
                   "--config.train.warmup_steps=2", "--config.train.log_every=1",
                   "--config.train.eval_every=50", "--config.checkpoint.every=10",
                   "--config.checkpoint.keep=3"],
    "search_and_learn": ["--config=train/configs/search.py:runlocal",
                         "--config.train.batch_size=16", "--config.sl.iterations=10",
                         "--config.sl.train_steps=3", "--config.sl.selfplay_batch=16",
                         "--config.sl.selfplay_simulations=4", "--config.sl.eval_every=5",
                         "--config.eval.sets=g24:test:16", "--config.eval.simulations=4",
                         "--config.checkpoint.every=1", "--config.checkpoint.keep=3"],
}
CORRUPTIONS = ("truncate_data", "zero_data", "meta", "state_metadata")


def _command(job: str, workdir: str, data_dir: str) -> list[str]:
    extra = [f"--config.data.data_dir={data_dir}"] if job == "supervised" else []
    return [sys.executable, "-m", "train.main", f"--workdir={workdir}", *JOBS[job], *extra]


def _steps(ckdir: str) -> list[int]:
    return sorted(int(d) for d in os.listdir(ckdir) if d.isdigit()) if os.path.isdir(ckdir) \
        else []


def _last_row(workdir: str) -> int:
    try:
        with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return -1
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return -1


def _wait_for_moment(p: subprocess.Popen, workdir: str, kind: str, rng: random.Random,
                     deadline: float, max_rows: int) -> bool:
    """Waits for the kill moment of ``kind``; False if the run ended (or time ran out) first."""
    ckdir = os.path.join(workdir, "checkpoints")
    if kind == "time":
        target = time.time() + rng.uniform(0.2, 8.0)
        cond = lambda: time.time() >= target
    elif kind == "rows":
        start, k = _last_row(workdir), rng.randint(1, max_rows)
        cond = lambda: _last_row(workdir) >= start + k
    else:  # "save": orbax's temporary directory of a checkpoint being written
        cond = lambda: bool(glob.glob(os.path.join(ckdir, "*.orbax-checkpoint-tmp*")))
    while not cond():
        if p.poll() is not None or time.time() > deadline:
            return False
        time.sleep(0.005)
    return True


def run_job(job: str, root: str, data_dir: str, kills: int, corrupt_p: float,
            rng: random.Random, budget_s: float, env: dict) -> dict:
    ref, work = os.path.join(root, job, "ref"), os.path.join(root, job, "chaos")
    log = os.path.join(root, job, "log.txt")
    os.makedirs(os.path.dirname(ref), exist_ok=True)
    t0 = time.time()
    r = subprocess.run(_command(job, ref, data_dir), cwd=REPO, env=env, capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise SystemExit(f"{job}: the reference run failed:\n{r.stderr[-3000:]}")
    print(f"[chaos] {job}: reference run {time.time() - t0:.0f} s", flush=True)
    stats = {"job": job, "sigkill": 0, "sigterm": 0, "during_save": 0, "corruptions": 0,
             "fallbacks": 0, "resumes": 0, "stale_locks": 0}
    deadline, damaged = time.time() + budget_s, {}
    with open(log, "w", encoding="utf-8") as logf:
        while True:
            start = time.time()
            p = subprocess.Popen(_command(job, work, data_dir), cwd=REPO, env=env,
                                 stdout=logf, stderr=subprocess.STDOUT)
            killing = stats["sigkill"] + stats["sigterm"] < kills and time.time() < deadline
            kind = rng.choice(("time", "rows", "rows", "save"))
            if killing and _wait_for_moment(p, work, kind, rng, deadline, ROWS[job]):
                sig = rng.choice((signal.SIGKILL, signal.SIGTERM))
                p.send_signal(sig)
                stats["sigkill" if sig == signal.SIGKILL else "sigterm"] += 1
                stats["during_save"] += kind == "save"
            rc = p.wait()
            logf.flush()
            if rc not in (0, -signal.SIGKILL, -signal.SIGTERM):
                raise SystemExit(f"{job}: run exited {rc} (started {start:.0f}); see {log}")
            steps = _steps(os.path.join(work, "checkpoints"))
            if rc == 0 and os.path.isfile(os.path.join(work, "run.json")) and json.load(
                    open(os.path.join(work, "run.json"))).get("status") == "completed":
                break
            newest = os.path.join(work, "checkpoints", str(steps[-1])) if steps else ""
            # Damage the newest step unless it is still the one damaged last time (the run was
            # killed before it looked): every damaged step must then be found and moved aside.
            if len(steps) >= 2 and newest not in damaged and rng.random() < corrupt_p:
                how = rng.choice(CORRUPTIONS)
                corrupt_checkpoint(newest, how)
                damaged[newest] = os.stat(newest).st_ino
                stats["corruptions"] += 1
                logf.write(f"\n[chaos] damaged step {steps[-1]} ({how})\n")
            damaged = {d: ino for d, ino in damaged.items()  # moved aside (maybe saved anew)
                       if os.path.isdir(d) and os.stat(d).st_ino == ino}
            stats["resumes"] += 1
    text = open(log, encoding="utf-8", errors="replace").read()
    stats["fallbacks"] = text.count("the newest that restores")
    stats["stale_locks"] = text.count("took over the stale lock")
    stats.update(compare(ref, work))
    stats["wall_s"] = time.time() - t0
    return stats


def _strip(obj):
    """run.json without what legitimately differs between runs: wall times and the checkout's
    commit (someone may commit while the soak runs)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items()
                if "time" not in k and not k.endswith("_s") and k != "git_commit"}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def compare(ref: str, work: str) -> dict:
    import jax
    import numpy as np

    from train import checkpoint as ckpt_lib

    step = _steps(os.path.join(ref, "checkpoints"))[-1]
    a, b = (ckpt_lib.load_numpy(os.path.join(w, "checkpoints"), step) for w in (ref, work))
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    same_state = len(la) == len(lb) and all(
        np.array_equal(x, y) for x, y in zip(la, lb, strict=False))
    rj = [_strip(json.load(open(os.path.join(w, "run.json")))) for w in (ref, work)]
    rows = [json.loads(line) for line in open(os.path.join(work, "metrics.jsonl"))]
    train_steps = [r["step"] for r in rows if "train/loss" in r]
    return {"identical_state": same_state, "identical_run_json": rj[0] == rj[1],
            "metrics_unique": len(train_steps) == len(set(train_steps)),
            "corrupt_dirs": len(glob.glob(os.path.join(work, "checkpoints", "corrupt-*")))}


def table(rows: list[dict]) -> str:
    yes = lambda v: "yes" if v else "NO"
    head = ("job", "kills (KILL/TERM)", "during save", "corruptions", "moved aside",
            "fallback warnings", "resumes", "stale locks", "identical state",
            "identical run.json", "metrics once", "wall s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = (r["job"], f"{r['sigkill'] + r['sigterm']} ({r['sigkill']}/{r['sigterm']})",
                 r["during_save"], r["corruptions"], r["corrupt_dirs"], r["fallbacks"],
                 r["resumes"],
                 r["stale_locks"], yes(r["identical_state"]), yes(r["identical_run_json"]),
                 yes(r["metrics_unique"]), f"{r['wall_s']:.0f}")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=30, help="kills per job (>= 0)")
    ap.add_argument("--corrupt_p", type=float, default=0.3, help="chance to corrupt after a kill")
    ap.add_argument("--jobs", default="supervised,search_and_learn")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time_limit_s", type=float, default=1800.0,
                    help="kill phase bound, split between the jobs (the runs then finish)")
    ap.add_argument("--root", default="", help="work directory (default: a fresh temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    jobs = [j for j in a.jobs.split(",") if j]
    if bad := [j for j in jobs if j not in JOBS]:
        ap.error(f"--jobs: {bad} unknown; allowed {sorted(JOBS)}")
    if a.kills < 0 or not 0 <= a.corrupt_p <= 1 or a.time_limit_s <= 0:
        ap.error("--kills >= 0, --corrupt_p in 0..1 and --time_limit_s > 0 are required")
    root = a.root or tempfile.mkdtemp(prefix="zero24_chaos_")
    os.makedirs(root, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu",
           "JAX_COMPILATION_CACHE_DIR": os.path.join(root, "jax_cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    rng = random.Random(a.seed)
    rows = [run_job(j, root, os.path.join(root, "data"), a.kills, a.corrupt_p, rng,
                    a.time_limit_s / len(jobs), env) for j in jobs]
    print(f"\npython scripts/chaos.py --kills={a.kills} --corrupt_p={a.corrupt_p} "
          f"--jobs={a.jobs} --seed={a.seed} --time_limit_s={a.time_limit_s:g}\n")
    print(table(rows))
    if not a.keep and not a.root:
        shutil.rmtree(root, ignore_errors=True)
    ok = all(r["identical_state"] and r["identical_run_json"] and r["metrics_unique"]
             and r["corrupt_dirs"] == r["corruptions"] for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
