r"""Batched jitted game engine vs a pure-Python ``fractions.Fraction`` engine, same run.

    python -m benchmarks.bench_game            # B=4096 states with n=6 numbers (Rules(): n_max=8)
    python -m benchmarks.bench_game --quick    # the Python engine timed on 512 of the states
    python -m benchmarks.bench_game --batch=16384 --out=bench_out/bench_game.json

Rows (states per second, best of ``--repeats``):
- ``step``: play one move in every state. JAX: ``jax.jit(game.step)`` on the whole batch, five
  moves per call inside ``lax.scan`` (a full n=6 episode); Python: the reference below, one move
  at a time.
- ``legal_mask``: all A=168 legal flags of every state (what expanding a search node needs).
The actions are random legal moves drawn once; both engines play the same ones, and the final
states are compared exactly before any number is printed. The Python engine is timed on
``--ref_states`` states and reported per state (no extrapolation in the rate). A ``step`` "state"
is one state transition: B * (n - 1) of them per JAX call, each Python transition builds the
exact ``Fraction`` result, checks its range and copies the slot list.
Also printed: the floor that exact arithmetic sets, the jitted exact reduction (30-step gcd + range
checks, ``game._reduce``) alone on as many random unreduced results as ``step`` makes, and the
ratio the engine could reach if reducing were all it did; and the per-call dispatch overhead (a
jitted call that adds 1 to the int32[B] ``moves`` array: launch, one tiny kernel, result buffer),
which is included in the JAX times above.
"""

from __future__ import annotations

import argparse
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import best_wall, write_json
from search import game

OPS = (
    lambda a, b: a + b,
    lambda a, b: a * b,
    lambda a, b: a - b,
    lambda a, b: b - a,
    lambda a, b: a / b if b else None,
    lambda a, b: b / a if a else None,
)


def py_result(vals: list, i: int, j: int, op: int, rules: game.Rules):
    """The Python engine: the exact Fraction result of a move, or None if illegal."""
    a, b = vals[i], vals[j]
    if a is None or b is None:
        return None
    r = OPS[op](a, b)
    if r is None or abs(r.numerator) > rules.max_abs or r.denominator > rules.max_abs:
        return None
    if not rules.fractions and (r.denominator != 1 or r <= 0):
        return None
    return r


