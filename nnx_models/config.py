"""Model hyperparameters as one frozen dataclass (the ``nnx_models`` boundary).

Sizing by one knob (nanochat rule): ``ModelConfig.from_depth(depth)`` gives ``layers = depth``,
``d_model = 64 * depth``, ``head_dim = 128`` and ``heads = ceil(d_model / 128)``; for depth 1
(d_model 64 < 128) that rule would give a 128-wide head on a 64-wide stream, so we use ONE head
of dim d_model
instead. MLP: ReLU^2 with ``mlp_dim = 4 * d_model`` (nanochat), or SwiGLU with ``mlp_dim = 8/3 * d``
rounded up to a multiple of 64 (Llama) when ``mlp="swiglu"``. The presets copy SmolLM2 exactly.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from nnx_models import tokenizer

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


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
