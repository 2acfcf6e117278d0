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
``run.json`` are those of ``train.search_and_learn``, so both appear in one comparison table.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from search import baselines, game, mcts, problems
from train import checkpoint as ckpt_lib
from train import mesh as mesh_lib
from train import metrics as metrics_lib
from train import relabel, supervised
from train import search_and_learn as sl

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


def rollout_batch(s: dict, ro: baselines.Rollouts, start: game.State, normalize: bool) -> dict:
    """Rollouts [P, G] -> flat per-move rows [P*G*T] with advantages (inactive rows weight 0)."""
    ro = jax.device_get(ro)
    p, g = ro.solved.shape
    r = ro.solved.astype(np.float32)
    adv = r - r.mean(1, keepdims=True)
    if normalize:
        adv = adv / (r.std(1, keepdims=True) + 1e-6)
    starts = jax.tree.map(lambda x: np.repeat(np.asarray(x), g, axis=0), start)
    traj = jax.device_get(relabel.replay_actions(starts, jnp.asarray(ro.actions.reshape(p * g, -1)),
                                                 s["rules"]))
    t = traj.actions.shape[1]
    flat = lambda x: np.asarray(x).reshape((p * g * t,) + np.shape(x)[2:])
    per_move = lambda x: np.repeat(x.reshape(p * g, 1), t, axis=1)
    return {"tokens": flat(sl._tokens(traj.states, s["tok_cfg"])), "policy": flat(traj.policy),
            "legal": flat(traj.legal), "advantage": flat(per_move(adv)),
            "value": flat(per_move(r)), "weight": flat(traj.active).astype(np.float32)}


def main(config, workdir: str) -> dict[str, Any]:
    t_start = time.time()
    cfg0 = supervised.as_dict(config)
    g = cfg0["grpo"]
    for key in ("iterations", "problems", "group", "steps_per_iter"):
        if g[key] < 1:
            raise ValueError(f"config.grpo.{key}={g[key]} is out of range; allowed >= 1.")
    if g["group"] < 2:
        raise ValueError(f"config.grpo.group={g['group']} is out of range; allowed >= 2 "
                         "(the advantage is relative to the group mean).")
    s = sl.build(config, workdir, total_steps=g["iterations"] * g["steps_per_iter"])
    cfg, rules, mesh = s["cfg"], s["rules"], s["mesh"]
    rows = g["problems"] * g["group"] * (rules.n_max - 1)
    mesh_lib.check_batch_size(rows, mesh, "config.grpo.problems * group * (n_max - 1)")
    ckpt_lib.ensure_writable(workdir)
    supervised.check_resume_config(workdir, cfg)
    supervised.write_config(workdir, cfg)
    curriculum, sets = sl.Curriculum(cfg, rules), sl.eval_sets(cfg, rules)
    state = sl.initial_state(s)
    ref_params = jax.tree.map(jnp.copy, state["params"])
    sample = mcts.make_batched(functools.partial(
        baselines.sample_rollouts, evaluate=s["evaluate"], rules=rules, k=g["group"],
        temperature=g["temperature"]), rules, mesh)
    gcfg = {"kl_coef": float(g["kl_coef"]), "value_weight": float(g["value_weight"])}
    batch_sh = mesh_lib.batch_sharding(mesh)
    step = jax.jit(functools.partial(_step, graphdef=s["graphdef"], tx=s["tx"], gcfg=gcfg),
                   in_shardings=(s["shardings"], batch_sh, batch_sh, batch_sh),
                   out_shardings=(s["shardings"], mesh_lib.replicated(mesh)), donate_argnums=0)
    logp = jax.jit(functools.partial(_logp, graphdef=s["graphdef"]))
    model_eval = sl.Evaluator(s["evaluate"], rules, sl.sims_list(cfg), cfg, mesh, "mcts",
                              s["flops_per_eval"])
    meta = {"level": 1, "updates": 0, "wall_time_s": 0.0, "selfplay_evals": 0.0, "history": [],
            "baseline": sl.Evaluator(None, rules, sl.sims_list(cfg), cfg, mesh, "uniform_mcts",
                                     0.0, "uniform")(None, sets)}
    entries = model_eval(state["params"], sets)
    meta["history"].append({"iteration": 0, "updates": 0, "selfplay_evals": 0.0,
                            "entries": entries})
    writer = metrics_lib.MetricWriter(workdir, g["iterations"])
    timer = metrics_lib.PhaseTimer()
    try:
        for it in range(g["iterations"]):
            with timer("search"):
                probs, _ = curriculum.batch(meta["level"], g["problems"], cfg["seed"], it)
                start = problems.problems_to_state(probs, rules)
                ro = sample(state["params"], jax.random.fold_in(jax.random.key(cfg["seed"]), it),
                            start)
                meta["selfplay_evals"] += float(np.asarray(ro.evals).sum())
            with timer("train"):
                host = rollout_batch(s, ro, start, g["normalize"])
                batch = {k: jax.device_put(v, batch_sh) for k, v in host.items()}
                old = (logp(state["params"], batch) * batch["policy"]).sum(-1)
                ref = logp(ref_params, batch)
                for _ in range(g["steps_per_iter"]):
                    state, m = step(state, batch, ref, old)
                m = {f"train/{k}": float(v) for k, v in jax.device_get(m).items()}
                meta["updates"] += g["steps_per_iter"]
            m["selfplay/solve_rate"] = float(np.asarray(ro.solved).mean())
            last = it + 1 == g["iterations"]
            if (it + 1) % cfg["sl"]["eval_every"] == 0 or last:
                with timer("eval"):
                    entries = model_eval(state["params"], sets)
                m.update(sl.eval_metrics(entries))
                meta["history"].append({"iteration": it + 1, "updates": meta["updates"],
                                        "selfplay_evals": meta["selfplay_evals"],
                                        "entries": entries})
            phases = timer.pop()
            writer.write(it + 1, {**m, **phases})
            writer.advance(it + 1)
            sl.log_table(f"[grpo] iteration {it + 1}/{g['iterations']}: rollout solve "
                         f"{m['selfplay/solve_rate']:.3f}, loss {m['train/loss']:.4f}",
                         [(k.split("/")[1][:-2], f"{v:.2f}") for k, v in phases.items()],
                         ("phase", "seconds"))
    finally:
        writer.close()
    meta["wall_time_s"] = time.time() - t_start
    sl.record(s, workdir, meta, entries, "completed", mode="grpo")
    return sl.eval_metrics(entries + meta["baseline"])
