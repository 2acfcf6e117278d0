"""Baselines measured in the same units as MCTS: network evaluations, FLOPs per problem, wall time.

* ``exhaustive``: budgeted DFS/BFS over the real game tree, no network (host-side Python with
  exact Fractions; one "evaluation" = one generated state).
* ``value_beam`` (TS-LLM BFS-V) and ``value_dfs`` (TS-LLM DFS-V, pruning by value): batched and
  jitted, driven by an ``evaluate`` of type ``search.types.Evaluate``.
* ``sample``: policy-only rollouts, pass@k and majority vote over the final value.
* ``uniform_evaluate`` gives MCTS a uniform prior and zero value (search without learning);
  ``oracle_evaluate`` is the solver as a perfect network (an upper bound; host callback, slow).

FLOPs per problem = evaluations x ``flops_per_eval`` (the caller's forward FLOPs per state).
"""

from __future__ import annotations

import collections
import functools
import itertools
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

from search import game, solver
from search.mcts import NEG
from search.types import Evaluate, Result, Rollouts  # noqa: F401  (re-exported)


def uniform_evaluate(rules: game.Rules, value: float = 0.0) -> Evaluate:
    """``evaluate`` with a uniform prior over legal actions and a constant value (no network)."""

    def evaluate(params, state: game.State):
        del params
        logits_BxA = jnp.where(game.legal_mask(state, rules), 0.0, NEG)
        return logits_BxA, jnp.full(state.num.shape[:-1], value, jnp.float32)

    return evaluate


def oracle_evaluate(rules: game.Rules, bad_logit: float = -4.0) -> Evaluate:
    """The exact solver as a network: value = solvable, logits 0 on solution-keeping moves.

    Runs ``solver.labels_for_states`` in a host callback (works under jit/vmap); for tests and
    upper bounds on small problems only.
    """

    def host(num, den, live, tnum, tden, moves, failed):
        shape = num.shape[:-1]
        flat = lambda x: np.asarray(x).reshape((-1,) + x.shape[len(shape):])
        st = game.State(num=flat(num), den=flat(den), live=flat(live), target_num=flat(tnum),
                        target_den=flat(tden), moves=flat(moves), failed=flat(failed))
        value, good = solver.labels_for_states(st, rules)
        return (good.reshape(shape + (rules.num_actions,)), value.reshape(shape))

    def evaluate(params, state: game.State):
        del params
        b = state.num.shape[:-1]
        out = (jax.ShapeDtypeStruct(b + (rules.num_actions,), jnp.bool_),
               jax.ShapeDtypeStruct(b, jnp.bool_))
        good_BxA, value_B = jax.pure_callback(
            host, out, state.num, state.den, state.live, state.target_num, state.target_den,
            state.moves, state.failed, vmap_method="expand_dims")
        logits_BxA = jnp.where(good_BxA, 0.0, bad_logit)
        logits_BxA = jnp.where(game.legal_mask(state, rules), logits_BxA, NEG)
        return logits_BxA, value_B.astype(jnp.float32)

    return evaluate


# ----------------------------------------------------------------------------- results


def _flat_eval(params, st: game.State, evaluate: Evaluate, lead: tuple[int, ...]):
    """Evaluate states with leading axes ``lead`` (evaluate takes a 1-D batch)."""
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[len(lead):]), st)
    logits, value = evaluate(params, flat)
    return logits.reshape(lead + logits.shape[-1:]), value.reshape(lead)


def _add_axis(st: game.State, size: int) -> game.State:
    """Repeat states along a new axis right after their batch axes: [*lead] -> [*lead, size]."""
    lead = st.moves.ndim
    return jax.tree.map(lambda x: jnp.repeat(jnp.expand_dims(x, lead), size, axis=lead), st)


def _expand(st: game.State, logits, valid, expand: int, rules: game.Rules):
    """Children of the top-``expand`` legal actions by prior: (children [..., E], actions, ok)."""
    masked = jnp.where(game.legal_mask(st, rules) & valid[..., None], logits, -jnp.inf)
    top_v, top_a = jax.lax.top_k(masked, min(expand, rules.num_actions))  # [..., E]
    children = game.step(_add_axis(st, top_a.shape[-1]), top_a, rules)
    return children, top_a.astype(jnp.int32), top_v > -jnp.inf


