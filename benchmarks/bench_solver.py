r"""Exhaustive solver vs the common naive recursive DFS, same run; plus single n=6 / n=7 instances.

    python -m benchmarks.bench_solver            # all 1820 4-card problems (1..13 -> 24) both ways
    python -m benchmarks.bench_solver --quick    # naive DFS on every 4th problem (rate per problem)
    python -m benchmarks.bench_solver --out=bench_out/bench_solver.json

Rows:
- ``all 1820 (cold)``: ``search.solver.solve`` on every multiset of 4 numbers from 1..13, caches
  cleared first (the memoised triples are built inside the timing), vs ``naive_solve`` below: pick
  two numbers, apply an op with ``fractions.Fraction``, recurse, stop at the first solution (the
  approach of most Game-of-24 solvers). Both must find the same 1362 solvable problems.
- ``all 1820 (warm)``: the same sweep again with the solver's caches filled.
- ``n=6`` / ``n=7``: single instances (numbers 1..100 -> 100..999 and 1..13 -> 1..999), caches
  cleared before each; median and max over ``--instances`` problems (solvable and unsolvable).
Times are best-of-``--repeats`` wall seconds (process CPU time is also recorded).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from fractions import Fraction

import numpy as np

from benchmarks.common import best_time, write_json
from search import game, solver


def naive_solve(nums: list, target: Fraction) -> bool:
    """The common recursive DFS over pairs and ops with exact Fractions."""
    if len(nums) == 1:
        return nums[0] == target
    for i, j in itertools.combinations(range(len(nums)), 2):
        a, b = nums[i], nums[j]
        rest = [x for k, x in enumerate(nums) if k not in (i, j)]
        results = [a + b, a * b, a - b, b - a] + ([a / b] if b else []) + ([b / a] if a else [])
        if any(naive_solve(rest + [r], target) for r in results):
            return True
    return False


def _sweep_ours(probs, cold: bool) -> list[bool]:
    if cold:
        solver.clear_caches()
    return [solver.solve(list(p), 24).solvable for p in probs]


def _instances(n: int, count: int, seed: int):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        if k % 2:
            out.append((rng.integers(1, 101, n).tolist(), int(rng.integers(100, 1000))))
        else:
            out.append((rng.integers(1, 14, n).tolist(), int(rng.integers(1, 1000))))
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="naive DFS on every 4th problem")
    ap.add_argument("--instances", type=int, default=20, help="n=6 / n=7 instances each")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench_out/bench_solver.json")
    args = ap.parse_args(argv)
    probs = list(itertools.combinations_with_replacement(range(1, 14), 4))
    naive_probs = probs[::4] if args.quick else probs
    t_cold, c_cold, ours = best_time(lambda: _sweep_ours(probs, True), args.repeats)
    t_warm, c_warm, _ = best_time(lambda: _sweep_ours(probs, False), args.repeats)
    t_naive, c_naive, naive = best_time(
        lambda: [naive_solve([Fraction(x) for x in p], Fraction(24)) for p in naive_probs],
        1 if args.quick else max(1, args.repeats // 2),
    )
    if sum(ours) != 1362 or naive != [ours[probs.index(p)] for p in naive_probs]:
        raise AssertionError(f"solvers disagree: ours {sum(ours)} solvable, naive {sum(naive)}")
    scale = 1820 / len(naive_probs)  # naive: measured rate per problem x 1820
    rows = [
        {
            "case": case,
            "ours_s": t,
            "ours_cpu_s": c,
            "naive_s": t_naive * scale,
            "naive_cpu_s": c_naive * scale,
            "naive_measured_problems": len(naive_probs),
            "ratio": t_naive * scale / t,
            "ratio_cpu": c_naive * scale / c,
        }
        for case, t, c in (("all 1820 (cold)", t_cold, c_cold), ("all 1820 (warm)", t_warm, c_warm))
    ]
    singles = []
    for n in (6, 7):
        times, solved = [], 0
        for nums, target in _instances(n, args.instances, args.seed + n):

            def one(nums=nums, target=target):
                solver.clear_caches()
                return solver.solve(nums, target, game.Rules())

            t, _, res = best_time(one, args.repeats)
            times.append(t)
            solved += res.solvable
        singles.append(
            {
                "case": f"n={n} single instance",
                "median_s": statistics.median(times),
                "max_s": max(times),
                "instances": len(times),
                "solvable": solved,
            }
        )
    print(f"solver: all 4-card problems 1..13 -> 24 (naive DFS measured on {len(naive_probs)})")
    print(f"{'case':<18}{'ours s':>10}{'naive s':>10}{'ratio':>9}{'ratio (CPU time)':>18}")
    for r in rows:
        print(
            f"{r['case']:<18}{r['ours_s']:>10.3f}{r['naive_s']:>10.2f}{r['ratio']:>8.0f}x"
            f"{r['ratio_cpu']:>17.0f}x"
        )
    for s in singles:
        print(
            f"{s['case']:<22} median {s['median_s'] * 1e3:.1f} ms, max {s['max_s'] * 1e3:.1f} ms "
            f"({s['instances']} instances, {s['solvable']} solvable)"
        )
    out = {"benchmark": "bench_solver", "quick": args.quick, "rows": rows, "singles": singles}
    return write_json(out, args.out)


if __name__ == "__main__":
    main()
