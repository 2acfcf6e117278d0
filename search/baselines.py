"""Baselines measured in the same units as MCTS: network evaluations, FLOPs per problem, wall time.

* ``exhaustive``: budgeted DFS/BFS over the real game tree, no network (host-side Python with
  exact Fractions; one "evaluation" = one generated state).
* ``value_beam`` (TS-LLM BFS-V) and ``value_dfs`` (TS-LLM DFS-V, pruning by value): batched and
  jitted, driven by ``evaluate`` (contract 6).
* ``sample``: policy-only rollouts, pass@k and majority vote over the final value.
* ``uniform_evaluate`` gives MCTS a uniform prior and zero value (search without learning);
  ``oracle_evaluate`` is the solver as a perfect network (an upper bound; host callback, slow).

FLOPs per problem = evaluations x ``flops_per_eval`` (the caller's forward FLOPs per state).
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp

from search import game, solver
from search.mcts import NEG, Evaluate


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
