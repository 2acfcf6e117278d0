"""Optimizer: AdamW with linear warmup + cosine decay, global-norm clipping, gradient accumulation.

``config.train.steps`` counts OPTIMIZER updates. With ``grad_accum_steps = k > 1`` the optimizer is
wrapped in ``optax.MultiSteps``: every call of the train step consumes one micro-batch of
``batch_size`` examples and the update is applied on every k-th call, so the effective batch is
``batch_size * k`` and the loop runs ``steps * k`` micro-steps. The schedule advances per update.
Weight decay skips vectors (norm scales, biases): decaying them hurts small models and is the
convention of nanoGPT / MaxText.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import optax


def _get(cfg: Mapping[str, Any], key: str, default: Any = None) -> Any:
    return cfg[key] if key in cfg else default


def validate(train_cfg: Mapping[str, Any]) -> None:
    """Range checks on the optimizer fields of ``config.train``; errors name the field."""
    checks = [
        ("steps", lambda v: isinstance(v, int) and v >= 1, "an int >= 1"),
        ("learning_rate", lambda v: v > 0, "> 0"),
        ("warmup_steps", lambda v: isinstance(v, int) and v >= 0, "an int >= 0"),
        ("min_lr_ratio", lambda v: 0 <= v <= 1, "in [0, 1]"),
        ("weight_decay", lambda v: v >= 0, ">= 0"),
        ("grad_clip_norm", lambda v: v >= 0, ">= 0 (0 disables clipping)"),
        ("grad_accum_steps", lambda v: isinstance(v, int) and v >= 1, "an int >= 1"),
        ("b1", lambda v: 0 <= v < 1, "in [0, 1)"),
        ("b2", lambda v: 0 <= v < 1, "in [0, 1)"),
    ]
    for key, ok, allowed in checks:
        if key in train_cfg and not ok(train_cfg[key]):
            raise ValueError(f"config.train.{key}={train_cfg[key]!r} is out of range; "
                             f"allowed {allowed}.")
    if _get(train_cfg, "warmup_steps", 0) > train_cfg["steps"]:
        raise ValueError(f"config.train.warmup_steps={train_cfg['warmup_steps']} exceeds "
                         f"config.train.steps={train_cfg['steps']}; allowed 0..steps.")


def make_schedule(train_cfg: Mapping[str, Any]) -> optax.Schedule:
    """Learning rate per optimizer update: 0 -> peak over warmup, cosine to peak*min_lr_ratio."""
    peak, steps = float(train_cfg["learning_rate"]), int(train_cfg["steps"])
    warmup = int(_get(train_cfg, "warmup_steps", 0))
    end = peak * float(_get(train_cfg, "min_lr_ratio", 0.1))
    if warmup == 0:
        return optax.cosine_decay_schedule(peak, max(steps, 1), alpha=end / peak)
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(steps, warmup + 1), end)


def decay_mask(params: Any) -> Any:
    """True for matrices (decayed), False for vectors/scalars (norm scales, biases)."""
    return jax.tree.map(lambda p: getattr(p, "ndim", 0) > 1, params)


def make_optimizer(train_cfg: Mapping[str, Any]) -> optax.GradientTransformation:
    """The full optax chain described in the module docstring."""
    validate(train_cfg)
    parts = []
    clip = float(_get(train_cfg, "grad_clip_norm", 1.0))
    if clip > 0:
        parts.append(optax.clip_by_global_norm(clip))
    parts.append(optax.adamw(
        make_schedule(train_cfg), b1=float(_get(train_cfg, "b1", 0.9)),
        b2=float(_get(train_cfg, "b2", 0.95)), eps=float(_get(train_cfg, "eps", 1e-8)),
        weight_decay=float(_get(train_cfg, "weight_decay", 0.0)), mask=decay_mask))
    tx = optax.chain(*parts)
    accum = int(_get(train_cfg, "grad_accum_steps", 1))
    if accum > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accum)
    return tx