def py_step(vals: list, action: int, pairs: list, rules: game.Rules) -> list:
    i, j = pairs[action // 6]
    r = py_result(vals, i, j, action % 6, rules)
    if r is None:
        raise ValueError("benchmark actions must be legal")
    out = list(vals)
    out[i], out[j] = r, None
    return out


def py_legal(vals: list, pairs: list, rules: game.Rules) -> list[bool]:
    return [py_result(vals, i, j, op, rules) is not None for i, j in pairs for op in range(6)]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Python engine on 512 states")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--ref_states", type=int, default=0, help="states for the Python engine")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench_out/bench_game.json")
    args = ap.parse_args(argv)
    rules = game.Rules()
    ref_states = args.ref_states or (512 if args.quick else args.batch)
    if not 2 <= args.n <= rules.n_max or not 1 <= ref_states <= args.batch:
        raise ValueError(
            f"--n={args.n} must be 2..{rules.n_max} and --ref_states={ref_states} "
            f"1..--batch={args.batch}."
        )
    rng = np.random.default_rng(args.seed)
    numbers = rng.integers(1, 14, size=(args.batch, args.n)).tolist()
    state0 = game.new_state(numbers, [24] * args.batch, rules)
    moves = args.n - 1

    @jax.jit
    def draw_actions(state, key):  # random legal moves, drawn once for both engines
        def body(s, k):
            logits = jnp.where(
                game.legal_mask(s, rules),
                jax.random.gumbel(k, (args.batch, rules.num_actions)),
                -jnp.inf,
            )
            a = jnp.argmax(logits, -1).astype(jnp.int32)
            return game.step(s, a, rules), a

        return jax.lax.scan(body, state, jax.random.split(key, moves))

    final, actions = draw_actions(state0, jax.random.key(args.seed))
    actions = np.asarray(actions)  # [moves, B]
    play = jax.jit(
        lambda s, acts: jax.lax.scan(lambda c, a: (game.step(c, a, rules), None), s, acts)[0]
    )
    legal = jax.jit(lambda s: game.legal_mask(s, rules))
    acts = jnp.asarray(actions)
    jax.block_until_ready((play(state0, acts), legal(state0)))  # compile outside the timings
    t_jax_step = best_wall(lambda: jax.block_until_ready(play(state0, acts)), args.repeats)
    t_jax_legal = best_wall(lambda: jax.block_until_ready(legal(state0)), args.repeats)
    # The exact-arithmetic floor: reducing B * moves results and nothing else (the gcd loop is
    # fixed-length, so its cost does not depend on the values drawn here).
    raw = rng.integers(-(2**29), 2**29, size=(2, args.batch * moves), dtype=np.int64)
    raw_num = jnp.asarray(raw[0], jnp.int32)
    raw_den = jnp.asarray(np.abs(raw[1]) + 1, jnp.int32)
    reduce_only = jax.jit(lambda n, d: game._reduce(n, d, rules))
    jax.block_until_ready(reduce_only(raw_num, raw_den))
    t_reduce = best_wall(
        lambda: jax.block_until_ready(reduce_only(raw_num, raw_den)), 4 * args.repeats
    )
    bump = jax.jit(lambda m: m + 1)  # the per-call floor: dispatch + one tiny kernel
    jax.block_until_ready(bump(state0.moves))
    t_dispatch = best_wall(lambda: jax.block_until_ready(bump(state0.moves)), 4 * args.repeats)

    pairs = [tuple(p) for p in game.pair_table(rules.n_max).tolist()]
    start = [
        [Fraction(x) for x in row] + [None] * (rules.n_max - args.n) for row in numbers[:ref_states]
    ]

    def py_play():
        out = []
        for b, vals in enumerate(start):
            for t in range(moves):
                vals = py_step(vals, int(actions[t, b]), pairs, rules)
            out.append(vals)
        return out

    py_final = py_play()
    got = [game.values(final, b) for b in range(ref_states)]
    if got != [[v for v in vals if v is not None] for vals in py_final]:
        raise AssertionError("the engines disagree on the final states")
    py_mask = [py_legal(vals, pairs, rules) for vals in start[:64]]  # up to ref_states of them
    if not np.array_equal(np.asarray(legal(state0))[:len(py_mask)], np.array(py_mask)):
        raise AssertionError("the engines disagree on legal masks")
    t_py_step = best_wall(py_play, max(1, args.repeats // 2))
    t_py_legal = best_wall(
        lambda: [py_legal(v, pairs, rules) for v in start], max(1, args.repeats // 2)
    )

    rows = []
    for op, tj, tp, per_state in (
        ("step", t_jax_step, t_py_step, moves),
        ("legal_mask", t_jax_legal, t_py_legal, 1),
    ):
        jax_rate = args.batch * per_state / tj
        py_rate = ref_states * per_state / tp
        rows.append(
            {
                "op": op,
                "jax_states_per_s": jax_rate,
                "python_states_per_s": py_rate,
                "ratio": jax_rate / py_rate,
            }
        )
    print(
        f"game engine, B={args.batch}, n={args.n}, n_max={rules.n_max}, "
        f"{jax.devices()[0].platform} "
        f"x{jax.device_count()}, Python engine on {ref_states} states"
    )
    print(f"{'op':<12}{'jax states/s':>16}{'python states/s':>18}{'ratio':>10}")
    for r in rows:
        print(
            f"{r['op']:<12}{r['jax_states_per_s']:>16.3g}{r['python_states_per_s']:>18.3g}{r['ratio']:>9.0f}x"
        )
    print(
        f"per JAX call: step (scan of {moves} moves) {t_jax_step * 1e3:.3f} ms, legal_mask "
        f"{t_jax_legal * 1e3:.3f} ms, dispatch overhead {t_dispatch * 1e6:.0f} us"
    )
    n_results = args.batch * moves
    reduce_ceiling = (n_results / t_reduce) / rows[0]["python_states_per_s"]
    print(
        f"exact-arithmetic floor: reducing {n_results} results alone takes "
        f"{t_reduce * 1e3:.3f} ms = {t_reduce / n_results * 1e9:.1f} ns/transition, "
        f"a ceiling of {reduce_ceiling:.0f}x on the step ratio"
    )
    out = {
        "benchmark": "bench_game",
        "batch": args.batch,
        "n": args.n,
        "n_max": rules.n_max,
        "ref_states": ref_states,
        "device": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
        "rows": rows,
        "jax_step_call_s": t_jax_step,
        "jax_legal_call_s": t_jax_legal,
        "dispatch_overhead_s": t_dispatch,
        "reduce_only_call_s": t_reduce,
        "reduce_only_ratio_ceiling": reduce_ceiling,
    }
    return write_json(out, args.out)


if __name__ == "__main__":
    main()
