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

import dataclasses
import os
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
from absl import logging
from flax import nnx

from scaling import flops
from search import stream
from train import checkpoint as ckpt_lib
from train import data as data_lib
from train import fast_loop, optim, run_record, steps
from train import mesh as mesh_lib
from train import metrics as metrics_lib
from train import probe as probe_lib
from train import setup as setup_lib
from train.configs import common
from train.setup import NonFiniteError, as_dict  # noqa: F401  (callers name them here)

KEEP = ("train/loss", "train/policy_loss", "train/value_loss", "train/policy_acc",
        "train/value_acc", "eval/loss", "eval/policy_loss", "eval/value_loss", "eval/policy_acc",
        "eval/value_acc")


class Inputs(NamedTuple):
    """A supervised run's data: the train loader, the eval split, the probe sets and what the
    run record says about them (``_exclusion_sets``: the stream's exclusion, written once)."""

    loader: Any
    eval_arrays: dict
    probes: dict
    extra: dict


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


def evaluate_checkpoint(config, workdir: str, step: int | None = None) -> dict[str, float]:
    """Eval-split metrics of checkpoint ``step`` (default: the newest) in ``workdir``; the loss
    half of ``--mode=eval`` (``train.run_model.eval_checkpoint`` adds the search solve rates)."""
    s = setup_lib.build(config)
    setup_lib.check_resume_config(workdir, s.cfg)
    ckpt = setup_lib.checkpointer(s, workdir)
    latest = ckpt.latest_step() if step is None else step
    if latest is None:
        raise FileNotFoundError(f"no checkpoint in {ckpt.directory}; train first with "
                                f"--mode=supervised --workdir={workdir}.")
    eval_arrays = load_inputs(s, workdir).eval_arrays
    state, _ = ckpt.restore(latest, s.abs_state)
    ckpt.close()
    out = evaluate(s.program.eval_step, state["params"], eval_arrays,
                   s.cfg["train"]["batch_size"], s.mesh, 0, steps.loss_config(s.cfg["train"]))
    return {**out, "update": latest}


def load_inputs(s: setup_lib.RunSetup, workdir: str) -> Inputs:
    """``Inputs`` of either source. ``data.source="tfds"``: the fixed TFDS sets
    (``train.data``); ``"stream"``: the labelled stream with its exclusion, a held-out eval
    stream and the probe sets (``train.stream_data``)."""
    cfg = s.cfg
    d, tcfg = cfg["data"], cfg["train"]
    if d["source"] == "tfds":
        train_arrays, eval_arrays = data_lib.load(cfg, workdir, s.tok_cfg, s.rules)
        loader = data_lib.Loader(train_arrays, tcfg["batch_size"], s.mesh, d["shuffle_seed"])
        return Inputs(loader, eval_arrays, {}, {"train_examples": loader.size})
    if d["source"] != "stream":
        raise ValueError(f"config.data.source={d['source']!r}; allowed 'tfds', 'stream'.")
    from train import stream_data

    sets, mk = stream_data.run_streams(cfg, s.rules)
    train_cfg = mk("train")
    loader = stream_data.StreamLoader(train_cfg, tcfg["batch_size"], s.mesh, s.tok_cfg,
                                      workers=d["workers"],
                                      block=steps_per_call(s) * tcfg["grad_accum_steps"])
    eval_arrays = stream_data.held_out(mk("eval"), d["eval_examples"], s.tok_cfg)
    probes = {"walk": eval_arrays,
              "start": stream_data.held_out(mk("probe"), d["probe_examples"], s.tok_cfg)}
    extra = {"stream": stream.as_mapping(train_cfg),
             "exclusion": {k: len(v) for k, v in sets.items()}, "_exclusion_sets": sets}
    return Inputs(loader, eval_arrays, probes, extra)


def steps_per_call(s: setup_lib.RunSetup) -> int:
    """K, the updates per dispatch of this run (``train.fast_loop``)."""
    t = s.cfg["train"]
    per_update = flops.train_flops_per_token(s.model_cfg, s.seq_len) * s.seq_len * \
        t["batch_size"] * t["grad_accum_steps"]
    return fast_loop.steps_per_call(s.cfg, per_update)


