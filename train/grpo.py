r"""Group-relative policy gradient (``--mode=grpo``): the RL comparison point for search-and-learn.

    python -m train.main --config=train/configs/search.py --mode=grpo --workdir=runs/grpo

Each iteration draws ``grpo.problems`` training problems from the same curriculum as
search-and-learn, samples ``grpo.group`` G policy rollouts of each (``search.baselines``
sampling, ``grpo.temperature``), and gives every move of rollout g the advantage
``A_g = r_g - mean(r)`` over its group (``/ std`` with ``grpo.normalize``), r = 1 if solved.
``grpo.steps_per_iter`` optimizer steps then minimise the clipped importance-ratio objective
``-min(rho * A, clip(rho, 0.8, 1.2) * A)`` on the policy logits (rho = pi / pi_old; one step is
plain REINFORCE with a group baseline), plus ``grpo.kl_coef * KL(pi || pi_start)`` to the starting
policy and, with ``grpo.value_weight > 0``, a BCE value loss on the rollout outcomes (the value
head is not part of the RL objective but MCTS evaluation needs a value; 0 leaves it untrained).

Logging, evaluation (played-trajectory MCTS solve rate vs the uniform-prior baseline) and
``run.json`` are the loop phases search-and-learn runs too (``train.loop``), so both appear in
one comparison table. GRPO keeps no checkpoints: every call starts from ``config.init``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nnx_models import tokenizer
from search import baselines, game, mcts, problems
from train import checkpoint as ckpt_lib
from train import loop, relabel, selfplay
from train import mesh as mesh_lib
from train import setup as setup_lib

CLIP = 0.2


def grpo_loss(params, graphdef, batch: dict, ref_logp_BxA, old_logp_B, gcfg: dict):
    """Clipped group-relative policy loss + KL to the start policy + optional value BCE."""
    model = nnx.merge(graphdef, params)
    logits_BxA, value_logit_B = model(batch["tokens"])
    logits_BxA = jnp.where(batch["legal"], logits_BxA.astype(jnp.float32), game.ILLEGAL_LOGIT)
    logp_BxA = jax.nn.log_softmax(logits_BxA, -1)
    logp_B = (logp_BxA * batch["policy"]).sum(-1)  # policy = one-hot of the move played
    w_B = batch["weight"]
    ratio_B = jnp.exp(logp_B - old_logp_B)
    adv_B = batch["advantage"]
    pg_B = -jnp.minimum(ratio_B * adv_B, jnp.clip(ratio_B, 1 - CLIP, 1 + CLIP) * adv_B)
    p_BxA = jnp.exp(logp_BxA)
    kl_B = jnp.where(batch["legal"], p_BxA * (logp_BxA - ref_logp_BxA), 0.0).sum(-1)
    val_B = optax.sigmoid_binary_cross_entropy(value_logit_B.astype(jnp.float32), batch["value"])
    mean = lambda x: (x * w_B).sum() / jnp.maximum(w_B.sum(), 1.0)
    loss = mean(pg_B) + gcfg["kl_coef"] * mean(kl_B) + gcfg["value_weight"] * mean(val_B)
    return loss, {"pg_loss": mean(pg_B), "kl": mean(kl_B), "value_loss": mean(val_B)}


def _logp(params, batch, *, graphdef):
    logits_BxA, _ = nnx.merge(graphdef, params)(batch["tokens"])
    masked_BxA = jnp.where(batch["legal"], logits_BxA.astype(jnp.float32), game.ILLEGAL_LOGIT)
    return jax.nn.log_softmax(masked_BxA, -1)


def _step(state, batch, ref_logp, old_logp, *, graphdef, tx, gcfg):
    (loss, m), grads = jax.value_and_grad(grpo_loss, has_aux=True)(
        state["params"], graphdef, batch, ref_logp, old_logp, gcfg)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    new = dict(state, params=optax.apply_updates(state["params"], updates), opt_state=opt_state,
               step=state["step"] + 1)
    return new, {"loss": loss, **m, "grad_norm": optax.global_norm(grads)}


def rollout_batch(rules: game.Rules, tok_cfg, ro: baselines.Rollouts, start: game.State,
                  normalize: bool) -> dict:
    """Rollouts [P, G] -> flat per-move rows [P*G*T] with advantages (inactive rows weight 0)."""
    ro = jax.device_get(ro)
    p, g = ro.solved.shape
    r = ro.solved.astype(np.float32)
    adv = r - r.mean(1, keepdims=True)
    if normalize:
        adv = adv / (r.std(1, keepdims=True) + 1e-6)
    starts = jax.tree.map(lambda x: np.repeat(np.asarray(x), g, axis=0), start)
    traj = jax.device_get(relabel.replay_actions(starts, jnp.asarray(ro.actions.reshape(p * g, -1)),
                                                 rules))
    t = traj.actions.shape[1]
    flat = lambda x: np.asarray(x).reshape((p * g * t,) + np.shape(x)[2:])
    per_move = lambda x: np.repeat(x.reshape(p * g, 1), t, axis=1)
    tokens = np.asarray(tokenizer.encode(traj.states, tok_cfg))
    return {"tokens": flat(tokens), "policy": flat(traj.policy),
            "legal": flat(traj.legal), "advantage": flat(per_move(adv)),
            "value": flat(per_move(r)), "weight": flat(traj.active).astype(np.float32)}


def prepare(config, workdir: str) -> setup_lib.RunSetup:
    """The run's ``RunSetup`` with the curriculum and eval sets; checked before any write."""
    cfg = setup_lib.as_dict(config)
    g = cfg["grpo"]
    s = setup_lib.build(cfg, total_steps=g["iterations"] * g["steps_per_iter"], from_init=True)
    rows = g["problems"] * g["group"] * (s.rules.n_max - 1)
    mesh_lib.check_batch_size(rows, s.mesh, "config.grpo.problems * group * (n_max - 1)")
    ckpt_lib.ensure_writable(workdir)
    setup_lib.check_resume_config(workdir, s.cfg)
    setup_lib.write_config(workdir, s.cfg)
    data = loop.LoopData(selfplay.Curriculum(s.cfg, s.rules), loop.eval_sets(s.cfg, s.rules),
                         loop.sims_list(s.cfg))
    return dataclasses.replace(s, data=data)


