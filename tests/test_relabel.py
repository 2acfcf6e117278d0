"""Hindsight relabelling: relabelled episodes are exactly solved (game.replay), labels are right."""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from search import baselines, game, mcts, problems
from train import relabel

RULES = game.Rules(n_max=4)


@pytest.fixture(scope="module")
def episode():
    """Uniform-prior searched episodes of 48 g24 problems (2 simulations: mostly unsolved)."""
    probs = problems.generate("g24", 48, 0, "train")
    run = mcts.make_episode_runner(baselines.uniform_evaluate(RULES), RULES,
                                   mcts.SearchConfig(num_simulations=2))
    state = problems.problems_to_state(probs, RULES)
    return probs, jax.device_get(run(None, jax.random.key(0), state))


def test_relabelled_episodes_are_exactly_solved(episode):
    probs, ep = episode
    mask = relabel.hindsight_mask(ep, 1.0, 10**6, 0, 1)
    assert 10 < mask.sum() <= (~ep.solved).sum()  # most 2-simulation episodes fail
    traj = jax.device_get(relabel.hindsight(ep, RULES, mask))
    assert traj.solved[mask].all() and not traj.solved[~mask].any()
    assert relabel.verify(traj, RULES) == mask.tolist()  # exact Fraction replay, independent code
    for b in np.flatnonzero(mask):
        played = [int(a) for a in ep.actions[b] if a >= 0]
        assert traj.actions[b][traj.active[b]].tolist() == played  # the moves actually taken
        v = Fraction(int(ep.final_num[b]), int(ep.final_den[b]))
        rep = game.replay(probs[b].numbers, v, played, RULES)
        assert rep.solved and rep.values == (v,) and v != probs[b].target
        start = jax.tree.map(lambda x, b=b: x[b:b + 1, 0], traj.states)
        assert game.values(start, 0) == [Fraction(x) for x in probs[b].numbers]
        # every state of the relabelled episode carries the new target
        assert (traj.states.target_num[b] == v.numerator).all()
        assert (traj.states.target_den[b] == v.denominator).all()
    rows = relabel.trajectory_rows(traj, np.zeros(traj.actions.shape + (5,), np.int32))
    assert len(rows["value"]) == 3 * mask.sum()  # n=4: three moves per relabelled episode
    assert (rows["value"] == 1).all()
    np.testing.assert_array_equal(rows["policy"].sum(-1), 1.0)  # one-hot
    hot = rows["policy"].argmax(-1)
    assert rows["legal"][np.arange(len(hot)), hot].all()  # the taken move was legal


def test_ratio_eligibility_and_determinism(episode):
    _, ep = episode
    full = relabel.hindsight_mask(ep, 1.0, 10**6, 0, 1)
    assert not (full & ep.solved).any()  # solved episodes are never relabelled
    assert not relabel.hindsight_mask(ep, 0.0, 10**6, 0, 1).any()
    half = relabel.hindsight_mask(ep, 0.5, 10**6, 0, 1)
    np.testing.assert_array_equal(half, relabel.hindsight_mask(ep, 0.5, 10**6, 0, 1))
    assert not (half & ~full).any() and 0 < half.sum() < full.sum()
    # targets the tokenizer cannot encode exactly are not relabelled
    small = relabel.hindsight_mask(ep, 1.0, 5, 0, 1)
    big = (np.abs(ep.final_num) > 5) | (ep.final_den > 5)
    assert not (small & big).any() and (small == (full & ~big)).all()
    with pytest.raises(ValueError, match="ratio=1.5 is out of range"):
        relabel.hindsight_mask(ep, 1.5, 10, 0)


def test_solution_trajectories_and_self_play_rows(episode):
    probs, ep = episode
    sols = mcts.solutions(ep, RULES)
    traj = jax.device_get(relabel.solution_trajectories(ep, sols, RULES))
    extra = [s.found and not s.played for s in sols]
    assert traj.solved.tolist() == extra
    assert relabel.verify(traj, RULES) == extra
    for b in np.flatnonzero(extra):  # the REAL target is kept
        assert game.replay(probs[b].numbers, 24, traj.actions[b][traj.active[b]].tolist(),
                           RULES).solved
    rows = relabel.episode_rows(ep, np.zeros(ep.actions.shape + (5,), np.int32))
    assert len(rows["value"]) == ep.active.sum()
    np.testing.assert_allclose(rows["policy"].sum(-1), 1.0, atol=1e-5)  # search policies
    # value 1 exactly for rows of solved episodes or with a solution found at/after the move
    found_later = np.array([[ep.tree_found[b, t:].any() for t in range(3)] for b in range(48)])
    want = (ep.solved[:, None] | found_later)[ep.active]
    np.testing.assert_array_equal(rows["value"], want.astype(np.float32))
    # expert-iteration targets: one-hot played moves of solved episodes, no policy elsewhere
    sol = relabel.episode_rows(ep, np.zeros(ep.actions.shape + (5,), np.int32), "solutions")
    np.testing.assert_array_equal(sol["value"], rows["value"])
    from_solved = np.repeat(ep.solved[:, None], 3, 1)[ep.active]
    assert 0 < from_solved.sum() < len(from_solved)
    np.testing.assert_array_equal(sol["policy"].sum(-1), from_solved.astype(np.float32))
    np.testing.assert_array_equal(sol["policy"][from_solved].argmax(-1), ep.actions[ep.active][
        from_solved])
    with pytest.raises(ValueError, match="policy_targets='x'"):
        relabel.episode_rows(ep, np.zeros(ep.actions.shape + (5,), np.int32), "x")


def test_any_subset_rules_truncate_at_the_new_target():
    """use_all=False: a relabelled trajectory ends as soon as the new target appears."""
    rules = game.Rules(n_max=4, fractions=False, use_all=False)
    start = game.new_state([[2, 3, 4, 6]], [100], rules)
    start = start.replace(target_num=jnp.array([5]))  # 2 + 3 = 5 after the first move
    acts = jnp.array([[game.encode_action(0, 1, 0, 4), game.encode_action(0, 2, 1, 4), 0]])
    traj = jax.device_get(relabel.replay_actions(start, acts, rules))
    assert traj.solved.tolist() == [True]
    assert traj.active.tolist() == [[True, False, False]]
    assert relabel.verify(traj, rules) == [True]


def test_exact_rows_label_every_visited_state_exactly(episode):
    """Value = the solver's verdict on each visited state (not the episode's outcome); policy
    "exact" = uniform over the solver's good moves; other policies as episode_rows."""
    from search import solver

    _, ep = episode
    tokens = np.zeros(ep.actions.shape + (5,), np.int32)
    rows = relabel.exact_rows(ep, tokens, RULES, "exact")
    outcome = relabel.episode_rows(ep, tokens)
    flat = jax.tree.map(lambda x: np.asarray(x)[np.asarray(ep.active)], ep.states)
    value, good = solver.labels_for_states(flat, RULES)
    np.testing.assert_array_equal(rows["value"], value.astype(np.float32))
    assert (rows["value"] > outcome["value"]).any()  # solvable states of failed episodes
    assert not (rows["value"] < outcome["value"]).any()  # outcome 1 is a proof of solvability
    g = good.astype(np.float32)
    want = g / np.maximum(g.sum(-1, keepdims=True), 1)
    np.testing.assert_allclose(rows["policy"], want, atol=1e-6)
    searched = relabel.exact_rows(ep, tokens, RULES, "search")
    np.testing.assert_array_equal(searched["policy"], outcome["policy"])
    np.testing.assert_array_equal(searched["value"], rows["value"])
