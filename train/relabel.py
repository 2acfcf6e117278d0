"""Hindsight relabelling and solution trajectories: searched episodes -> solved training episodes.

Hindsight (``hindsight``): an episode that did not reach its target but ended with one number v
is a solved episode of the SAME numbers with target v. Its states (with the target replaced by v)
get the moves actually taken as one-hot policy targets and value 1. The relabelled trajectories are
rebuilt by stepping the exact engine from the new start state (``replay_actions``), so under
``use_all=False`` a trajectory that reaches v early simply ends there, still solved.
``verify`` re-checks every relabelled trajectory with ``game.replay`` (exact Fractions, shares no
code with the engine).

Solution trajectories (``solution_trajectories``): a problem whose played trajectory failed but
whose search tree held a verified solution (``search.mcts.solutions``) yields that solution with
the REAL target, with the same one-hot/value-1 labels.

Targets a tokenizer cannot represent exactly (``|num|`` or ``den`` above ``max_value``) would be
encoded as an overflow token, i.e. as a different problem; such episodes are not relabelled.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from fractions import Fraction

import chex
import jax
import jax.numpy as jnp
import numpy as np

from search import game, labeller, mcts


@chex.dataclass(frozen=True)
class Trajectories:
    """Batch-major labelled trajectories (T = n_max - 1 moves)."""

    states: game.State  # [E, T, ...] state before move t
    actions: jax.Array  # int32[E, T]; -1 where inactive
    policy: jax.Array  # float32[E, T, A]; one-hot of the move played, 0 where inactive
    legal: jax.Array  # bool[E, T, A]
    active: jax.Array  # bool[E, T]; the move was played from a live state
    solved: jax.Array  # bool[E]; the trajectory ends solved


@functools.partial(jax.jit, static_argnums=2)
def replay_actions(start: game.State, actions_ExT: jax.Array, rules: game.Rules) -> Trajectories:
    """Step the exact engine along ``actions`` (-1 = stop) from ``start`` [E]; jitted, static rules.

    A move is active when it is a legal move of a non-terminal state; later moves of a row whose
    move was inactive are inactive too.
    """
    t_max = rules.n_max - 1
    actions_ExT = jnp.pad(actions_ExT, ((0, 0), (0, t_max - actions_ExT.shape[1])),
                          constant_values=-1)

    def move(carry, a_E):
        st, going_E = carry
        legal_ExA = game.legal_mask(st, rules)
        ok_E = going_E & (a_E >= 0) & jnp.take_along_axis(
            legal_ExA, jnp.maximum(a_E, 0)[:, None], -1)[:, 0]
        nxt = game.step(st, jnp.maximum(a_E, 0), rules)
        nxt = jax.tree.map(lambda x, y: jnp.where(
            ok_E.reshape(ok_E.shape + (1,) * (x.ndim - 1)), x, y), nxt, st)
        onehot_ExA = jax.nn.one_hot(jnp.maximum(a_E, 0), rules.num_actions) * ok_E[:, None]
        return (nxt, ok_E), (st, jnp.where(ok_E, a_E, -1), onehot_ExA, legal_ExA, ok_E)

    going = jnp.ones(actions_ExT.shape[:1], bool)
    (final, _), ys = jax.lax.scan(move, (start, going), actions_ExT.T)
    states, acts, policy, legal, active = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), ys)
    return Trajectories(states=states, actions=acts.astype(jnp.int32), policy=policy, legal=legal,
                        active=active, solved=game.is_solved(final, rules))


def _with_target(state: game.State, num, den) -> game.State:
    return state.replace(target_num=jnp.asarray(num, jnp.int32),
                         target_den=jnp.asarray(den, jnp.int32),
                         moves=jnp.zeros_like(state.moves), failed=jnp.zeros_like(state.failed))


def hindsight_mask(episode: mcts.Episode, ratio: float, max_value: int, seed: int,
                   *key: int) -> np.ndarray:
    """bool[B]: episodes to relabel. Eligible: unsolved, ended with exactly one number (not failed),
    whose value fits ``max_value``; each eligible one is kept with probability ``ratio``
    (a pure function of ``(seed, key)``)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"config.relabel.ratio={ratio} is out of range; allowed 0..1.")
    final = episode.final_state
    one_left = np.asarray(final.live).sum(-1) == 1
    fits = (np.abs(np.asarray(episode.final_num)) <= max_value) & (
        np.asarray(episode.final_den) <= max_value)
    eligible = ~np.asarray(episode.solved) & one_left & ~np.asarray(final.failed) & fits
    draw = np.random.default_rng([seed, *key]).random(eligible.shape[0])
    return eligible & (draw < ratio)


def hindsight(episode: mcts.Episode, rules: game.Rules, mask_B: np.ndarray) -> Trajectories:
    """Relabelled trajectories [B, T] of the episodes in ``mask_B`` (others are all-inactive)."""
    start = jax.tree.map(lambda x: x[:, 0], episode.states)
    start = _with_target(start, episode.final_num, episode.final_den)
    actions = np.where(np.asarray(mask_B)[:, None], np.asarray(episode.actions), -1)
    return replay_actions(start, jnp.asarray(actions, jnp.int32), rules)


