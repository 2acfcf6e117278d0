"""Flax NNX policy/value transformer LMs for the Game of 24: config, tokenizer, model, evaluate.

Public API (contracts 5 and 6)::

    from nnx_models import ModelConfig, PolicyValueNet, TokenizerConfig, make_evaluate
    cfg = ModelConfig.from_depth(2)
    model = PolicyValueNet(cfg, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    evaluate = make_evaluate(graphdef, TokenizerConfig(n_max=4), game.Rules(n_max=4))
"""

from nnx_models.config import (
    PRESETS,
    ModelConfig,
    extra_param_count,
    smollm2_1p7b,
    smollm2_135m,
    smollm2_360m,
)
from nnx_models.evaluate import ILLEGAL_LOGIT, apply_fn, make_evaluate
from nnx_models.policy_value import PolicyValueNet, lm_loss
from nnx_models.tokenizer import (
    TokenizerConfig,
    decode,
    encode,
    encode_trace,
    numeric_positions,
    position_ids,
    seq_len,
    slot_positions,
    summary_position,
    trace_len,
)
from nnx_models.transformer import Transformer

__all__ = [
    "ILLEGAL_LOGIT",
    "PRESETS",
    "ModelConfig",
    "PolicyValueNet",
    "TokenizerConfig",
    "Transformer",
    "apply_fn",
    "decode",
    "encode",
    "encode_trace",
    "extra_param_count",
    "lm_loss",
    "make_evaluate",
    "numeric_positions",
    "position_ids",
    "seq_len",
    "slot_positions",
    "smollm2_135m",
    "smollm2_1p7b",
    "smollm2_360m",
    "summary_position",
    "trace_len",
]
