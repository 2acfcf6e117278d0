"""Batched, jit-compiled MCTS over the exact game with mctx (Gumbel MuZero default, PUCT option).

The search never sees a model: it takes ``evaluate(params, state) -> (logits_BxA, value_B)``
(``search.types.Evaluate``; illegal logits may already be ``game.ILLEGAL_LOGIT``, value in
[0, 1]). The mctx embedding is the compact ``game.State`` itself; ``recurrent_fn`` steps the exact
rules and re-evaluates. Results are ``search.types.Episode`` and ``Solution``.

Value semantics: reward 1 on the move that reaches a solved state, discount 0 into any terminal
state and value 0 there, so a root value / Q is the probability-like chance of solving.

Per-problem randomness: every problem gets its own key ``fold_in(rng, index)`` and the mctx search
is ``vmap``-ed over single-problem searches. Answers therefore do not depend on the batch size, on
padding, or on how the batch is split over devices (``make_search`` / ``make_episode_runner`` pad to
a multiple of the mesh size and ``shard_map`` the batch over the ``data`` axis).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import mctx
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from search import game
from search.types import Episode, Evaluate, Solution  # noqa: F401  (re-exported)

NEG = game.ILLEGAL_LOGIT  # logit of an illegal action (the ``Evaluate`` convention)
POLICIES = ("gumbel", "muzero")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Search hyperparameters (hashable: a static argument of jitted functions).

    policy: "gumbel" (mctx.gumbel_muzero_policy) or "muzero" (PUCT + Dirichlet noise).
    gumbel_scale: 0 makes Gumbel search deterministic (evaluation); 1 for self-play.
    temperature: muzero only, acting on visit_counts ** (1 / temperature); ~0 is greedy.
    """

    policy: str = "gumbel"
    num_simulations: int = 32
    max_num_considered_actions: int = 16
    gumbel_scale: float = 1.0
    dirichlet_alpha: float = 0.3
    dirichlet_fraction: float = 0.25
    pb_c_init: float = 1.25
    pb_c_base: float = 19652.0
    temperature: float = 1.0

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"SearchConfig.policy={self.policy!r} is unknown; allowed {POLICIES}.")
        if self.num_simulations < 1:
            raise ValueError(
                f"SearchConfig.num_simulations={self.num_simulations} is out of range; allowed "
                ">= 1 (one simulation already expands one child of the root).")
        if self.max_num_considered_actions < 1:
            raise ValueError(f"SearchConfig.max_num_considered_actions="
                             f"{self.max_num_considered_actions} is out of range; allowed >= 1.")
        if not 0.0 <= self.dirichlet_fraction <= 1.0:
            raise ValueError(f"SearchConfig.dirichlet_fraction={self.dirichlet_fraction} is out "
                             "of range; allowed 0..1.")
        if self.temperature < 0 or self.gumbel_scale < 0 or self.dirichlet_alpha <= 0:
            raise ValueError("SearchConfig: temperature and gumbel_scale must be >= 0 and "
                             f"dirichlet_alpha > 0; got {self.temperature}, {self.gumbel_scale}, "
                             f"{self.dirichlet_alpha}.")


# ----------------------------------------------------------------------------- mctx functions


def _masked_eval(params, state: game.State, evaluate: Evaluate, rules: game.Rules):
    """Network output with illegal logits at NEG, value 0 at terminals; plus terminal flag."""
    logits_BxA, value_B = evaluate(params, state)
    legal_BxA = game.legal_mask(state, rules)
    terminal_B = ~legal_BxA.any(-1)  # legal_mask is all-False exactly on terminal states
    logits_BxA = jnp.where(legal_BxA, logits_BxA.astype(jnp.float32), NEG)
    value_B = jnp.where(terminal_B, 0.0, value_B.astype(jnp.float32))
    return logits_BxA, value_B, legal_BxA, terminal_B


def root_fn(params, state: game.State, evaluate: Evaluate, rules: game.Rules):
    """(mctx.RootFnOutput, invalid_actions_BxA) for a batch of root states."""
    logits_BxA, value_B, legal_BxA, _ = _masked_eval(params, state, evaluate, rules)
    root = mctx.RootFnOutput(prior_logits=logits_BxA, value=value_B, embedding=state)
    return root, ~legal_BxA


