"""LoRA adapters for test-time training: attach, train alone, merge, reset, detach.

``W_eff = W + (alpha / rank) * A @ B`` for each targeted matrix (viewed as [in, out]); A starts
random (normal, std 1/rank), B at zero, so attaching leaves the network's outputs unchanged.
Adapters are ``nnx.LoRAParam`` variables named ``{w}_lora_a`` / ``{w}_lora_b`` on the owning
attention / MLP module (``layers.weight`` adds them in the forward), so they are selected with the
``nnx.LoRAParam`` filter::

    lora.attach(model, rank=8, alpha=16, targets=("wq", "wv"))
    opt = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.LoRAParam)   # trains adapters only
    grads = nnx.grad(loss_fn, argnums=nnx.DiffState(0, nnx.LoRAParam))(model)
    lora.merge(model)   # fold into W and remove; or lora.reset(model) to start the next problem

With ``scan_layers`` the adapters carry the leading ``layers`` axis like every other block weight.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nnx_models.layers import MLP, Attention

TARGETS = {
    "wq": Attention,
    "wk": Attention,
    "wv": Attention,
    "wo": Attention,
    "w_gate": MLP,
    "w_up": MLP,
    "w_down": MLP,
}
_IN_AXES = {"wo": 2}  # wo is [H, hd, D]: input is heads x head_dim; all others have one input axis
_NAMES = {
    "wq": ("embed", "heads"),
    "wk": ("embed", "kv_heads"),
    "wv": ("embed", "kv_heads"),
    "wo": ("heads", "embed"),
    "w_gate": ("embed", "mlp"),
    "w_up": ("embed", "mlp"),
    "w_down": ("mlp", "embed"),
}  # logical axes of A's input and B's output


def _modules(model: nnx.Module, targets):
    """(module, weight name) for every targeted matrix in ``model``."""
    for _, module in nnx.iter_modules(model):
        for name in targets:
            if isinstance(module, TARGETS[name]) and hasattr(module, name):
                yield module, name


def _check(rank: int, alpha: float, targets) -> None:
    if rank < 1:
        raise ValueError(f"LoRA rank={rank} must be >= 1.")
    if alpha <= 0:
        raise ValueError(f"LoRA alpha={alpha} must be > 0.")
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise ValueError(f"LoRA targets {list(targets)} invalid: {bad}; allowed {sorted(TARGETS)}.")


def attach(
    model: nnx.Module,
    rank: int = 8,
    alpha: float = 16.0,
    targets=("wq", "wv"),
    rngs: nnx.Rngs | None = None,
) -> nnx.Module:
    """Add adapters to every targeted matrix of ``model`` (in place; returns it)."""
    _check(rank, alpha, targets)
    rngs = rngs if rngs is not None else nnx.Rngs(0)
    found = list(_modules(model, targets))
    if not found:
        raise ValueError(
            f"no module of {type(model).__name__} has a LoRA target in {list(targets)}."
        )
    for module, name in found:
        if hasattr(module, f"{name}_lora_a"):
            raise ValueError(f"{name} already has a LoRA adapter; detach or merge it first.")
        w = getattr(module, name)
        stacked = module.cfg.scan_layers and w[...].ndim == (
            4 if name in ("wq", "wk", "wv", "wo") else 3
        )
        lead = w[...].shape[:1] if stacked else ()
        shape = w[...].shape[len(lead) :]
        n_in = _IN_AXES.get(name, 1)
        d_in, d_out = int(jnp.prod(jnp.array(shape[:n_in]))), int(jnp.prod(jnp.array(shape[n_in:])))
        layer_axis = ("layers",) if stacked else ()
        a = jax.random.normal(rngs.params(), lead + (d_in, rank), jnp.float32) / rank
        setattr(
            module,
            f"{name}_lora_a",
            nnx.LoRAParam(
                a, out_sharding=layer_axis + (_NAMES[name][0], None), eager_sharding=False
            ),
        )
        setattr(
            module,
            f"{name}_lora_b",
            nnx.LoRAParam(
                jnp.zeros(lead + (rank, d_out), jnp.float32),
                out_sharding=layer_axis + (None, _NAMES[name][1]),
                eager_sharding=False,
            ),
        )
        module.lora_scale = float(alpha) / rank
    return model


def _attached(model: nnx.Module):
    for _, module in nnx.iter_modules(model):
        for name in TARGETS:
            if hasattr(module, f"{name}_lora_a"):
                yield module, name


def merge(model: nnx.Module) -> nnx.Module:
    """Fold every adapter into its base weight and remove the adapters."""
    for module, name in list(_attached(model)):
        w = getattr(module, name)
        a, b = getattr(module, f"{name}_lora_a")[...], getattr(module, f"{name}_lora_b")[...]
        delta = module.lora_scale * jnp.matmul(a, b).reshape(w[...].shape)
        w[...] = (w[...].astype(jnp.float32) + delta).astype(w[...].dtype)
    return detach(model)


def reset(model: nnx.Module, rngs: nnx.Rngs | None = None) -> nnx.Module:
    """Zero every B and redraw every A: the network is back to its base weights."""
    rngs = rngs if rngs is not None else nnx.Rngs(0)
    for module, name in _attached(model):
        a, b = getattr(module, f"{name}_lora_a"), getattr(module, f"{name}_lora_b")
        rank = b[...].shape[-2]
        a[...] = jax.random.normal(rngs.params(), a[...].shape, jnp.float32) / rank
        b[...] = jnp.zeros_like(b[...])
    return model


def detach(model: nnx.Module) -> nnx.Module:
    """Remove all adapters without merging."""
    for module, name in list(_attached(model)):
        delattr(module, f"{name}_lora_a")
        delattr(module, f"{name}_lora_b")
        if not any(hasattr(module, f"{n}_lora_a") for n in TARGETS):
            del module.lora_scale
    return model


def num_lora_params(model: nnx.Module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.LoRAParam)))