def _with_step(paths, depth, actions):
    """paths [..., D] with entry ``depth`` set to ``actions`` (broadcast over a new child axis)."""
    d = paths.shape[-1]
    paths = jnp.repeat(paths[..., None, :], actions.shape[-1], axis=-2)
    return jnp.where(jnp.arange(d) == depth[..., None, None], actions[..., None], paths)


def _first_solution(solved, paths, found, sol):
    """Keep the first solution: (found, sol) updated with the first solved child, if any."""
    idx = jnp.argmax(solved, axis=-1)
    new = jnp.take_along_axis(paths, idx[:, None, None], axis=1)[:, 0]
    take = ~found & solved.any(-1)
    return found | take, jnp.where(take[:, None], new, sol)


def _merge_k_e(x):
    """[B, K, E, ...] -> [B, K*E, ...]."""
    return x.reshape((x.shape[0], -1) + x.shape[3:])


def _take_rows(x, idx):
    """Rows ``idx`` [B, K] of axis 1 of x [B, M, ...]."""
    return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), 1)


# ----------------------------------------------------------------------------- value-guided


def value_beam(params, keys_B, state: game.State, evaluate: Evaluate, rules: game.Rules,
               beam: int, expand: int) -> Result:
    """TS-LLM BFS-V: per depth, expand the top-``expand`` prior moves of each of the ``beam``
    states, evaluate all children, keep the ``beam`` best by value (solved = best, dead = worst).

    Deterministic (keys unused). Evaluations: the root plus every legal child generated.
    """
    del keys_B
    b, d = state.num.shape[0], rules.n_max - 1
    logits, _ = evaluate(params, state)
    st, lg = _add_axis(state, beam), jnp.repeat(logits[:, None], beam, axis=1)  # [B, K, ...]
    valid = jnp.broadcast_to(jnp.arange(beam) == 0, (b, beam))
    paths = jnp.full((b, beam, d), -1, jnp.int32)
    evals, found, sol = jnp.ones((b,), jnp.int32), jnp.zeros((b,), bool), jnp.full((b, d), -1)
    for depth in range(d):
        kids, acts, ok = _expand(st, lg, valid, expand, rules)  # [B, K, E]
        e = acts.shape[-1]
        kid_logits, kid_value = _flat_eval(params, kids, evaluate, (b, beam, e))
        solved = game.is_solved(kids, rules) & ok
        alive = game.legal_mask(kids, rules).any(-1)
        score = jnp.where(solved, 2.0, jnp.where(alive, kid_value, -1.0))
        score = jnp.where(ok, score, -jnp.inf).reshape(b, beam * e)
        kid_paths = _with_step(paths, jnp.full((b, beam), depth), acts).reshape(b, beam * e, d)
        evals += jnp.where(found, 0, ok.sum((1, 2))).astype(jnp.int32)  # stop at a solution
        found, sol = _first_solution(solved.reshape(b, -1), kid_paths, found, sol)
        top_s, idx = jax.lax.top_k(score, beam)
        take = functools.partial(_take_rows, idx=idx)
        st = jax.tree.map(lambda x: take(_merge_k_e(x)), kids)  # noqa: B023 (used at once)
        lg, paths = take(_merge_k_e(kid_logits)), take(kid_paths)
        valid = top_s > -jnp.inf
    return Result(solved=found, actions=sol.astype(jnp.int32), evals=evals, majority=found)


