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

import jax
import jax.numpy as jnp
import numpy as np

from search import rational
from search.types import State  # noqa: F401  (game.State: the batch of states played here)

# The int32 exact-rational arithmetic lives in search.rational; nnx_models.heads and
# benchmarks/bench_game.py reach it through these names too.
_op_results, _reduce = rational.op_results, rational.reduce

OPS = ("+", "*", "-", "r-", "/", "r/")  # a+b, a*b, a-b, b-a, a/b, b/a
NUM_OPS = len(OPS)
# The logit every network output and loss gives an illegal move: finite, so softmax and its
# gradient stay NaN-free, and far below any real logit.
ILLEGAL_LOGIT = -1e9
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


def _pair_operands(state: State, rules: Rules):
    pairs = pair_table(rules.n_max)
    i, j = pairs[:, 0], pairs[:, 1]
    take = lambda x, idx: jnp.take(x, idx, axis=-1)  # [..., P]
    return (take(state.num, i), take(state.den, i), take(state.num, j), take(state.den, j),
            take(state.live, i) & take(state.live, j))


def all_results(state: State, rules: Rules):
    """Results of every action: (num, den, ok), each [..., A]; num/den = 0/1 where not ok.

    ok ignores terminality.
    """
    an, ad, bn, bd, both_live = _pair_operands(state, rules)
    num, den, ok = _op_results(an, ad, bn, bd, rules, both_live[..., None])  # [..., P, 6]
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


@functools.cache
def _slot_codes(n_max: int) -> np.ndarray:
    """int32[A, N]: 1 at slot i and 2 at slot j of each action, else 0."""
    ij = np.repeat(pair_table(n_max), NUM_OPS, axis=0)
    codes = np.zeros((len(ij), n_max), np.int32)
    codes[np.arange(len(ij)), ij[:, 0]] = 1
    codes[np.arange(len(ij)), ij[:, 1]] = 2
    return codes


def _decode(action: jax.Array, n_max: int):
    """Traced twin of decode_action (in-range actions): (i, j, op), elementwise arithmetic."""
    pair = jax.lax.div(action, NUM_OPS)  # action >= 0: truncation is floor
    op = action - pair * NUM_OPS
    i = jnp.zeros_like(pair)
    for k in range(1, n_max - 1):  # i = number of rows k >= 1 whose first pair index <= pair
        i += (pair >= k * n_max - k * (k + 1) // 2).astype(jnp.int32)
    j = pair - ((i * (2 * n_max - 1 - i)) >> 1) + i + 1
    return i, j, op


def _at(x: jax.Array, slot: jax.Array) -> jax.Array:
    """x[..., slot] by a select chain over the N slots (a gather would not vectorise on CPU)."""
    out = x[..., 0]
    for k in range(1, x.shape[-1]):
        out = jnp.where(slot == k, x[..., k], out)
    return out


def step(state: State, action: jax.Array, rules: Rules) -> State:
    """Play ``action`` (int32[...]) in every state. Only the chosen op's result is reduced.

    An illegal action (index outside 0..A-1, dead slot, division by zero, result out of range, or a
    terminal state) sets ``failed``: the episode is over and unsolved. The numbers are then left
    unchanged.
    """
    action = jnp.asarray(action, jnp.int32)
    in_range = (action >= 0) & (action < rules.num_actions)
    action = jnp.where(in_range, action, 0)
    i, j, op = _decode(action, rules.n_max)
    an, ad, bn, bd = _at(state.num, i), _at(state.den, i), _at(state.num, j), _at(state.den, j)
    cross_ab, cross_ba = an * bd, bn * ad  # the chosen op only (same formulas as rational.raw_ops)
    num = jnp.select(
        [op == 0, op == 1, op == 2, op == 3, op == 4],
        [cross_ab + cross_ba, an * bn, cross_ab - cross_ba, cross_ba - cross_ab, cross_ab],
        cross_ba,
    )
    den = jnp.select([op < 4, op == 4], [ad * bd, ad * bn], bd * an)
    # A legal chosen move means some move exists, so only failed/solved can make the state terminal:
    # this skips computing all A results (is_terminal) inside every step. Under use_all a solved
    # state has one live number, so the two-live-slots check already covers it.
    allowed = in_range & _at(state.live, i) & _at(state.live, j) & ~state.failed
    if not rules.use_all:
        allowed &= ~is_solved(state, rules)
    rn, rd, ok = _reduce(num, den, rules, allowed)
    code = jnp.asarray(_slot_codes(rules.n_max))[action]  # [..., N]; a gather: computed once
    into_i = (code == 1) & ok[..., None]
    kill_j = (code == 2) & ok[..., None]
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
    solution: str | None = None  # the expression equal to the target (any live slot), if solved


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
    # Under use_all=False the target may sit in any live slot, not the first one.
    solution = next((e for v, e in live if v == target), None) if solved else None
    return Replay(values=tuple(v for v, _ in live), expressions=tuple(e for _, e in live),
                  legal=legal, solved=solved, solution=solution)
