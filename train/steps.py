"""Pure train/eval steps of the policy/value network, sharded init, and their jitted forms.

Losses (per example, weighted by ``batch["weight"]`` so padded eval rows count zero):
- policy: cross-entropy ``-sum_a target_a * log softmax(masked logits)_a`` with illegal actions at
  -1e9, over examples whose target is non-zero (a state that cannot be solved has no good move);
- value: BCE on the value LOGIT (``value_loss="bce"``) or squared error of ``sigmoid(logit)``
  (``"mse"``) against 1 = solvable / 0 = not.
``loss = policy_weight * policy + value_weight * value``. With ``shared_backbone=False`` the model
holds two disjoint transformers, so the joint loss trains two independent models (they share only
the global-norm clip).

Train state: ``{"params": nnx.State, "opt_state": optax state, "step": int32, "rng": uint32[2]}``.
Its shardings come from the parameters' logical axis names (``nnx_models.sharding``) resolved on
the mesh; a dimension a mesh axis does not divide is replicated instead (e.g. 1 head on tensor=2).
The state is created by ONE jitted init with those out_shardings, so every device materialises
only its shard and the host never holds a full copy.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from nnx_models import sharding, tokenizer
from nnx_models.config import PRESETS, ModelConfig
from nnx_models.policy_value import PolicyValueNet
from search import game
from train import mesh as mesh_lib

ILLEGAL_LOGIT = game.ILLEGAL_LOGIT
# tokens i32[B, L], policy f32[B, A], legal bool[B, A], value f32[B], weight f32[B]
Batch = dict[str, jax.Array]


# ----------------------------------------------------------------------------- model config


def model_config(model: Mapping[str, Any], tok_cfg: tokenizer.TokenizerConfig) -> ModelConfig:
    """``config.model`` -> ``ModelConfig`` for states encoded with ``tok_cfg`` (configs/common)."""
    common = dict(vocab_size=tok_cfg.vocab_size, n_max=tok_cfg.n_max, dtype=model["dtype"],
                  param_dtype=model["param_dtype"], scan_layers=bool(model["scan_layers"]),
                  shared_backbone=bool(model["shared_backbone"]))
    # Representation / anti-collapse switches (nnx_models.config); absent in old run configs.
    for key, default in (("causal", True), ("positions", "sequence"),
                         ("value_pool", "summary"), ("qk_norm", False),
                         ("pair_symmetric", False), ("field_attention", False),
                         ("pair_results", False)):
        common[key] = model.get(key, default)
    if model["preset"]:
        if model["preset"] not in PRESETS:
            raise ValueError(f"config.model.preset={model['preset']!r} is unknown; allowed "
                             f"{sorted(PRESETS)} or '' (depth-scaled).")
        return PRESETS[model["preset"]](**common)
    depth = model["depth"]
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"config.model.depth={depth!r} is out of range; allowed an int >= 1.")
    overrides = {k: model[k] for k in ("d_model", "num_heads", "num_kv_heads", "head_dim",
                                       "mlp_dim", "head_hidden") if model[k]}
    for k, v in overrides.items():
        if v < 0:
            raise ValueError(f"config.model.{k}={v} is out of range; allowed >= 1 "
                             "(0 = the depth rule's value).")
    if model["mlp"]:
        overrides["mlp"] = model["mlp"]
    return ModelConfig.from_depth(depth, tie_embeddings=bool(model["tie_embeddings"]),
                                  **common, **overrides)


# ----------------------------------------------------------------------------- losses


def losses(logits_BxA: jax.Array, value_logit_B: jax.Array, batch: Batch,
           value_loss: str = "bce") -> dict[str, jax.Array]:
    """Weighted-mean policy/value losses and accuracies of one batch (float32 scalars)."""
    w_B = batch["weight"].astype(jnp.float32)
    target_BxA = batch["policy"].astype(jnp.float32)
    logits_BxA = jnp.where(batch["legal"], logits_BxA.astype(jnp.float32), ILLEGAL_LOGIT)
    logp_BxA = jax.nn.log_softmax(logits_BxA, axis=-1)
    has_pol_B = w_B * (target_BxA.sum(-1) > 0)
    pol_ce_B = -(target_BxA * logp_BxA).sum(-1)
    top1_good_B = jnp.take_along_axis(target_BxA, logits_BxA.argmax(-1)[:, None], -1)[:, 0] > 0

    value_B = batch["value"].astype(jnp.float32)
    value_logit_B = value_logit_B.astype(jnp.float32)
    if value_loss == "bce":
        val_B = optax.sigmoid_binary_cross_entropy(value_logit_B, value_B)
    elif value_loss == "mse":
        val_B = jnp.square(jax.nn.sigmoid(value_logit_B) - value_B)
    else:
        raise ValueError(f"config.train.value_loss={value_loss!r}; allowed 'bce', 'mse'.")
    value_ok_B = (value_logit_B > 0) == (value_B > 0.5)

    mean = lambda x, wt: (x * wt).sum() / jnp.maximum(wt.sum(), 1e-9)
    return {"policy_loss": mean(pol_ce_B, has_pol_B), "value_loss": mean(val_B, w_B),
            "policy_acc": mean(top1_good_B, has_pol_B), "value_acc": mean(value_ok_B, w_B)}


def loss_config(train_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The loss fields of ``config.train`` (what ``loss_fn`` reads)."""
    return {k: train_cfg[k] for k in ("policy_weight", "value_weight", "value_loss")}