def value_dfs(params, keys_B, state: game.State, evaluate: Evaluate, rules: game.Rules,
              expand: int, threshold: float, max_evals: int) -> Result:
    """TS-LLM DFS-V: depth-first over the top-``expand`` prior moves, children ordered by value,
    pruning children whose value < ``threshold``; stops at a solution or ``max_evals``.

    Batched lockstep ``while_loop`` with an explicit per-problem stack. Deterministic.
    """
    del keys_B
    b, d, n_act = state.num.shape[0], rules.n_max - 1, rules.num_actions
    e = min(expand, n_act)
    cap = d * e + 1  # a DFS stack never holds more than (E - 1) per level + 1
    logits, _ = evaluate(params, state)
    stack = jax.tree.map(lambda x: jnp.zeros((b, cap) + x.shape[1:], x.dtype), state)
    stack = jax.tree.map(lambda s, x: s.at[:, 0].set(x), stack, state)
    carry = dict(st=stack, lg=jnp.zeros((b, cap, n_act)).at[:, 0].set(logits),
                 paths=jnp.full((b, cap, d), -1, jnp.int32), sp=jnp.ones((b,), jnp.int32),
                 evals=jnp.ones((b,), jnp.int32), found=jnp.zeros((b,), bool),
                 sol=jnp.full((b, d), -1, jnp.int32))
    rows = jnp.arange(b)[:, None]

    def running(c):
        return ~c["found"] & (c["sp"] > 0) & (c["evals"] < max_evals)

    def body(c):
        active = running(c)
        top = jnp.maximum(c["sp"] - 1, 0)
        pop = lambda x: x[jnp.arange(b), top]
        st, lg, path = jax.tree.map(pop, c["st"]), pop(c["lg"]), pop(c["paths"])
        kids, acts, ok = _expand(st, lg, active, e, rules)  # [B, E]
        kid_logits, kid_value = _flat_eval(params, kids, evaluate, (b, e))
        solved = game.is_solved(kids, rules) & ok
        kid_paths = _with_step(path, (path >= 0).sum(-1), acts)  # [B, E, D]
        found, sol = _first_solution(solved, kid_paths, c["found"], c["sol"])
        keep = ok & ~solved & game.legal_mask(kids, rules).any(-1) & (kid_value >= threshold)
        order = jnp.argsort(jnp.where(keep, kid_value, -jnp.inf), axis=-1)  # best pushed last
        keep_o = jnp.take_along_axis(keep, order, -1)
        sp = c["sp"] - active.astype(jnp.int32)
        pos = jnp.where(keep_o, sp[:, None] + jnp.cumsum(keep_o, -1) - 1, cap)  # cap: dropped
        push = lambda s, x: s.at[rows, pos].set(jnp.take_along_axis(
            x, order.reshape(order.shape + (1,) * (x.ndim - 2)), 1), mode="drop")
        return dict(st=jax.tree.map(push, c["st"], kids), lg=push(c["lg"], kid_logits),
                    paths=push(c["paths"], kid_paths), sp=sp + keep_o.sum(-1).astype(jnp.int32),
                    evals=c["evals"] + ok.sum(-1).astype(jnp.int32), found=found, sol=sol)

    c = jax.lax.while_loop(lambda c: running(c).any(), body, carry)
    return Result(solved=c["found"], actions=c["sol"], evals=c["evals"], majority=c["found"])


# ----------------------------------------------------------------------------- policy sampling


def sample_rollouts(params, keys_B, state: game.State, evaluate: Evaluate, rules: game.Rules,
                    k: int, temperature: float = 1.0) -> Rollouts:
    """k independent rollouts of the policy (softmax(logits / temperature); 0 = greedy)."""
    b, d = state.num.shape[0], rules.n_max - 1
    keys = jax.vmap(lambda key: jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(k)))(
        keys_B).reshape((b * k,) + keys_B.shape[1:])
    st0 = jax.tree.map(lambda x: x.reshape((b * k,) + x.shape[2:]), _add_axis(state, k))

    def move(st, t):
        logits, _ = evaluate(params, st)
        legal = game.legal_mask(st, rules)
        logits = jnp.where(legal, logits, -jnp.inf)
        if temperature > 0:
            act = jax.vmap(jax.random.categorical)(
                jax.vmap(jax.random.fold_in, (0, None))(keys, t), logits / temperature)
        else:
            act = jnp.argmax(logits, -1)
        active = legal.any(-1)
        nxt = game.step(st, act, rules)
        nxt = jax.tree.map(lambda a, o: jnp.where(
            active.reshape(active.shape + (1,) * (a.ndim - 1)), a, o), nxt, st)
        return nxt, (jnp.where(active, act, -1).astype(jnp.int32), active)

    final, (acts, active) = jax.lax.scan(move, st0, jnp.arange(d))
    first = jnp.argmax(final.live, -1)[:, None]
    pick = lambda x: jnp.take_along_axis(x, first, -1)[:, 0].reshape(b, k)
    return Rollouts(
        actions=acts.T.reshape(b, k, d), solved=game.is_solved(final, rules).reshape(b, k),
        complete=((game.num_live(final) == 1) & ~final.failed).reshape(b, k),
        final_num=pick(final.num), final_den=pick(final.den),
        evals=active.sum(0).astype(jnp.int32).reshape(b, k))


