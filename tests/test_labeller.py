"""search.labeller.label_batch / solvable_batch against the exact solver's state_labels.

States are start states (numbers 1..13 in random slots, so dead slots sit anywhere; targets
1..999 or a value the numbers reach, so a good share is solvable) and intermediate states after
random legal moves (played here on Fractions with the game's rules: results land in slot i, slot
j dies). Rule variants: rational and integer-only, max_abs 50 (out-of-range results), states with
zeros and negative values (the ALL sets of the labeller), and the solver fallbacks. Every test
compares every label and reports the first mismatch. The solver is the slow side (~0.1-0.4 s per
six-number state), so six-number states are few.
"""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest

from search import game, labeller, solver

_OPS = game._FRACTION_OPS  # a+b, a*b, a-b, b-a, a/b, b/a (game.OPS order)


def _results(a: Fraction, b: Fraction, rules: game.Rules) -> list[Fraction]:
    """Legal results of a op b (game.step's rules)."""
    out = []
    for op, f in enumerate(_OPS):
        if (op == 4 and b == 0) or (op == 5 and a == 0):
            continue
        r = f(a, b)
        if abs(r.numerator) > rules.max_abs or r.denominator > rules.max_abs:
            continue
        if not rules.fractions and (r.denominator != 1 or r <= 0):
            continue
        out.append(r)
    return out


def _play(slots: list, moves: int, rng: random.Random, rules: game.Rules) -> list:
    """``moves`` random legal moves on slot-aligned values (None = dead)."""
    slots = list(slots)
    for _ in range(moves):
        live = [s for s, v in enumerate(slots) if v is not None]
        if len(live) < 2:
            break
        i, j = sorted(rng.sample(live, 2))
        res = _results(slots[i], slots[j], rules)
        if not res:
            break
        slots[i], slots[j] = rng.choice(res), None
    return slots


def _reached(values: list, rng: random.Random, rules: game.Rules) -> Fraction | None:
    """The last value of random legal moves on all of ``values`` (None: no legal move left)."""
    vals = list(values)
    while len(vals) > 1:
        i, j = rng.sample(range(len(vals)), 2)
        res = _results(vals[i], vals[j], rules)
        if not res:
            return None
        vals = [v for s, v in enumerate(vals) if s not in (i, j)] + [rng.choice(res)]
    return vals[0]


def _state(rng: random.Random, rules: game.Rules, n_start: int, moves: int, reach: bool):
    """(slot-aligned values, target): n_start numbers in random slots, then ``moves`` moves."""
    hi = min(13, rules.max_abs)
    slots = [None] * rules.n_max
    for s in rng.sample(range(rules.n_max), n_start):
        slots[s] = Fraction(rng.randint(1, hi))
    slots = _play(slots, moves, rng, rules)
    target = _reached([v for v in slots if v is not None], rng, rules) if reach else None
    if target is None:
        target = Fraction(rng.randint(1, min(999, rules.max_abs)))
    return slots, target


def _arrays(states: list, rules: game.Rules):
    return labeller.fraction_arrays(states, rules.n_max)


def _check(states: list, rules: game.Rules) -> None:
    """label_batch (one batch) and solvable_batch equal state_labels row by row."""
    value, good = labeller.label_batch(*_arrays(states, rules), rules)
    assert value.shape == (len(states),) and good.shape == (len(states), rules.num_actions)
    for k, (slots, target) in enumerate(states):
        want_value, want_good = solver.state_labels(slots, target, rules)
        if value[k] != want_value or not np.array_equal(good[k], want_good):
            diff = [game.decode_action(int(a), rules.n_max)
                    for a in np.flatnonzero(good[k] != want_good)]
            pytest.fail(
                f"first mismatch (row {k} of {len(states)}) under {rules}: state "
                f"{[None if v is None else str(v) for v in slots]} -> {target}: solver value "
                f"{want_value}, labeller {bool(value[k])}; (i, j, op) differing: {diff[:8]}")
    np.testing.assert_array_equal(labeller.solvable_batch(*_arrays(states, rules), rules), value)


def _mixed(rng: random.Random, rules: game.Rules, counts: dict[int, int]) -> list:
    """counts[n] states of n live numbers each: start states and states after 1-3 moves."""
    states = []
    for n, count in counts.items():
        for c in range(count):
            moves = c % 4 if n + c % 4 <= rules.n_max else 0
            states.append(_state(rng, rules, n + moves, moves, reach=c % 3 == 0))
    return states


