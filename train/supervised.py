"""Supervised training of the policy/value network on solver labels: ``train_and_evaluate``.

One call runs (or resumes) a whole run in ``workdir``: ``config.json``, ``checkpoints/<update>/``,
``tb/`` (TensorBoard scalars, and the jax.profiler trace under ``tb/plugins/profile/`` with
``config.profile_steps``), ``metrics.jsonl``, ``run.json``. Step numbers everywhere are optimizer
UPDATES; with gradient accumulation each update consumes ``grad_accum_steps`` micro-batches.
Eval runs at update 0 (the untrained baseline), every ``eval_every`` updates and at the end.

Failure behaviour: bad config -> ValueError before anything is written; a missing dataset ->
FileNotFoundError naming the generate command (unless ``data.generate_if_missing``); a non-finite
loss, gradient or parameter -> ``NonFiniteError`` without saving, so the newest checkpoint is the
last good one; SIGTERM -> checkpoint at the next update, ``run.json``, clean return.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from nnx_models import tokenizer
from scaling import flops, records
from search import stream
from train import checkpoint as ckpt_lib
from train import data as data_lib
from train import mesh as mesh_lib
from train import metrics as metrics_lib
from train import optim, run_record, steps
from train import probe as probe_lib

# Config fields that must match a workdir's checkpoints for a resume to make sense (None: all).
RESUME_KEYS = {"model": None, "tokenizer": None,
               "data": ("problem_class", "n_max", "num_problems", "seed", "name", "source",
                        "mixture", "solvable_share")}


class NonFiniteError(FloatingPointError):
    """Raised when training produced NaN/inf; the newest checkpoint predates it."""


def as_dict(config) -> dict:
    return config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)


def setup(config: Mapping[str, Any], workdir: str) -> dict:
    """Validated pieces every mode needs: rules, tokenizer/model configs, mesh, optimizer."""
    cfg = as_dict(config)
    cls = data_lib.problem_class(cfg)
    tok_cfg = tokenizer.TokenizerConfig(n_max=cls.rules.n_max, **cfg["tokenizer"])
    model_cfg = steps.model_config(cfg["model"], tok_cfg)
    mesh = mesh_lib.make_mesh(cfg["mesh"])
    mesh_lib.check_batch_size(cfg["train"]["batch_size"], mesh)
    tx = optim.make_optimizer(cfg["train"])
    for key in ("log_every", "eval_every"):
        if cfg["train"][key] < 1:
            raise ValueError(f"config.train.{key}={cfg['train'][key]} is out of range; "
                             "allowed >= 1.")
    if cfg["train"]["value_loss"] not in ("bce", "mse"):
        raise ValueError(f"config.train.value_loss={cfg['train']['value_loss']!r}; allowed "
                         "'bce', 'mse'.")
    return dict(cfg=cfg, rules=cls.rules, tok_cfg=tok_cfg, model_cfg=model_cfg, mesh=mesh, tx=tx,
                seq_len=tokenizer.seq_len(tok_cfg))


def check_resume_config(workdir: str, cfg: dict) -> None:
    """Refuses to resume a workdir whose checkpoints came from a different model/data config."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        old = json.load(f)
    for key, fields in RESUME_KEYS.items():
        before, now = old.get(key, {}), cfg[key]
        diff = sorted(k for k in (fields or set(before) | set(now)) if before.get(k) != now.get(k))
        if diff:
            raise ValueError(f"--workdir={workdir} holds a run with a different config.{key} "
                             f"(fields {diff}); resume with the same config or use a new "
                             "--workdir.")


def write_config(workdir: str, cfg: dict) -> None:
    if jax.process_index() == 0:
        records.write_json(os.path.join(workdir, "config.json"), cfg, sort_keys=True)


def evaluate(eval_fn, params, eval_arrays, batch_size: int, mesh, max_batches: int,
             loss_cfg: Mapping[str, Any]) -> dict:
    """Weighted means of the eval metrics over (up to ``max_batches`` of) the eval split."""
    sums, w, wp = {}, 0.0, 0.0
    for batch in data_lib.eval_batches(eval_arrays, batch_size, mesh, max_batches):
        out = jax.device_get(eval_fn(params, batch))
        for k, v in out["sums"].items():
            sums[k] = sums.get(k, 0.0) + float(v)
        w, wp = w + float(out["weight"]), wp + float(out["policy_weight"])
    per_policy = ("policy_loss", "policy_acc")
    out = {k: v / max(wp if k in per_policy else w, 1e-9) for k, v in sums.items()}
    out["loss"] = steps.joint_loss(out, loss_cfg)
    return {f"eval/{k}": v for k, v in out.items()}


