"""Exhaustive exact solver for the generalized Game of 24 (host-side: Python ints + numpy).

Legality is identical to ``search/game.py``: a result with ``|num| > max_abs`` or ``den > max_abs``
is illegal, as is division by zero; under integer-only rules every result must be a positive
integer. A value is packed into one Python int ``key = num * 2**16 + den`` (``search.packed``,
which also holds the six ops on keys): int hashing is several times faster than tuples or
``Fraction``s, which is what the speed rests on.

Algorithm. R(S), the values reachable from a multiset S using all of it, is the union over the
unordered splits S = A + B of ops(R(A), R(B)). It is memoised over canonical (sorted) multisets, so
the 1820 four-card problems share their 455 triples. ``solve`` never builds R of the whole set
(meet-in-the-middle): the six ops are closed under inversion (x+y=t <=> y=t-x, x*y=t <=> y=t/x,
x-y=t <=> y=x-t, y-x=t <=> y=t+x, x/y=t <=> y=x/t, y/x=t <=> y=t*x), so the values B must reach are
ops(t, x) for x in R(A) (x = 0 is special-cased), checked against R(B) when B is small and
recursively (goal-directed, with the candidate set as the new targets) when B is large.

Solution count (``num_solutions``): expression trees whose nodes split the multiset into two
sub-multisets, counted modulo swapping the operands of + and * (so ``a-b`` and ``b-a`` differ and
``(a+b)+c`` and ``a+(b+c)`` differ); equal numbers are indistinguishable.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from search import game
from search.packed import (  # noqa: F401  (SHIFT, DEN_MASK, pack_int, op_results: re-exported)
    DEN_MASK,
    SHIFT,
    ZERO,
    combine,
    op_keys,
    op_results,
    ops_np,
    pack,
    pack_int,
    unpack,
)

_FULL = 4  # sub-multisets up to this size get their whole reachable set; larger ones are searched
_MIRROR = (0, 1, 3, 2, 5, 4)  # op on (b, a) that equals op on (a, b)
_INV_ROW = (
    2,
    4,
    3,
    0,
    5,
    1,
)  # forward op k: y solving x op_k y = t is row _INV_ROW[k] of ops(t, x)
_DEFAULT_RULES = game.Rules()


@functools.cache
def _index_splits(n: int) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """Index partitions (I, J) of range(n) with |I| <= |J|, smallest I first."""
    return tuple(
        (idx, tuple(i for i in range(n) if i not in idx))
        for k in range(1, n // 2 + 1)
        for idx in itertools.combinations(range(n), k)
    )


@functools.cache
def _splits(ms: tuple[int, ...]) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """Distinct unordered splits (A, B) of a sorted multiset, |A| <= |B|, smallest A first."""
    out, get = {}, ms.__getitem__
    for ia, ib in _index_splits(len(ms)):
        a, b = tuple(map(get, ia)), tuple(map(get, ib))
        out.setdefault((a, b) if len(a) < len(b) or a <= b else (b, a), None)
    return tuple(out)


def _reach_impl(ms: tuple[int, ...], fractions: bool, max_abs: int) -> frozenset:
    if len(ms) == 1:
        return frozenset(ms)
    out: set[int] = set()
    for a, b in _splits(ms):
        out |= combine(
            _reach(a, fractions, max_abs), _reach(b, fractions, max_abs), fractions, max_abs
        )
    return frozenset(out)


# Small multisets are few and cheap to keep; big reachable sets (~1e4-1e5 values) are bounded.
_reach_small = functools.lru_cache(maxsize=1 << 17)(_reach_impl)
_reach_large = functools.lru_cache(maxsize=256)(_reach_impl)


def _reach(ms: tuple[int, ...], fractions: bool, max_abs: int) -> frozenset:
    return (_reach_small if len(ms) <= 4 else _reach_large)(ms, fractions, max_abs)


def _candidates(targets: frozenset, ra: frozenset, fractions: bool, max_abs: int):
    """Values y with x op y in targets for some x in ra: (set, any_y). any_y: 0*y = 0 for all y."""
    has_zero = ZERO in ra
    cand = combine(targets, ra - {ZERO} if has_zero else ra, fractions, max_abs)
    if has_zero:  # 0+y = t, y-0 = t, 0-y = t; 0*y and 0/y hit only t = 0, for every y
        cand |= {t for t in targets} | {
            (-(t >> SHIFT) << SHIFT) | (t & DEN_MASK) for t in targets
        }
    return cand, has_zero and ZERO in targets


def _can_reach(ms: tuple[int, ...], targets: frozenset, fractions: bool, max_abs: int) -> bool:
    """Whether some value of ``targets`` is reachable from the multiset ``ms`` using all of it."""
    if not targets:
        return False
    if len(ms) == 1:
        return ms[0] in targets
    for a, b in _splits(ms):
        cand, any_y = _candidates(targets, _reach(a, fractions, max_abs), fractions, max_abs)
        if any_y and _reach(b, fractions, max_abs):
            return True
        if len(b) <= _FULL:
            if not _reach(b, fractions, max_abs).isdisjoint(cand):
                return True
        elif _can_reach(b, frozenset(cand), fractions, max_abs):
            return True
    return False


@functools.lru_cache(maxsize=1 << 18)
def _solvable(ms: tuple[int, ...], t: int, rules: game.Rules) -> bool:
    """State-level solvability under ``rules`` (use_all or any sub-multiset), memoised."""
    if not _reachable_target(t, rules):
        return False
    if rules.use_all:
        return _can_reach(ms, frozenset([t]), rules.fractions, rules.max_abs)
    return any(
        _can_reach(sub, frozenset([t]), rules.fractions, rules.max_abs)
        for sub in _sub_multisets(ms)
    )


def _reachable_target(t: int, rules: game.Rules) -> bool:
    """Under integer-only rules every value is a positive integer, so no other target is ever hit
    (the inverse-op search below does not check that by itself: [3, 3] -> 0 via 3 - 3)."""
    return rules.fractions or (t & DEN_MASK == 1 and t >> SHIFT > 0)


def _sub_multisets(ms: tuple[int, ...]):
    """Distinct non-empty sub-multisets, smallest first (a smallest solution never hits t early)."""
    for size in range(1, len(ms) + 1):
        yield from dict.fromkeys(itertools.combinations(ms, size))


def _witness(ms: tuple[int, ...], t: int, fractions: bool, max_abs: int):
    """An expression tree reaching t from all of ms (a leaf key or (op, left, right)), or None."""
    if len(ms) == 1:
        return ms[0] if ms[0] == t else None
    targets = frozenset([t])
    for a, b in _splits(ms):
        ra = _reach(a, fractions, max_abs)
        cand, any_y = _candidates(targets, ra, fractions, max_abs)
        if any_y and _reach(b, fractions, max_abs):  # 0 * (anything B reaches) = 0
            y = min(_reach(b, fractions, max_abs))
            return (1, _witness(a, ZERO, fractions, max_abs), _witness(b, y, fractions, max_abs))
        hit = _reach(b, fractions, max_abs) & cand if len(b) <= _FULL else cand
        if not hit or (len(b) > _FULL and not _can_reach(b, frozenset(cand), fractions, max_abs)):
            continue
        for x in sorted(ra):  # this split works: find the operand pair (x, y) and op
            rows = op_keys(t, x, fractions, max_abs)
            for k in range(6):
                if x == ZERO and k in (1, 4, 5):  # 0*y, 0/y, y/0: see _candidates
                    continue
                y = rows[_INV_ROW[k]]
                if (
                    y is not None
                    and y in hit
                    and (len(b) <= _FULL or _can_reach(b, frozenset([y]), fractions, max_abs))
                ):
                    return (
                        k,
                        _witness(a, x, fractions, max_abs),
                        _witness(b, y, fractions, max_abs),
                    )
        raise RuntimeError(f"solver inconsistency at {ms} -> {unpack(t)}")
    return None


def _tree_actions(tree, slots: dict[int, list[int]], n_max: int) -> tuple[int, list[int]]:
    """(slot holding the tree's value, actions) playing ``tree`` with game.step semantics."""
    if isinstance(tree, int):
        return slots[tree].pop(0), []
    op, left, right = tree
    sl, al = _tree_actions(left, slots, n_max)
    sr, ar = _tree_actions(right, slots, n_max)
    if sl < sr:
        action = game.encode_action(sl, sr, op, n_max)
    else:
        action = game.encode_action(sr, sl, _MIRROR[op], n_max)
    return min(sl, sr), al + ar + [action]


# ----------------------------------------------------------------------------- solution counts


def _aggregate(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum counts of equal keys: (sorted unique keys, summed int64 counts)."""
    if keys.size == 0:
        return keys, counts
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return keys[starts], np.add.reduceat(counts, starts)


def _count_impl(ms: tuple[int, ...], fractions: bool, max_abs: int):
    """(keys, number of distinct expression trees per key) over all of ms (module docstring)."""
    if len(ms) == 1:
        return np.array(ms, np.int64), np.ones(1, np.int64)
    parts = []
    for a, b in _splits(ms):
        (ka, ca), (kb, cb) = _counts(a, fractions, max_abs), _counts(b, fractions, max_abs)
        keys, ok = ops_np(ka, kb, fractions, max_abs)
        cnt = np.broadcast_to(ca[:, None] * cb[None, :], keys.shape)
        k, c = keys[ok], cnt[ok]
        if a == b:
            # Trees (T1, T2, op) and (T2, T1, mirror op) are one expression; only T1 == T2 with
            # + or * is its own mirror. Distinct = (ordered + fixed) / 2.
            i = np.arange(len(ka))
            fk, fok = keys[:2, i, i], ok[:2, i, i]
            k = np.concatenate([k, fk[fok]])
            c = np.concatenate([c, np.broadcast_to(ca, fk.shape)[fok]])
            k, c = _aggregate(k, c)
            c = c // 2
        parts.append((k, c))
    return _aggregate(np.concatenate([k for k, _ in parts]), np.concatenate([c for _, c in parts]))


_counts = functools.lru_cache(maxsize=4096)(_count_impl)


def _num_solutions(ms: tuple[int, ...], t: int, rules: game.Rules) -> int:
    subs = [ms] if rules.use_all else list(_sub_multisets(ms))
    total = 0
    for sub in subs:
        keys, counts = _count_impl(sub, rules.fractions, rules.max_abs)  # whole set: not cached
        pos = int(np.searchsorted(keys, t))
        total += int(counts[pos]) if pos < len(keys) and keys[pos] == t else 0
    return total


# ----------------------------------------------------------------------------- public API


@dataclasses.dataclass(frozen=True)
class SolveResult:
    solvable: bool
    expression: str | None  # infix, e.g. "(8/(3-(8/3)))"; None when unsolvable
    actions: list[int] | None  # playable by game.step from game.new_state([numbers], [target])
    num_solutions: int | None  # None unless count=True (module docstring says what is counted)


def _key_of(x, field: str, rules: game.Rules, positive: bool) -> int:
    if type(x) is int and -rules.max_abs <= x <= rules.max_abs and (x > 0 or rules.fractions):
        return (x << SHIFT) | 1  # fast path for plain ints (the 1820-problem sweep)
    if isinstance(x, bool) or not isinstance(x, (int, np.integer, Fraction)):
        raise ValueError(f"{field}={x!r} is not an integer or Fraction.")
    f = Fraction(x)
    if abs(f.numerator) > rules.max_abs or f.denominator > rules.max_abs:
        raise ValueError(f"{field}={x} is out of range; allowed |num|, den <= {rules.max_abs}.")
    if positive and not rules.fractions and (f.denominator != 1 or f <= 0):
        raise ValueError(f"{field}={x} must be a positive integer under integer-only rules.")
    return pack(f)


def _keys_of(numbers: Sequence, rules: game.Rules, lo: int) -> list[int]:
    if not lo <= len(numbers) <= rules.n_max:
        raise ValueError(
            f"numbers has {len(numbers)} values; allowed {lo}..{rules.n_max} "
            f"(Rules.n_max={rules.n_max})."
        )
    return [_key_of(x, f"numbers[{s}]", rules, True) for s, x in enumerate(numbers)]


def solve(
    numbers: Sequence, target, rules: game.Rules = _DEFAULT_RULES, count: bool = False
) -> SolveResult:
    """Exact solve of ``numbers -> target`` (ints or Fractions) under ``rules``.

    The returned actions are re-checked with the independent ``game.replay``. With
    ``rules.use_all=False`` a smallest sub-multiset is used (no intermediate hits the target early).
    """
    keys = _keys_of(numbers, rules, 2)
    t = _key_of(target, "target", rules, False)
    ms = tuple(sorted(keys))
    n_sol = _num_solutions(ms, t, rules) if count else None
    # Smallest sub-multiset first under use_all=False; _witness is the search itself (None: no).
    subs = [ms] if rules.use_all else _sub_multisets(ms)
    if not _reachable_target(t, rules):
        subs = []
    tree = next((w for s in subs if (w := _witness(s, t, rules.fractions, rules.max_abs))), None)
    if tree is None:
        return SolveResult(False, None, None, n_sol)
    slots: dict[int, list[int]] = {}
    for s, k in enumerate(keys):
        slots.setdefault(k, []).append(s)
    _, actions = _tree_actions(tree, slots, rules.n_max)
    rep = game.replay(numbers, target, actions, rules)
    if not rep.solved:
        raise RuntimeError(
            f"solver bug: actions {actions} do not solve {list(numbers)} -> {target}."
        )
    expr = next(
        e for v, e in zip(rep.values, rep.expressions, strict=True) if v == Fraction(target)
    )
    return SolveResult(True, expr, actions, n_sol)


def reachable(numbers: Sequence, rules: game.Rules = _DEFAULT_RULES) -> set[Fraction]:
    """Values reachable from ``numbers`` (all of them; any non-empty subset if not use_all)."""
    ms = tuple(sorted(_keys_of(numbers, rules, 1)))
    subs = [ms] if rules.use_all else list(_sub_multisets(ms))
    return {unpack(k) for sub in subs for k in _reach_impl(sub, rules.fractions, rules.max_abs)}


def count_solutions(numbers: Sequence, target, rules: game.Rules = _DEFAULT_RULES) -> int:
    """Number of distinct solution expressions (module docstring); a difficulty statistic."""
    ms = tuple(sorted(_keys_of(numbers, rules, 1)))
    return _num_solutions(ms, _key_of(target, "target", rules, False), rules)


def state_labels(
    state_values: Sequence, target, rules: game.Rules = _DEFAULT_RULES, n_max: int | None = None
) -> tuple[bool, np.ndarray]:
    """Training labels of one state: (solvable, good_actions bool[A]).

    ``state_values[s]`` is the value in slot s (int or Fraction) or None for a dead slot; slots past
    the end are dead. (``game.values`` drops dead slots: pass slot-aligned values, e.g. from
    ``labels_for_states``.) ``good_actions[a]``: a is legal and the next state is still solvable.
    A solved state is (True, all False): it is terminal. An unsolvable state is (False, all False).
    """
    if n_max is not None and n_max != rules.n_max:
        raise ValueError(f"n_max={n_max} must equal Rules.n_max={rules.n_max}.")
    if len(state_values) > rules.n_max:
        raise ValueError(f"state_values has {len(state_values)} slots; allowed <= {rules.n_max}.")
    t = _key_of(target, "target", rules, False)
    live = {
        s: _key_of(v, f"state_values[{s}]", rules, True)
        for s, v in enumerate(state_values)
        if v is not None
    }
    good = np.zeros(rules.num_actions, bool)
    if not live:
        raise ValueError("state_values has no live slot; need at least one value.")
    hit = t in live.values()
    if hit and (len(live) == 1 or not rules.use_all):
        return True, good
    if not _solvable(tuple(sorted(live.values())), t, rules):
        return False, good
    for i, j in itertools.combinations(sorted(live), 2):
        rest = [k for s, k in live.items() if s not in (i, j)]
        for op, r in enumerate(op_keys(live[i], live[j], rules.fractions, rules.max_abs)):
            if r is not None:
                child = tuple(sorted(rest + [r]))
                good[game.encode_action(i, j, op, rules.n_max)] = (
                    child == (t,) if len(child) == 1 else _solvable(child, t, rules)
                )
    return True, good


def labels_for_states(state: game.State, rules: game.Rules) -> tuple[np.ndarray, np.ndarray]:
    """Labels of a 1-D batch of game states: (value bool[B], good_actions bool[B, A])."""
    num, den, live, tn, td, failed = (
        np.asarray(x)
        for x in (
            state.num,
            state.den,
            state.live,
            state.target_num,
            state.target_den,
            state.failed,
        )
    )
    b = num.shape[0]
    value, good = np.zeros(b, bool), np.zeros((b, rules.num_actions), bool)
    for k in range(b):
        if failed[k]:
            continue
        vals = [
            Fraction(int(n), int(d)) if alive else None
            for n, d, alive in zip(num[k], den[k], live[k], strict=True)
        ]
        value[k], good[k] = state_labels(vals, Fraction(int(tn[k]), int(td[k])), rules)
    return value, good


def clear_caches() -> None:
    """Drop all memoised reachable sets (for cold-start benchmarks)."""
    for f in (_reach_small, _reach_large, _counts, _solvable, _splits):
        f.cache_clear()
