"""Compiled (numba) state labeller: ``solver.state_labels`` for whole batches, 20-250x faster.

Labels of a state S (k live values) and target t: ``value`` = S can still reach t using all of
its numbers; ``good[a]`` = action a is legal and its child can. Compiled: ``use_all=True`` rules
and k <= 6. Other rows (``use_all=False``, k > 6, values or targets the solver rejects, and
integer-only rules with a target that is not a positive integer, which the solver's inverse-op
shortcut calls solvable) go to ``solver.state_labels`` row by row: exact, at the solver's speed.

Algorithm. A child replaces the pair M = {i, j} by r = s_i op s_j. Let Need[U] = {v : t is
reachable from (S - U) + [v]} for a sub-multiset U: what U must produce for S to be solved. Then
``good = r in Need[M]`` and ``value = any(good)`` (every expression tree has a node with two leaf
operands). Need sets obey a top-down recursion mirroring the bottom-up one of reachable sets R:

    Need[S] = {t},   Need[U] = union over non-empty D in S - U of cand(Need[U + D], R[D]),

cand(T, X) = {v : x op v in T, x in X} = ops(T, X), as the six ops are closed under inversion
(x+v=t <=> v=t-x, ..., v/x=t <=> v=t*x; x = 0 gives {t, -t}). Each side is small where it is
materialised: for k = 6, |R| <= 108 for three numbers (3,240 for four) and |Need| <= 6, 108, 3,240
for U of 5, 4, 3 numbers. A child then costs ~400 hash probes: per D, is r op y in Need[M + D]
for some y in R[D] (or, if Need is smaller, does cand(Need, r) meet R[D]); D = S - M checks
r op y = t. Sets are built once per state and shared by its children (R of four numbers and Need
of three when a pair first needs them); they depend only on the multiset, so masks are
canonicalised and equal-valued pairs share their children's labels.

Zero: if 0 is in R[D] and in Need[U + D], every v is in Need[U] (v * 0 = 0): the set is flagged
ALL, not materialised. ALL passes down to every U' in U (the solution's leaf 0 becomes
((0 from D) * v) * u_1 * ... over U - U', all legal), so a pair below an ALL set has only good
children, and every other set is exact. Legality is the solver's on every intermediate (division
by zero, |num| or den > max_abs; integer-only: positive integers), so labels equal
``solver.state_labels``. Values are the solver's keys ``num * 2**16 + den`` (key 0 is no value:
empty hash slot / illegal result), reduced from reduced operands (Knuth 4.5.1, binary gcd).

numba notes (each was 2-15x in the hot loops): all sets live in ONE int64 workspace ``mem`` (a
call in a loop touching two arrays increfs / decrefs each around every call: ~50 ns per hash
insert); no ``and`` / ``or`` around calls in hot conditions and no recursion (either stops
inlining); np.int64 rather than Python-int constants as arguments (numba compiles a callee per
literal value). The first call compiles for ~5-10 s unless numba's disk cache has the code
(``labeller_kernels._jit``); then one core labels ~60k four-, ~6k five- and ~600 six-number start
states per second (benchmarks/bench_data.py).

The kernels are in ``search/labeller_kernels.py``; this module checks inputs and routes rows.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from search import game, solver
from search.labeller_kernels import MAX_LIVE, label_rows

# ----------------------------------------------------------------------------- public API


def _prepare(num, den, live, target_num, target_den, rules: game.Rules):
    """(keys, target keys, fast rows, live, num, den, target num, target den) as int64 / bool."""
    num, den, live = np.asarray(num, np.int64), np.asarray(den, np.int64), np.asarray(live, bool)
    tn = np.asarray(target_num, np.int64).reshape(-1)
    td = np.asarray(target_den, np.int64).reshape(-1)
    if num.ndim != 2 or num.shape[1] != rules.n_max or not (
            den.shape == live.shape == num.shape and tn.shape == td.shape == (num.shape[0],)):
        raise ValueError(
            f"num/den/live must be [B, {rules.n_max}] and targets [B]; got num {num.shape}, "
            f"den {den.shape}, live {live.shape}, target_num {tn.shape}, target_den {td.shape}.")

    def reduced(n, d):  # (key, ok): lowest terms, d > 0, in range and allowed under the rules
        g = np.where(d < 0, -1, 1) * np.gcd(n, d)
        ok = g != 0
        n, d = n // np.where(ok, g, 1), d // np.where(ok, g, 1)
        ok &= (np.abs(n) <= rules.max_abs) & (d >= 1) & (d <= rules.max_abs)
        if not rules.fractions:  # values: the solver's rule; target: its inverse shortcut
            ok &= (d == 1) & (n > 0)
        return n * 65536 + d, ok

    keys, ok = reduced(num, den)
    tkey, tok = reduced(tn, td)
    k = live.sum(1)
    fast = rules.use_all & tok & (k >= 1) & (k <= MAX_LIVE) & (ok | ~live).all(1)
    return np.where(live, keys, 0), tkey, fast, live, num, den, tn, td


def _run(num, den, live, target_num, target_den, rules: game.Rules, values_only: bool):
    keys, tkey, fast, live, num, den, tn, td = _prepare(num, den, live, target_num, target_den,
                                                        rules)
    value, good = np.zeros(len(keys), bool), np.zeros((len(keys), rules.num_actions), bool)
    if fast.any():
        label_rows(keys, live, tkey, fast, rules.n_max, rules.fractions, rules.max_abs,
                    values_only, value, good)
    for row in np.flatnonzero(~fast):  # exact but slow (module docstring)
        vals = [Fraction(int(x), int(y)) if alive else None
                for x, y, alive in zip(num[row], den[row], live[row], strict=True)]
        value[row], good[row] = solver.state_labels(
            vals, Fraction(int(tn[row]), int(td[row])), rules)
    return value, good


def label_batch(num, den, live, target_num, target_den,
                rules: game.Rules) -> tuple[np.ndarray, np.ndarray]:
    """Labels of B states: (value bool[B], good bool[B, A]), equal to ``solver.state_labels``.

    num/den/live: [B, rules.n_max] (dead slots anywhere, live False); target_num/den: [B].
    Rows outside the compiled path go to the solver (module docstring).
    """
    return _run(num, den, live, target_num, target_den, rules, values_only=False)


def solvable_batch(num, den, live, target_num, target_den, rules: game.Rules) -> np.ndarray:
    """value bool[B] of ``label_batch`` alone: stops at a state's first good child."""
    return _run(num, den, live, target_num, target_den, rules, values_only=True)[0]


def fraction_arrays(states, n_max: int):
    """Host helper: ``[(slot values: Fraction | None per slot, target Fraction), ...]`` ->
    the ``label_batch`` inputs ``(num, den, live, target_num, target_den)``."""
    b = len(states)
    num, den = np.zeros((b, n_max), np.int64), np.ones((b, n_max), np.int64)
    live = np.zeros((b, n_max), bool)
    tnum, tden = np.zeros(b, np.int64), np.ones(b, np.int64)
    for k, (slots, target) in enumerate(states):
        for s, v in enumerate(slots):
            if v is not None:
                num[k, s], den[k, s], live[k, s] = v.numerator, v.denominator, True
        tnum[k], tden[k] = target.numerator, target.denominator
    return num, den, live, tnum, tden
