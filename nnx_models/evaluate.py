"""The search-facing network function: ``evaluate(params, state) -> (logits_BxA, value_B)``.

Search code (mctx root / recurrent fns) only ever sees this function: it encodes the batched game
states to tokens, runs the network, masks illegal actions with ``ILLEGAL_LOGIT`` and turns the value
logit into a probability of solving.
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from nnx_models import tokenizer
from search import game

ILLEGAL_LOGIT = game.ILLEGAL_LOGIT


def make_evaluate(graphdef, tok_cfg: tokenizer.TokenizerConfig, rules: game.Rules) -> Callable:
    """Build ``evaluate(params, state)`` for states of ``rules`` encoded with ``tok_cfg``.

    graphdef: from ``graphdef, params = nnx.split(model)``; params: ``nnx.state(model)`` or any
    pytree ``nnx.merge(graphdef, params)`` accepts (e.g. bf16-cast or sharded copies).
    ``tok_cfg.n_max`` must equal ``rules.n_max``; it may differ from the n_max the model was built
    for (the pair head is slot-count free), which is how a 4-number model is run on 6-number states.
    Returns float32 (logits [B, A], value [B] in [0, 1]); jittable, batch axis must be 1-D.
    """
    if tok_cfg.n_max != rules.n_max:
        raise ValueError(
            f"tok_cfg.n_max={tok_cfg.n_max} != rules.n_max={rules.n_max}; they must match."
        )

    def evaluate(params, state: game.State):
        model = nnx.merge(graphdef, params)
        tokens = tokenizer.encode(state, tok_cfg)  # [B, L]
        logits, value_logit = model(tokens, tok_cfg)
        chex.assert_shape(logits, (tokens.shape[0], rules.num_actions))
        legal = game.legal_mask(state, rules)
        logits = jnp.where(legal, logits, ILLEGAL_LOGIT)
        return logits, jax.nn.sigmoid(value_logit)

    return evaluate


def apply_fn(model) -> Callable:
    """``apply(params, tokens_BxL) -> (logits_BxA, value_logit_B)`` for training code."""
    graphdef = nnx.graphdef(model)

    def apply(params, tokens_BxL, tok_cfg: tokenizer.TokenizerConfig | None = None):
        return nnx.merge(graphdef, params)(tokens_BxL, tok_cfg)

    return apply
