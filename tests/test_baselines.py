"""search/baselines.py: exhaustive search, BFS-V / DFS-V, sampling, cross-checked."""

import functools
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from search import baselines, game, mcts

RULES = game.Rules(n_max=4)
A = RULES.num_actions
PROBLEMS = [([4, 6, 1, 1], 24), ([8, 3, 8, 3], 24), ([1, 1, 1, 1], 24), ([2, 3, 4], 24),
            ([1, 1, 2, 3], 24), ([8, 3], 24), ([2, 2, 2], 100)]
SOLVABLE = [True, True, False, True, False, True, False]


@pytest.fixture(scope="module")
def state():
    return game.new_state([p[0] for p in PROBLEMS], [p[1] for p in PROBLEMS], RULES)


def run(fn, state, **kw):
    f = mcts.make_batched(lambda p, k, s: fn(p, k, s, rules=RULES, **kw), RULES)
    return jax.device_get(f(None, jax.random.PRNGKey(0), state))


_legal = jax.jit(lambda s: game.legal_mask(s, RULES))
_step = jax.jit(lambda s, a: game.step(s, a, RULES))


@functools.lru_cache
def tree_size(numbers: tuple) -> int:
    """States below the root of the full game tree, counted level by level with the jitted engine
    (independent of the host-side exhaustive search). Levels are padded to 1024 failed states."""
    st, total = game.new_state([numbers] * 1024, [0] * 1024, RULES), 0
    st = st.replace(failed=st.failed.at[1:].set(True))
    for _ in range(len(numbers) - 1):
        rows, acts = np.nonzero(np.asarray(_legal(st)))
        total += len(acts)
        pad = np.arange(1024) >= len(rows)
        rows = np.where(pad, 0, np.resize(rows, 1024))
        acts = np.where(pad, 0, np.resize(acts, 1024))
        st = _step(jax.tree.map(functools.partial(jnp.take, indices=rows, axis=0), st), acts)
        st = st.replace(failed=st.failed | pad)
    return total


def assert_solutions(res, check_majority=False):
    for b, (numbers, target) in enumerate(PROBLEMS):
        assert bool(res.solved[b]) <= SOLVABLE[b]
        if res.solved[b]:
            assert mcts.verify(numbers, target, res.actions[b], RULES) is not None
        else:
            assert (res.actions[b] == -1).all()


def test_exhaustive_matches_solver_and_engine():
    for order in ("dfs", "bfs"):
        for (numbers, target), ok in zip(PROBLEMS, SOLVABLE, strict=True):
            solved, actions, nodes = baselines.exhaustive(numbers, target, RULES, 10**6, order)
            assert solved == ok
            if solved:
                assert game.replay(numbers, target, actions, RULES).solved
            else:
                assert nodes == tree_size(tuple(numbers))  # the whole tree was generated
    solved, _, nodes = baselines.exhaustive([4, 6, 1, 1], 24, RULES, 10, "bfs")
    assert not solved and nodes == 10
    with pytest.raises(ValueError, match="order='best'"):
        baselines.exhaustive([1, 2], 3, RULES, 10, "best")
    with pytest.raises(ValueError, match="node_budget=0"):
        baselines.exhaustive([1, 2], 3, RULES, 0)


def test_value_beam_oracle_and_counts(state):
    res = run(baselines.value_beam, state, evaluate=baselines.oracle_evaluate(RULES), beam=1,
              expand=A)
    np.testing.assert_array_equal(res.solved, SOLVABLE)
    assert_solutions(res)
    # A uniform prior expands actions 0, 1 of each beam state: evaluations are exactly countable.
    res = run(baselines.value_beam, state, evaluate=baselines.uniform_evaluate(RULES), beam=2,
              expand=2)
    assert_solutions(res)
    assert res.solved[5] and res.evals[5] == 1 + 2  # 8*3 (action 1) among the first children
    np.testing.assert_array_equal(res.evals[[0, 2, 4]], 1 + 2 + 4 + 4)
    assert res.evals[3] == 1 + 2 + 4 or res.solved[3]


def test_value_dfs_equals_exhaustive_and_prunes(state):
    res = run(baselines.value_dfs, state, evaluate=baselines.uniform_evaluate(RULES), expand=A,
              threshold=0.0, max_evals=10**6)
    np.testing.assert_array_equal(res.solved, SOLVABLE)
    assert_solutions(res)
    for b in (2, 4, 6):  # unsolvable: the whole tree, the same count as the host-side search
        assert res.evals[b] == 1 + tree_size(tuple(PROBLEMS[b][0]))
    # A perfect value prunes every child of an unsolvable root: root + its legal children.
    res = run(baselines.value_dfs, state, evaluate=baselines.oracle_evaluate(RULES), expand=A,
              threshold=0.5, max_evals=10**6)
    np.testing.assert_array_equal(res.solved, SOLVABLE)
    legal = np.asarray(game.legal_mask(state, RULES)).sum(-1)
    np.testing.assert_array_equal(res.evals[[2, 4, 6]], 1 + legal[[2, 4, 6]])
    assert (res.evals[[0, 1, 3]] <= 1 + legal[[0, 1, 3]] * 3).all()  # never backtracks


def test_dfs_budget(state):
    res = run(baselines.value_dfs, state, evaluate=baselines.uniform_evaluate(RULES), expand=4,
              threshold=0.0, max_evals=20)
    assert (res.evals < 20 + 4).all() and (res.evals >= np.minimum(20, res.evals)).all()
    assert_solutions(res)


def test_sampling_pass_and_majority(state):
    ev = baselines.oracle_evaluate(RULES, bad_logit=-1.0)
    f = mcts.make_batched(lambda p, k, s: baselines.sample_rollouts(p, k, s, ev, RULES, k=8), RULES)
    r = jax.device_get(f(None, jax.random.PRNGKey(0), state))
    res = jax.device_get(baselines.pass_and_majority(r))
    assert_solutions(res)
    for b, (numbers, target) in enumerate(PROBLEMS):
        np.testing.assert_array_equal(r.evals[b], len(numbers) - 1)
        finals = []
        for j in range(8):
            rep = game.replay(numbers, target, [a for a in r.actions[b, j] if a >= 0], RULES)
            assert rep.solved == bool(r.solved[b, j])
            assert rep.values[0] == Fraction(int(r.final_num[b, j]), int(r.final_den[b, j]))
            finals.append(rep.values[0])
        mode = max(finals, key=lambda v: (finals.count(v), -finals.index(v)))
        assert bool(res.majority[b]) == (mode == target)
        assert bool(res.solved[b]) == bool(r.solved[b].any())
    assert res.solved.sum() >= 3 and res.evals[0] == 8 * 3
    greedy = run(baselines.sample, state, evaluate=ev, k=2, temperature=0.0)
    np.testing.assert_array_equal(greedy.solved, SOLVABLE)
    np.testing.assert_array_equal(greedy.majority, SOLVABLE)