def _checkpointer(cfg: dict, workdir: str) -> ckpt_lib.Checkpointer:
    c = cfg["checkpoint"]
    return ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), every=c["every"],
                                 keep=c["keep"], async_save=c["async_save"])


def evaluate_checkpoint(config, workdir: str, step: int | None = None) -> dict[str, float]:
    """Eval-split metrics of checkpoint ``step`` (default: the newest) in ``workdir``; the loss
    half of ``--mode=eval`` (``train.run_model.eval_checkpoint`` adds the search solve rates)."""
    s = setup(config, workdir)
    cfg, mesh = s["cfg"], s["mesh"]
    check_resume_config(workdir, cfg)
    ckpt = _checkpointer(cfg, workdir)
    latest = ckpt.latest_step() if step is None else step
    if latest is None:
        raise FileNotFoundError(f"no checkpoint in {ckpt.directory}; train first with "
                                f"--mode=supervised --workdir={workdir}.")
    eval_arrays = load_inputs(cfg, workdir, s)[1]
    graphdef, abs_state, shardings, _ = steps.abstract_train_state(
        s["model_cfg"], s["tok_cfg"], s["tx"], mesh, cfg["seed"])
    state, _ = ckpt.restore(latest, abs_state)
    ckpt.close()
    loss_cfg = steps.loss_config(cfg["train"])
    eval_step = steps.jit_eval_step(graphdef, loss_cfg, shardings["params"], mesh)
    out = evaluate(eval_step, state["params"], eval_arrays, cfg["train"]["batch_size"], mesh, 0,
                   loss_cfg)
    return {**out, "update": latest}


def load_inputs(cfg: dict, workdir: str, s: dict):
    """(train loader, eval arrays, probe sets {name: arrays}, run-record extras) of either source.

    ``data.source="tfds"``: the fixed TFDS sets (``train.data``); ``"stream"``: the labelled
    stream with its exclusion, a held-out eval stream and the probe sets (``train.stream_data``).
    """
    d, tcfg = cfg["data"], cfg["train"]
    if d["source"] == "tfds":
        train_arrays, eval_arrays = data_lib.load(cfg, workdir, s["tok_cfg"], s["rules"])
        loader = data_lib.Loader(train_arrays, tcfg["batch_size"], s["mesh"], d["shuffle_seed"])
        return loader, eval_arrays, {}, {"train_examples": loader.size}
    if d["source"] != "stream":
        raise ValueError(f"config.data.source={d['source']!r}; allowed 'tfds', 'stream'.")
    from train import stream_data

    sets = stream_data.exclusion_sets(cfg)
    exclude = frozenset(p.canonical for plist in sets.values() for p in plist)
    mk = lambda kind: stream_data.stream_config(cfg, s["rules"], exclude, kind)
    train_cfg = mk("train")
    loader = stream_data.StreamLoader(train_cfg, tcfg["batch_size"], s["mesh"], s["tok_cfg"],
                                      workers=d["workers"])
    eval_arrays = stream_data.held_out(mk("eval"), d["eval_examples"], s["tok_cfg"])
    probes = {"walk": eval_arrays,
              "start": stream_data.held_out(mk("probe"), d["probe_examples"], s["tok_cfg"])}
    extra = {"stream": stream.as_mapping(train_cfg),
             "exclusion": {k: len(v) for k, v in sets.items()}, "_exclusion_sets": sets}
    return loader, eval_arrays, probes, extra


def run_probes(apply, params, probes: dict) -> dict[str, float]:
    """``probe/<set>/n<k>/<metric>`` for every probe set (``train/probe.py``)."""
    out = {}
    for name, arrays in probes.items():
        out.update({f"probe/{name}/{k}": v for k, v in probe_lib.probe(apply, params,
                                                                      arrays).items()})
    return out