def run_probes(apply, params, probes: dict) -> dict[str, float]:
    """``probe/<set>/n<k>/<metric>`` for every probe set (``train/probe.py``)."""
    out = {}
    for name, arrays in probes.items():
        out.update({f"probe/{name}/{k}": v for k, v in probe_lib.probe(apply, params,
                                                                      arrays).items()})
    return out


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
    """Trains (or resumes) the run in ``workdir``; returns the final metrics (see module doc).

    SIGTERM is caught from the first line on, so a preemption during data loading or compilation
    also ends in a clean exit (after at most one update and a checkpoint).
    """
    with ckpt_lib.PreemptionGuard() as guard:
        return _train(config, workdir, guard)


def prepare(config, workdir: str, timer: metrics_lib.PhaseTimer) -> setup_lib.RunSetup:
    """The run's ``RunSetup`` with its ``Inputs`` and checkpointer; nothing is written unless
    every check (config, resume compatibility, data) passed."""
    s = setup_lib.build(config)
    ckpt_lib.ensure_writable(workdir, create=False)
    setup_lib.check_resume_config(workdir, s.cfg)
    with timer("data_load"):
        inputs = load_inputs(s, workdir)
    ckpt_lib.ensure_writable(workdir)  # only now: a run that fails validation leaves no workdir
    setup_lib.write_config(workdir, s.cfg)
    if "_exclusion_sets" in inputs.extra:
        extra = dict(inputs.extra)
        sets = extra.pop("_exclusion_sets")
        inputs = inputs._replace(extra=extra)
        if jax.process_index() == 0:
            stream.write_exclusion(workdir, sets)
    logging.info("mesh %s; model %s; data %s; %d eval examples, seq_len %d",
                 mesh_lib.describe(s.mesh), s.model_cfg, s.cfg["data"]["source"],
                 len(inputs.eval_arrays["tokens"]), s.seq_len)
    return dataclasses.replace(s, data=inputs, ckpt=setup_lib.checkpointer(s, workdir))


@dataclasses.dataclass
class Progress:
    """The mutable part of a supervised run: the train state, the update count, what has been
    logged since the last log line, and the run's final metrics so far."""

    s: setup_lib.RunSetup
    workdir: str
    state: dict
    update: int
    prior: dict  # the restored checkpoint's meta (wall time, metrics), or a fresh one
    t_start: float
    timer: metrics_lib.PhaseTimer
    writer: metrics_lib.MetricWriter
    final: dict
    feeder: fast_loop.Feeder | None = None
    k: int = 1  # updates per dispatch (``train.fast_loop``)
    programs: dict = dataclasses.field(default_factory=dict)  # micro-steps per call -> compiled
    zeros: Any = None  # ShapeDtypeStructs of the metric sums
    started: bool = False  # this start has logged its start-up phases
    acc: Any = None
    n_acc: int = 0
    t_log: float = 0.0
    u_log: int = 0
    profiling: bool = False

    @property
    def tokens_per_update(self) -> int:
        t = self.s.cfg["train"]
        return t["batch_size"] * t["grad_accum_steps"] * self.s.seq_len

    def apply(self, params, tokens):
        return nnx.merge(self.s.graphdef, params)(tokens)

    def evaluate(self) -> dict[str, float]:
        s, cfg = self.s, self.s.cfg
        with self.timer("eval"):
            ev = evaluate(s.program.eval_step, self.state["params"], s.data.eval_arrays,
                          cfg["train"]["batch_size"], s.mesh, cfg["data"]["eval_batches"],
                          steps.loss_config(cfg["train"]))
            return ev | run_probes(self.apply, self.state["params"], s.data.probes)

    def perf(self, phases: dict[str, float]) -> dict[str, float]:
        """Throughput over the updates since the last log, eval/checkpoint time excluded."""
        s, tcfg = self.s, self.s.cfg["train"]
        dt = time.perf_counter() - self.t_log
        dt -= sum(phases.get(f"time/{k}_s", 0.0) for k in ("eval", "checkpoint"))
        per_token = flops.train_flops_per_token(s.model_cfg, s.seq_len)
        n, tokens = self.update - self.u_log, self.update * self.tokens_per_update
        tok_s = n * self.tokens_per_update / max(dt, 1e-9)
        out = {"train/learning_rate": float(optim.make_schedule(tcfg)(self.update - 1)),
               "perf/tokens_per_s": tok_s, "perf/steps_per_s": n / max(dt, 1e-9),
               "perf/tokens": tokens, "perf/train_flops": tokens * per_token, **phases}
        util = metrics_lib.mfu(tok_s * per_token, jax.devices()[0].device_kind,
                               jax.device_count(), tcfg["peak_flops_per_device"])
        return out if util is None else {**out, "perf/mfu": util}

    def save(self) -> None:
        with self.timer("checkpoint"):
            accum = self.s.cfg["train"]["grad_accum_steps"]
            meta = {"data_position": self.update * accum, "update": self.update,
                    "tokens": self.update * self.tokens_per_update, "metrics": self.final,
                    "wall_time_s": self.prior["wall_time_s"] + time.time() - self.t_start}
            self.s.ckpt.save(self.update, self.state, meta)