def recurrent_fn(params, rng, action_B, state: game.State, evaluate: Evaluate,
                 rules: game.Rules):
    """mctx recurrent function over the exact dynamics (rng unused: the game is deterministic)."""
    del rng
    child = game.step(state, action_B, rules)
    logits_BxA, value_B, _, terminal_B = _masked_eval(params, child, evaluate, rules)
    out = mctx.RecurrentFnOutput(
        reward=game.reward(child, rules),
        discount=jnp.where(terminal_B, 0.0, 1.0).astype(jnp.float32),
        prior_logits=logits_BxA,
        value=value_B,
    )
    return out, child


def _search_batch(params, rng, state: game.State, evaluate: Evaluate, rules: game.Rules,
                  cfg: SearchConfig) -> mctx.PolicyOutput:
    """Plain batched mctx search (one key for the whole batch)."""
    root, invalid_BxA = root_fn(params, state, evaluate, rules)
    rec = functools.partial(recurrent_fn, evaluate=evaluate, rules=rules)
    common = dict(params=params, rng_key=rng, root=root, recurrent_fn=rec,
                  num_simulations=cfg.num_simulations, invalid_actions=invalid_BxA,
                  max_depth=rules.n_max - 1)
    if cfg.policy == "gumbel":
        return mctx.gumbel_muzero_policy(
            **common, max_num_considered_actions=cfg.max_num_considered_actions,
            gumbel_scale=cfg.gumbel_scale)
    return mctx.muzero_policy(
        **common, dirichlet_fraction=cfg.dirichlet_fraction, dirichlet_alpha=cfg.dirichlet_alpha,
        pb_c_init=cfg.pb_c_init, pb_c_base=cfg.pb_c_base, temperature=cfg.temperature)


def problem_keys(rng: jax.Array, batch: int) -> jax.Array:
    """Per-problem keys ``fold_in(rng, i)``: a prefix of the batch gets the same keys."""
    return jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(batch))


def search_keys(params, keys_B, state: game.State, evaluate: Evaluate, rules: game.Rules,
                cfg: SearchConfig) -> mctx.PolicyOutput:
    """Search with one key per problem (vmap of single-problem searches; batched network calls)."""
    one = lambda key, st: _search_batch(params, key, st, evaluate, rules, cfg)
    out = jax.vmap(one)(keys_B, jax.tree.map(lambda x: x[:, None], state))
    return jax.tree.map(lambda x: x[:, 0], out)


def search(params, rng: jax.Array, state: game.State, evaluate: Evaluate, rules: game.Rules,
           cfg: SearchConfig) -> mctx.PolicyOutput:
    """One search per problem of the batch. Pure and jittable (rules, cfg, evaluate static).

    Returns mctx.PolicyOutput: action_B, action_weights_BxA, search_tree (batch-major mctx.Tree
    with ``embeddings`` a game.State of shape [B, S+1, ...]).
    """
    _check_state(state, rules)
    return search_keys(params, problem_keys(rng, state.num.shape[0]), state, evaluate, rules, cfg)


def _check_state(state: game.State, rules: game.Rules) -> None:
    if state.num.ndim != 2 or state.num.shape[-1] != rules.n_max:
        raise ValueError(f"state.num has shape {state.num.shape}; expected [B, n_max={rules.n_max}]"
                         " (build states with game.new_state using the same Rules).")


# ----------------------------------------------------------------------------- solutions in trees


