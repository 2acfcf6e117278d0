r"""Test-time training (``--mode=ttt``): per-problem search -> relabel -> LoRA steps -> search.

    python -m train.main --config=train/configs/search.py --mode=ttt --workdir=runs/sl_ttt \
        --config.ttt.source=runs/sl

For each evaluation problem independently (``eval.sets``), with the network of the newest
checkpoint in ``ttt.source`` (a search-and-learn or supervised run; default: ``--workdir``):
epoch 0 searches ``ttt.rollouts`` episodes at ``ttt.simulations`` simulations (different keys); a
problem whose played trajectory is solved stops. Otherwise what the search reached is relabelled
(hindsight targets of every complete episode + verified in-tree solutions, ``train.relabel``),
``ttt.lora_steps`` AdamW steps train fresh LoRA adapters (``nnx_models.lora``) on those rows, and
the next epoch searches again with the adapted network, up to ``ttt.epochs`` epochs. The adapter is
reset (B = 0) before every problem.

Compute per problem = search evaluations x forward FLOPs per state + LoRA steps x batch x
seq_len x train FLOPs per token (a full backward is charged; an upper bound for LoRA).
The comparison point spends the same compute on plain search: repeated independent attempts of
the same search (fresh keys) with the base network. Results: ``ttt.json`` (per-problem phase
timing, solve rate vs compute for both) and ``run.json`` search_evals (methods ``ttt_lora`` and
``mcts_repeat``, one entry per epoch budget).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nnx_models import evaluate as evaluate_lib
from nnx_models import lora
from scaling import flops, run_json
from search import mcts, stats
from train import loop, relabel, run_model, steps
from train import metrics as metrics_lib
from train import setup as setup_lib


def source_setup(config, workdir: str) -> tuple[setup_lib.RunSetup, Any, str]:
    """(setup, base params, source workdir): model/tokenizer/data sections come from the source
    run's ``config.json`` so its checkpoint restores; everything else from ``config``."""
    cfg = setup_lib.as_dict(config)
    source = cfg["ttt"]["source"] or workdir
    path = os.path.join(source, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config.ttt.source={source!r} holds no config.json; pass the "
                                "workdir of a finished search_and_learn or supervised run.")
    with open(path, encoding="utf-8") as f:
        old = json.load(f)
    cfg.update({k: old[k] for k in ("model", "tokenizer", "data")})
    cfg["init"] = {"source": "scratch", "path": ""}
    sl = cfg["sl"]
    s = setup_lib.build(cfg, total_steps=sl["iterations"] * sl["train_steps"])
    params = run_model.load_params(source, s.abs_state["params"], s.shardings["params"])
    return s, params, source


def _lora_step(lora_p, opt_state, rest, batch, *, graphdef, tx, loss_cfg):
    def loss_fn(lp):
        model = nnx.merge(graphdef, lp, rest)
        logits, value_logit = model(batch["tokens"])
        m = steps.losses(logits, value_logit, batch, loss_cfg["value_loss"])
        return steps.joint_loss(m, loss_cfg), m

    (loss, m), grads = jax.value_and_grad(loss_fn, has_aux=True)(lora_p)
    updates, opt_state = tx.update(grads, opt_state, lora_p)
    return optax.apply_updates(lora_p, updates), opt_state, loss


@dataclasses.dataclass(frozen=True)
class Adapter:
    """The source network with fresh LoRA adapters: ``lora0`` (B = 0) and the frozen rest, the
    Gumbel episode runner with Gumbel noise on (rollouts must differ), the AdamW LoRA step."""

    lora0: Any
    rest: Any
    run: Callable  # (params, key, states) -> mcts.Episode
    step: Callable  # (lora, opt_state, rest, batch) -> (lora, opt_state, loss)
    tx: optax.GradientTransformation
    train_flops: float  # one epoch's LoRA steps (a full backward charged)

    def full(self, lp):
        return nnx.merge_state(lp, self.rest)


