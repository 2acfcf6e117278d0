"""search/solver.py: known counts, verified solutions, an independent naive reference, labels."""

import functools
import itertools
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fraction_ref import ref_op

from search import game, packed, solver

R8 = game.Rules()


@functools.cache
def ref_reach(ms: tuple, rules: game.Rules) -> frozenset:
    """Naive move-by-move reference: combine any two numbers, recurse (memoised on sorted tuple)."""
    if len(ms) == 1:
        return frozenset(ms)
    out = set()
    for i, j in itertools.combinations(range(len(ms)), 2):
        rest = [v for k, v in enumerate(ms) if k not in (i, j)]
        for op in range(6):
            r = ref_op(ms[i], ms[j], op, rules)
            if r is not None:
                out |= ref_reach(tuple(sorted(rest + [r])), rules)
    return frozenset(out)


def ref_solvable(values, target, rules) -> bool:
    ms = tuple(sorted(Fraction(v) for v in values))
    if rules.use_all:
        return Fraction(target) in ref_reach(ms, rules)
    return any(
        Fraction(target) in ref_reach(sub, rules)
        for k in range(1, len(ms) + 1)
        for sub in itertools.combinations(ms, k)
    )


def test_known_counts_and_batched_engine_verifies_every_solution():
    for hi, total, solvable in ((13, 1820, 1362), (10, 715, 566)):
        probs = list(itertools.combinations_with_replacement(range(1, hi + 1), 4))
        results = [solver.solve(list(p), 24, R8) for p in probs]
        assert len(probs) == total and sum(r.solvable for r in results) == solvable
    sols = [(p, r) for p, r in zip(probs, results, strict=True) if r.solvable]
    # Independent check of every returned action list with the jitted engine (replay ran inside).
    state = game.new_state([list(p) for p, _ in sols], [24] * len(sols), R8)
    step = jax.jit(game.step, static_argnums=2)
    acts = np.array([r.actions for _, r in sols], np.int32)  # n=4: always 3 moves
    for t in range(3):
        state = step(state, jnp.asarray(acts[:, t]), R8)
    assert bool(np.asarray(game.is_solved(state, R8)).all())
    for p, r in sols[:50]:
        assert eval(r.expression) == 24 and sorted(map(int, _leaves(r.expression))) == list(p)


def _leaves(expr: str):
    return [
        t
        for t in expr.replace("(", " ")
        .replace(")", " ")
        .replace("+", " ")
        .replace("*", " ")
        .replace("/", " ")
        .replace("-", " ")
        .split()
    ]


RULE_VARIANTS = [
    game.Rules(),
    game.Rules(fractions=False),
    game.Rules(use_all=False),
    game.Rules(fractions=False, use_all=False),
    game.Rules(max_abs=40),
    game.Rules(max_abs=30, use_all=False),
]


@pytest.mark.parametrize(
    "rules", RULE_VARIANTS, ids=lambda r: f"f{int(r.fractions)}u{int(r.use_all)}m{r.max_abs}"
)
def test_matches_naive_reference_on_random_problems(rules):
    rng = np.random.default_rng(rules.max_abs + 2 * rules.fractions + rules.use_all)
    agree = 0
    for k in range(60):
        n = 5 if k % 6 == 5 else 2 + k % 3  # 2..5 numbers (the naive reference is slow at 5)
        lo = 1 if not rules.fractions else -4
        nums = rng.integers(lo, 14, size=n).tolist()
        hi = min(40, rules.max_abs)
        target = int(rng.integers(-10, hi)) if rules.fractions else int(rng.integers(1, hi))
        expected = ref_solvable(nums, target, rules)
        res = solver.solve(nums, target, rules)
        assert res.solvable == expected, (nums, target)
        if res.solvable:
            assert game.replay(nums, target, res.actions, rules).solved
        assert (Fraction(target) in solver.reachable(nums, rules)) == expected
        agree += expected
    assert 5 < agree < 55  # both outcomes are exercised


def test_numpy_and_python_paths_agree(monkeypatch):
    nums = (1, 3, 4, 6, 7)
    ref = ref_reach(tuple(sorted(map(Fraction, nums))), R8)
    for small in (0, 10**9):  # all numpy / all Python
        monkeypatch.setattr(packed, "_SMALL", small)
        solver.clear_caches()
        assert solver.reachable(list(nums), R8) == set(ref)
    solver.clear_caches()


def _canonical_solutions(values, target, rules) -> set:
    """Brute force: canonical strings (children of + and * sorted) of all move sequences."""
    out = set()

    def rec(items):  # items: list of (value, canonical string)
        if len(items) == 1:
            if items[0][0] == target:
                out.add(items[0][1])
            return
        for i, j in itertools.combinations(range(len(items)), 2):
            (x, ex), (y, ey) = items[i], items[j]
            rest = [it for k, it in enumerate(items) if k not in (i, j)]
            for op in range(6):
                r = ref_op(x, y, op, rules)
                if r is None:
                    continue
                s = {
                    0: "({}+{})".format(*sorted((ex, ey))),
                    1: "({}*{})".format(*sorted((ex, ey))),
                    2: f"({ex}-{ey})",
                    3: f"({ey}-{ex})",
                    4: f"({ex}/{ey})",
                    5: f"({ey}/{ex})",
                }[op]
                rec(rest + [(r, s)])

    rec([(Fraction(v), str(v)) for v in values])
    return out


