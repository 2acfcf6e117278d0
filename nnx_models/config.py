"""Model hyperparameters as one frozen dataclass (the ``nnx_models`` boundary).

Sizing by one knob (nanochat rule): ``ModelConfig.from_depth(depth)`` gives ``layers = depth``,
``d_model = 64 * depth``, ``head_dim = 128`` and ``heads = ceil(d_model / 128)``; for depth 1
(d_model 64 < 128) that rule would give a 128-wide head on a 64-wide stream, so we use ONE head
of dim d_model
instead. MLP: ReLU^2 with ``mlp_dim = 4 * d_model`` (nanochat), or SwiGLU with ``mlp_dim = 8/3 * d``
rounded up to a multiple of 64 (Llama) when ``mlp="swiglu"``. The presets copy SmolLM2 exactly.

Representation / anti-collapse options (defaults reproduce the original network bit for bit):
``causal`` (False: bidirectional attention), ``positions`` ("field": RoPE positions restart at
every field, ``tokenizer.position_ids``), ``value_pool`` ("mean" / "attn": the value head reads
the live slots and the summary instead of the summary alone), ``qk_norm`` (RMSNorm on q and k per
head), ``pair_symmetric`` (pair head symmetrised over operand order) and ``field_attention``
(tokens attend within their field and to the field markers). With a
``TokenizerConfig(slot_markers="shared")`` encoding, ``causal=False, positions="field",
pair_symmetric=True`` make the network exactly permutation-equivariant over slots; digit / whole
encodings then also need ``field_attention=True`` to know which tokens form which number. A
``number_encoding="packed"`` encoding has no markers and needs none of that beyond ``causal=False,
positions="field", pair_symmetric=True``.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from nnx_models import tokenizer

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
POSITIONS = ("sequence", "field")
VALUE_POOLS = ("summary", "mean", "attn", "children")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Decoder-only transformer (Llama family: RoPE, RMSNorm, no biases) + policy/value heads.

    depth: number of transformer blocks.          d_model: residual width.
    num_heads / num_kv_heads / head_dim: attention (num_heads % num_kv_heads == 0 gives GQA).
    mlp_dim: hidden width of the MLP; mlp: "swiglu" (3 matrices) or "relu2" (2 matrices).
    vocab_size: embedding rows (>= the tokenizer's vocab).  tie_embeddings: LM head = embedding^T.
    dtype: compute dtype ("float32" | "bfloat16"); param_dtype: storage dtype of parameters.
    scan_layers: stack the blocks and run them with nnx.scan (one compiled block; deep models).
    shared_backbone: one backbone with both heads, or separate policy and value networks.
    n_max: default slot count of the states the model reads (the heads work for any n_max).
    head_hidden: width of the pair head and value head MLPs (0 -> d_model).
    attention_impl: ``jax.nn.dot_product_attention`` implementation: "xla" (any device) or "cudnn"
      (GPU flash attention; needs bf16/fp16 compute). JAX's own default (None) is XLA today.
    causal: causal attention (True) or bidirectional (False; the next-token LM path then raises).
    positions: RoPE position ids: "sequence" (0..L-1) or "field" (restart at every field marker;
      needs the TokenizerConfig at call time).
    value_pool: what the value head reads: "summary" (the SUM position), "mean" (mean over the
      live slot positions and SUM), "attn" (a learned query attending over them; dead masked) or
      "children" (a soft-OR over the legal moves: the logsumexp of a per-action "child is
      solvable" logit that the pair head emits from its per-(pair, op) hidden state; a learned
      constant when no move is legal). "children" needs ``pair_results=True`` and
      ``shared_backbone=True`` (the child logits come from the policy backbone's pair head).
    qk_norm: RMSNorm (learned head_dim scale) on q and k per head before RoPE (Gemma 3 / Qwen 3).
    pair_symmetric: pair logit of (i, j, op) = mean of the ordered head's logit for (i, j, op) and
      for (j, i, mirror(op)), so swapping two slots' contents mirrors the op exactly (needed for
      slot-permutation equivariance; no extra parameters, twice the pair-output FLOPs).
    pair_results: the pair head also embeds the EXACT result r = s_i op s_j of every (pair, op)
      (computed in-model from the raw numbers with ``search.game._op_results``; illegal results
      embed as zero) and its relation to the target, so its hidden state is per (pair, op)
      (``nnx_models.heads``). Needs a model built for a "numeric" or "packed" encoding (checked by
      ``PolicyValueNet``); token encodings hold no raw numbers.
    field_attention: a token attends only to its own field (marker + number tokens) and to the
      hubs (BOS, every field marker, SUM); combined with the causal mask when causal. Why: with
      positions="field" and causal=False, full attention sees the state as a bag of (token,
      in-field position) pairs, so digit / whole tokens lose which number they belong to
      ({12, 34} and {14, 32} are the same input); the mask binds each field to its marker and
      keeps slot-permutation equivariance. Cross-field information then takes two layers (field
      -> its marker -> everyone). Numeric fields do not need it (each token carries its number);
      with packed entries (one token per number) it is a no-op.
    """

    depth: int = 2
    d_model: int = 128
    num_heads: int = 1
    num_kv_heads: int = 1
    head_dim: int = 128
    mlp_dim: int = 512
    mlp: str = "relu2"
    vocab_size: int = tokenizer.TokenizerConfig().vocab_size
    tie_embeddings: bool = False
    dtype: str = "float32"
    param_dtype: str = "float32"
    scan_layers: bool = False
    shared_backbone: bool = True
    n_max: int = 4
    head_hidden: int = 0
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02
    attention_impl: str = "xla"
    causal: bool = True
    positions: str = "sequence"
    value_pool: str = "summary"
    qk_norm: bool = False
    pair_symmetric: bool = False
    field_attention: bool = False
    pair_results: bool = False

    def __post_init__(self):
        positive = (
            "depth",
            "d_model",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "mlp_dim",
            "vocab_size",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig.{name}={getattr(self, name)} must be >= 1.")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"ModelConfig.num_heads={self.num_heads} must be a multiple of "
                f"num_kv_heads={self.num_kv_heads}."
            )
        if self.head_dim % 2:
            raise ValueError(f"ModelConfig.head_dim={self.head_dim} must be even (RoPE pairs).")
        if self.mlp not in ("swiglu", "relu2"):
            raise ValueError(f"ModelConfig.mlp={self.mlp!r}; allowed 'swiglu', 'relu2'.")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in _DTYPES:
                raise ValueError(
                    f"ModelConfig.{name}={getattr(self, name)!r}; allowed {list(_DTYPES)}."
                )
        if not 2 <= self.n_max <= tokenizer.MAX_SLOTS:
            raise ValueError(f"ModelConfig.n_max={self.n_max} out of range; allowed 2..16.")
        if self.attention_impl not in ("xla", "cudnn"):
            raise ValueError(
                f"ModelConfig.attention_impl={self.attention_impl!r}; allowed 'xla', 'cudnn'."
            )
        if self.head_hidden < 0:
            raise ValueError(f"ModelConfig.head_hidden={self.head_hidden} must be >= 0.")
        for name, allowed in (("positions", POSITIONS), ("value_pool", VALUE_POOLS)):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"ModelConfig.{name}={getattr(self, name)!r}; allowed "
                    f"{', '.join(map(repr, allowed))}."
                )
        for name in ("causal", "qk_norm", "pair_symmetric", "field_attention", "pair_results"):
            if not isinstance(getattr(self, name), bool):  # a config string "False" is truthy
                raise ValueError(
                    f"ModelConfig.{name}={getattr(self, name)!r}; allowed True, False."
                )
        if self.value_pool == "children" and not self.pair_results:
            raise ValueError(
                "ModelConfig.value_pool='children' needs the per-(pair, op) result head: "
                "pair_results=False; allowed pair_results=True (or value_pool 'summary', 'mean', "
                "'attn')."
            )
        if self.value_pool == "children" and not self.shared_backbone:
            raise ValueError(
                "ModelConfig.value_pool='children' reads the policy backbone's pair head: "
                "shared_backbone=False; allowed shared_backbone=True (or value_pool 'summary', "
                "'mean', 'attn')."
            )

    @property
    def compute_dtype(self):
        return _DTYPES[self.dtype]

    @property
    def weight_dtype(self):
        return _DTYPES[self.param_dtype]

    @property
    def head_width(self) -> int:
        return self.head_hidden or self.d_model

    @property
    def num_backbones(self) -> int:
        return 1 if self.shared_backbone else 2

    def replace(self, **kw) -> ModelConfig:
        return dataclasses.replace(self, **kw)

    @classmethod
    def from_depth(cls, depth: int, **kw) -> ModelConfig:
        """nanochat sizing (module docstring); any field can be overridden by keyword."""
        if depth < 1:
            raise ValueError(f"depth={depth} must be >= 1.")
        d = 64 * depth
        if d < 128:
            heads, head_dim = 1, d  # one head of dim d_model (a 128-wide head would exceed d)
        else:
            heads, head_dim = math.ceil(d / 128), 128
        mlp = kw.get("mlp", "relu2")
        mlp_dim = 4 * d if mlp == "relu2" else 64 * math.ceil(8 * d / 3 / 64)
        base = dict(
            depth=depth,
            d_model=d,
            num_heads=heads,
            num_kv_heads=heads,
            head_dim=head_dim,
            mlp_dim=mlp_dim,
            mlp=mlp,
        )
        base.update(kw)
        return cls(**base)


