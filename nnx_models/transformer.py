"""Decoder-only transformer backbone (Llama / SmolLM2 architecture) in Flax NNX."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nnx_models.config import ModelConfig
from nnx_models.layers import Block, RMSNorm, make_param, matmul_2d, rope_tables


class Transformer(nnx.Module):
    """Token embedding -> ``depth`` blocks -> final RMSNorm; ``logits`` adds the LM head.

    With ``cfg.scan_layers`` the blocks are one stacked module (leading ``layers`` axis) created by
    ``nnx.vmap`` and run by ``nnx.scan``: compile time stops growing with depth. Otherwise they are
    an
    ``nnx.List`` unrolled in Python (faster for the shallow CPU models).
    """

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = make_param(rngs, (cfg.vocab_size, cfg.d_model), ("vocab", "embed"), cfg)
        if cfg.scan_layers:

            @nnx.split_rngs(splits=cfg.depth)
            @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
            def make_blocks(r: nnx.Rngs):
                return Block(cfg, rngs=r)

            self.blocks = make_blocks(rngs)
        else:
            self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.depth)])
        self.final_norm = RMSNorm(cfg)
        if not cfg.tie_embeddings:
            self.lm_head = make_param(rngs, (cfg.d_model, cfg.vocab_size), ("embed", "vocab"), cfg)

    def hidden(self, tokens_BxL: jax.Array) -> jax.Array:
        """Final-normed hidden states [B, L, D] in the compute dtype."""
        cfg = self.cfg
        if tokens_BxL.ndim != 2:
            raise ValueError(f"tokens must be [B, L]; got shape {tokens_BxL.shape}.")
        x = jnp.take(self.embed[...], tokens_BxL, axis=0).astype(cfg.compute_dtype)  # [B, L, D]
        cos, sin = rope_tables(tokens_BxL.shape[1], cfg.head_dim, cfg.rope_theta)
        if cfg.scan_layers:

            @nnx.scan(
                in_axes=(nnx.Carry, 0, None, None),
                out_axes=nnx.Carry,
                transform_metadata={nnx.PARTITION_NAME: "layers"},
            )
            def run(h, block, c, s):
                return block(h, c, s)

            x = run(x, self.blocks, cos, sin)
        else:
            for block in self.blocks:
                x = block(x, cos, sin)
        return self.final_norm(x)

    def logits(self, hidden_BxLxD: jax.Array) -> jax.Array:
        """Next-token logits float32[B, L, V]."""
        dt = self.cfg.compute_dtype
        w = self.embed[...].T if self.cfg.tie_embeddings else self.lm_head[...]
        batch, seq, d = hidden_BxLxD.shape
        logits_TxV = matmul_2d(hidden_BxLxD.reshape(batch * seq, d), w.astype(dt))
        return logits_TxV.reshape(batch, seq, -1).astype(jnp.float32)

    def __call__(self, tokens_BxL: jax.Array) -> jax.Array:
        return self.logits(self.hidden(tokens_BxL))