def compiled_steps(s: setup_lib.RunSetup):
    """(the jitted GRPO update, the jitted log-probabilities of the policy)."""
    g, batch_sh = s.cfg["grpo"], mesh_lib.batch_sharding(s.mesh)
    gcfg = {"kl_coef": float(g["kl_coef"]), "value_weight": float(g["value_weight"])}
    step = jax.jit(functools.partial(_step, graphdef=s.graphdef, tx=s.tx, gcfg=gcfg),
                   in_shardings=(s.shardings, batch_sh, batch_sh, batch_sh),
                   out_shardings=(s.shardings, mesh_lib.replicated(s.mesh)), donate_argnums=0)
    return step, jax.jit(functools.partial(_logp, graphdef=s.graphdef))


def rollouts(run: loop.LoopRun, sample, it: int):
    """(rollouts, start states) of iteration ``it``: ``grpo.group`` samples of each problem."""
    s, g, seed = run.s, run.s.cfg["grpo"], run.s.cfg["seed"]
    probs, _ = s.data.curriculum.batch(run.meta["level"], g["problems"], seed, it)
    start = problems.problems_to_state(probs, s.rules)
    ro = sample(run.state["params"], jax.random.fold_in(jax.random.key(seed), it), start)
    run.meta["selfplay_evals"] += float(np.asarray(ro.evals).sum())
    return ro, start


def train_phase(run: loop.LoopRun, steps, ref_params, ro, start) -> dict[str, float]:
    """``grpo.steps_per_iter`` clipped updates on the rollouts' moves; the last step's metrics."""
    s, g = run.s, run.s.cfg["grpo"]
    step, logp = steps
    batch_sh = mesh_lib.batch_sharding(s.mesh)
    host = rollout_batch(s.rules, s.tok_cfg, ro, start, g["normalize"])
    batch = {k: jax.device_put(v, batch_sh) for k, v in host.items()}
    old = (logp(run.state["params"], batch) * batch["policy"]).sum(-1)
    ref = logp(ref_params, batch)
    for _ in range(g["steps_per_iter"]):
        run.state, m = step(run.state, batch, ref, old)
    run.meta["updates"] += g["steps_per_iter"]
    return {f"train/{k}": float(v) for k, v in jax.device_get(m).items()}


def main(config, workdir: str) -> dict[str, Any]:
    t_start = time.time()
    s = prepare(config, workdir)
    g = s.cfg["grpo"]
    state, _, _, _ = setup_lib.restore_or_init(s)  # no checkpointer: the init source
    ref_params = jax.tree.map(jnp.copy, state["params"])
    sample = mcts.make_batched(functools.partial(
        baselines.sample_rollouts, evaluate=s.evaluate, rules=s.rules, k=g["group"],
        temperature=g["temperature"]), s.rules, s.mesh)
    steps = compiled_steps(s)
    run = loop.start(s, workdir, state, None, 0, t_start, g["iterations"], log_untrained=False)
    try:
        for it in range(g["iterations"]):
            with run.timer("search"):
                ro, start = rollouts(run, sample, it)
            with run.timer("train"):
                m = train_phase(run, steps, ref_params, ro, start)
            m["selfplay/solve_rate"] = float(np.asarray(ro.solved).mean())
            loop.maybe_eval_and_save(run, it + 1, it + 1 == g["iterations"], m)
            phases = loop.end_iteration(run, it + 1, m)
            loop.log_iteration(f"[grpo] iteration {it + 1}/{g['iterations']}: rollout solve "
                               f"{m['selfplay/solve_rate']:.3f}, loss {m['train/loss']:.4f}",
                               {k.split("/")[1][:-2]: v for k, v in phases.items()},
                               it == run.it0)
    finally:
        run.writer.close()
    run.meta["wall_time_s"] = time.time() - t_start
    loop.record(s, workdir, run.meta, run.last_eval, "completed", mode="grpo")
    return loop.eval_metrics(run.last_eval + run.meta["baseline"])
