"""The policy/value network: tokens -> (action logits, value logit) in one forward pass.

``shared_backbone=True``: one transformer, both heads read its hidden states.
``shared_backbone=False``: a policy transformer and a separate value transformer (as the seed's
separate SmolLM2 policy and value models); ``lm_logits`` uses the policy network.

The representation options (``ModelConfig.causal / positions / field_attention / value_pool /
qk_norm / pair_symmetric / pair_results``, ``TokenizerConfig.number_encoding / slot_markers``) are
described in ``nnx_models.config``, ``nnx_models.heads`` and ``nnx_models.tokenizer``; the
next-token LM path (``lm_logits``, ``lm_loss``) exists only for the causal, sequence-position model
on vocabulary-token encodings.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from nnx_models import numeric, tokenizer
from nnx_models.config import ModelConfig
from nnx_models.heads import (
    PairHead,
    ValueHead,
    check_pair_results,
    gather_positions,
    state_values,
)
from nnx_models.transformer import Transformer


class PolicyValueNet(nnx.Module):
    """``__call__(tokens_BxL) -> (logits_BxA float32, value_logit_B float32)``.

    tok_cfg: the state encoding the model reads by default (``TokenizerConfig(n_max=cfg.n_max)`` if
    None). Any other TokenizerConfig with the same vocabulary can be passed to ``__call__`` (e.g. a
    larger n_max): the pair head reads whichever slot positions that encoding defines. A numeric
    or packed ``number_encoding`` adds input-embedding weights, so the construction and call
    encodings must be of the same input kind (``numeric.input_kind``: tokens, numeric, packed).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        tok_cfg: tokenizer.TokenizerConfig | None = None,
        *,
        rngs: nnx.Rngs | None = None,
    ):
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        tok_cfg = tok_cfg or tokenizer.TokenizerConfig(n_max=cfg.n_max)
        if tok_cfg.vocab_size > cfg.vocab_size:
            raise ValueError(
                f"ModelConfig.vocab_size={cfg.vocab_size} is smaller than the tokenizer's "
                f"vocabulary "
                f"({tok_cfg.vocab_size}); set vocab_size >= {tok_cfg.vocab_size}."
            )
        check_pair_results(cfg, tok_cfg)
        self.cfg, self.tok_cfg = cfg, tok_cfg
        self.backbone = Transformer(cfg, tok_cfg, rngs=rngs)
        if not cfg.shared_backbone:
            self.value_backbone = Transformer(cfg, tok_cfg, rngs=rngs)
        self.policy_head = PairHead(cfg, rngs=rngs)
        self.value_head = ValueHead(cfg, rngs=rngs)

    def _check(self, tokens_BxL, tok_cfg):
        if tok_cfg.vocab_size > self.cfg.vocab_size:
            raise ValueError(
                f"TokenizerConfig vocabulary ({tok_cfg.vocab_size}) exceeds ModelConfig.vocab_size="
                f"{self.cfg.vocab_size}; use the encoding the model was built for."
            )
        want = tokenizer.seq_len(tok_cfg)
        if tokens_BxL.ndim != 2 or tokens_BxL.shape[1] != want:
            raise ValueError(
                f"tokens shape {tokens_BxL.shape} does not match the encoding: "
                f"expected [B, {want}] "
                f"for TokenizerConfig(n_max={tok_cfg.n_max}, {tok_cfg.number_encoding})."
            )
        kind = numeric.input_kind(self.tok_cfg)
        if numeric.input_kind(tok_cfg) != kind:
            raise ValueError(
                f"TokenizerConfig.number_encoding={tok_cfg.number_encoding!r} but the model was "
                f"built for {self.tok_cfg.number_encoding!r}; token, numeric and packed encodings "
                f"need different weights (allowed: {numeric.kind_encodings(kind)})."
            )

    def __call__(self, tokens_BxL: jax.Array, tok_cfg: tokenizer.TokenizerConfig | None = None):
        tok_cfg = tok_cfg or self.tok_cfg
        self._check(tokens_BxL, tok_cfg)
        slots, summary = tokenizer.slot_positions(tok_cfg), tokenizer.summary_position(tok_cfg)
        h = self.backbone.hidden(tokens_BxL, tok_cfg)  # [B, L, D]
        if self.cfg.pair_results:  # the exact results of every move (nnx_models.heads)
            logits_BxA, child_BxA, legal_BxA = self.policy_head.with_results(
                gather_positions(h, slots), h[:, summary], state_values(tokens_BxL, tok_cfg)
            )
            if self.cfg.value_pool == "children":  # shared backbone (ModelConfig checks it)
                return logits_BxA, self.value_head.from_children(child_BxA, legal_BxA)
        else:
            logits_BxA = self.policy_head(gather_positions(h, slots), h[:, summary])
        hv = h if self.cfg.shared_backbone else self.value_backbone.hidden(tokens_BxL, tok_cfg)
        if self.cfg.value_pool == "summary":
            value_logit_B = self.value_head(hv[:, summary])
        else:  # a slot is dead iff its field's first token is DEAD (packed: its entry is -1)
            live_BxN = tokenizer.live_slots(tokens_BxL, tok_cfg)
            value_logit_B = self.value_head(hv[:, summary], gather_positions(hv, slots), live_BxN)
        return logits_BxA, value_logit_B

    def lm_logits(self, tokens_BxL: jax.Array) -> jax.Array:
        """Next-token logits float32[B, L, V] of the (policy) backbone."""
        _check_lm(self.cfg, self.tok_cfg)
        return self.backbone(tokens_BxL)


def _check_lm(cfg: ModelConfig, tok_cfg: tokenizer.TokenizerConfig | None = None) -> None:
    """The next-token path needs causal attention, sequence positions and vocabulary tokens."""
    if not cfg.causal:
        raise ValueError(
            "next-token LM needs a causal model: ModelConfig.causal=False lets every position see "
            "its own target; allowed causal=True."
        )
    if cfg.positions != "sequence":
        raise ValueError(
            f"next-token LM reads plain token sequences: ModelConfig.positions={cfg.positions!r}; "
            "allowed 'sequence'."
        )
    if tok_cfg is not None and tok_cfg.number_encoding in tokenizer.RAW_ENCODINGS:
        raise ValueError(
            f"next-token LM needs vocabulary tokens: TokenizerConfig.number_encoding="
            f"{tok_cfg.number_encoding!r} holds raw ints; allowed 'digits', 'whole'."
        )


def lm_loss(model: PolicyValueNet | Transformer, tokens_BxL: jax.Array, mask_BxL: jax.Array):
    """Mean next-token cross-entropy over positions where ``mask`` is True.

    ``mask[b, t]`` marks token t as a prediction target (predicted from tokens < t), which is what
    ``tokenizer.encode_trace`` returns. Returns (loss, number of predicted tokens).
    """
    _check_lm(model.cfg)
    logits = model.lm_logits(tokens_BxL) if isinstance(model, PolicyValueNet) else model(tokens_BxL)
    logits, targets = logits[:, :-1], tokens_BxL[:, 1:]
    w = mask_BxL[:, 1:].astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)  # [B, L-1]
    count = w.sum()
    return (ce * w).sum() / jnp.maximum(count, 1.0), count