def extra_param_count(
    cfg: ModelConfig, tok_cfg: tokenizer.TokenizerConfig | None = None, heads: bool = True
) -> dict[str, int]:
    """Parameters beyond the plain Llama backbone and the two heads, same keys and convention.

    ``scaling.flops.param_counts(cfg, heads, tok_cfg)`` adds this to the backbone + heads count,
    which then equals the exact count of ``PolicyValueNet(cfg, tok_cfg)``
    (``heads=False``: of one ``Transformer(cfg, tok_cfg)``). Counted here: the per-head q / k
    RMSNorm scales (``qk_norm``: 2 * head_dim per layer) and the numeric-number embedding
    (``tok_cfg.number_encoding`` "numeric", or "packed" which adds the [3, D] target / slot / dead
    type table: ``nnx_models.numeric.param_count(cfg, tok_cfg)``), once per backbone. The
    attn-pool query lives in the value head and is already in ``heads.head_param_counts``, as do
    the ``pair_results`` / ``value_pool="children"`` weights (op rows, result map, child output).
    All of it is non-embedding by the flops convention (only the token table and an untied LM head
    are "embedding"), including the numeric small-int tables and the packed type rows.
    """
    from nnx_models import numeric  # lazy: numeric -> layers -> config

    per_backbone = (2 * cfg.head_dim * cfg.depth if cfg.qk_norm else 0) + (
        numeric.param_count(cfg, tok_cfg) if numeric.reads_numeric(tok_cfg) else 0
    )
    n = (cfg.num_backbones if heads else 1) * per_backbone
    return {"total": n, "embedding": 0, "non_embedding": n}


