"""search/game.py against an independent pure-Python Fraction reference written here."""

import functools
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fraction_ref import ref_op

from search import game

# ----------------------------------------------------------------------------- reference


@functools.cache
def _jit(fn):
    return jax.jit(fn, static_argnames="rules")  # eager while_loops are slow; compile once


class Ref:
    def __init__(self, numbers, target, rules):
        self.rules, self.target = rules, Fraction(target)
        self.vals = [Fraction(x) for x in numbers] + [None] * (rules.n_max - len(numbers))
        self.failed, self.moves = False, 0

    def live(self):
        return [v for v in self.vals if v is not None]

    def solved(self):
        live = self.live()
        hit = self.target in live
        return not self.failed and (hit and len(live) == 1 if self.rules.use_all else hit)

    def raw_legal(self, a):
        if not 0 <= a < self.rules.num_actions:
            return None
        i, j = list(_pairs(self.rules.n_max))[a // 6]
        if self.vals[i] is None or self.vals[j] is None:
            return None
        r = ref_op(self.vals[i], self.vals[j], a % 6, self.rules)
        return None if r is None else (i, j, r)

    def terminal(self):
        return (
            self.failed
            or self.solved()
            or not any(self.raw_legal(a) for a in range(self.rules.num_actions))
        )

    def legal_mask(self):
        if self.failed or self.solved():
            return np.zeros(self.rules.num_actions, bool)
        return np.array([self.raw_legal(a) is not None for a in range(self.rules.num_actions)])

    def step(self, a):
        self.moves += 1
        move = None if (self.failed or self.solved()) else self.raw_legal(a)
        if move is None:
            self.failed = True
            return
        i, j, r = move
        self.vals[i], self.vals[j] = r, None


def _pairs(n):
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def _check(state, refs):
    num, den, live = (np.asarray(x) for x in (state.num, state.den, state.live))
    for b, ref in enumerate(refs):
        exp_live = [v is not None for v in ref.vals]
        assert live[b].tolist() == exp_live, (b, ref.vals)
        got = [
            Fraction(int(n), int(d)) if alive else (int(n), int(d))
            for n, d, alive in zip(num[b], den[b], live[b], strict=True)
        ]
        assert got == [v if v is not None else (0, 1) for v in ref.vals], (b, got, ref.vals)
        # Fraction() above normalises; the engine must hold reduced pairs with den > 0 itself.
        assert all(
            math.gcd(int(n), int(d)) == 1 and d > 0 for n, d in zip(num[b], den[b], strict=True)
        )
    assert np.asarray(state.failed).tolist() == [r.failed for r in refs]
    assert np.asarray(state.moves).tolist() == [r.moves for r in refs]


VARIANTS = {
    "default": (game.Rules(), (-3, 13)),
    "int_subset": (game.Rules(n_max=5, fractions=False, use_all=False), (1, 13)),
    "small_bound": (game.Rules(n_max=6, max_abs=50), (-5, 12)),
    "int_small": (game.Rules(n_max=4, fractions=False, max_abs=60), (1, 13)),
}
SEQS_PER_VARIANT = 2560  # 4 variants: 10,240 random action sequences
MASK_CHECKED = 100  # sequences whose full legal mask is compared at every step


def _random_episodes(rules, lo_hi, rng):
    """Problems + adaptively chosen actions (mostly on live pairs, some arbitrary or invalid)."""
    a_count, problems, actions = rules.num_actions, [], []
    for _ in range(SEQS_PER_VARIANT):
        n = int(rng.integers(2, rules.n_max + 1))
        nums = rng.integers(lo_hi[0], lo_hi[1] + 1, size=n).tolist()
        dry = Ref(nums, 10**9, rules)
        seq, seen = [], []
        for _ in range(rules.n_max):
            live = [s for s, v in enumerate(dry.vals) if v is not None]
            if len(live) >= 2 and rng.random() < 0.85:
                i, j = sorted(rng.choice(live, 2, replace=False).tolist())
                a = _pairs(rules.n_max).index((i, j)) * 6 + int(rng.integers(6))
            else:
                a = int(rng.integers(-2, a_count + 2))
            seq.append(a)
            dry.step(a)
            seen += dry.live()
        # Aim some targets at values the episode produces, so solved states are exercised.
        if seen and rng.random() < 0.5:
            target = seen[int(rng.integers(len(seen)))]
        else:
            target = int(rng.integers(-5, 30))
        problems.append((nums, target))
        actions.append(seq)
    return problems, np.array(actions, np.int32).T  # [T, B]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_random_sequences_match_reference(variant):
    rules, lo_hi = VARIANTS[variant]
    rng = np.random.default_rng(sorted(VARIANTS).index(variant))
    problems, actions_TxB = _random_episodes(rules, lo_hi, rng)
    state = game.new_state([p[0] for p in problems], [p[1] for p in problems], rules)
    refs = [Ref(*p, rules) for p in problems]
    step = jax.jit(game.step, static_argnums=2)
    views = jax.jit(
        lambda s: (
            game.is_solved(s, rules),
            game.is_terminal(s, rules),
            game.legal_mask(s, rules),
            game.reward(s, rules),
            game.moves_left(s),
        )
    )
    stats = {"failed": 0, "solved": 0}
    for t in range(actions_TxB.shape[0] + 1):
        _check(state, refs)
        solved, terminal, mask, rew, left = (np.asarray(x) for x in views(state))
        assert solved.tolist() == [r.solved() for r in refs]
        assert np.array_equal(rew, solved.astype(np.float32))
        assert left.tolist() == [max(len(r.live()) - 1, 0) for r in refs]
        for b in range(MASK_CHECKED):
            assert terminal[b] == refs[b].terminal()
            assert np.array_equal(mask[b], refs[b].legal_mask()), (b, refs[b].vals)
        stats["solved"] += int(solved.sum())
        if t == actions_TxB.shape[0]:
            break
        state = step(state, jnp.asarray(actions_TxB[t]), rules)
        for ref, a in zip(refs, actions_TxB[t], strict=True):
            ref.step(int(a))
    stats["failed"] = sum(r.failed for r in refs)
    # The edges must actually be exercised: failures (incl. overflow, /0) and solved states.
    assert stats["failed"] > SEQS_PER_VARIANT // 4 and stats["solved"] > 100, stats


def test_op_results_exact_near_int32_bound():
    """All six ops on random reduced fractions with |num|, den <= 32767 match Fraction results."""
    rules = game.Rules(n_max=2)
    rng = np.random.default_rng(7)
    m = game.INT32_SAFE_MAX_ABS
    fr = []
    while len(fr) < 2 * 20000:
        n, d = int(rng.integers(-m, m + 1)), int(rng.integers(1, m + 1))
        if rng.random() < 0.3:  # many small values, so that in-range results are common too
            n, d = int(rng.integers(-60, 61)), int(rng.integers(1, 12))
        fr.append(Fraction(n, d))
    x, y = fr[0::2], fr[1::2]
    as_arr = lambda vs, f: jnp.asarray(np.array([[f(a), f(b)] for a, b in vs], np.int32))
    pairs = list(zip(x, y, strict=True))
    state = game.State(
        num=as_arr(pairs, lambda v: v.numerator),
        den=as_arr(pairs, lambda v: v.denominator),
        live=jnp.ones((len(pairs), 2), bool),
        target_num=jnp.zeros(len(pairs), jnp.int32),
        target_den=jnp.ones(len(pairs), jnp.int32),
        moves=jnp.zeros(len(pairs), jnp.int32),
        failed=jnp.zeros(len(pairs), bool),
    )
    num, den, ok = (
        np.asarray(v) for v in jax.jit(game.all_results, static_argnums=1)(state, rules)
    )
    n_ok = 0
    for b, (a, c) in enumerate(pairs):
        for op in range(6):
            r = ref_op(a, c, op, rules)
            assert bool(ok[b, op]) == (r is not None), (a, c, op)
            if r is not None:
                assert Fraction(int(num[b, op]), int(den[b, op])) == r and den[b, op] > 0
                n_ok += 1
    assert n_ok > 20000


def test_vmap_and_batch_axes_agree():
    rules = game.Rules(n_max=5)
    rng = np.random.default_rng(3)
    nums = [rng.integers(1, 14, size=5).tolist() for _ in range(12)]
    state = game.new_state(nums, [24] * 12, rules)
    actions = jnp.asarray(rng.integers(0, rules.num_actions, size=12), jnp.int32)
    step = jax.jit(game.step, static_argnums=2)
    flat = step(state, actions, rules)
    as_2d = jax.tree.map(lambda x: x.reshape((3, 4) + x.shape[1:]), state)
    two_d = step(as_2d, actions.reshape(3, 4), rules)
    vm = jax.jit(jax.vmap(lambda s, a: game.step(s, a, rules)))(state, actions)
    for a, b, c in zip(
        jax.tree.leaves(flat), jax.tree.leaves(two_d), jax.tree.leaves(vm), strict=True
    ):
        assert np.array_equal(np.asarray(a), np.asarray(b).reshape(a.shape))
        assert np.array_equal(np.asarray(a), np.asarray(c))
    legal = jax.jit(game.legal_mask, static_argnums=1)
    m2 = legal(as_2d, rules)
    assert m2.shape == (3, 4, rules.num_actions)
    assert np.array_equal(np.asarray(m2).reshape(12, -1), np.asarray(legal(state, rules)))


def test_actions_roundtrip_and_table():
    for n in (2, 4, 8):
        seen = set()
        for a in range(n * (n - 1) // 2 * 6):
            i, j, op = game.decode_action(a, n)
            assert 0 <= i < j < n and game.encode_action(i, j, op, n) == a
            seen.add((i, j, op))
        assert len(seen) == n * (n - 1) * 3
    assert game.pair_table(4).tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]


def test_render_and_replay_classic():
    rules = game.Rules(n_max=4)
    e = lambda i, j, op: game.encode_action(i, j, op, 4)
    other = [e(0, 1, 4), e(2, 3, 3), e(0, 2, 5)]  # 8/3, 3-8, (3-8)/(8/3): legal, not a solution
    rep = game.replay([8, 3, 8, 3], 24, other, rules)
    assert rep.legal and not rep.solved and rep.values == (Fraction(-15, 8),)
    assert rep.expressions == ("((3-8)/(8/3))",)
    sol = [e(2, 3, 4), e(1, 2, 2), e(0, 1, 4)]  # 8/3, 3-8/3, 8/(3-8/3)
    rep = game.replay([8, 3, 8, 3], 24, sol, rules)
    assert rep.solved and rep.expressions == ("(8/(3-(8/3)))",)
    state = game.new_state([[8, 3, 8, 3]], [24], rules)
    step, solved = jax.jit(game.step, static_argnums=2), jax.jit(game.is_solved, static_argnums=1)
    assert game.render(state) == "[8, 3, 8, 3] -> 24"
    for a in sol[:2]:
        state = step(state, jnp.array([a]), rules)
    assert game.render(state) == "[8, 1/3] -> 24"
    state = step(state, jnp.array([sol[2]]), rules)
    assert game.render(state) == "[24] -> 24" and bool(solved(state, rules)[0])
    state = step(state, jnp.array([0]), rules)
    assert game.render(state) == "[24] -> 24 (failed)" and not bool(solved(state, rules)[0])


def test_subset_rule_ends_episode_when_target_appears():
    rules = game.Rules(n_max=4, use_all=False)
    state = game.new_state([[24, 1, 2]], [24], rules)
    assert bool(_jit(game.is_solved)(state, rules)[0])
    assert bool(_jit(game.is_terminal)(state, rules)[0])
    assert not np.asarray(_jit(game.legal_mask)(state, rules)).any()
    a = game.encode_action(1, 2, 0, 4)
    assert bool(_jit(game.step)(state, jnp.array([a]), rules).failed[0])
    assert not game.replay([24, 1, 2], 24, [a], rules).legal  # replay agrees with the engine


def test_subset_rule_solution_is_the_expression_equal_to_the_target():
    # [37 19 2 14 10 45] -> 118 via 2*(14+45): the target sits in slot 2, not slot 0
    rules = game.Rules(n_max=6, fractions=False, use_all=False)
    nums = [37, 19, 2, 14, 10, 45]
    acts = [game.encode_action(3, 5, 0, 6), game.encode_action(2, 3, 1, 6)]  # 14+45, 2*59
    r = game.replay(nums, 118, acts, rules)
    assert r.solved and r.expressions[0] == "37" and r.solution == "(2*(14+45))"
    from search import mcts

    assert mcts.verify(nums, 118, acts, rules) == "(2*(14+45))"
    assert game.replay(nums, 119, acts, rules).solution is None


def test_out_of_range_actions_fail():
    rules = game.Rules(n_max=4)
    state = game.new_state([[1, 2, 3, 4]] * 3, [24] * 3, rules)
    out = _jit(game.step)(state, jnp.array([-1, rules.num_actions, 0]), rules)
    assert np.asarray(out.failed).tolist() == [True, True, False]
    assert np.array_equal(np.asarray(out.num[:2]), np.asarray(state.num[:2]))


@pytest.mark.parametrize(
    "numbers, targets, rules, match",
    [
        ([[1] * 9], [24], game.Rules(), "allowed 2..8"),
        ([[1]], [24], game.Rules(), "allowed 2..8"),
        ([[1, 2.5]], [24], game.Rules(), "not an integer"),
        ([[1, "2"]], [24], game.Rules(), "not an integer"),
        ([[1, 0]], [24], game.Rules(fractions=False), "positive integer"),
        ([[1, -3]], [24], game.Rules(fractions=False), "positive integer"),
        ([[1, 40000]], [24], game.Rules(), "out of range"),
        ([[1, 2]], [10**6], game.Rules(), "out of range"),
        ([[1, 2], [3, 4]], [24], game.Rules(), "len"),
    ],
)
def test_new_state_bad_input(numbers, targets, rules, match):
    with pytest.raises(ValueError, match=match):
        game.new_state(numbers, targets, rules)


def test_rules_and_action_bad_input():
    with pytest.raises(ValueError, match="n_max"):
        game.Rules(n_max=1)
    with pytest.raises(ValueError, match="max_abs"):
        game.Rules(max_abs=2**15)
    with pytest.raises(ValueError, match="action"):
        game.decode_action(36, 4)
    with pytest.raises(ValueError, match="invalid"):
        game.encode_action(2, 1, 0, 4)