def tree_solution(tree: mctx.Tree, rules: game.Rules) -> tuple[jax.Array, jax.Array]:
    """Find a solved node anywhere in a batch of search trees and its action path from the root.

    Returns (found_B bool, actions_BxD int32 with D = n_max - 1, root-to-node order, -1 padded).
    Jittable; verify the path on the host with ``verify`` (game.replay shares no code with step).
    """
    solved_BxN = game.is_solved(tree.embeddings, rules) & (tree.node_visits > 0)
    found_B = solved_BxN.any(-1)
    node_B = jnp.argmax(solved_BxN, axis=-1).astype(jnp.int32)
    depth = rules.n_max - 1
    rev, steps_B = [], jnp.zeros_like(node_B)
    for _ in range(depth):  # walk to the root; a path is never longer than n_max - 1 moves
        at_root = node_B == mctx.Tree.ROOT_INDEX
        rev.append(jnp.where(at_root, -1, _at(tree.action_from_parent, node_B)))
        steps_B += (~at_root).astype(jnp.int32)
        node_B = jnp.where(at_root, node_B, _at(tree.parents, node_B))
    rev_BxD = jnp.stack(rev, axis=-1)
    k = jnp.arange(depth)
    idx_BxD = jnp.clip(steps_B[:, None] - 1 - k, 0, depth - 1)
    path_BxD = jnp.where(k < steps_B[:, None], jnp.take_along_axis(rev_BxD, idx_BxD, -1), -1)
    found_B &= steps_B > 0  # a solved root is not a found solution
    return found_B, jnp.where(found_B[:, None], path_BxD, -1).astype(jnp.int32)


def _at(x_BxN, node_B):
    return jnp.take_along_axis(x_BxN, node_B[:, None], axis=-1)[:, 0]


def initial_problems(state: game.State) -> list[tuple[list, Any]]:
    """Host-side: (numbers, target) of each state of a 1-D batch, numbers in slot order."""
    live = np.asarray(state.live)
    out = []
    for b in range(live.shape[0]):
        k = int(live[b].sum())
        if not live[b, :k].all():
            raise ValueError(f"state {b} has dead slots before live ones ({live[b].tolist()}); "
                             "solutions can only be replayed from states built by game.new_state.")
        tgt = Fraction(int(state.target_num[b]), int(state.target_den[b]))
        out.append((game.values(state, b), tgt))
    return out


def verify(numbers, target, actions, rules: game.Rules) -> str | None:
    """Host-side: the infix expression if ``actions`` solves (numbers, target), else None."""
    actions = [int(a) for a in actions if int(a) >= 0]
    if not actions:
        return None
    r = game.replay(numbers, target, actions, rules)
    return r.solution


# ----------------------------------------------------------------------------- sharding


def shard_batch(fn: Callable, mesh: Mesh | None) -> Callable:
    """Wrap ``fn(params, keys_B, state_B) -> pytree with leading B`` for a device mesh.

    The batch is split over ALL mesh axes (pure data parallelism; parameters are replicated). It
    is padded (repeating the last row) to a multiple of ``mesh.size`` and the padding sliced off,
    so any batch size works. ``mesh=None`` returns ``fn`` (default device).
    """
    if mesh is None:
        return fn
    batch_spec = P(tuple(mesh.axis_names))
    sharded = jax.shard_map(fn, mesh=mesh, in_specs=(P(), batch_spec, batch_spec),
                            out_specs=batch_spec, check_vma=False)
    explicit = any(t == AxisType.Explicit for t in mesh.axis_types)
    place = lambda x, spec: (jax.reshard(x, NamedSharding(mesh, spec)) if explicit else
                             jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec)))

    def wrapped(params, keys_B, state):
        b = keys_B.shape[0]
        pad = -b % mesh.size
        rows = np.minimum(np.arange(b + pad), b - 1)  # pad by repeating the last problem
        padf = lambda x: jnp.take(x, rows, axis=0) if pad else x
        keys_B, state = place(padf(keys_B), batch_spec), jax.tree.map(
            lambda x: place(padf(x), batch_spec), state)
        params = jax.tree.map(lambda x: place(x, P()), params)
        out = sharded(params, keys_B, state)
        if not pad:
            return out
        # Explicit meshes cannot slice a sharded axis to a non-multiple: gather first.
        return jax.tree.map(lambda x: place(x, P())[:b], out)

    return wrapped


def make_batched(fn: Callable, rules: game.Rules, mesh: Mesh | None = None) -> Callable:
    """Jit ``fn(params, keys_B, state) -> batch-major pytree`` as ``f(params, rng, state)``.

    Keys are per problem (``problem_keys``); the batch is sharded over ``mesh`` (``shard_batch``).
    Compiled once per batch shape; ``f.jitted`` is the jitted function (for cache checks).
    """
    body = shard_batch(fn, mesh)
    jitted = jax.jit(lambda params, rng, state: body(params, problem_keys(rng, state.num.shape[0]),
                                                     state))

    def checked(params, rng: jax.Array, state: game.State):
        _check_state(state, rules)
        return jitted(params, rng, state)

    checked.jitted = jitted
    return checked


