"""Exact rationals packed into one Python int, and the six ops on packed values (host-side).

A value num/den (reduced, den > 0) is the key ``num * 2**SHIFT + den`` (den <= 32767 < 2**16):
int hashing is several times faster than tuples or ``Fraction``s, which is what the solver's
speed rests on. Legality is ``search.game``'s: a result with ``|num| > max_abs`` or ``den >
max_abs`` is illegal, as is division by zero; under integer-only rules every result must be a
positive integer. ``search.solver`` (reachable sets, solutions, labels) and ``search.stream``
(walks on packed states) compute with these; imports nothing of ours.
"""

from __future__ import annotations

from fractions import Fraction
from math import gcd
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from search.game import Rules

SHIFT = 16
DEN_MASK = (1 << SHIFT) - 1
ZERO = 1  # key of 0/1
_SMALL = 256  # below this many operand pairs a Python loop beats numpy's per-call overhead


def pack_int(x: int) -> int:
    """Packed key of the integer ``x`` (``key >> SHIFT`` is the numerator, ``key & DEN_MASK`` the
    denominator)."""
    return (x << SHIFT) | 1


def op_results(x: int, y: int, rules: Rules) -> list[int | None]:
    """The six results (``game.OPS`` order) of packed ``x`` op packed ``y``; None where illegal."""
    return op_keys(x, y, rules.fractions, rules.max_abs)


def pack(f: Fraction) -> int:
    return (f.numerator << SHIFT) | f.denominator


def unpack(key: int) -> Fraction:
    return Fraction(key >> SHIFT, key & DEN_MASK)


def op_keys(x: int, y: int, fractions: bool, max_abs: int) -> list[int | None]:
    """The six results (OPS order) of packed x op packed y; None where illegal."""
    an, ad, bn, bd = x >> SHIFT, x & DEN_MASK, y >> SHIFT, y & DEN_MASK
    if ad == 1 and bd == 1:  # integers (most values): no cross products, gcd only for division
        s, p, d = an + bn, an * bn, an - bn
        lo = -max_abs if fractions else 1
        return [
            (s << SHIFT) | 1 if lo <= s <= max_abs else None,
            (p << SHIFT) | 1 if lo <= p <= max_abs else None,
            (d << SHIFT) | 1 if lo <= d <= max_abs else None,
            (-d << SHIFT) | 1 if lo <= -d <= max_abs else None,
            frac_key(an, bn, fractions, max_abs) if bn else None,
            frac_key(bn, an, fractions, max_abs) if an else None,
        ]
    p, q, dd = an * bd, bn * ad, ad * bd
    return [
        frac_key(p + q, dd, fractions, max_abs),
        frac_key(an * bn, dd, fractions, max_abs),
        frac_key(p - q, dd, fractions, max_abs),
        frac_key(q - p, dd, fractions, max_abs),
        frac_key(p, ad * bn, fractions, max_abs) if bn else None,
        frac_key(q, bd * an, fractions, max_abs) if an else None,
    ]


def frac_key(num: int, den: int, fractions: bool, max_abs: int) -> int | None:
    """Packed key of num/den (den != 0) reduced, or None if out of range / not allowed."""
    g = gcd(num, den)
    if den < 0:
        g = -g
    num, den = num // g, den // g
    if (den > max_abs or not -max_abs <= num <= max_abs
            or (not fractions and (den != 1 or num <= 0))):
        return None
    return (num << SHIFT) | den


def ops_np(xs: np.ndarray, ys: np.ndarray, fractions: bool, max_abs: int):
    """Vectorised ``op_keys`` over all pairs: (keys int64[6, X, Y], ok bool[6, X, Y])."""
    an, ad = xs[:, None] >> SHIFT, xs[:, None] & DEN_MASK
    bn, bd = ys[None, :] >> SHIFT, ys[None, :] & DEN_MASK
    p, q, dd = an * bd, bn * ad, ad * bd  # |.| < 2**30: exact in int64 (and in game's int32)
    num = np.stack(np.broadcast_arrays(p + q, an * bn, p - q, q - p, p, q))
    den = np.stack(np.broadcast_arrays(dd, dd, dd, dd, ad * bn, bd * an))
    ok = den != 0
    num = np.where(den < 0, -num, num)
    den = np.where(ok, np.abs(den), 1)
    g = np.gcd(num, den)
    num, den = num // g, den // g
    ok &= (np.abs(num) <= max_abs) & (den <= max_abs)
    if not fractions:
        ok &= (den == 1) & (num > 0)
    return (num << SHIFT) | den, ok


def combine(xs: frozenset, ys: frozenset, fractions: bool, max_abs: int) -> set[int]:
    """{x op y : x in xs, y in ys, op legal}."""
    if len(xs) * len(ys) <= _SMALL:
        out: set[int] = set()
        for x in xs:
            for y in ys:
                out.update(op_keys(x, y, fractions, max_abs))
        out.discard(None)
        return out
    arr = lambda s: np.fromiter(s, np.int64, len(s))
    keys, ok = ops_np(arr(xs), arr(ys), fractions, max_abs)
    return set(np.unique(keys[ok]).tolist())
