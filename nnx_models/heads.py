"""Policy (pair) head and value head on top of the backbone's hidden states.

Pair head: for action (i, j, op), ``logit = W_o relu(A h_i + B h_j + C h_sum + b) + b_o`` where
``h_k`` is the hidden state at ``slot_positions[k]`` and ``h_sum`` the one at the summary position.
No weight depends on the slot count, so a model trained with n_max = 4 scores n_max = 6 states:
only the gathered positions and the pair table change. Cost: 3 projections of D x H per state
(A, B on N slots, C once) plus a H x 6 output per pair.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnx_models.config import ModelConfig
from nnx_models.layers import make_param
from search import game


class PairHead(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, h = cfg.d_model, cfg.head_width
        self.w_i = make_param(rngs, (d, h), ("embed", "mlp"), cfg)
        self.w_j = make_param(rngs, (d, h), ("embed", "mlp"), cfg)
        self.w_sum = make_param(rngs, (d, h), ("embed", "mlp"), cfg)
        self.b_hid = make_param(None, (h,), ("mlp",), cfg, value=0.0)
        self.w_out = make_param(rngs, (h, game.NUM_OPS), ("mlp", None), cfg)
        self.b_out = make_param(None, (game.NUM_OPS,), (None,), cfg, value=0.0)

    def __call__(self, slots_BxNxD: jax.Array, summary_BxD: jax.Array) -> jax.Array:
        """float32 logits [B, C(N,2) * 6] in the game's action order (pair * 6 + op)."""
        dt = self.cfg.compute_dtype
        n = slots_BxNxD.shape[1]
        pairs = game.pair_table(n)  # [P, 2] static
        a = slots_BxNxD @ self.w_i[...].astype(dt)  # [B, N, H]
        b = slots_BxNxD @ self.w_j[...].astype(dt)
        c = summary_BxD @ self.w_sum[...].astype(dt) + self.b_hid[...].astype(dt)  # [B, H]
        z = jax.nn.relu(a[:, pairs[:, 0]] + b[:, pairs[:, 1]] + c[:, None, :])  # [B, P, H]
        out = z @ self.w_out[...].astype(dt) + self.b_out[...].astype(dt)  # [B, P, 6]
        return out.reshape(out.shape[0], -1).astype(jnp.float32)


class ValueHead(nnx.Module):
    """Two-layer MLP on the summary hidden state -> one logit (probability = sigmoid)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, h = cfg.d_model, cfg.head_width
        self.w_hid = make_param(rngs, (d, h), ("embed", "mlp"), cfg)
        self.b_hid = make_param(None, (h,), ("mlp",), cfg, value=0.0)
        self.w_out = make_param(rngs, (h, 1), ("mlp", None), cfg)
        self.b_out = make_param(None, (1,), (None,), cfg, value=0.0)

    def __call__(self, summary_BxD: jax.Array) -> jax.Array:
        dt = self.cfg.compute_dtype
        z = jax.nn.relu(summary_BxD @ self.w_hid[...].astype(dt) + self.b_hid[...].astype(dt))
        return (z @ self.w_out[...].astype(dt) + self.b_out[...].astype(dt))[:, 0].astype(
            jnp.float32
        )


def head_param_counts(cfg: ModelConfig) -> dict[str, int]:
    """Exact parameter counts of the two heads (used by ``scaling.flops.param_counts``)."""
    d, h = cfg.d_model, cfg.head_width
    return {"pair": 3 * d * h + h + h * game.NUM_OPS + game.NUM_OPS, "value": d * h + h + h + 1}


def gather_positions(hidden_BxLxD: jax.Array, positions: np.ndarray) -> jax.Array:
    return jnp.take(hidden_BxLxD, jnp.asarray(positions), axis=1)