def make_adapter(s: setup_lib.RunSetup, params) -> Adapter:
    cfg, t = s.cfg, s.cfg["ttt"]
    model = nnx.merge(s.graphdef, params)
    lora.attach(model, rank=t["lora_rank"], alpha=t["lora_alpha"],
                targets=tuple(t["targets"]),
                rngs=nnx.Rngs(cfg["seed"]))
    graphdef, lora0, rest = nnx.split(model, nnx.LoRAParam, ...)
    evaluate = evaluate_lib.make_evaluate(graphdef, s.tok_cfg, s.rules)
    sp = mcts.SearchConfig(num_simulations=t["simulations"],
                           max_num_considered_actions=cfg["eval"]["max_considered"],
                           gumbel_scale=1.0)
    tx = optax.adamw(t["learning_rate"], weight_decay=0.0)
    loss_cfg = steps.loss_config(cfg["train"])
    step = jax.jit(lambda lp, o, r, b: _lora_step(lp, o, r, b, graphdef=graphdef, tx=tx,
                                                  loss_cfg=loss_cfg))
    train_flops = t["lora_steps"] * t["batch_size"] * s.seq_len * flops.train_flops_per_token(
        s.model_cfg, s.seq_len)
    return Adapter(lora0, rest, mcts.make_episode_runner(evaluate, s.rules, sp), step, tx,
                   train_flops)


def ttt_one_problem(s: setup_lib.RunSetup, a: Adapter, es: loop.EvalSet, p_idx: int,
                    timer: metrics_lib.PhaseTimer) -> dict:
    """Search -> relabel -> LoRA steps -> search on problem ``p_idx`` of ``es`` (module
    docstring), from a reset adapter; the problem's record (compute after each epoch)."""
    cfg, rules, t = s.cfg, s.rules, s.cfg["ttt"]
    max_value = cfg["relabel"]["max_value"] or s.tok_cfg.max_value
    state = jax.tree.map(lambda x: jnp.repeat(x[p_idx:p_idx + 1], t["rollouts"], axis=0),
                         es.state)
    lp, opt_state = a.lora0, a.tx.init(a.lora0)  # reset the adapter for every problem
    rec = {"split": es.name, "problem": str(es.problems[p_idx]), "solved_epoch": None,
           "flops": [], "attempt_flops": 0.0}
    spent = 0.0
    for epoch in range(t["epochs"]):
        key = jax.random.fold_in(jax.random.key(cfg["eval"]["seed"]), p_idx * 1000 + epoch)
        with timer("search"):
            ep = jax.device_get(a.run(a.full(lp), key, state))
        search_flops = float(np.asarray(ep.num_evals).sum()) * s.flops_per_eval
        rec["attempt_flops"] = rec["attempt_flops"] or search_flops
        spent += search_flops
        rec["flops"].append(spent)
        if bool(np.asarray(ep.solved).any()):
            rec["solved_epoch"] = epoch
            break
        if epoch + 1 == t["epochs"]:
            break
        with timer("relabel"):
            sols = mcts.solutions(ep, rules)
            parts = [relabel.hindsight(ep, rules, relabel.hindsight_mask(
                ep, 1.0, max_value, cfg["seed"], p_idx, epoch)),
                     relabel.solution_trajectories(ep, sols, rules)]
            rows = relabel.concat_rows(*[relabel.trajectory_rows(tr, s.tokens(tr.states))
                                         for tr in map(jax.device_get, parts)])
        if len(rows["value"]) == 0:
            continue  # nothing reached: search again with a fresh key
        with timer("train"):
            rng = np.random.default_rng([cfg["seed"], p_idx, epoch])
            for _ in range(t["lora_steps"]):
                idx = rng.integers(0, len(rows["value"]), t["batch_size"])
                batch = {k2: jnp.asarray(v[idx]) for k2, v in rows.items()}
                batch["weight"] = jnp.ones((t["batch_size"],), jnp.float32)
                lp, opt_state, _ = a.step(lp, opt_state, a.rest, batch)
            jax.block_until_ready(lp)
        spent += a.train_flops
    rec["time"] = timer.pop()
    return rec