@pytest.mark.parametrize(
    "nums, target",
    [
        ((8, 3, 8, 3), 24),
        ((4, 4, 10, 10), 24),
        ((1, 2, 3, 4), 24),
        ((2, 2, 2, 2), 8),
        ((1, 1, 1, 1), 24),
        ((3, 3, 8, 8), 0),
        ((6, 6, 6), 36),
        ((2, 3, 5, 7), 1),
    ],
)
def test_solution_counts_match_brute_force(nums, target):
    expected = len(_canonical_solutions(nums, Fraction(target), R8))
    assert solver.count_solutions(list(nums), target, R8) == expected
    assert solver.solve(list(nums), target, R8, count=True).num_solutions == expected


def test_known_hard_24_puzzles_have_one_solution():
    assert solver.count_solutions([8, 3, 8, 3], 24) == 1
    assert solver.count_solutions([1, 5, 5, 5], 24) == 1  # 5 * (5 - 1/5)
    expr = solver.solve([1, 5, 5, 5], 24).expression
    assert expr in ("(5*(5-(1/5)))", "((5-(1/5))*5)"), expr


N6_CASES = [
    ([25, 50, 75, 100, 3, 6], 952, game.Rules(fractions=False, use_all=False)),
    ([1, 3, 4, 6, 10, 12], 997, R8),
    ([2, 3, 5, 7, 11, 13], 999, R8),
    ([100, 100, 100, 100, 100, 100], 997, game.Rules(fractions=False)),
    ([7, 7, 7, 7, 7, 7], 0, R8),
    ([13, 12, 11, 10, 9, 8], 1, game.Rules(max_abs=50)),
]


@pytest.mark.parametrize("nums, target, rules", N6_CASES)
def test_six_numbers_agree_with_full_reachable_set(nums, target, rules):
    """Meet-in-the-middle solve vs the whole reachable set (a different code path)."""
    res = solver.solve(nums, target, rules)
    assert res.solvable == (Fraction(target) in solver.reachable(nums, rules))
    if res.solvable:
        assert game.replay(nums, target, res.actions, rules).solved


def test_n7_solves():
    res = solver.solve([9, 25, 73, 29, 31, 19, 70], 558, R8)
    assert (
        res.solvable
        and len(res.actions) == 6
        and game.replay([9, 25, 73, 29, 31, 19, 70], 558, res.actions, R8).solved
    )


def test_reachable_small_and_subset_rule():
    assert solver.reachable([1, 2]) == {
        Fraction(3),
        Fraction(2),
        Fraction(-1),
        Fraction(1),
        Fraction(1, 2),
    }
    assert solver.reachable([1, 2], game.Rules(use_all=False)) == {
        Fraction(3),
        Fraction(2),
        Fraction(-1),
        Fraction(1),
        Fraction(1, 2),
    }
    assert solver.reachable([2, 3], game.Rules(fractions=False)) == {5, 6, 1}
    res = solver.solve([24, 1, 2], 24, game.Rules(use_all=False))
    assert res.solvable and res.actions == [] and res.expression == "24"


@pytest.mark.parametrize(
    "rules",
    [
        game.Rules(n_max=5),
        game.Rules(n_max=5, use_all=False),
        game.Rules(n_max=5, fractions=False, max_abs=60),
    ],
    ids=str,
)
def test_state_labels_match_reference_and_engine(rules):
    rng = np.random.default_rng(11)
    nums = [rng.integers(1, 10, size=int(rng.integers(3, 6))).tolist() for _ in range(30)]
    targets = [int(rng.integers(1, 30)) for _ in nums]
    state = game.new_state(nums, targets, rules)
    step, legal = jax.jit(game.step, static_argnums=2), jax.jit(game.legal_mask, static_argnums=1)

    @jax.jit
    def children(s):  # every action from one state: (next states [A], solved [A])
        nxt = jax.vmap(lambda a: game.step(s, a, rules))(jnp.arange(rules.num_actions))
        return nxt, game.is_solved(nxt, rules)

    n_good = 0
    for _ in range(3):  # labels of states at depth 0, 1, 2 of random legal play
        value, good = solver.labels_for_states(state, rules)
        mask = np.asarray(legal(state, rules))
        assert not (good & ~mask).any()  # good actions are legal actions
        for b in range(len(nums)):
            if bool(state.failed[b]):
                assert not value[b] and not good[b].any()
                continue
            vals = game.values(state, b)
            t = Fraction(int(state.target_num[b]), int(state.target_den[b]))
            assert value[b] == ref_solvable(vals, t, rules), (vals, t)
            nxt, solved_next = children(jax.tree.map(lambda x, b=b: x[b], state))
            nxt, solved_next = jax.tree.map(np.asarray, nxt), np.asarray(solved_next)
            for a in np.flatnonzero(mask[b]):
                child = game.values(jax.tree.map(lambda x, a=a: x[a : a + 1], nxt), 0)
                expect = bool(solved_next[a]) or ref_solvable(child, t, rules)
                assert good[b, a] == (value[b] and expect), (vals, t, game.decode_action(int(a), 5))
            n_good += int(good[b].sum())
        pick = np.array([rng.choice(np.flatnonzero(m)) if m.any() else 0 for m in mask], np.int32)
        state = step(state, jnp.asarray(pick), rules)
    assert n_good > 30


def test_bad_input():
    with pytest.raises(ValueError, match="allowed 2..8"):
        solver.solve([1] * 9, 24)
    with pytest.raises(ValueError, match="numbers\\[1\\]"):
        solver.solve([1, 2.5], 24)
    with pytest.raises(ValueError, match="positive integer"):
        solver.solve([1, 0, 3], 24, game.Rules(fractions=False))
    with pytest.raises(ValueError, match="target"):
        solver.solve([1, 2], 40000)
    with pytest.raises(ValueError, match="n_max"):
        solver.state_labels([1, 2], 3, R8, n_max=6)
    with pytest.raises(ValueError, match="no live slot"):
        solver.state_labels([None, None], 3, R8)