def restore_or_init(s: setup_lib.RunSetup, workdir: str, t_start: float,
                    timer: metrics_lib.PhaseTimer) -> Progress:
    """``Progress`` at the newest checkpoint of the workdir, or at update 0 of a fresh state."""
    state, _, meta, update = setup_lib.restore_or_init(s, timer=timer)
    if meta is not None:
        logging.info("resumed from %s at update %d (data position %d)", s.ckpt.directory, update,
                     meta["data_position"])
    prior = meta or {"wall_time_s": 0.0, "metrics": {}}
    writer = metrics_lib.MetricWriter(workdir, s.cfg["train"]["steps"], initial_step=update)
    return Progress(s, workdir, state, update, prior, t_start, timer, writer,
                    dict(prior.get("metrics", {})), feeder=fast_loop.Feeder(s.data.loader),
                    k=steps_per_call(s), t_log=time.perf_counter(), u_log=update)


def chunk(p: Progress, update: int) -> int:
    """Updates in the call that starts at ``update`` (``fast_loop.chunk``)."""
    return fast_loop.chunk(update, p.k, p.s.cfg, p.s.ckpt.every)


def compile_steps(p: Progress) -> None:
    """Compiles the run's train programs before the first update: K updates per call and one
    (``train.fast_loop``), for stacks shaped like the first one, which the feeder keeps for
    the first call. Process 0 prints the memory per device once per start."""
    s, accum, total = p.s, p.s.cfg["train"]["grad_accum_steps"], p.s.cfg["train"]["steps"]
    if p.update >= total:
        return
    with p.timer("data"):
        first = p.feeder.prefetch(p.update * accum, chunk(p, p.update) * accum)
    sizes = {accum} | ({p.k * accum} if p.k > 1 and total - p.update >= p.k else set())
    with p.timer("compile"):
        p.zeros, p.programs = fast_loop.compile_programs(s.program, first, sizes)
    if jax.process_index() == 0:
        mem = p.programs[max(sizes)].memory_analysis()
        logging.info("compiled train step memory: %s", mem)
        print(f"[train] compiled train step memory stats ({max(sizes) // accum} updates per "
              f"call): {mem}", flush=True)


def train_phase(p: Progress) -> None:
    """One call: ``chunk`` updates of ``grad_accum_steps`` micro-batches each (profiled when
    configured); the next call's stack is transferred while this one runs."""
    cfg, accum = p.s.cfg, p.s.cfg["train"]["grad_accum_steps"]
    if cfg["profile_steps"] > 0 and p.update == cfg["profile_start"] and p.writer.enabled:
        jax.profiler.start_trace(os.path.join(p.workdir, "tb"))  # TB profile tab
        p.profiling = True
    n = chunk(p, p.update)
    with p.timer("data"):
        batches = p.feeder.take(p.update * accum, n * accum)
    with p.timer("train"):
        if p.acc is None:
            p.acc = fast_loop.zeros(p.zeros)
        p.state, p.acc = p.programs[n * accum](p.state, p.acc, batches)
    p.n_acc += n * accum
    p.update += n
    p.writer.advance(p.update)
    if p.update < cfg["train"]["steps"]:
        with p.timer("data"):
            p.feeder.prefetch(p.update * accum, chunk(p, p.update) * accum)
    if p.profiling and p.update >= cfg["profile_start"] + cfg["profile_steps"]:
        jax.block_until_ready(p.state)
        jax.profiler.stop_trace()
        p.profiling = False