def main(config, workdir: str) -> dict[str, Any]:
    t_start = time.time()
    s, params, source = source_setup(config, workdir)
    t = s.cfg["ttt"]
    os.makedirs(workdir, exist_ok=True)
    a, timer = make_adapter(s, params), metrics_lib.PhaseTimer()
    sets = loop.eval_sets(s.cfg, s.rules)
    per_problem = [ttt_one_problem(s, a, es, i, timer) for es in sets
                   for i in range(len(es.problems))]
    result = summarize(per_problem, t["epochs"])
    with timer("baseline"):
        base = repeat_baseline(s, a.full(a.lora0), per_problem, result, a.run)  # B = 0: base
    out = {"source": source, "config": t, "ttt": result, "plain_search": base,
           "per_problem": per_problem, "wall_time_s": time.time() - t_start}
    run_json.write_json(os.path.join(workdir, "ttt.json"), out)
    _report(s, workdir, result, base, out["wall_time_s"], t,
            "+".join(sorted({p["split"] for p in per_problem})))
    return {"ttt_solve_rate": result[-1]["solve_rate"],
            "plain_solve_rate_same_compute": base[-1]["solve_rate"]}


def summarize(per_problem: list[dict], epochs: int) -> list[dict]:
    """Solve rate and mean compute after each epoch budget (a solved problem stops spending)."""
    out = []
    for e in range(epochs):
        solved = [p["solved_epoch"] is not None and p["solved_epoch"] <= e for p in per_problem]
        spent = [p["flops"][min(e, len(p["flops"]) - 1)] for p in per_problem]
        out.append({"epochs": e + 1, "solve_rate": float(np.mean(solved)),
                    "flops_per_problem": float(np.mean(spent)), "num_problems": len(per_problem)})
    return out


def repeat_baseline(s: setup_lib.RunSetup, params, per_problem: list[dict], ttt: list[dict],
                    run) -> list[dict]:
    """Plain search with the base network: per epoch budget, the fewest independent attempts
    whose compute reaches TTT's mean compute at that budget (never less compute than TTT)."""
    cfg, rules, t = s.cfg, s.rules, s.cfg["ttt"]
    attempt = float(np.mean([p["attempt_flops"] for p in per_problem]))
    out, solved_at = [], {}
    need = [max(e + 1, math.ceil(row["flops_per_problem"] / max(attempt, 1e-9) - 1e-9))
            for e, row in enumerate(ttt)]
    for es in loop.eval_sets(cfg, rules):
        for p_idx in range(len(es.problems)):
            state = jax.tree.map(lambda x, i=p_idx: jnp.repeat(x[i:i + 1], t["rollouts"], 0),
                                 es.state)
            for a in range(max(need)):
                key = jax.random.fold_in(jax.random.key(cfg["eval"]["seed"] + 7919),
                                         p_idx * 1000 + a)
                ep = run(params, key, state)
                if bool(np.asarray(ep.solved).any()):
                    solved_at[(es.name, p_idx)] = a
                    break
    keys = [(es.name, i) for es in loop.eval_sets(cfg, rules) for i in range(len(es.problems))]
    for e, k in enumerate(need):
        rate = float(np.mean([solved_at.get(key, 10**9) < k for key in keys]))
        out.append({"epochs": e + 1, "attempts": k, "solve_rate": rate,
                    "flops_per_problem": k * attempt, "num_problems": len(keys)})
    return out


def _report(s, workdir, ttt, base, wall, t, split: str) -> None:
    rows = [(a["epochs"], f"{a['solve_rate']:.3f}", f"{a['flops_per_problem']:.3g}",
             b["attempts"], f"{b['solve_rate']:.3f}") for a, b in zip(ttt, base, strict=True)]
    loop.log_table("[ttt] solve rate vs compute (per problem): TTT vs plain repeated search", rows,
                 ("epochs", "ttt", "flops", "attempts", "plain"))
    entries = []
    for name, res in (("ttt_lora", ttt), ("mcts_repeat", base)):
        for row in res:
            entries.append({"split": split, "method": name,
                            "simulations": t["simulations"], "epochs": row["epochs"],
                            "evals_per_problem": row["flops_per_problem"] / s.flops_per_eval,
                            "search_flops_per_problem": row["flops_per_problem"],
                            "solve_rate": row["solve_rate"],
                            "solve_rate_ci": list(stats.wilson_ci(
                                round(row["solve_rate"] * row["num_problems"]),
                                row["num_problems"])),
                            "num_problems": row["num_problems"]})
    meta = {"updates": 0, "wall_time_s": wall, "baseline": [], "history": [],
            "selfplay_evals": 0.0}
    loop.record(s, workdir, meta, entries, "completed", mode="ttt")