def loss_fn(params, graphdef, batch: Batch, loss_cfg: Mapping[str, Any]):
    model = nnx.merge(graphdef, params)
    logits_BxA, value_logit_B = model(batch["tokens"])
    m = losses(logits_BxA, value_logit_B, batch, loss_cfg["value_loss"])
    return joint_loss(m, loss_cfg), m


def joint_loss(m: Mapping[str, Any], loss_cfg: Mapping[str, Any]):
    """``policy_weight * policy_loss + value_weight * value_loss`` (module docstring), for the
    train step, the eval loop and the LoRA steps of test-time training alike."""
    return loss_cfg["policy_weight"] * m["policy_loss"] + loss_cfg["value_weight"] * m["value_loss"]


def train_step(state: dict, batch: Batch, *, graphdef, tx: optax.GradientTransformation,
               loss_cfg: Mapping[str, Any]) -> tuple[dict, dict[str, jax.Array]]:
    """One micro-step: grads of the joint loss, optax update (MultiSteps applies every k-th)."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, m), grads = grad_fn(state["params"], graphdef, batch, loss_cfg)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    rng, _ = jax.random.split(jax.random.wrap_key_data(state["rng"]))
    new = {"params": params, "opt_state": opt_state, "step": state["step"] + 1,
           "rng": jax.random.key_data(rng)}
    # param_norm is measured AFTER the update: a non-finite update shows up before it is saved.
    return new, {"loss": loss, **m, "grad_norm": optax.global_norm(grads),
                 "param_norm": optax.global_norm(params)}


def train_steps(state: dict, acc: dict, batches: Batch, *, graphdef,
                tx: optax.GradientTransformation,
                loss_cfg: Mapping[str, Any]) -> tuple[dict, dict[str, jax.Array]]:
    """K micro-steps in ONE program: ``train_step`` scanned over the leading axis of ``batches``
    (every field [K, B, ...]), the metrics summed into ``acc`` on the device. Why: a small
    model's step takes less time than a dispatch and a host round trip, so one call per update
    leaves the device idle (``benchmarks/bench_train.py``); the host now pulls ``acc`` only when
    it logs. Each step is the same computation as ``train_step``'s, in the same order."""
    def body(carry, batch):
        st, sums = carry
        st, m = train_step(st, batch, graphdef=graphdef, tx=tx, loss_cfg=loss_cfg)
        return (st, jax.tree.map(jnp.add, sums, m)), None

    (state, acc), _ = jax.lax.scan(body, (state, acc), batches)
    return state, acc


