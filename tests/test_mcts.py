"""search/mcts.py: mctx over the exact game, tree solutions, episodes, sharded == single device."""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType

from search import baselines, game, mcts, solver

RULES = game.Rules(n_max=4)
A = RULES.num_actions
# Solvable and unsolvable 4-, 3- and 2-number problems (solver-checked in test_problems_labels).
PROBLEMS = [([4, 6, 1, 1], 24), ([8, 3, 8, 3], 24), ([1, 1, 1, 1], 24), ([2, 3, 4], 24),
            ([1, 1, 2, 3], 24), ([8, 3], 24), ([2, 2, 2], 100)]


def mlp_evaluate(rules: game.Rules):
    """A tiny random MLP network (non-uniform priors and values) standing in for the model."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(42), 3)
    d_in = 3 * rules.n_max + 2
    params = {"w1": jax.random.normal(k1, (d_in, 32)), "w2": jax.random.normal(k2, (32, A)),
              "w3": jax.random.normal(k3, (32,))}

    def evaluate(p, s):
        x = jnp.concatenate([s.num / 10.0, 1.0 / s.den, s.live, s.target_num[..., None] / 10.0,
                             1.0 / s.target_den[..., None]], -1).astype(jnp.float32)
        h = jnp.tanh(x @ p["w1"])
        return (jnp.where(game.legal_mask(s, rules), h @ p["w2"], mcts.NEG),
                jax.nn.sigmoid(h @ p["w3"]))

    return params, evaluate


@pytest.fixture(scope="module")
def mlp():
    return mlp_evaluate(RULES)


@pytest.fixture(scope="module")
def state():
    return game.new_state([p[0] for p in PROBLEMS], [p[1] for p in PROBLEMS], RULES)


def test_problems_labels():
    solvable = [solver.solve(n, t, RULES).solvable for n, t in PROBLEMS]
    assert solvable == [True, True, False, True, False, True, False]


def test_config_errors():
    with pytest.raises(ValueError, match="num_simulations=0"):
        mcts.SearchConfig(num_simulations=0)
    with pytest.raises(ValueError, match="policy='alphago'"):
        mcts.SearchConfig(policy="alphago")
    with pytest.raises(ValueError, match="dirichlet_fraction"):
        mcts.SearchConfig(dirichlet_fraction=2.0)
    bad = game.new_state([[1, 2]], [3], game.Rules(n_max=3))
    with pytest.raises(ValueError, match="n_max=4"):
        mcts.make_search(baselines.uniform_evaluate(RULES), RULES, mcts.SearchConfig())(
            None, jax.random.PRNGKey(0), bad)


def test_recurrent_fn_semantics(mlp):
    params, evaluate = mlp
    st = game.new_state([[8, 3], [8, 3], [8, 3], [2, 3, 4], [2, 3, 4]], [24] * 5, RULES)
    # 8*3 solves; 8+3 ends unsolved; pair (0,2) is dead (illegal); 2+3 and 3*4 continue.
    act = jnp.array([1, 0, 6, 0, game.encode_action(1, 2, 1, 4)])
    rec = jax.jit(lambda s, a: mcts.recurrent_fn(params, None, a, s, evaluate, RULES))
    out, child = rec(st, act)
    np.testing.assert_array_equal(out.reward, [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(out.discount, [0, 0, 0, 1, 1])
    _, net_value = evaluate(params, child)
    np.testing.assert_allclose(out.value, [0, 0, 0, net_value[3], net_value[4]], rtol=1e-6)
    legal = np.asarray(game.legal_mask(child, RULES))
    assert (np.asarray(out.prior_logits)[~legal] == mcts.NEG).all()
    assert legal[3].sum() == 6 and not legal[:3].any()
    assert bool(child.failed[2]) and game.values(child, 4) == [2, 12]


def _host_solved_nodes(tree, b, rules, numbers, target):
    """Independent of tree_solution: every visited node's path rebuilt in Python and replayed."""
    parents, acts = np.asarray(tree.parents[b]), np.asarray(tree.action_from_parent[b])
    visits = np.asarray(tree.node_visits[b])
    solved = set()
    for node in np.flatnonzero(visits > 0):
        path, k = [], int(node)
        while k != 0:
            path.append(int(acts[k]))
            k = int(parents[k])
        if path and game.replay(numbers, target, path[::-1], rules).solved:
            solved.add(tuple(path[::-1]))
    return solved


@pytest.fixture(scope="module")
def oracle_search(state):
    cfg = mcts.SearchConfig(num_simulations=16, max_num_considered_actions=4, gumbel_scale=0.0)
    out = mcts.make_search(baselines.oracle_evaluate(RULES), RULES, cfg)(
        None, jax.random.PRNGKey(3), state)
    return jax.device_get(out)


def test_one_move_win(oracle_search):
    b = 5  # [8, 3] -> 24: action 1 = pair (0, 1), op '*'
    assert oracle_search.action[b] == 1
    q = oracle_search.search_tree.summary().qvalues
    assert q[b, 1] == 1.0 and q[b, 0] == 0.0  # reward 1 then discount 0; 8+3 ends at value 0
    np.testing.assert_allclose(np.asarray(oracle_search.action_weights).sum(-1), 1.0, rtol=1e-5)


