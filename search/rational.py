"""Exact rational arithmetic in int32, jittable and batched: the six ops, gcd reduction, legality.

A value is a (numerator, denominator) pair of int32 arrays. ``op_results`` computes the six ops
``a+b, a*b, a-b, b-a, a/b, b/a`` (``search.game.OPS`` order) of broadcastable operands and reduces
them; a result out of ``rules.max_abs`` (or, under integer-only rules, not a positive integer) is
illegal, never wrapped or rounded. Why int32 is exact here: ``search/game.py``'s docstring.
``search.game`` plays moves with these functions and ``nnx_models.heads`` computes in-model
results with them. Imports nothing of ours; ``rules`` is any object with ``max_abs`` and
``fractions`` (a ``game.Rules``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

if TYPE_CHECKING:
    from search.game import Rules

GCD_STEPS = 30  # enough for every legal result (proof in gcd_bounded)


def _tz(v: jax.Array) -> jax.Array:
    """Trailing zero bits of v > 0 (32 for v == 0)."""
    return jax.lax.population_count((v & -v) - 1)


def gcd_bounded(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(g, exact): g = gcd(x, y) wherever ``exact``; 0 <= x < 2**31, 1 <= y < 2**31.

    Binary (Stein) gcd unrolled to a fixed GCD_STEPS iterations: shifts, min and abs vectorise on
    CPU (integer remainders do not) and the whole loop fuses into one kernel, with no
    data-dependent ``while_loop`` (one ``any`` reduction and several kernels per iteration).

    Why GCD_STEPS iterations suffice for what the engine needs: at iteration k, x_k and y_k are odd
    multiples of h, the odd part of g = gcd(x, y), and each iteration at least halves x_k * y_k,
    starting from x_1 * y_1 <= (x / g) * (y / g) * h**2. An iteration that does not finish has
    x_k != y_k, so x_k * y_k >= 3 h**2. For a *legal* result both x / g and y / g are <= max_abs
    <= 2**15 - 1, so 3 * 2**(k - 1) <= max_abs**2 < 2**30 and every iteration from k = 30 on
    finishes. Hence ``exact`` is False only for results that are out of range anyway, and the
    legality decision stays exact (tests/test_game.py checks it against Fractions).
    """
    shift = _tz(x | y)
    x_zero = x == 0
    x, y = jnp.where(x_zero, y, x), jnp.where(x_zero, 0, y)
    x = x >> _tz(x)  # odd
    for _ in range(GCD_STEPS):
        y = y >> _tz(y)  # odd, or 0 >> 32 = 0 once finished
        x, y = jnp.minimum(x, y), jnp.abs(x - y)  # finished: (h, 0), then (0, h) for good
    return (x + y) << shift, (x == 0) | (y == 0)


def raw_ops(an, ad, bn, bd):
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


def reduce(num, den, rules: Rules, allowed=None):
    """Reduce num/den and check legality: (num, den, ok & allowed); (0, 1) where not ok.

    The quotients by the gcd are computed in float32: a legal quotient is <= max_abs < 2**15, so
    float32's relative error (< 2**-21 here) rounds away. The range checks compare
    |num| <= (max_abs + 1/2) * g in float32, which is exact too: |num| / g is an integer, so the
    margin is >= g / 2, far above the rounding error. ``rd`` is the root of one division with
    ``ok`` folded in and ``rn = num * rd / den`` does not need g: XLA keeps divisions out of the
    fusions that consume them, so the gcd runs once per result instead of once per consumer.
    """
    nonzero_den = den != 0
    num = jnp.where(den < 0, -num, num)
    den = jnp.where(nonzero_den, jnp.abs(den), 1)
    g, exact = gcd_bounded(jnp.abs(num), den)
    numf, denf, gf = num.astype(jnp.float32), den.astype(jnp.float32), g.astype(jnp.float32)
    bound = (rules.max_abs + 0.5) * gf
    ok = nonzero_den & exact & (jnp.abs(numf) <= bound) & (denf <= bound)
    if not rules.fractions:
        ok &= (den == g) & (num > 0)
    if allowed is not None:
        ok &= allowed
    rdf = jnp.where(ok, denf, 0.0) / jnp.maximum(gf, 1.0)  # 0 where illegal
    rnf = (numf * rdf) / denf
    rd = jnp.round(rdf).astype(jnp.int32)
    return jnp.round(rnf).astype(jnp.int32), jnp.maximum(rd, 1), rd > 0


def op_results(an, ad, bn, bd, rules: Rules, allowed=None):
    """Exact results of the six ops on broadcastable operands: (num, den, ok), each [..., 6]."""
    return reduce(*raw_ops(an, ad, bn, bd), rules, allowed)