def make_search(evaluate: Evaluate, rules: game.Rules, cfg: SearchConfig,
                mesh: Mesh | None = None) -> Callable:
    """Jitted ``search_fn(params, rng, state) -> mctx.PolicyOutput`` (compiled once per shape)."""
    return make_batched(functools.partial(search_keys, evaluate=evaluate, rules=rules, cfg=cfg),
                        rules, mesh)


# ----------------------------------------------------------------------------- episodes


def run_episodes(params, keys_B, state: game.State, evaluate: Evaluate, rules: game.Rules,
                 cfg: SearchConfig) -> Episode:
    """Play every problem to the end: search at each move, act, record. Pure, jittable.

    Acting: the Gumbel policy's action (gumbel_scale=0: deterministic) or, for "muzero", a sample
    of visit_counts ** (1 / temperature). Terminal states pass through unchanged.
    """

    def move(st, t):
        out = search_keys(params, jax.vmap(jax.random.fold_in, (0, None))(keys_B, t), st,
                          evaluate, rules, cfg)
        legal_BxA = game.legal_mask(st, rules)
        active_B = legal_BxA.any(-1)
        action_B = jnp.where(active_B, out.action, -1).astype(jnp.int32)
        nxt = game.step(st, jnp.maximum(action_B, 0), rules)
        nxt = jax.tree.map(lambda a, b: jnp.where(
            active_B.reshape(active_B.shape + (1,) * (a.ndim - 1)), a, b), nxt, st)
        found_B, path_BxD = tree_solution(out.search_tree, rules)
        rec = (st, action_B, out.action_weights * active_B[:, None], legal_BxA, active_B,
               out.search_tree.node_values[:, mctx.Tree.ROOT_INDEX], found_B & active_B, path_BxD)
        return nxt, rec

    final, ys = jax.lax.scan(move, state, jnp.arange(rules.n_max - 1))
    ys = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), ys)  # [T, B, ...] -> [B, T, ...]
    states, actions, weights, legal, active, root_values, found, paths = ys
    first_live = jnp.argmax(final.live, axis=-1)[:, None]
    pick = lambda x: jnp.take_along_axis(x, first_live, axis=-1)[:, 0]
    return Episode(
        states=states, actions=actions, action_weights=weights, legal=legal, active=active,
        root_values=root_values, tree_found=found, tree_actions=paths, final_state=final,
        solved=game.is_solved(final, rules), final_num=pick(final.num), final_den=pick(final.den),
        num_evals=active.sum(-1).astype(jnp.int32) * (cfg.num_simulations + 1),
    )


def make_episode_runner(evaluate: Evaluate, rules: game.Rules, cfg: SearchConfig,
                        mesh: Mesh | None = None) -> Callable:
    """Jitted ``run(params, rng, state) -> Episode``, batch sharded over ``mesh`` when given."""
    return make_batched(functools.partial(run_episodes, evaluate=evaluate, rules=rules, cfg=cfg),
                        rules, mesh)


def solutions(episode: Episode, rules: game.Rules) -> list[Solution]:
    """Verify played and in-tree solutions of each problem with ``game.replay`` (host-side)."""
    ep = jax.device_get(episode)
    start = jax.tree.map(lambda x: x[:, 0], ep.states)
    out = []
    for b, (numbers, target) in enumerate(initial_problems(start)):
        played = [int(a) for a in ep.actions[b] if a >= 0]
        expr = verify(numbers, target, played, rules)
        if expr is not None:
            out.append(Solution(True, True, tuple(played), expr))
            continue
        best = None
        for t in np.flatnonzero(ep.tree_found[b]):
            cand = played[:t] + [int(a) for a in ep.tree_actions[b, t] if a >= 0]
            if (e := verify(numbers, target, cand, rules)) is not None:
                best = Solution(False, True, tuple(cand), e)
                break
        out.append(best or Solution(False, False, None, None))
    return out
