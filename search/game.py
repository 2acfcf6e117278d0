"""Exact, jittable rules of the generalized Game of 24.

A state holds up to ``N = rules.n_max`` rationals as reduced (numerator, denominator) int32 pairs.
A move picks slots i < j and one of six ops, writes the result into slot i and kills slot j. The
action space is fixed for jit: ``A = C(N, 2) * 6``, action ``a = pair * 6 + op`` with pairs in
lexicographic order (0,1), (0,2), ..., (N-2, N-1) and ops ``OPS`` below.

Integer width and overflow (why int32 and MAX_ABS <= 32767): JAX runs int32 unless x64 is switched
on globally, which would also turn every float in the model into float64. With every live numerator
and denominator bounded by ``|x| <= max_abs <= 2**15 - 1``, each cross product is below 2**30 and a
sum of two is below 2**31, so the unreduced result of any op is exact in int32. After gcd reduction
a result outside the bound makes the move *illegal* (masked), never a wrapped or rounded value. The
exhaustive solver applies the same bound, so its labels agree with what this engine can reach.

Everything here is batched by leading axes, free of Python control flow on traced values, and safe
under ``jax.jit`` / ``jax.vmap``. ``rules`` is a hashable frozen dataclass: pass it as a static arg.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Sequence
from fractions import Fraction

import chex
import jax
import jax.numpy as jnp
import numpy as np

OPS = ("+", "*", "-", "r-", "/", "r/")  # a+b, a*b, a-b, b-a, a/b, b/a
NUM_OPS = len(OPS)
INT32_SAFE_MAX_ABS = 2**15 - 1


@dataclasses.dataclass(frozen=True)
class Rules:
    """Rule variant. Hashable, so it can be a static argument of jitted functions.

    n_max: slots in the fixed-shape state (problems use 2..n_max numbers).
    fractions: True allows any rational intermediate; False is the Stream-of-Search Countdown rule
      (every intermediate must be a positive integer).
    use_all: True means the last remaining number must equal the target; False means the episode is
      solved as soon as any live number equals the target (any subset may be used).
    max_abs: bound on |numerator| and denominator of every value (see module docstring).
    """

    n_max: int = 8
    fractions: bool = True
    use_all: bool = True
    max_abs: int = INT32_SAFE_MAX_ABS

    def __post_init__(self):
        if not 2 <= self.n_max <= 16:
            raise ValueError(f"Rules.n_max={self.n_max} is out of range; allowed 2..16.")
        if not 1 <= self.max_abs <= INT32_SAFE_MAX_ABS:
            raise ValueError(
                f"Rules.max_abs={self.max_abs} is out of range; allowed 1..{INT32_SAFE_MAX_ABS} "
                "(int32 cross products must not overflow)."
            )

    @property
    def num_pairs(self) -> int:
        return self.n_max * (self.n_max - 1) // 2

    @property
    def num_actions(self) -> int:
        return self.num_pairs * NUM_OPS


def pair_table(n_max: int) -> np.ndarray:
    """int32[P, 2]: slot pair (i, j), i < j, of each pair index."""
    return np.array(list(itertools.combinations(range(n_max), 2)), dtype=np.int32)


def decode_action(action: int, n_max: int) -> tuple[int, int, int]:
    """Host-side: action -> (i, j, op)."""
    num_actions = n_max * (n_max - 1) // 2 * NUM_OPS
    if not 0 <= action < num_actions:
        raise ValueError(f"action={action} is out of range; allowed 0..{num_actions - 1}.")
    i, j = _pairs(n_max)[action // NUM_OPS]
    return i, j, action % NUM_OPS


@functools.cache
def _pairs(n_max: int) -> tuple[tuple[int, int], ...]:
    return tuple(itertools.combinations(range(n_max), 2))  # host-side twin of pair_table


def encode_action(i: int, j: int, op: int, n_max: int) -> int:
    """Host-side: (i, j, op) with i < j -> action index."""
    if not (0 <= i < j < n_max and 0 <= op < NUM_OPS):
        raise ValueError(f"(i, j, op)=({i}, {j}, {op}) invalid; need 0 <= i < j < {n_max}, op < 6.")
    pair = i * n_max - i * (i + 1) // 2 + (j - i - 1)
    return pair * NUM_OPS + op


@chex.dataclass(frozen=True)
class State:
    """A batch of game states; leading axes are batch axes, the last axis of slot arrays is N."""

    num: jax.Array  # int32[..., N]; 0 in dead slots
    den: jax.Array  # int32[..., N]; > 0, 1 in dead slots
    live: jax.Array  # bool[..., N]
    target_num: jax.Array  # int32[...]; targets may be rational (hindsight relabels)
    target_den: jax.Array  # int32[...]
    moves: jax.Array  # int32[...]; moves played so far
    failed: jax.Array  # bool[...]; an illegal action was played: terminal, unsolved


# ----------------------------------------------------------------------------- construction


def _as_fraction(x, field: str, max_abs: int) -> Fraction:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer, Fraction)):
        if isinstance(x, (float, np.floating)) and float(x).is_integer():
            x = int(x)
        else:
            raise ValueError(f"{field}={x!r} is not an integer (or Fraction for targets).")
    f = Fraction(x)
    if abs(f.numerator) > max_abs or f.denominator > max_abs:
        raise ValueError(f"{field}={x} is out of range; allowed |value| <= {max_abs}.")
    return f


def new_state(numbers: Sequence[Sequence[int]], targets: Sequence, rules: Rules) -> State:
    """Host-side, validated constructor of a batch of initial states (numpy -> jax arrays).

    numbers: B lists of 2..n_max integers; targets: B integers (or Fractions, for relabelled goals).
    """
    if len(numbers) != len(targets):
        raise ValueError(f"len(numbers)={len(numbers)} != len(targets)={len(targets)}.")
    b, n = len(numbers), rules.n_max
    num = np.zeros((b, n), np.int32)
    den = np.ones((b, n), np.int32)
    live = np.zeros((b, n), bool)
    tnum = np.zeros((b,), np.int32)
    tden = np.ones((b,), np.int32)
    for k, (nums, t) in enumerate(zip(numbers, targets, strict=True)):
        if not 2 <= len(nums) <= n:
            raise ValueError(
                f"numbers[{k}] has {len(nums)} numbers; allowed 2..{n} (Rules.n_max={n})."
            )
        for s, x in enumerate(nums):
            f = _as_fraction(x, f"numbers[{k}][{s}]", rules.max_abs)
            if f.denominator != 1:
                raise ValueError(f"numbers[{k}][{s}]={x} is not an integer.")
            if not rules.fractions and f <= 0:
                raise ValueError(
                    f"numbers[{k}][{s}]={x} must be a positive integer under integer-only rules."
                )
            num[k, s], live[k, s] = f.numerator, True
        ft = _as_fraction(t, f"targets[{k}]", rules.max_abs)
        tnum[k], tden[k] = ft.numerator, ft.denominator
    return State(
        num=jnp.asarray(num), den=jnp.asarray(den), live=jnp.asarray(live),
        target_num=jnp.asarray(tnum), target_den=jnp.asarray(tden),
        moves=jnp.zeros((b,), jnp.int32), failed=jnp.zeros((b,), bool),
    )


# ----------------------------------------------------------------------------- arithmetic


def _gcd(x: jax.Array, y: jax.Array) -> jax.Array:
    """gcd(|x|, |y|) (0 for 0, 0) by the binary (Stein) algorithm.

    Why not ``jnp.gcd``: its Euclid loop needs integer remainders, which CPUs do not vectorise;
    shifts and subtractions do, and this is ~4x faster on CPU. Inputs must satisfy |.| < 2**31.
    """
    x, y = jnp.abs(x), jnp.abs(y)
    tz = lambda v: jax.lax.population_count((v & -v) - 1)  # trailing zero bits of v > 0
    shift = tz(x | y)
    x_zero = x == 0
    x, y = jnp.where(x_zero, y, x), jnp.where(x_zero, 0, y)
    x = x >> tz(x)  # x odd from here on (or 0 when both inputs are 0)

    def body(xy):
        x, y = xy
        live = y != 0
        y = jnp.where(live, y >> tz(y), 0)  # y odd
        return jnp.where(live, jnp.minimum(x, y), x), jnp.abs(x - y) * live  # even difference

    x, _ = jax.lax.while_loop(lambda xy: jnp.any(xy[1] != 0), body, (x, y))
    return jnp.where(x == 0, 0, x << shift)


def _raw_ops(an, ad, bn, bd):
    """Unreduced results of the six ops on broadcastable operands: (num, den), each [..., 6]."""
    an, ad, bn, bd = (x[..., None] for x in (an, ad, bn, bd))
    cross_ab, cross_ba = an * bd, bn * ad  # all |.| < 2**30 (module docstring)
    num = jnp.concatenate(
        [cross_ab + cross_ba, an * bn, cross_ab - cross_ba, cross_ba - cross_ab, cross_ab,
         cross_ba],
        axis=-1,
    )
    den = jnp.concatenate([ad * bd, ad * bd, ad * bd, ad * bd, ad * bn, bd * an], axis=-1)
    return num, den


def _reduce(num, den, rules: Rules):
    """Reduce num/den (den > 0, gcd 1) and check legality: (num, den, ok)."""
    nonzero_den = den != 0
    den = jnp.where(nonzero_den, den, 1)
    sign = jnp.where(den < 0, -1, 1)
    num, den = num * sign, den * sign
    g = jnp.maximum(_gcd(num, den), 1)
    num, den = jax.lax.div(num, g), jax.lax.div(den, g)  # exact: truncation is cheaper than //
    ok = nonzero_den & (jnp.abs(num) <= rules.max_abs) & (den <= rules.max_abs)
    if not rules.fractions:
        ok &= (den == 1) & (num > 0)
    return num, den, ok


def _op_results(an, ad, bn, bd, rules: Rules):
    """Exact results of the six ops on broadcastable operands: (num, den, ok), each [..., 6]."""
    return _reduce(*_raw_ops(an, ad, bn, bd), rules)


def _pair_operands(state: State, rules: Rules):
    pairs = pair_table(rules.n_max)
    i, j = pairs[:, 0], pairs[:, 1]
    take = lambda x, idx: jnp.take(x, idx, axis=-1)  # [..., P]
    return (take(state.num, i), take(state.den, i), take(state.num, j), take(state.den, j),
            take(state.live, i) & take(state.live, j))


def all_results(state: State, rules: Rules):
    """Results of every action: (num, den, ok), each [..., A]. ok ignores terminality."""
    an, ad, bn, bd, both_live = _pair_operands(state, rules)
    num, den, ok = _op_results(an, ad, bn, bd, rules)  # [..., P, 6]
    ok &= both_live[..., None]
    flat = lambda x: x.reshape(x.shape[:-2] + (rules.num_actions,))
    return flat(num), flat(den), flat(ok)


def num_live(state: State) -> jax.Array:
    return state.live.sum(-1).astype(jnp.int32)


def moves_left(state: State) -> jax.Array:
    """Upper bound on moves still to play: live numbers - 1 (search depth)."""
    return jnp.maximum(num_live(state) - 1, 0)


def is_solved(state: State, rules: Rules) -> jax.Array:
    hit = state.live & (state.num == state.target_num[..., None]) & (
        state.den == state.target_den[..., None])
    if rules.use_all:
        solved = (num_live(state) == 1) & hit.any(-1)
    else:
        solved = hit.any(-1)
    return solved & ~state.failed


def _terminal_and_moves(state: State, rules: Rules):
    _, _, ok = all_results(state, rules)
    terminal = state.failed | is_solved(state, rules) | ~ok.any(-1)
    return terminal, ok


def is_terminal(state: State, rules: Rules) -> jax.Array:
    """Solved, failed, one number left, or no legal move (overflow / integer-only rules)."""
    return _terminal_and_moves(state, rules)[0]


def legal_mask(state: State, rules: Rules) -> jax.Array:
    """bool[..., A]: moves on two live slots whose exact result is in range; none when terminal."""
    terminal, ok = _terminal_and_moves(state, rules)
    return ok & ~terminal[..., None]


def reward(state: State, rules: Rules) -> jax.Array:
    """float32[...]: 1 for a solved state, else 0."""
    return is_solved(state, rules).astype(jnp.float32)


def step(state: State, action: jax.Array, rules: Rules) -> State:
    """Play ``action`` (int32[...]) in every state. Only the chosen op's result is reduced.

    An illegal action (index outside 0..A-1, dead slot, division by zero, result out of range, or a
    terminal state) sets ``failed``: the episode is over and unsolved. The numbers are then left
    unchanged.
    """
    in_range = (action >= 0) & (action < rules.num_actions)
    action = jnp.where(in_range, action, 0)
    pairs = jnp.asarray(pair_table(rules.n_max))
    ij = pairs[action // NUM_OPS]  # [..., 2]
    op = action % NUM_OPS
    get = lambda x, k: jnp.take_along_axis(x, ij[..., k : k + 1], axis=-1)[..., 0]
    num6, den6 = _raw_ops(get(state.num, 0), get(state.den, 0),
                          get(state.num, 1), get(state.den, 1))
    pick = lambda x: jnp.take_along_axis(x, op[..., None], axis=-1)[..., 0]
    rn, rd, ok = _reduce(pick(num6), pick(den6), rules)  # reduce only the chosen op's result
    # A legal chosen move means some move exists, so only failed/solved can make the state terminal:
    # this skips computing all A results (is_terminal) inside every step.
    ok &= in_range & get(state.live, 0) & get(state.live, 1)
    ok &= ~state.failed & ~is_solved(state, rules)
    slots = jnp.arange(rules.n_max)
    into_i = (slots == ij[..., :1]) & ok[..., None]
    kill_j = (slots == ij[..., 1:]) & ok[..., None]
    return state.replace(
        num=jnp.where(into_i, rn[..., None], jnp.where(kill_j, 0, state.num)),
        den=jnp.where(into_i, rd[..., None], jnp.where(kill_j, 1, state.den)),
        live=state.live & ~kill_j,
        moves=state.moves + 1,
        failed=state.failed | ~ok,
    )


# ----------------------------------------------------------------------------- host-side views


def values(state: State, index: int = 0) -> list[Fraction]:
    """Host-side: live values of batch element ``index`` (of a 1-D batch) as Fractions."""
    num, den, live = (np.asarray(x)[index] for x in (state.num, state.den, state.live))
    return [Fraction(int(n), int(d)) for n, d, alive in zip(num, den, live, strict=True) if alive]


def _fmt(f: Fraction) -> str:
    if f.denominator == 1 and f.numerator >= 0:
        return str(f.numerator)
    s = str(f)
    return f"({s})" if f < 0 or f.denominator != 1 else s


def render(state: State, index: int = 0) -> str:
    """Host-side: ``'[8, 3, 8/3] -> 24'`` (failed states are marked)."""
    tnum, tden = np.asarray(state.target_num)[index], np.asarray(state.target_den)[index]
    tgt = Fraction(int(tnum), int(tden))
    text = "[" + ", ".join(str(v) for v in values(state, index)) + f"] -> {tgt}"
    return text + (" (failed)" if bool(np.asarray(state.failed)[index]) else "")


_INFIX = ("({a}+{b})", "({a}*{b})", "({a}-{b})", "({b}-{a})", "({a}/{b})", "({b}/{a})")
_FRACTION_OPS = (lambda x, y: x + y, lambda x, y: x * y, lambda x, y: x - y,
                 lambda x, y: y - x, lambda x, y: x / y, lambda x, y: y / x)


@dataclasses.dataclass(frozen=True)
class Replay:
    """Host-side exact replay of an action sequence (independent of the jitted engine)."""

    values: tuple[Fraction, ...]  # live values after the last legal move
    expressions: tuple[str, ...]  # infix expression of each live value
    legal: bool  # every action was legal
    solved: bool


def replay(numbers: Sequence[int], target, actions: Sequence[int], rules: Rules) -> Replay:
    """Replay ``actions`` from ``numbers`` with ``fractions.Fraction`` and build infix expressions.

    This is the verifier for solutions found by search: it shares no code with the jitted engine.
    """
    vals: list[Fraction | None] = [Fraction(x) for x in numbers]
    vals += [None] * (rules.n_max - len(numbers))
    exprs: list[str | None] = [_fmt(v) if v is not None else None for v in vals]
    target, legal = Fraction(target), True
    for a in actions:
        if not rules.use_all and any(v == target for v in vals if v is not None):
            legal = False  # the engine ends the episode once the target appears
            break
        if not 0 <= int(a) < rules.num_actions:
            legal = False
            break
        i, j, op = decode_action(int(a), rules.n_max)
        x, y = vals[i], vals[j]
        if x is None or y is None or (op == 4 and y == 0) or (op == 5 and x == 0):
            legal = False
            break
        r = _FRACTION_OPS[op](x, y)  # only the chosen op (this verifier runs on every solution)
        ok = abs(r.numerator) <= rules.max_abs and r.denominator <= rules.max_abs
        if not rules.fractions:
            ok &= r.denominator == 1 and r > 0
        if not ok:
            legal = False
            break
        ex, ey = exprs[i], exprs[j]
        exprs[i] = _INFIX[op].format(a=ex, b=ey)
        vals[i], vals[j], exprs[j] = r, None, None
    live = [(v, e) for v, e in zip(vals, exprs, strict=True) if v is not None]
    hit = any(v == target for v, _ in live)
    solved = legal and (hit and len(live) == 1 if rules.use_all else hit)
    return Replay(values=tuple(v for v, _ in live), expressions=tuple(e for _, e in live),
                  legal=legal, solved=solved)
