"""Decoder-only transformer backbone (Llama / SmolLM2 architecture) in Flax NNX."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnx_models import numeric, tokenizer
from nnx_models.config import ModelConfig
from nnx_models.layers import Block, RMSNorm, make_param, matmul_2d, rope_tables


def field_mask(tok_cfg: tokenizer.TokenizerConfig) -> np.ndarray:
    """bool[L, L] (query, key) of ``ModelConfig.field_attention``: same field, or key is a hub."""
    group = tokenizer.field_ids(tok_cfg)
    mask = group[:, None] == group[None, :]
    mask[:, tokenizer.hub_positions(tok_cfg)] = True
    return mask


class Transformer(nnx.Module):
    """Token embedding -> ``depth`` blocks -> final RMSNorm; ``logits`` adds the LM head.

    With ``cfg.scan_layers`` the blocks are one stacked module (leading ``layers`` axis) created by
    ``nnx.vmap`` and run by ``nnx.scan``: compile time stops growing with depth. Otherwise they are
    an
    ``nnx.List`` unrolled in Python (faster for the shallow CPU models).

    tok_cfg: the state encoding the backbone is built to read. Only its ``number_encoding`` matters
    at construction: "numeric" adds ``numeric_embed`` (a ``numeric.NumericEmbedding``), "packed"
    adds ``packed_embed`` (a ``numeric.PackedEmbedding``), and every call must then pass a
    TokenizerConfig of the same input kind to ``hidden`` (``numeric.input_kind``).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        tok_cfg: tokenizer.TokenizerConfig | None = None,
        *,
        rngs: nnx.Rngs,
    ):
        self.cfg = cfg
        self.input_kind = numeric.input_kind(tok_cfg)
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
        # created last: the other weights draw the same keys as before
        if self.input_kind == "numeric":
            self.numeric_embed = numeric.NumericEmbedding(cfg, rngs=rngs)
        elif self.input_kind == "packed":
            self.packed_embed = numeric.PackedEmbedding(cfg, rngs=rngs)

    def _check_encoding(self, tokens_BxL, tok_cfg):
        if numeric.input_kind(tok_cfg) != self.input_kind:
            built = {"numeric": "numeric", "packed": "packed"}.get(
                self.input_kind, "vocabulary-token (digits / whole)"
            )
            got = repr(tok_cfg.number_encoding) if tok_cfg is not None else "None (plain tokens)"
            raise ValueError(
                f"the backbone was built for {built} states but is called with "
                f"number_encoding={got}; construct the model with the TokenizerConfig it reads "
                f"(allowed here: {numeric.kind_encodings(self.input_kind)})."
            )
        for name, plain in (("positions", "sequence"), ("field_attention", False)):
            if getattr(self.cfg, name) != plain and tok_cfg is None:
                raise ValueError(
                    f"ModelConfig.{name}={getattr(self.cfg, name)!r} needs the TokenizerConfig's "
                    f"field layout; pass tok_cfg to hidden() (plain token sequences allow "
                    f"{name}={plain!r} only)."
                )
        if tok_cfg is not None and tokens_BxL.shape[1] != tokenizer.seq_len(tok_cfg):
            raise ValueError(
                f"tokens shape {tokens_BxL.shape} does not match the encoding: expected "
                f"[B, {tokenizer.seq_len(tok_cfg)}] for TokenizerConfig(n_max={tok_cfg.n_max})."
            )

    def _embed(self, tokens_BxL, tok_cfg):
        """[B, L, D] input embeddings; numeric fields get the numeric embedding, packed entries
        the packed embedding (``nnx_models.numeric``)."""
        dt = self.cfg.compute_dtype
        if self.input_kind == "tokens":
            return jnp.take(self.embed[...], tokens_BxL, axis=0).astype(dt)
        if self.input_kind == "packed":
            # Entries are raw ints, not ids: only BOS / SUM go through the token table (the
            # entries' rows are PAD lookups that the packed embedding then replaces).
            at = tokenizer.numeric_positions(tok_cfg)  # [1 + N] static
            lookup = tokens_BxL.at[:, at].set(tokenizer.PAD)
            x = jnp.take(self.embed[...], lookup, axis=0).astype(dt)  # [B, L, D]
            return x.at[:, at].set(self.packed_embed(tokens_BxL[:, at]))
        raw = tokenizer.numeric_positions(tok_cfg)  # [F, 2] static
        starts = raw[:, 0] - 1  # sign positions
        sign, mag, den = tokens_BxL[:, starts], tokens_BxL[:, raw[:, 0]], tokens_BxL[:, raw[:, 1]]
        # The raw ints are not vocabulary ids: their positions embed as the rows of PAD and SLASH,
        # tokens a numeric sequence never holds, i.e. two fixed learned "raw" fillers.
        lookup = (
            tokens_BxL.at[:, raw[:, 0]].set(tokenizer.PAD).at[:, raw[:, 1]].set(tokenizer.SLASH)
        )
        x = jnp.take(self.embed[...], lookup, axis=0).astype(dt)  # [B, L, D]
        e_BxFxD = self.numeric_embed(sign, mag, den)
        n_fields, seq = raw.shape[0], tokens_BxL.shape[1]
        field_of = np.full(seq, n_fields, np.int32)  # index of each position's field; F = none
        for f, s in enumerate(starts):
            field_of[s : s + tok_cfg.field_width] = f
        e_BxFxD = jnp.concatenate([e_BxFxD, jnp.zeros_like(e_BxFxD[:, :1])], axis=1)
        return x + jnp.take(e_BxFxD, jnp.asarray(field_of), axis=1)

    def hidden(
        self, tokens_BxL: jax.Array, tok_cfg: tokenizer.TokenizerConfig | None = None
    ) -> jax.Array:
        """Final-normed hidden states [B, L, D] in the compute dtype.

        tok_cfg: the encoding of ``tokens`` when they are encoded states (needed for numeric
        fields and ``positions="field"``); None for plain token sequences (LM traces, HF text).
        """
        cfg = self.cfg
        if tokens_BxL.ndim != 2:
            raise ValueError(f"tokens must be [B, L]; got shape {tokens_BxL.shape}.")
        self._check_encoding(tokens_BxL, tok_cfg)
        x = self._embed(tokens_BxL, tok_cfg)  # [B, L, D]
        pos = tokenizer.position_ids(tok_cfg) if cfg.positions == "field" else None
        cos, sin = rope_tables(tokens_BxL.shape[1], cfg.head_dim, cfg.rope_theta, pos)
        # packed: the field mask is all True (every token is its own field and hub), a no-op
        use_mask = cfg.field_attention and not (tok_cfg is not None and tok_cfg.packed)
        mask = jnp.asarray(field_mask(tok_cfg)) if use_mask else None
        if cfg.scan_layers:

            @nnx.scan(
                in_axes=(nnx.Carry, 0, None, None, None),
                out_axes=nnx.Carry,
                transform_metadata={nnx.PARTITION_NAME: "layers"},
            )
            def run(h, block, c, s, m):
                return block(h, c, s, m)

            x = run(x, self.blocks, cos, sin, mask)
        else:
            for block in self.blocks:
                x = block(x, cos, sin, mask)
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
