r"""Label stream vs training: states/s of ``search.labeller`` vs ``search.solver``, next to the
states/s the d2 and d4 supervised train steps consume, same run.

    python -m benchmarks.bench_data            # ~1-2 minutes on 2 CPU cores
    python -m benchmarks.bench_data --quick    # fewer states and steps
    python -m benchmarks.bench_data --out=bench_out/bench_data.json

Label rows (rules: n_max=6, rationals, use_all, max_abs 32767): random start states of n = 4, 5, 6
numbers 1..13 with targets 1..999, and ``episodes``: every state along random legal playouts of
six-number start states (6, 5, 4, 3, 2 live numbers), the mix a data stream labels. Both sides
label the same states; the solver (``solver.state_labels``, pure Python) only a prefix, with its
caches cleared before each row (they fill during the row, as in a stream), and the labels of
that prefix must agree. The labeller's rate is the best of ``--repeats`` passes over the row,
one ``label_batch`` call each, after a warm-up call (numba compilation). Both run on one core.

Stream rows: examples/s of the whole ``search.stream`` (walks, targets, rejection, batched
labels, legal masks) for the default supervised mixture (n <= 5) and an n = 4..6 one, one core.

Train rows: one jitted ``train.steps`` train step (AdamW, donated state) of
``train/configs/supervised.py:size=dK,width=64K`` (heads of 32) with the default representation
(``packed``, set layout, result-aware pair head: 9 positions per state) and with whole-number
tokens in the causal layout (37 positions), batch 128 of a real stream batch, on JAX's default
device; states/s consumed = 128 / (best step time after warm-up). The last table is the
stream-vs-train ratio: labeller (or stream) states/s / train states/s. Above 1, one labelling
core keeps up with the step; below 1, labelling needs that many cores (it is embarrassingly
parallel over states: ``config.data.workers``) or a pre-built dataset.
"""

from __future__ import annotations

import argparse
import random
import time
from fractions import Fraction

import numpy as np

from benchmarks.common import best_time, best_wall, write_json
from search import game, labeller, solver

RULES = game.Rules(n_max=6)
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


def train_row(depth: int, batch_size: int, steps: int, encoding: str) -> dict:
    """States/s one jitted train step of ``supervised.py:size=d<depth>`` consumes (width 64*depth,
    heads of 32, the config's representation with ``encoding``), on a batch of labelled states."""
    import jax

    from train import setup, stream_data
    from train.configs import supervised as sup_config

    arg = f"size=d{depth},width={64 * depth},batch={batch_size},encoding={encoding}"
    arg += "" if encoding in ("packed", "numeric") else ",layout=causal,pool=summary"
    cfg = sup_config.get_config(arg).to_dict()
    s = setup.build(cfg)
    mesh, tok, step, init = s.mesh, s.tok_cfg, s.program.train_step, s.program.init_fn
    loader = stream_data.StreamLoader(stream_data.stream_config(cfg, s.rules, frozenset()),
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
    return {"model": f"d{depth}/{encoding}", "params": int(params), "batch": batch_size,
            "tokens_per_state": int(s.seq_len), "step_ms": t * 1e3,
            "states_per_s": batch_size / t, "compile_s": compile_s,
            "device": str(jax.devices()[0].platform)}


def stream_row(mixture: str, count: int) -> dict:
    """Examples/s of the whole stream (walks, targets, rejection, labels) for ``mixture``."""
    from search import stream

    cfg = stream.StreamConfig(mixture=stream.parse_mixture(mixture), n_max=RULES.n_max)
    stream.draw_range(cfg, 0, 64)  # compile the labeller
    t0 = time.perf_counter()
    stream.draw_range(cfg, 64, 64 + count)
    rate = count / (time.perf_counter() - t0)
    return {"case": f"stream {mixture}", "states": count, "labeller_states_per_s": rate}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer states and train steps")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128, help="train batch size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench_out/bench_data.json")
    args = ap.parse_args(argv)
    q = 4 if args.quick else 1  # quick: a quarter of the states
    rng = random.Random(args.seed)
    cases = [("n=4 start", start_states(4, 4000 // q, rng), 400 // q),
             ("n=5 start", start_states(5, 2000 // q, rng), 40 // q),
             ("n=6 start", start_states(6, 400 // q, rng), max(2, 8 // q)),
             ("episodes", episode_states(2000 // q, rng), 80 // q)]
    rows = [label_row(case, states, n_sol, args.repeats) for case, states, n_sol in cases]
    streams = [stream_row(m, 2000 // q) for m in ("n2:1,n3:1,g4_t100:3,n4:1,n5:3",
                                                   "n4:1,n5:1,n6:1")]
    train = [train_row(depth, args.batch, 3 if args.quick else 10, enc)
             for depth in (2, 4) for enc in ("packed", "whole")]

    print(f"labelled states/s, labeller (numba) vs solver (Python), {RULES}")
    print(f"{'case':<11}{'states':>7}{'solvable':>9}{'labeller/s':>12}{'ms/state':>10}"
          f"{'solver/s':>10}{'ms/state':>10}{'(states)':>9}{'ratio':>8}")
    for r in rows:
        print(f"{r['case']:<11}{r['states']:>7}{r['solvable']:>9.2f}"
              f"{r['labeller_states_per_s']:>12.0f}{r['labeller_ms']:>10.3f}"
              f"{r['solver_states_per_s']:>10.1f}{r['solver_ms']:>10.1f}"
              f"{r['solver_states']:>9}{r['ratio']:>7.0f}x")
    print(f"train step states/s consumed (batch {args.batch}, {train[0]['device']})")
    print(f"{'model':<7}{'params':>10}{'tokens':>8}{'step ms':>10}{'states/s':>10}"
          f"{'compile s':>11}")
    for t in train:
        print(f"{t['model']:<7}{t['params']:>10}{t['tokens_per_state']:>8}{t['step_ms']:>10.1f}"
              f"{t['states_per_s']:>10.0f}{t['compile_s']:>11.1f}")
    for r in streams:
        print(f"{r['case']:<40}{r['labeller_states_per_s']:>10.0f} examples/s (one core)")
    rows += streams
    print("stream vs train: labeller states/s / train step states/s (one labelling core)")
    print(f"{'case':<40}" + "".join(f"{'/ ' + t['model']:>12}" for t in train))
    ratios = {}
    for r in rows:
        ratios[r["case"]] = {t["model"]: r["labeller_states_per_s"] / t["states_per_s"]
                             for t in train}
        print(f"{r['case']:<40}" + "".join(f"{ratios[r['case']][t['model']]:>12.2f}"
                                           for t in train))
    out = {"benchmark": "bench_data", "quick": args.quick, "rules": str(RULES), "rows": rows,
           "train": train, "stream_vs_train": ratios}
    return write_json(out, args.out)


if __name__ == "__main__":
    main()
