"""Transformer building blocks (Llama convention, so HF checkpoints map 1:1).

Every parameter carries logical axis names in its ``out_sharding`` metadata (``embed``, ``vocab``,
``heads``, ``kv_heads``, ``head_dim``, ``mlp``, ``norm``; ``layers`` is added by scan); the mapping
to
mesh axes lives in ``nnx_models.sharding``. Parameters are created unsharded (eager sharding off) so
the model builds without a mesh; sharded init goes through ``sharding.init_sharded``.

Compute dtype: weights are cast to ``cfg.compute_dtype`` at use (fp32 master weights with bf16
compute); RMSNorm statistics and softmax run in fp32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnx_models.config import ModelConfig


def make_param(
    rngs: nnx.Rngs | None,
    shape,
    names: tuple,
    cfg: ModelConfig,
    std: float | None = None,
    value: float | None = None,
) -> nnx.Param:
    """A parameter with logical axis names; normal(std) init, or constant ``value`` if set."""
    if value is not None:
        x = jnp.asarray(np.full(shape, value, np.float32), cfg.weight_dtype)  # no compile
    else:
        std = std if std is not None else cfg.init_std
        x = _scaled_normal(rngs.params(), jnp.float32(std), tuple(shape), cfg.weight_dtype)
    return nnx.Param(x, out_sharding=names, eager_sharding=False)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _scaled_normal(key, std, shape, dtype):
    # One compiled op per shape instead of three eager ones: eager model construction on CPU is
    # dominated by compiling these (seconds for a tiny model); under an outer jit it just inlines.
    return (std * jax.random.normal(key, shape)).astype(dtype)


def weight(module: nnx.Module, name: str, dtype) -> jax.Array:
    """Parameter ``name`` of ``module`` in ``dtype``, plus its LoRA update when one is attached.

    ``nnx_models.lora`` attaches ``{name}_lora_a`` [in, r] and ``{name}_lora_b`` [r, out] and sets
    ``module.lora_scale`` (alpha / rank); the update is computed in fp32 and added before the cast.
    """
    w = getattr(module, name)[...]
    a = getattr(module, f"{name}_lora_a", None)
    if a is not None:
        delta = a[...].astype(jnp.float32) @ getattr(module, f"{name}_lora_b")[...].astype(
            jnp.float32
        )
        w = w.astype(jnp.float32) + module.lora_scale * delta.reshape(w.shape)
    return w.astype(dtype)


class RMSNorm(nnx.Module):
    def __init__(self, cfg: ModelConfig, dim: int | None = None):
        self.eps = cfg.norm_eps
        self.scale = make_param(None, (dim or cfg.d_model,), ("norm",), cfg, value=1.0)

    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (y * self.scale[...].astype(jnp.float32)).astype(x.dtype)


def matmul_2d(x_TxK: jax.Array, w_KxN: jax.Array) -> jax.Array:
    """[T, K] @ [K, N] with the batch and sequence axes already flattened into T.

    Why not ``einsum("bld,dhk->blhk")`` on the 3-D activations: XLA:CPU lowers the *backward* of
    a dot with two batch-like free axes through extra transposes and copies (measured on a 2-layer
    d_model=128 model, B=64 L=32: the MLP's gradient took 16.4 ms as a 3-D dot vs 9.0 ms as a 2-D
    one, forward unchanged). Flattening is a free bitcast and GSPMD keeps a ``data``-sharded batch
    axis sharded through the merge, so nothing is lost on accelerators.
    """
    return x_TxK @ w_KxN


def rope_tables(
    seq_len: int, head_dim: int, theta: float, position_ids: np.ndarray | None = None
) -> tuple[jax.Array, jax.Array]:
    """cos, sin: float32[L, head_dim] in the HF "rotate_half" layout (frequencies repeated).

    position_ids: int[L] position of each token (``tokenizer.position_ids`` for per-field
    positions); None -> 0..L-1. Static numpy either way, so the tables are constants under jit.
    """
    inv = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    if position_ids is None:
        pos = np.arange(seq_len, dtype=np.float64)
    else:
        pos = np.asarray(position_ids, np.float64)
        if pos.shape != (seq_len,):
            raise ValueError(f"position_ids has shape {pos.shape}; expected ({seq_len},).")
    ang = pos[:, None] * inv[None, :]  # [L, hd/2]
    ang = np.concatenate([ang, ang], axis=-1)
    return jnp.asarray(np.cos(ang), jnp.float32), jnp.asarray(np.sin(ang), jnp.float32)


def apply_rope(x_BxLxHxD, cos_LxD, sin_LxD):
    half = x_BxLxHxD.shape[-1] // 2
    x32 = x_BxLxHxD.astype(jnp.float32)
    rot = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
    out = x32 * cos_LxD[:, None, :] + rot * sin_LxD[:, None, :]
    return out.astype(x_BxLxHxD.dtype)


class Attention(nnx.Module):
    """Causal (``cfg.causal``) or bidirectional attention with grouped KV heads.

    ``cfg.qk_norm``: RMSNorm over head_dim on q and k (one learned [head_dim] scale each, shared
    by the heads) before RoPE. It bounds the attention logits, so a head cannot saturate its
    softmax onto one token early in training (one of the levers against value collapse).
    """

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d, h, kv, hd = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.cfg = cfg
        self.wq = make_param(rngs, (d, h, hd), ("embed", "heads", "head_dim"), cfg)
        self.wk = make_param(rngs, (d, kv, hd), ("embed", "kv_heads", "head_dim"), cfg)
        self.wv = make_param(rngs, (d, kv, hd), ("embed", "kv_heads", "head_dim"), cfg)
        self.wo = make_param(rngs, (h, hd, d), ("heads", "head_dim", "embed"), cfg)
        if cfg.qk_norm:  # constant init: draws no random keys, the other weights are unchanged
            self.q_norm = RMSNorm(cfg, dim=hd)
            self.k_norm = RMSNorm(cfg, dim=hd)

    def __call__(self, x_BxLxD, cos, sin, mask_LxL=None):
        """mask_LxL: optional bool [L, L] (query, key) allowed pairs, ANDed with the causal mask."""
        dt = self.cfg.compute_dtype
        batch, seq, d = x_BxLxD.shape
        x_TxD = x_BxLxD.reshape(batch * seq, d)

        def proj(name):  # [B, L, H(kv), hd]
            w = weight(self, name, dt)
            return matmul_2d(x_TxD, w.reshape(d, -1)).reshape(batch, seq, *w.shape[1:])

        q, k, v = proj("wq"), proj("wk"), proj("wv")
        if self.cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        mask = None if mask_LxL is None else mask_LxL[None, None]  # [1, 1, L, L]
        out = jax.nn.dot_product_attention(
            q, k, v, mask=mask, is_causal=self.cfg.causal, implementation=self.cfg.attention_impl
        )  # [B, L, H, hd]
        wo = weight(self, "wo", dt)
        return matmul_2d(out.reshape(batch * seq, -1), wo.reshape(-1, d)).reshape(batch, seq, d)


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, f = cfg.d_model, cfg.mlp_dim
        if cfg.mlp == "swiglu":
            self.w_gate = make_param(rngs, (d, f), ("embed", "mlp"), cfg)
        self.w_up = make_param(rngs, (d, f), ("embed", "mlp"), cfg)
        self.w_down = make_param(rngs, (f, d), ("mlp", "embed"), cfg)

    def __call__(self, x_BxLxD):
        dt = self.cfg.compute_dtype
        x_TxD = x_BxLxD.reshape(-1, x_BxLxD.shape[-1])
        up = matmul_2d(x_TxD, weight(self, "w_up", dt))
        if self.cfg.mlp == "swiglu":
            hid = jax.nn.silu(matmul_2d(x_TxD, weight(self, "w_gate", dt))) * up
        else:
            hid = jnp.square(jax.nn.relu(up))
        return matmul_2d(hid, weight(self, "w_down", dt)).reshape(x_BxLxD.shape)


class Block(nnx.Module):
    """Pre-norm residual block: x + attn(norm(x)); x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg)
        self.attn = Attention(cfg, rngs=rngs)
        self.mlp_norm = RMSNorm(cfg)
        self.mlp = MLP(cfg, rngs=rngs)

    def __call__(self, x_BxLxD, cos, sin, mask_LxL=None):
        x_BxLxD = x_BxLxD + self.attn(self.attn_norm(x_BxLxD), cos, sin, mask_LxL)
        return x_BxLxD + self.mlp(self.mlp_norm(x_BxLxD))