def pass_and_majority(r: Rollouts) -> Result:
    """pass@k (any rollout solved) and majority vote (the most common complete final value, ties
    to the earliest rollout, is a solution); evaluations summed over the k rollouts."""
    same = (r.complete[:, :, None] & r.complete[:, None, :] &
            (r.final_num[:, :, None] == r.final_num[:, None, :]) &
            (r.final_den[:, :, None] == r.final_den[:, None, :]))  # [B, k, k]
    mode = jnp.argmax(same.sum(-1), axis=-1)
    majority = jnp.take_along_axis(r.solved, mode[:, None], 1)[:, 0]
    first = jnp.argmax(r.solved, axis=-1)
    sol = jnp.take_along_axis(r.actions, first[:, None, None], 1)[:, 0]
    solved = r.solved.any(-1)
    return Result(solved=solved, actions=jnp.where(solved[:, None], sol, -1),
                  evals=r.evals.sum(-1), majority=majority)


def sample(params, keys_B, state: game.State, evaluate: Evaluate, rules: game.Rules, k: int,
           temperature: float = 1.0) -> Result:
    """Policy-only sampling: pass@k and majority over k rollouts."""
    rollouts = sample_rollouts(params, keys_B, state, evaluate, rules, k, temperature)
    return pass_and_majority(rollouts)


# ----------------------------------------------------------------------------- exhaustive


def _ops(x: Fraction, y: Fraction, rules: game.Rules):
    """(op, result) of the legal ops on (x, y), in game.OPS order."""
    for op, r in enumerate((x + y, x * y, x - y, y - x, x / y if y else None,
                            y / x if x else None)):
        if r is None or abs(r.numerator) > rules.max_abs or r.denominator > rules.max_abs:
            continue
        if not rules.fractions and (r.denominator != 1 or r <= 0):
            continue
        yield op, r


def exhaustive(numbers, target, rules: game.Rules, node_budget: int,
               order: str = "dfs") -> tuple[bool, tuple[int, ...] | None, int]:
    """Budgeted exhaustive search over the real game tree, no network (host-side, exact Fractions).

    Every generated child state counts one node (the unit shared with network evaluations); the
    search stops at the first solved child or after ``node_budget`` nodes. Children are generated
    in action order; "dfs" explores the newest state first, "bfs" the oldest.
    Returns (solved, actions or None, nodes generated).
    """
    if order not in ("dfs", "bfs"):
        raise ValueError(f"order={order!r} is unknown; allowed 'dfs', 'bfs'.")
    if node_budget < 1:
        raise ValueError(f"node_budget={node_budget} is out of range; allowed >= 1.")
    target = Fraction(target)
    start = tuple(Fraction(x) for x in numbers) + (None,) * (rules.n_max - len(numbers))
    frontier, nodes = collections.deque([(start, ())]), 0
    while frontier:
        vals, path = frontier.pop() if order == "dfs" else frontier.popleft()
        live = [s for s, v in enumerate(vals) if v is not None]
        kids = []
        for i, j in itertools.combinations(live, 2):
            for op, r in _ops(vals[i], vals[j], rules):
                child = list(vals)
                child[i], child[j] = r, None
                act = path + (game.encode_action(i, j, op, rules.n_max),)
                nodes += 1
                left = len(live) - 1
                if r == target and (left == 1 or not rules.use_all):
                    return True, act, nodes
                if nodes >= node_budget:
                    return False, None, nodes
                if left > 1:
                    kids.append((tuple(child), act))
        frontier.extend(reversed(kids) if order == "dfs" else kids)
    return False, None, nodes