@pytest.mark.parametrize("rules, counts", [
    (game.Rules(n_max=6), {3: 250, 4: 250, 5: 150, 6: 35}),
    (game.Rules(n_max=6, fractions=False), {3: 200, 4: 200, 5: 200, 6: 60}),
    (game.Rules(n_max=6, max_abs=50), {3: 150, 4: 150, 5: 150, 6: 25}),
    (game.Rules(n_max=6, fractions=False, max_abs=50), {3: 100, 4: 100, 5: 100, 6: 25}),
], ids=["fractions", "integers", "fractions-max50", "integers-max50"])
def test_matches_solver(rules, counts):
    states = _mixed(random.Random(sum(counts.values()) + rules.max_abs), rules, counts)
    live = np.array([sum(v is not None for v in s) for s, _ in states])
    assert sorted(set(live.tolist())) == [3, 4, 5, 6]
    _check(states, rules)


def test_six_live_intermediate_states():
    """Six live numbers reached by a move from seven (n_max=7): rationals, zeros, negatives."""
    rules, rng = game.Rules(n_max=7, max_abs=200), random.Random(7)
    states = [_state(rng, rules, 7, 1, reach=k % 2 == 0) for k in range(20)]
    assert all(sum(v is not None for v in s) == 6 for s, _ in states)
    _check(states, rules)


def test_zeros_negatives_and_rational_targets():
    """Values 0, negatives, fractions and targets 0 / rational / in the state: the labeller's ALL
    sets (0 in reach and in a Need set) and its zero special cases."""
    rng = random.Random(3)
    pool = [Fraction(x) for x in (0, 0, 1, 2, 3, -1, -2, 4, 6, 24)] + [
        Fraction(1, 2), Fraction(-3, 2), Fraction(2, 3)]
    states_by_rules: dict[game.Rules, list] = {}
    for k in range(300):
        rules = game.Rules(n_max=6, max_abs=(50, 32767)[k % 2])
        t = rng.choice([Fraction(0), Fraction(24), Fraction(1), Fraction(-2), Fraction(3, 2)])
        n = 3 + k % 3 if k % 10 else 6
        slots = [None] * 6
        for s in rng.sample(range(6), n):
            slots[s] = rng.choice(pool + [t, -t])
        states_by_rules.setdefault(rules, []).append((slots, t))
    for rules, states in states_by_rules.items():
        _check(states, rules)


def test_small_states_and_hits():
    """One or two live numbers: a single number equal to the target is solved (no good move)."""
    rules = game.Rules(n_max=6)
    f = Fraction
    states = [([None, f(24), None, None, None, None], f(24)),
              ([f(5), None, None, None, None, None], f(24)),
              ([None, None, f(4), None, None, f(6)], f(24)),
              ([f(24), None, None, f(0), None, None], f(24)),
              ([f(3), f(3), None, None, None, None], f(0)),
              ([None, f(1, 2), None, f(-1, 3), None, None], f(1, 6))]
    _check(states, rules)
    value, good = labeller.label_batch(*_arrays(states[:1], rules), rules)
    assert value[0] and not good[0].any()


def test_fallback_rows():
    """Rows outside the compiled path go to the solver and still agree: use_all=False, seven
    live numbers, and integer-only rules with a target that is not a positive integer."""
    rng = random.Random(11)
    loose = game.Rules(n_max=6, use_all=False)
    _check(_mixed(rng, loose, {3: 40, 4: 40, 5: 20}), loose)
    seven = game.Rules(n_max=7, fractions=False, max_abs=20)
    _check([([Fraction(x) for x in (1, 1, 1, 2, 2, 3, 5)], Fraction(19))], seven)
    ints = game.Rules(n_max=6, fractions=False)
    _check([([f, Fraction(3), None, Fraction(3), None, None], t)
            for f in (Fraction(2), Fraction(5)) for t in (Fraction(0), Fraction(-4))], ints)


def test_invalid_rows_raise_like_the_solver():
    rules = game.Rules(n_max=6, max_abs=50)
    num, den, live, tn, td = _arrays([([Fraction(3), Fraction(4), None, None, None, None],
                                       Fraction(12))], rules)
    tn[0] = 77  # out of range: the solver's ValueError
    with pytest.raises(ValueError, match="out of range"):
        labeller.label_batch(num, den, live, tn, td, rules)
    with pytest.raises(ValueError, match=r"\[B, 6\]"):
        labeller.label_batch(num[:, :5], den[:, :5], live[:, :5], tn, td, rules)