def finite_or_raise(host_metrics: dict, update: int, ckpt: ckpt_lib.Checkpointer) -> None:
    bad = {k: v for k, v in host_metrics.items() if not np.isfinite(v)}
    if bad:
        ckpt.wait()
        last = ckpt.latest_step()
        raise NonFiniteError(
            f"non-finite training metrics {bad} by update {update}; stopped without saving. "
            f"Last good checkpoint: {'none' if last is None else f'update {last}'} in "
            f"{ckpt.directory}. Lower config.train.learning_rate or raise warmup_steps, then "
            "rerun the same command to resume from it.")


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
    """Trains (or resumes) the run in ``workdir``; returns the final metrics (see module doc).

    SIGTERM is caught from the first line on, so a preemption during data loading or compilation
    also ends in a clean exit (after at most one update and a checkpoint).
    """
    with ckpt_lib.PreemptionGuard() as guard:
        return _train(config, workdir, guard)


def _train(config, workdir: str, guard: ckpt_lib.PreemptionGuard) -> dict[str, float]:
    t_start = time.time()
    s = setup(config, workdir)
    cfg, mesh, tx, seq_len = s["cfg"], s["mesh"], s["tx"], s["seq_len"]
    tcfg = cfg["train"]
    ckpt_lib.ensure_writable(workdir, create=False)
    check_resume_config(workdir, cfg)
    timer = metrics_lib.PhaseTimer()
    with timer("data_load"):
        loader, eval_arrays, probes, data_extra = load_inputs(cfg, workdir, s)
    ckpt_lib.ensure_writable(workdir)  # only now: a run that fails validation leaves no workdir
    write_config(workdir, cfg)
    if "_exclusion_sets" in data_extra:
        sets = data_extra.pop("_exclusion_sets")
        if jax.process_index() == 0:
            stream.write_exclusion(workdir, sets)
    logging.info("mesh %s; model %s; data %s; %d eval examples, seq_len %d",
                 mesh_lib.describe(mesh), s["model_cfg"], cfg["data"]["source"],
                 len(eval_arrays["tokens"]), seq_len)

    graphdef, abs_state, shardings, init = steps.abstract_train_state(
        s["model_cfg"], s["tok_cfg"], tx, mesh, cfg["seed"])
    ckpt = _checkpointer(cfg, workdir)
    accum, total = tcfg["grad_accum_steps"], tcfg["steps"]
    update, prior = 0, {"wall_time_s": 0.0, "metrics": {}}
    if (latest := ckpt.latest_step()) is not None:
        with timer("restore"):
            state, meta = ckpt.restore(latest, abs_state)
        update, prior = latest, meta
        logging.info("resumed from %s at update %d (data position %d)", ckpt.directory, latest,
                     meta["data_position"])
    else:
        with timer("init"):
            state = init()

    loss_cfg = steps.loss_config(tcfg)
    train_step = steps.jit_train_step(graphdef, tx, loss_cfg, shardings, mesh)
    eval_step = steps.jit_eval_step(graphdef, loss_cfg, shardings["params"], mesh)
    apply = lambda params, tokens: nnx.merge(graphdef, params)(tokens)
    compiled = None
    if update < total:
        with timer("compile"):
            compiled = train_step.lower(state, loader.batch(update * accum)).compile()
    if jax.process_index() == 0 and compiled is not None:  # once per start: memory per device
        mem = compiled.memory_analysis()
        logging.info("compiled train step memory: %s", mem)
        print(f"[train] compiled train step memory stats: {mem}", flush=True)

    counts = flops.param_counts(s["model_cfg"], tok_cfg=s["tok_cfg"])
    flops_per_token = flops.train_flops_per_token(s["model_cfg"], seq_len)
    tokens_per_update = tcfg["batch_size"] * accum * seq_len
    schedule = optim.make_schedule(tcfg)
    device_kind, n_dev = jax.devices()[0].device_kind, jax.device_count()
    writer = metrics_lib.MetricWriter(workdir, total, initial_step=update)
    acc, n_acc, t_log, u_log = None, 0, time.perf_counter(), update
    final: dict[str, float] = dict(prior.get("metrics", {}))
    profiling, status = False, "completed"

    def perf(update: int, u_log: int, dt: float, phases: dict[str, float]) -> dict[str, float]:
        """Throughput over the updates since the last log, eval/checkpoint time excluded."""
        dt -= sum(phases.get(f"time/{k}_s", 0.0) for k in ("eval", "checkpoint"))
        tok_s = (update - u_log) * tokens_per_update / max(dt, 1e-9)
        out = {"train/learning_rate": float(schedule(update - 1)), "perf/tokens_per_s": tok_s,
               "perf/steps_per_s": (update - u_log) / max(dt, 1e-9),
               "perf/tokens": update * tokens_per_update,
               "perf/train_flops": update * tokens_per_update * flops_per_token, **phases}
        util = metrics_lib.mfu(tok_s * flops_per_token, device_kind, n_dev,
                               tcfg["peak_flops_per_device"])
        return out if util is None else {**out, "perf/mfu": util}

    def save() -> None:
        with timer("checkpoint"):
            meta = {"data_position": update * accum, "update": update,
                    "tokens": update * tokens_per_update, "metrics": final,
                    "wall_time_s": prior["wall_time_s"] + time.time() - t_start}
            ckpt.save(update, state, meta)

    try:
        if update == 0 and eval_arrays["tokens"].shape[0]:  # the untrained baseline, at step 0
            with timer("eval"):
                writer.write(0, evaluate(eval_step, state["params"], eval_arrays,
                                         tcfg["batch_size"], mesh, cfg["data"]["eval_batches"],
                                         loss_cfg) | run_probes(apply, state["params"], probes))
        while update < total:
            if cfg["profile_steps"] > 0 and update == cfg["profile_start"] and writer.enabled:
                jax.profiler.start_trace(os.path.join(workdir, "tb"))  # TB profile tab
                profiling = True
            for micro in range(update * accum, (update + 1) * accum):
                with timer("data"):
                    batch = loader.batch(micro)
                with timer("train"):
                    state, m = compiled(state, batch)
                acc = m if acc is None else jax.tree.map(lambda a, b: a + b, acc, m)
                n_acc += 1
            update += 1
            writer.advance(update)
            if profiling and update >= cfg["profile_start"] + cfg["profile_steps"]:
                jax.block_until_ready(state)
                jax.profiler.stop_trace()
                profiling = False
            # A wall-clock budget (benchmarks/bench_learning.py compares variants at equal time)
            # ends the run like its last update: final eval, checkpoint, run.json.
            out_of_time = 0 < tcfg["time_limit_s"] <= time.time() - t_start
            last = update == total or out_of_time
            preempt = guard.requested or ckpt.reached_preemption(update)
            due_save = ckpt.should_save(update) or last or preempt
            if update % tcfg["log_every"] == 0 or update == 1 or last or due_save:
                with timer("log"):
                    host = {f"train/{k}": float(v) / n_acc for k, v in jax.device_get(acc).items()}
                    finite_or_raise(host, update, ckpt)
                    host.update(perf(update, u_log, time.perf_counter() - t_log, timer.pop()))
                    writer.write(update, host)
                    final.update(host)
                    acc, n_acc, t_log, u_log = None, 0, time.perf_counter(), update
            if update % tcfg["eval_every"] == 0 or last:
                with timer("eval"):
                    ev = evaluate(eval_step, state["params"], eval_arrays, tcfg["batch_size"],
                                  mesh, cfg["data"]["eval_batches"], loss_cfg)
                    ev.update(run_probes(apply, state["params"], probes))
                writer.write(update, ev)
                final.update(ev)
            if due_save:
                save()
            if preempt:
                status = "preempted"
                logging.warning("preemption signal: saved update %d; exiting cleanly", update)
                break
            if out_of_time:
                status = "time_limit"
                break
        if status == "completed" and update == total and ckpt.latest_step() != total:
            save()  # e.g. a resumed run that had already finished training
    finally:  # also on errors: finish pending saves, flush the logs
        if profiling:
            jax.profiler.stop_trace()
        ckpt.close()
        writer.close()
        if hasattr(loader, "close"):
            loader.close()
    keep = ("train/loss", "train/policy_loss", "train/value_loss", "train/policy_acc",
            "train/value_acc", "eval/loss", "eval/policy_loss", "eval/value_loss",
            "eval/policy_acc", "eval/value_acc")
    final_metrics = {k: final[k] for k in keep if k in final}
    final_metrics.update({k: v for k, v in final.items() if k.startswith("probe/")})
    for name in probes:
        final_metrics[f"probe/{name}/collapsed"] = float(probe_lib.collapsed(
            {k[len(f"probe/{name}/"):]: v for k, v in final.items()
             if k.startswith(f"probe/{name}/")}))
    run_record.write_run_record(
        workdir, name=cfg["name"], config=cfg, param_counts=counts,
        flops_per_token=flops_per_token, tokens=update * tokens_per_update, steps=update,
        final_metrics=final_metrics, wall_time_s=prior["wall_time_s"] + time.time() - t_start,
        extra={"seq_len": seq_len, "status": status, "mode": "supervised", **data_extra})
    return {**final_metrics, "status": status, "update": update}