def _smollm2(depth, d, heads, kv, mlp_dim, **kw) -> ModelConfig:
    base = dict(
        depth=depth,
        d_model=d,
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=d // heads,
        mlp_dim=mlp_dim,
        mlp="swiglu",
        vocab_size=49152,
        tie_embeddings=True,
        rope_theta=100000.0 if d < 2048 else 130000.0,
        norm_eps=1e-5,
    )
    base.update(kw)
    return ModelConfig(**base)


def smollm2_135m(**kw) -> ModelConfig:
    """SmolLM2-135M shapes: 30 layers, 576 wide, 9 heads, 3 KV heads, SwiGLU 1536, tied 49152."""
    return _smollm2(30, 576, 9, 3, 1536, **kw)


def smollm2_360m(**kw) -> ModelConfig:
    """SmolLM2-360M shapes: 32 layers, 960 wide, 15 heads, 5 KV heads, SwiGLU 2560."""
    return _smollm2(32, 960, 15, 5, 2560, **kw)


def smollm2_1p7b(**kw) -> ModelConfig:
    """SmolLM2-1.7B shapes: 24 layers, 2048 wide, 32 heads, 32 KV heads, SwiGLU 8192."""
    return _smollm2(24, 2048, 32, 32, 8192, **kw)


PRESETS = {"smollm2_135m": smollm2_135m, "smollm2_360m": smollm2_360m, "smollm2_1p7b": smollm2_1p7b}