def solution_trajectories(episode: mcts.Episode, sols: Sequence[mcts.Solution],
                          rules: game.Rules) -> Trajectories:
    """Trajectories [B, T] of verified in-tree solutions of problems whose played trajectory
    failed (``sols`` from ``search.mcts.solutions``); other rows are all-inactive."""
    b, t = np.asarray(episode.actions).shape
    actions = np.full((b, t), -1, np.int32)
    for k, s in enumerate(sols):
        if s.found and not s.played:
            actions[k, :len(s.actions)] = s.actions
    start = jax.tree.map(lambda x: x[:, 0], episode.states)
    return replay_actions(start, jnp.asarray(actions), rules)


def verify(traj: Trajectories, rules: game.Rules) -> list[bool]:
    """Host-side: each row with an active move is exactly solved under ``game.replay``; rows
    without moves give False."""
    tr = jax.device_get(traj)
    out = []
    for k in range(tr.actions.shape[0]):
        acts = [int(a) for a in tr.actions[k] if a >= 0]
        if not acts:
            out.append(False)
            continue
        start = jax.tree.map(lambda x: x[:, 0], tr.states)
        numbers = game.values(start, k)
        target = Fraction(int(start.target_num[k]), int(start.target_den[k]))
        out.append(game.replay(numbers, target, acts, rules).solved)
    return out


# ----------------------------------------------------------------------------- training rows


def _rows(tokens, policy, legal, value, mask) -> dict[str, np.ndarray]:
    """Flatten [B, T, ...] label arrays and keep the rows where ``mask`` is True."""
    m = np.asarray(mask).reshape(-1)
    flat = lambda x: np.asarray(x).reshape((m.shape[0],) + np.shape(x)[2:])[m]
    return {"tokens": flat(tokens).astype(np.int32), "policy": flat(policy).astype(np.float32),
            "legal": flat(legal).astype(bool), "value": flat(value).astype(np.float32)}


def episode_targets(episode: mcts.Episode, policy: str = "search") -> tuple[np.ndarray, np.ndarray]:
    """(policy float[B, T, A], outcome value bool[B, T]) of self-play: the value is 1 if the
    played trajectory solved the problem or a search tree at this move or later held a solution
    (the state is then provably solvable), else 0. Policy targets:

    - ``"search"`` (AlphaZero): the search's improved policy (``action_weights``) on every row;
    - ``"solutions"`` (expert iteration): one-hot of the move played in SOLVED episodes only;
      other rows get an all-zero policy, which the loss skips (they train the value alone).
      Early on the improved policy is close to the prior (the value is uninformative), so
      most of its rows would only teach the network its own output.
    """
    if policy not in ("search", "solutions"):
        raise ValueError(f"config.sl.policy_targets={policy!r}; allowed 'search', 'solutions' "
                         "(and 'exact' with sl.value_targets='exact').")
    found = np.asarray(episode.tree_found)
    found_later = np.flip(np.cumsum(np.flip(found, -1), -1), -1) > 0  # any(found[t:])
    solved = np.asarray(episode.solved)
    target = np.asarray(episode.action_weights)
    if policy == "solutions":
        acts = np.asarray(episode.actions)
        hot = np.eye(target.shape[-1], dtype=np.float32)[np.maximum(acts, 0)]
        target = hot * (solved[:, None] & (acts >= 0))[..., None]
    return target, solved[:, None] | found_later


def episode_rows(episode: mcts.Episode, tokens_BxTxL: np.ndarray,
                 policy: str = "search") -> dict[str, np.ndarray]:
    """Self-play rows with outcome value targets and ``policy`` targets (``episode_targets``)."""
    target, value = episode_targets(episode, policy)
    return _rows(tokens_BxTxL, target, episode.legal, value, episode.active)


def exact_rows(episode: mcts.Episode, tokens_BxTxL: np.ndarray, rules: game.Rules,
               policy: str = "search") -> dict[str, np.ndarray]:
    """Self-play rows whose value is the exact label of each visited state (``search.labeller``:
    solvable or not) instead of the episode outcome, which calls every state of an unsolved
    episode unsolvable. ``policy="exact"``: uniform over the moves that keep the state solvable
    (the stream's target, all-zero on unsolvable states); otherwise as ``episode_targets``.
    Exact labels cost ~1-3 ms per 6-number state on one core, ~0.05 ms at n <= 4."""
    st, active = jax.device_get(episode.states), np.asarray(episode.active)
    b, t = active.shape
    idx = np.flatnonzero(active.reshape(-1))
    flat = lambda x: np.asarray(x).reshape((b * t,) + np.shape(x)[2:])[idx]
    value_r, good_rxA = labeller.label_batch(flat(st.num), flat(st.den), flat(st.live),
                                            flat(st.target_num), flat(st.target_den), rules)
    value = np.zeros(b * t, np.float32)
    value[idx] = value_r
    if policy == "exact":
        good = good_rxA.astype(np.float32)
        target = np.zeros((b * t, good.shape[-1]), np.float32)
        target[idx] = good / np.maximum(good.sum(-1, keepdims=True), 1.0)
        target = target.reshape(b, t, -1)
    else:
        target, _ = episode_targets(episode, policy)
    return _rows(tokens_BxTxL, target, episode.legal, value.reshape(b, t), active)


def trajectory_rows(traj: Trajectories, tokens_ExTxL: np.ndarray) -> dict[str, np.ndarray]:
    """Rows of solved trajectories: one-hot policy on the move taken, value 1."""
    active = np.asarray(traj.active) & np.asarray(traj.solved)[:, None]
    return _rows(tokens_ExTxL, traj.policy, traj.legal, np.ones(active.shape, np.float32), active)


def concat_rows(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