def test_tree_solution_matches_host_walk(oracle_search):
    tree = oracle_search.search_tree
    found, path = jax.device_get(mcts.tree_solution(tree, RULES))
    for b, (numbers, target) in enumerate(PROBLEMS):
        host = _host_solved_nodes(tree, b, RULES, numbers, target)
        assert bool(found[b]) == bool(host), b
        if found[b]:
            actions = tuple(int(a) for a in path[b] if a >= 0)
            assert actions in host and len(actions) == len(numbers) - 1
            assert mcts.verify(numbers, target, actions, RULES) is not None
    np.testing.assert_array_equal(found, [True, True, False, True, False, True, False])


def assert_same(a, b):
    """Integer/bool leaves equal exactly; float leaves to float32 rounding (per-device kernels)."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(x, y)


def test_sharded_search_equals_single_device(oracle_search, state):
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
    assert state.num.shape[0] % 8  # 7 problems: padded to 8, padding sliced off
    cfg = mcts.SearchConfig(num_simulations=16, max_num_considered_actions=4, gumbel_scale=0.0)
    sharded = mcts.make_search(baselines.oracle_evaluate(RULES), RULES, cfg, mesh=mesh)(
        None, jax.random.PRNGKey(3), state)
    assert_same(oracle_search, sharded)


@pytest.fixture(scope="module")
def episodes(mlp, state):
    params, evaluate = mlp
    cfg = mcts.SearchConfig(num_simulations=16)
    run = mcts.make_episode_runner(evaluate, RULES, cfg)
    ep = run(params, jax.random.PRNGKey(7), state)
    ep2 = run(params, jax.random.PRNGKey(8), state)  # same shape: no retrace
    assert run.jitted._cache_size() == 1
    mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3)
    ep8 = mcts.make_episode_runner(evaluate, RULES, cfg, mesh=mesh)(params, jax.random.PRNGKey(7),
                                                                     state)
    return jax.device_get(ep), jax.device_get(ep2), jax.device_get(ep8), cfg


def test_episode_invariants(episodes):
    ep, _, _, cfg = episodes
    T = RULES.n_max - 1
    assert ep.actions.shape == (len(PROBLEMS), T)
    assert ep.action_weights.shape == (len(PROBLEMS), T, A)
    for b, (numbers, target) in enumerate(PROBLEMS):
        n = len(numbers)
        np.testing.assert_array_equal(ep.active[b], np.arange(T) < n - 1)
        assert (ep.actions[b, n - 1:] == -1).all()
        played = [int(a) for a in ep.actions[b] if a >= 0]
        rep = game.replay(numbers, target, played, RULES)
        assert rep.legal and len(rep.values) == 1
        assert rep.values[0] == Fraction(int(ep.final_num[b]), int(ep.final_den[b]))
        assert rep.solved == bool(ep.solved[b])
        assert ep.num_evals[b] == (n - 1) * (cfg.num_simulations + 1)
        for t in range(n - 1):
            st = jax.tree.map(lambda x, b=b, t=t: x[b, t][None], ep.states)
            np.testing.assert_array_equal(game.legal_mask(st, RULES)[0], ep.legal[b, t])
            assert ep.legal[b, t, ep.actions[b, t]]
            assert ep.action_weights[b, t].sum() == pytest.approx(1.0, abs=1e-5)
            assert (ep.action_weights[b, t][~ep.legal[b, t]] < 1e-6).all()
        assert (ep.action_weights[b, n - 1:] == 0).all()


def test_episode_sharded_equals_single_and_rng_matters(episodes):
    ep, ep2, ep8, _ = episodes
    assert_same(ep, ep8)
    assert not np.array_equal(ep.action_weights, ep2.action_weights)


def test_solutions_are_verified(episodes):
    ep, _, _, _ = episodes
    sols = mcts.solutions(ep, RULES)
    solvable = [solver.solve(n, t, RULES).solvable for n, t in PROBLEMS]
    for (numbers, target), sol, ok, played in zip(PROBLEMS, sols, solvable, ep.solved, strict=True):
        assert sol.played == bool(played)
        assert sol.found <= ok  # never a solution of an unsolvable problem
        if sol.found:
            r = game.replay(numbers, target, sol.actions, RULES)
            assert r.solved and r.solution == sol.expression
            # The expression evaluates to the target with exact arithmetic, independently.
            assert eval(sol.expression, {}, {}) == pytest.approx(target)
    assert sols[5].played  # [8, 3] -> 24 is found by any search


def test_oracle_network_solves_everything_solvable(state):
    """PUCT with a perfect network and greedy acting plays every solvable problem to a solution."""
    cfg = mcts.SearchConfig(policy="muzero", num_simulations=8, temperature=0.0)
    ep = mcts.make_episode_runner(baselines.oracle_evaluate(RULES), RULES, cfg)(
        None, jax.random.PRNGKey(0), state)
    solvable = [solver.solve(n, t, RULES).solvable for n, t in PROBLEMS]
    np.testing.assert_array_equal(ep.solved, solvable)
    assert [s.played for s in mcts.solutions(ep, RULES)] == solvable
