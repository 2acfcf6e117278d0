r"""Label stream vs training: states/s of ``search.labeller`` vs ``search.solver``, the batched
stream vs the per-example one it replaced, next to the states/s the train steps consume, same run.

    python -m benchmarks.bench_data            # ~4-5 minutes on 2 CPU cores
    python -m benchmarks.bench_data --quick    # fewer states and steps
    python -m benchmarks.bench_data --out=bench_out/bench_data.json

Label rows (rules: n_max=6, rationals, use_all, max_abs 32767): random start states of n = 4, 5, 6
numbers 1..13 with targets 1..999, and ``episodes``: every state along random legal playouts of
six-number start states (6, 5, 4, 3, 2 live numbers), the mix a data stream labels. Both sides
label the same states; the solver (``solver.state_labels``, pure Python) only a prefix, with its
caches cleared before each row (they fill during the row, as in a stream), and the labels of
that prefix must agree. The labeller's rate is the best of ``--repeats`` passes over the row,
one ``label_batch`` call each, after a warm-up call (numba compilation). Both run on one core.

Stream rows: examples/s of the whole ``search.stream`` (walks, targets, rejection, labels, legal
masks) for the flagship warm-start mixture (n <= 5) and an n = 4..6 one: the batched stream
(``search.stream_kernels``) against the per-example one it replaced (``search/stream.py`` at
commit ``OLD_STREAM``, numpy Generators per example, loaded from git into a temporary module),
both in ``draw_range`` calls of the train batch (``--batch``, as ``train.stream_data`` draws
them); the new one also in calls of 4,096 and in two processes (``data.workers=2``'s shape: each
process draws its own batches). One core unless stated; best of ``--repeats`` passes over the
same examples after a warm-up. ``first draw_range``: a fresh process with numba's disk cache off
(the labeller and the stream kernels compile) and on (they load).

Train rows: one jitted ``train.steps`` train step (AdamW, donated state), batch ``--batch`` of a
real stream batch, on JAX's default device: ``flagship.py:cpu``'s model (what the flagship warm
start trains), and ``train/configs/supervised.py:size=dK,width=64K`` (heads of 32) with the
default representation (``packed``, set layout, result-aware pair head: 9 positions per state)
and with whole-number tokens in the causal layout (37 positions); states/s consumed = batch /
(best step time after warm-up). The last table is stream (or labeller) states/s / train
states/s: above 1, one core keeps up with the step.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import subprocess
import sys
import tempfile
import time
from fractions import Fraction

import numpy as np

from benchmarks.common import best_time, best_wall, write_json
from search import game, labeller, solver

RULES = game.Rules(n_max=6)
MIXTURES = ("n2:1,n3:1,g4_t100:3,n4:1,n5:3", "n4:1,n5:1,n6:1")  # flagship warm start; n <= 6
OLD_STREAM = "b48791e4075636583764d8b7d9a489b179de8f1b"  # the last per-example search/stream.py
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OPS = game._FRACTION_OPS  # a+b, a*b, a-b, b-a, a/b, b/a


def _results(a: Fraction, b: Fraction) -> list[Fraction]:
    """Legal results of a op b under RULES (game.step's rules)."""
    out = []
    for op, f in enumerate(_OPS):
        if (op == 4 and b == 0) or (op == 5 and a == 0):
            continue
        r = f(a, b)
        if abs(r.numerator) <= RULES.max_abs and r.denominator <= RULES.max_abs:
            out.append(r)
    return out


def start_states(n: int, count: int, rng: random.Random) -> list:
    """(slot-aligned values, target): n numbers 1..13 in the first slots, targets 1..999."""
    return [([Fraction(rng.randint(1, 13)) for _ in range(n)] + [None] * (RULES.n_max - n),
             Fraction(rng.randint(1, 999))) for _ in range(count)]


def episode_states(count: int, rng: random.Random) -> list:
    """Every state along random playouts of six-number start states, until ``count`` states."""
    out = []
    while len(out) < count:
        slots, target = start_states(RULES.n_max, 1, rng)[0]
        while len(out) < count:
            out.append((list(slots), target))
            live = [s for s, v in enumerate(slots) if v is not None]
            if len(live) < 3:
                break
            i, j = sorted(rng.sample(live, 2))
            res = _results(slots[i], slots[j])
            if not res:
                break
            slots[i], slots[j] = rng.choice(res), None
    return out


def to_arrays(states: list):
    return labeller.fraction_arrays(states, RULES.n_max)


def label_row(case: str, states: list, solver_count: int, repeats: int) -> dict:
    arrays = to_arrays(states)
    labeller.label_batch(*to_arrays(states[:2]), RULES)  # compile (or load numba's cache)
    t_lab, _, (value, good) = best_time(lambda: labeller.label_batch(*arrays, RULES), repeats)
    prefix = states[:solver_count]
    solver.clear_caches()
    t0 = time.perf_counter()
    want = [solver.state_labels(slots, target, RULES) for slots, target in prefix]
    t_sol = time.perf_counter() - t0
    for k, (v, g) in enumerate(want):
        if v != value[k] or not np.array_equal(g, good[k]):
            raise AssertionError(f"{case}: labeller and solver disagree on state {k}: {prefix[k]}")
    lab_rate, sol_rate = len(states) / t_lab, len(prefix) / t_sol
    return {"case": case, "states": len(states), "solvable": float(value.mean()),
            "labeller_states_per_s": lab_rate, "labeller_ms": 1e3 / lab_rate,
            "solver_states": len(prefix), "solver_states_per_s": sol_rate,
            "solver_ms": 1e3 / sol_rate, "ratio": lab_rate / sol_rate}


def train_row(name: str, config: dict, steps: int) -> dict:
    """States/s one jitted train step of ``config`` (a train config as a dict) consumes, on a
    batch of its own training stream."""
    import jax

    from train import setup, stream_data

    s = setup.build(config)
    mesh, tok, step, init = s.mesh, s.tok_cfg, s.program.train_step, s.program.init_fn
    batch_size = config["train"]["batch_size"]
    loader = stream_data.StreamLoader(stream_data.stream_config(config, s.rules, frozenset()),
                                      batch_size, mesh, tok, prefetch=0)
    batch = loader.batch(0)  # a real batch of the training stream
    held = {"state": init()}

    def one():
        held["state"], metrics = step(held["state"], batch)
        jax.block_until_ready(metrics["loss"])

    t0 = time.perf_counter()
    one()  # compile
    compile_s = time.perf_counter() - t0
    t = best_wall(one, steps, warmup_calls=2)
    params = sum(x.size for x in jax.tree.leaves(held["state"]["params"]))
    return {"model": name, "params": int(params), "batch": batch_size,
            "tokens_per_state": int(s.seq_len), "step_ms": t * 1e3,
            "states_per_s": batch_size / t, "compile_s": compile_s,
            "device": str(jax.devices()[0].platform)}


def train_configs(batch: int) -> list[tuple[str, dict]]:
    """(name, config) of the train rows: flagship:cpu's model, supervised d2 / d4 two ways."""
    from train.configs import flagship
    from train.configs import supervised as sup_config

    flag = flagship.get_config("cpu")
    flag.unlock()
    flag.train.batch_size = batch
    out = [("flagship:cpu", flag.to_dict())]
    for depth in (2, 4):
        for enc in ("packed", "whole"):
            arg = f"size=d{depth},width={64 * depth},batch={batch},encoding={enc}"
            arg += "" if enc in ("packed", "numeric") else ",layout=causal,pool=summary"
            out.append((f"d{depth}/{enc}", sup_config.get_config(arg).to_dict()))
    return out


# ----------------------------------------------------------------------------- stream rows


def old_stream_module():
    """``search/stream.py`` at ``OLD_STREAM`` as a module (None without git or that commit)."""
    try:
        src = subprocess.run(["git", "show", f"{OLD_STREAM}:search/stream.py"], cwd=_ROOT,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = os.path.join(tempfile.mkdtemp(prefix="bench_data_"), "old_stream.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("_bench_old_stream", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _draw_batches(mod, mixture: str, lo: int, count: int, batch: int) -> int:
    """Examples lo..lo+count-1 of ``mod``'s stream, in ``draw_range`` calls of ``batch``."""
    cfg = mod.StreamConfig(mixture=mod.parse_mixture(mixture), n_max=RULES.n_max)
    for a in range(lo, lo + count, batch):
        mod.draw_range(cfg, a, min(a + batch, lo + count))
    return count


def _new_draw(mixture: str, lo: int, count: int, batch: int) -> int:
    from search import stream  # top level: picklable for the spawned processes

    return _draw_batches(stream, mixture, lo, count, batch)


def stream_rates(mods: dict, mixture: str, counts: dict, batch: int, repeats: int) -> dict:
    """{name: examples/s} of each stream module in ``mods`` (``counts[name]`` examples in calls of
    ``batch``): best of ``repeats`` passes over the same examples, the modules' passes
    interleaved so that both sides see the same load on a shared machine."""
    for mod in mods.values():
        _draw_batches(mod, mixture, 10**9, batch, batch)  # warm-up: labeller, tables, caches
    best = dict.fromkeys(mods, float("inf"))
    for _ in range(max(1, repeats)):
        for name, mod in mods.items():
            t0 = time.perf_counter()
            _draw_batches(mod, mixture, 0, counts[name], batch)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: counts[name] / t for name, t in best.items()}


def stream_rate_processes(mixture: str, count: int, batch: int, processes: int,
                          repeats: int) -> float:
    """Examples/s of the batched stream in ``processes`` spawned processes, each drawing its own
    share of ``count`` examples in calls of ``batch``: best of ``repeats`` passes (start-up and
    warm-up not timed)."""
    import multiprocessing as mp

    share, best = count // processes, float("inf")
    with mp.get_context("spawn").Pool(processes) as pool:
        pool.starmap(_new_draw, [(mixture, 10**9, batch, batch)] * processes, chunksize=1)
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            pool.starmap(_new_draw, [(mixture, i * share, share, batch)
                                     for i in range(processes)], chunksize=1)
            best = min(best, time.perf_counter() - t0)
    return processes * share / best


def first_call_s(mixture: str, numba_cache: bool) -> float:
    """Seconds of the first 128-example ``draw_range`` of a fresh process."""
    code = ("import time; from search import stream; t0 = time.perf_counter(); "
            f"c = stream.StreamConfig(stream.parse_mixture({mixture!r}), n_max={RULES.n_max}); "
            "stream.draw_range(c, 0, 128); print(time.perf_counter() - t0)")
    env = dict(os.environ, ZERO24_NUMBA_CACHE="1" if numba_cache else "0")
    out = subprocess.run([sys.executable, "-c", code], cwd=_ROOT, env=env, capture_output=True,
                         text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def stream_rows(count: int, batch: int, repeats: int) -> list[dict]:
    """Old and new stream per mixture (module docstring)."""
    from search import stream

    old = old_stream_module()
    if old is None:
        print(f"(git or commit {OLD_STREAM[:12]} unavailable: no old-stream column)")
    rows = []
    for mixture in MIXTURES:
        mods, counts = {"new": stream}, {"new": count}
        if old is not None:  # ~1-2k examples/s: fewer examples, the same calls
            mods["old"], counts["old"] = old, max(batch, count // 8)
        rates = stream_rates(mods, mixture, counts, batch, repeats)
        row = {"case": f"stream {mixture}", "mixture": mixture, "batch": batch,
               "new_per_s": rates["new"], "old_per_s": rates.get("old"),
               "new_4096_per_s": stream_rates({"new": stream}, mixture, {"new": 4096}, 4096,
                                              repeats)["new"],
               "new_2proc_per_s": stream_rate_processes(mixture, 2 * count, batch, 2, repeats)}
        row["new_over_old"] = rates["new"] / rates["old"] if old is not None else None
        rows.append(row)
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer states and train steps")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128, help="train batch = stream call size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench_out/bench_data.json")
    args = ap.parse_args(argv)
    q = 4 if args.quick else 1  # quick: a quarter of the states
    rng = random.Random(args.seed)
    compile_s = {"cache_off_s": first_call_s(MIXTURES[0], False),
                 "cache_on_s": first_call_s(MIXTURES[0], True)}
    cases = [("n=4 start", start_states(4, 4000 // q, rng), 400 // q),
             ("n=5 start", start_states(5, 2000 // q, rng), 40 // q),
             ("n=6 start", start_states(6, 400 // q, rng), max(2, 8 // q)),
             ("episodes", episode_states(2000 // q, rng), 80 // q)]
    rows = [label_row(case, states, n_sol, args.repeats) for case, states, n_sol in cases]
    streams = stream_rows(8192 // q, args.batch, args.repeats)
    train = [train_row(name, cfg, 3 if args.quick else 10)
             for name, cfg in train_configs(args.batch)]

    print(f"labelled states/s, labeller (numba) vs solver (Python), {RULES}")
    print(f"{'case':<11}{'states':>7}{'solvable':>9}{'labeller/s':>12}{'ms/state':>10}"
          f"{'solver/s':>10}{'ms/state':>10}{'(states)':>9}{'ratio':>8}")
    for r in rows:
        print(f"{r['case']:<11}{r['states']:>7}{r['solvable']:>9.2f}"
              f"{r['labeller_states_per_s']:>12.0f}{r['labeller_ms']:>10.3f}"
              f"{r['solver_states_per_s']:>10.1f}{r['solver_ms']:>10.1f}"
              f"{r['solver_states']:>9}{r['ratio']:>7.0f}x")
    print(f"train step states/s consumed (batch {args.batch}, {train[0]['device']})")
    print(f"{'model':<13}{'params':>10}{'tokens':>8}{'step ms':>10}{'states/s':>10}"
          f"{'compile s':>11}")
    for t in train:
        print(f"{t['model']:<13}{t['params']:>10}{t['tokens_per_state']:>8}"
              f"{t['step_ms']:>10.1f}{t['states_per_s']:>10.0f}{t['compile_s']:>11.1f}")
    print(f"stream examples/s: batched (new) vs per-example (old, commit {OLD_STREAM[:7]}), "
          f"draw_range calls of {args.batch}, one core unless stated")
    print(f"{'mixture':<32}{'old':>8}{'new':>9}{'new/old':>9}{'new, 4096/call':>16}"
          f"{'new, 2 proc':>13}")
    for r in streams:
        old = "-" if r["old_per_s"] is None else f"{r['old_per_s']:.0f}"
        ratio = "-" if r["new_over_old"] is None else f"{r['new_over_old']:.1f}x"
        print(f"{r['mixture']:<32}{old:>8}{r['new_per_s']:>9.0f}{ratio:>9}"
              f"{r['new_4096_per_s']:>16.0f}{r['new_2proc_per_s']:>13.0f}")
    print(f"first draw_range of a process: {compile_s['cache_off_s']:.1f} s with numba's cache "
          f"off (compiles), {compile_s['cache_on_s']:.1f} s with it on (loads)")
    print("stream vs train: stream (or labeller) states/s / train step states/s")
    cols = [t["model"] for t in train]
    print(f"{'case':<44}" + "".join(f"{'/ ' + c:>15}" for c in cols))
    lines = [(r["case"], r["labeller_states_per_s"]) for r in rows]
    for r in streams:
        if r["old_per_s"] is not None:
            lines.append((f"{r['case']} old", r["old_per_s"]))
        lines += [(f"{r['case']} new", r["new_per_s"]),
                  (f"{r['case']} new 2 proc", r["new_2proc_per_s"])]
    ratios = {}
    for case, rate in lines:
        ratios[case] = {t["model"]: rate / t["states_per_s"] for t in train}
        print(f"{case:<44}" + "".join(f"{ratios[case][c]:>15.2f}" for c in cols))
    head, flag = streams[0], train[0]
    targets = {"stream_per_s": head["new_per_s"], "target_per_s": 20000,
               "over_flagship_step": head["new_per_s"] / flag["states_per_s"],
               "target_over_step": 5.0, "new_over_old": head["new_over_old"]}
    print(f"targets, {head['mixture']}, one core: {head['new_per_s']:.0f} examples/s "
          f"(target >= 20,000); {targets['over_flagship_step']:.1f}x the flagship:cpu step "
          "(target >= 5x)" + (f"; {head['new_over_old']:.1f}x the old stream"
                               if head["new_over_old"] else ""))
    out = {"benchmark": "bench_data", "quick": args.quick, "rules": str(RULES), "rows": rows,
           "streams": streams, "first_draw": compile_s, "train": train,
           "stream_vs_train": ratios, "targets": targets, "old_stream_commit": OLD_STREAM}
    return write_json(out, args.out)


if __name__ == "__main__":
    main()