def maybe_eval_and_save(p: Progress, guard: ckpt_lib.PreemptionGuard) -> str | None:
    """Logs, evaluates and saves on their cadences after an update; returns the status that
    ends the run (preempted, time_limit) or None to go on."""
    tcfg, ckpt = p.s.cfg["train"], p.s.ckpt
    # A wall-clock budget (benchmarks/bench_learning.py compares variants at equal time) ends
    # the run like its last update: final eval, checkpoint, run.json.
    limit = tcfg["time_limit_s"]
    out_of_time = limit is not None and limit <= time.time() - p.t_start
    last = p.update == tcfg["steps"] or out_of_time
    preempt = guard.requested or ckpt.reached_preemption(p.update)
    due_save = ckpt.should_save(p.update) or last or preempt
    if p.update % tcfg["log_every"] == 0 or p.update == 1 or last or due_save:
        with p.timer("log"):
            host = {f"train/{k}": float(v) / p.n_acc for k, v in jax.device_get(p.acc).items()}
            setup_lib.finite_or_raise(host, p.update, ckpt)
            phases = p.timer.pop()
            if not p.started:  # this start's first log line: its start-up, once
                p.started = True
                phases["time/startup_s"] = time.time() - p.t_start
                print_startup(phases, p.update, p.k)
            host.update(p.perf(phases))
            p.writer.write(p.update, host)
            p.final.update(host)
            p.acc, p.n_acc, p.t_log, p.u_log = None, 0, time.perf_counter(), p.update
    if common.due(p.update, tcfg["eval_every"]) or last:
        ev = p.evaluate()
        p.writer.write(p.update, ev)
        p.final.update(ev)
    if due_save:
        p.save()
    if preempt:
        logging.warning("preemption signal: saved update %d; exiting cleanly", p.update)
        return "preempted"
    return "time_limit" if out_of_time else None


def print_startup(phases: dict[str, float], update: int, k: int) -> None:
    """One line with where this start's time went before its first logged update."""
    if jax.process_index() != 0:
        return
    parts = ", ".join(f"{name[5:-2]} {v:.1f} s" for name, v in phases.items()
                      if name != "time/startup_s" and v >= 0.05)
    print(f"[train] start-up {phases['time/startup_s']:.1f} s to update {update} ({parts}); "
          f"{k} updates per call", flush=True)


def _train(config, workdir: str, guard: ckpt_lib.PreemptionGuard) -> dict[str, float]:
    t_start, timer = time.time(), metrics_lib.PhaseTimer()
    s = prepare(config, workdir, timer)
    p = restore_or_init(s, workdir, t_start, timer)
    status = "completed"
    try:
        compile_steps(p)
        if p.update == 0 and s.data.eval_arrays["tokens"].shape[0]:  # the untrained baseline
            p.writer.write(0, p.evaluate())
        while p.update < s.cfg["train"]["steps"]:
            train_phase(p)
            if (stop := maybe_eval_and_save(p, guard)) is not None:
                status = stop
                break
        total = s.cfg["train"]["steps"]
        if status == "completed" and p.update == total and s.ckpt.latest_step() != total:
            p.save()  # e.g. a resumed run that had already finished training
    finally:  # also on errors: finish pending saves, flush the logs
        if p.profiling:
            jax.profiler.stop_trace()
        s.ckpt.close()
        p.writer.close()
        if hasattr(s.data.loader, "close"):
            s.data.loader.close()
    return record(p, status)


def record(p: Progress, status: str) -> dict[str, float]:
    """``run.json`` of the run (``train.run_record``); returns the final metrics."""
    s, final = p.s, p.final
    final_metrics = {k: final[k] for k in KEEP if k in final}
    final_metrics.update({k: v for k, v in final.items() if k.startswith("probe/")})
    for name in s.data.probes:
        final_metrics[f"probe/{name}/collapsed"] = float(probe_lib.collapsed(
            {k[len(f"probe/{name}/"):]: v for k, v in final.items()
             if k.startswith(f"probe/{name}/")}))
    run_record.write_run_record(
        p.workdir, name=s.cfg["name"], config=s.cfg,
        param_counts=flops.param_counts(s.model_cfg, tok_cfg=s.tok_cfg),
        flops_per_token=flops.train_flops_per_token(s.model_cfg, s.seq_len),
        tokens=p.update * p.tokens_per_update, steps=p.update, final_metrics=final_metrics,
        wall_time_s=p.prior["wall_time_s"] + time.time() - p.t_start,
        extra={"seq_len": s.seq_len, "status": status, "mode": "supervised", **s.data.extra})
    return {**final_metrics, "status": status, "update": p.update}