def eval_step(params, batch: Batch, *, graphdef, loss_cfg: Mapping[str, Any]) -> dict:
    """Weighted SUMS (and the weights) so batches of any padding combine exactly on the host;
    the joint loss is formed there from the combined terms (``supervised.evaluate``)."""
    _, m = loss_fn(params, graphdef, batch, loss_cfg)
    w = batch["weight"].astype(jnp.float32).sum()
    wp = (batch["weight"] * (batch["policy"].sum(-1) > 0)).astype(jnp.float32).sum()
    sums = {"value_loss": m["value_loss"] * w, "value_acc": m["value_acc"] * w,
            "policy_loss": m["policy_loss"] * wp, "policy_acc": m["policy_acc"] * wp}
    return {"sums": sums, "weight": w, "policy_weight": wp}


# ----------------------------------------------------------------------------- sharding / init


def abstract_train_state(model_cfg: ModelConfig, tok_cfg: tokenizer.TokenizerConfig,
                         tx: optax.GradientTransformation, mesh: Mesh, seed: int):
    """``(graphdef, abstract_state, shardings, init)`` without allocating anything.

    ``abstract_state`` holds ShapeDtypeStructs carrying ``shardings`` (a restore target);
    ``init()`` materialises the real state in those shardings (one jitted call).
    """
    make_model = lambda: PolicyValueNet(model_cfg, tok_cfg, rngs=nnx.Rngs(seed))
    graphdef, abs_params = nnx.split(nnx.eval_shape(make_model))

    def init_fn():
        params = nnx.state(make_model())
        return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32),
                "rng": jax.random.key_data(jax.random.key(seed))}

    p_sh = sharding.mesh_shardings(abs_params, mesh)
    rep = mesh_lib.replicated(mesh)
    abs_state = jax.eval_shape(init_fn)
    opt_sh = optax.tree_map_params(tx, lambda _, s: s, abs_state["opt_state"], p_sh,
                                   transform_non_params=lambda _: rep)
    shardings = {"params": p_sh, "opt_state": opt_sh, "step": rep, "rng": rep}
    abs_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                             abs_state, shardings)
    return graphdef, abs_state, shardings, jax.jit(init_fn, out_shardings=shardings)


def init_train_state(model_cfg: ModelConfig, tok_cfg: tokenizer.TokenizerConfig,
                     tx: optax.GradientTransformation, mesh: Mesh, seed: int):
    """Returns ``(graphdef, state, state_shardings)`` with the state materialised, sharded."""
    graphdef, _, shardings, init = abstract_train_state(model_cfg, tok_cfg, tx, mesh, seed)
    return graphdef, init(), shardings


def batch_shardings(mesh: Mesh, stacked: bool = False) -> dict[str, NamedSharding]:
    """Shardings of a batch's fields; ``stacked``: of a [K, B, ...] stack of batches."""
    s = (mesh_lib.stacked_batch_sharding if stacked else mesh_lib.batch_sharding)(mesh)
    return {k: s for k in ("tokens", "policy", "legal", "value", "weight")}


def jit_train_step(graphdef, tx, loss_cfg: Mapping[str, Any], state_shardings, mesh: Mesh):
    """``train_step`` jitted with explicit shardings; the old state's buffers are donated."""
    fn = functools.partial(train_step, graphdef=graphdef, tx=tx, loss_cfg=dict(loss_cfg))
    return jax.jit(fn, in_shardings=(state_shardings, batch_shardings(mesh)),
                   out_shardings=(state_shardings, mesh_lib.replicated(mesh)), donate_argnums=0)


def jit_train_steps(graphdef, tx, loss_cfg: Mapping[str, Any], state_shardings, mesh: Mesh):
    """``train_steps`` jitted with explicit shardings; state and metric sums are donated. One
    executable per stack length K (the loop uses two: K and 1)."""
    fn = functools.partial(train_steps, graphdef=graphdef, tx=tx, loss_cfg=dict(loss_cfg))
    rep = mesh_lib.replicated(mesh)
    return jax.jit(fn, in_shardings=(state_shardings, rep, batch_shardings(mesh, stacked=True)),
                   out_shardings=(state_shardings, rep), donate_argnums=(0, 1))


def jit_eval_step(graphdef, loss_cfg: Mapping[str, Any], param_shardings_, mesh: Mesh):
    fn = functools.partial(eval_step, graphdef=graphdef, loss_cfg=dict(loss_cfg))
    return jax.jit(fn, in_shardings=(param_shardings_, batch_shardings(mesh)),
                   out_shardings=mesh_lib.replicated(mesh))
