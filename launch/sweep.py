r"""Run or emit a scaling (IsoFLOP) grid: ``python -m launch.sweep --grid=<grid config>``.

    python -m launch.sweep --grid=launch/sweeps/cpu.py --backend=print
    python -m launch.sweep --grid=launch/sweeps/cpu.py --backend=local [--num_processes=2]
    python -m launch.sweep --grid=launch/sweeps/cpu.py --backend=slurm [--submit] \
        [--max_parallel=4] [--sbatch_args=--nodes=1,--time=2:00:00]
    python -m launch.sweep --grid=launch/sweeps/cpu.py --grid.total_flops=1e13 -- --config.seed=1

The grid config (``launch/sweeps/*.py``, fields in ``tiny.py``) names a train config and a FLOP
budget; ``scaling.sweep.design_isoflop_sweep`` turns it into runs (depth, steps). The model sizes
and FLOPs per token come from the train config itself (``train.steps.model_config`` +
``scaling.flops``), so the plan's N and C are what each ``run.json`` will record. Arguments after
``--`` are appended to every run's ``train.main`` command; anything that changes the FLOPs (batch,
slots, tokenizer, model family) belongs in the grid's ``overrides``, which the plan accounts for.

Each run lives in ``<root>/<name>`` and is **done** (``run.json`` with status completed and the
planned steps), **partial** (a checkpoint or a preempted ``run.json``: rerunning resumes it) or
**pending**. Done runs are skipped. The plan with every run's status and command arguments is
written to ``<root>/sweep.json`` and a progress table is printed.

Backends: ``print`` prints the commands; ``local`` runs them one after another on this machine
(``--num_processes>1``: each as that many CPU processes via ``launch.local``), logging to
``<root>/<name>/launch.log``, continuing past failures and exiting 1 if any failed; ``slurm``
writes ``<root>/sweep_args.txt`` (one run per line) and prints (``--submit``: runs) the
``sbatch --array`` command for ``launch/slurm/train.sbatch``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from launch import local
from scaling import flops, records
from scaling import sweep as sweep_lib
from train.configs import load_config_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SBATCH = os.path.join("launch", "slurm", "train.sbatch")
BACKENDS = ("print", "local", "slurm")


def load_train_config(spec: str) -> ml_collections.ConfigDict:
    """``path/to/config.py[:arg]`` -> its ``get_config(arg)`` (as ``train.main --config=``)."""
    try:
        return load_config_file(spec)
    except ValueError as e:
        raise ValueError(f"grid.train_config: {e}") from e


def sizes_of(grid: Mapping[str, Any]) -> list[str]:
    """The grid's candidate ``size=`` arguments: ``sizes`` ("d1w16,d2w32") or ``depths`` ("1,2,3"
    -> d1, d2, d3)."""
    if grid.get("sizes"):
        return [s.strip() for s in str(grid["sizes"]).split(",") if s.strip()]
    return [f"d{int(d)}" for d in str(grid["depths"]).split(",") if d.strip()]


def parse_overrides(text: str) -> dict[str, str]:
    """``"data.n_max=4,train.batch_size=32"`` -> ``{"data.n_max": "4", ...}``."""
    out = {}
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"grid.overrides item {item!r} is invalid; allowed "
                             "section.field=value, comma-separated.")
        out[key.strip()] = value.strip()
    return out


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, str]) -> None:
    """Sets ``section.field`` values, cast to the field's type (as a ``--config.`` flag would)."""
    for key, raw in overrides.items():
        section, field = key.split(".", 1)
        if section not in config or field not in config[section]:
            raise ValueError(f"grid.overrides: config has no field {key!r}.")
        old = config[section][field]
        if isinstance(old, bool):
            value: Any = raw.lower() in ("1", "true")
        else:
            value = type(old)(raw)
        with config.unlocked():
            config[section][field] = value


@dataclasses.dataclass(frozen=True)
class Plan:
    """The designed runs and what every command shares."""

    runs: list[sweep_lib.SweepRun]
    root: str
    train_config: str
    overrides: dict[str, str]
    seq_len: int
    tokens_per_step: int


def design(grid: Mapping[str, Any]) -> Plan:
    """Grid config -> ``Plan`` (FLOPs per token and N from the train config, module docstring)."""
    from nnx_models import tokenizer
    from train import data as data_lib
    from train import steps

    spec = grid["train_config"]
    overrides = parse_overrides(grid["overrides"])

    def load(size: str | None = None) -> dict:
        path, _, arg = spec.partition(":")
        arg = ",".join(a for a in (arg, size and f"size={size}") if a)
        cfg = load_train_config(f"{path}:{arg}" if arg else path)
        apply_overrides(cfg, overrides)
        return cfg.to_dict()

    cfg = load()
    cls = data_lib.problem_class(cfg)
    tok_cfg = tokenizer.TokenizerConfig(n_max=cls.rules.n_max, **cfg["tokenizer"])
    seq_len = tokenizer.seq_len(tok_cfg)

    @functools.cache
    def model(size: str):  # the run's own config with its size argument: N exactly as recorded
        return steps.model_config({**load(size)["model"]}, tok_cfg)

    params_fn = lambda z: flops.param_counts(model(z), tok_cfg=tok_cfg)["non_embedding"]
    fpt = lambda z: flops.train_flops_per_token(model(z), seq_len)
    tokens_per_step = cfg["train"]["batch_size"] * cfg["train"]["grad_accum_steps"] * seq_len
    runs = sweep_lib.design_isoflop_sweep(
        grid["total_flops"], grid["num_budgets"], sizes_of(grid), params_fn, tokens_per_step,
        flops_per_token_fn=fpt, budget_ratio=grid["budget_ratio"],
        sizes_per_budget=grid["sizes_per_budget"], tokens_per_param=grid["tokens_per_param"],
        min_steps=max(grid["min_steps"], cfg["train"]["warmup_steps"], 1),
        max_steps=grid.get("max_steps") or None)
    if not runs:
        raise ValueError(f"grid.total_flops={grid['total_flops']:.3g} leaves no run with at least "
                         f"min_steps={grid['min_steps']} steps; raise total_flops or lower "
                         "sizes/min_steps.")
    return Plan(runs, grid["root"], grid["train_config"], overrides, seq_len, tokens_per_step)


def run_args(plan: Plan, run: sweep_lib.SweepRun, extra: Sequence[str] = ()) -> list[str]:
    """``train.main`` arguments of one run (its config gets ``size=<run.size>``)."""
    path, _, arg = plan.train_config.partition(":")
    size = f"{arg}," if arg else ""
    return [f"--config={path}:{size}size={run.size}",
            f"--workdir={os.path.join(plan.root, run.name)}", f"--config.train.steps={run.steps}",
            f"--config.name={run.name}",  # run.json is named after its run, not the shared config
            *(f"--config.{k}={v}" for k, v in plan.overrides.items()), *extra]


def run_status(workdir: str, steps: int) -> str:
    """done | partial | pending (module docstring)."""
    from train.run_record import read_run_record

    rec = read_run_record(workdir) if os.path.isdir(workdir) else None
    if rec and rec.get("steps", 0) >= steps and rec.get("status", "completed") == "completed":
        return "done"
    ckpt = os.path.join(workdir, "checkpoints")
    if rec or (os.path.isdir(ckpt) and any(d.isdigit() for d in os.listdir(ckpt))):
        return "partial"
    return "pending"


def summary(plan: Plan, statuses: Sequence[str]) -> str:
    """Progress table: one row per run, then counts and FLOPs done."""
    rows = ["| run | size | N | steps | C (FLOPs) | status |", "|---|---|---|---|---|---|"]
    for r, s in zip(plan.runs, statuses, strict=True):
        rows.append(f"| {r.name} | {r.size} | {r.params:.3g} | {r.steps} | {r.flops:.3g} | {s} |")
    done = sum(r.flops for r, s in zip(plan.runs, statuses, strict=True) if s == "done")
    total = sum(r.flops for r in plan.runs)
    counts = ", ".join(f"{statuses.count(k)} {k}" for k in ("done", "partial", "pending", "failed"))
    rows.append(f"\n{len(plan.runs)} runs: {counts}; {done:.3g} of {total:.3g} FLOPs done "
                f"(seq_len {plan.seq_len}, {plan.tokens_per_step} tokens/step).")
    return "\n".join(rows)


def write_plan(plan: Plan, statuses: Sequence[str], extra: Sequence[str]) -> str:
    os.makedirs(plan.root, exist_ok=True)
    path = os.path.join(plan.root, "sweep.json")
    runs = [{**dataclasses.asdict(r), "status": s, "args": run_args(plan, r, extra)}
            for r, s in zip(plan.runs, statuses, strict=True)]
    records.write_json(path, {"train_config": plan.train_config, "overrides": plan.overrides,
                              "seq_len": plan.seq_len, "runs": runs})
    return path


def _run_local(plan: Plan, todo: list[int], extra: Sequence[str], num_processes: int,
               devices_per_process: int, statuses: list[str]) -> None:
    for k, i in enumerate(todo):
        r = plan.runs[i]
        workdir = os.path.join(plan.root, r.name)
        os.makedirs(workdir, exist_ok=True)
        log_path, t0 = os.path.join(workdir, "launch.log"), time.time()
        print(f"[sweep] {k + 1}/{len(todo)} {r.name} ({statuses[i]}, {r.steps} steps) ...",
              flush=True)
        with open(log_path, "a", encoding="utf-8") as log:
            args = run_args(plan, r, extra)
            if num_processes > 1:
                code = local.launch(args, num_processes, devices_per_process, out=log)
            else:
                code = subprocess.run([sys.executable, "-m", "train.main", *args], cwd=REPO,
                                      stdout=log, stderr=subprocess.STDOUT).returncode
        statuses[i] = run_status(workdir, r.steps) if code == 0 else "failed"
        print(f"[sweep] {r.name}: {statuses[i]} (exit {code}) in {time.time() - t0:.0f} s; log "
              f"{log_path}", flush=True)


def budget_runs(plan: Plan, budgets: Sequence[int] | None = None) -> list[int]:
    """Indices of the runs whose budget is one of ``budgets`` (0 = smallest; None: all). A held-out
    budget is left out of the first pass, predicted from the others, then run by itself."""
    order = sorted({r.budget for r in plan.runs})
    if budgets is None:
        return list(range(len(plan.runs)))
    if bad := [b for b in budgets if not 0 <= b < len(order)]:
        raise ValueError(f"--budgets={list(budgets)}: {bad} out of range; allowed "
                         f"0..{len(order) - 1} (the plan has {len(order)} budgets).")
    keep = {order[b] for b in budgets}
    return [i for i, r in enumerate(plan.runs) if r.budget in keep]


def main_run(grid: Mapping[str, Any], backend: str, extra: Sequence[str], *,
             num_processes: int = 1, devices_per_process: int = 4, submit: bool = False,
             max_parallel: int = 0, sbatch_args: Sequence[str] = (),
             budgets: Sequence[int] | None = None) -> int:
    """Everything the CLI does; returns the exit status (0, or 1 when a local run failed)."""
    if backend not in BACKENDS:
        raise ValueError(f"--backend={backend!r} is unknown; allowed {BACKENDS}.")
    plan = design(grid)
    statuses = [run_status(os.path.join(plan.root, r.name), r.steps) for r in plan.runs]
    todo = [i for i in budget_runs(plan, budgets) if statuses[i] != "done"]
    write_plan(plan, statuses, extra)
    print(summary(plan, statuses), flush=True)
    if backend == "print":
        for i in todo:
            print(shlex.join(["python", "-m", "train.main", *run_args(plan, plan.runs[i], extra)]))
    elif backend == "local":
        _run_local(plan, todo, extra, num_processes, devices_per_process, statuses)
        write_plan(plan, statuses, extra)
        print(summary(plan, statuses), flush=True)
        return 1 if "failed" in statuses else 0
    elif todo:
        args_file = os.path.abspath(os.path.join(plan.root, "sweep_args.txt"))
        with open(args_file, "w", encoding="utf-8") as f:
            f.writelines(shlex.join(run_args(plan, plan.runs[i], extra)) + "\n" for i in todo)
        array = f"0-{len(todo) - 1}" + (f"%{max_parallel}" if max_parallel > 0 else "")
        cmd = ["sbatch", f"--array={array}", f"--export=ALL,ZERO24_ARGS_FILE={args_file}",
               *sbatch_args, SBATCH]
        print(shlex.join(cmd), flush=True)
        if submit:
            if shutil.which("sbatch") is None:
                raise ValueError("--submit needs the sbatch command, which is not on PATH; run the "
                                 "printed command on the cluster's login node.")
            return subprocess.run(cmd, cwd=REPO).returncode
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    from absl import flags
    from ml_collections import config_flags

    grid = config_flags.DEFINE_config_file("grid", None, "Grid config (launch/sweeps/*.py).",
                                           lock_config=True)
    backend = flags.DEFINE_enum("backend", "print", BACKENDS, "print | local | slurm.")
    num = flags.DEFINE_integer("num_processes", 1, "local: CPU processes per run (launch.local).")
    dev = flags.DEFINE_integer("devices_per_process", 4, "local: fake CPU devices per process.")
    submit = flags.DEFINE_bool("submit", False, "slurm: run the sbatch command.")
    par = flags.DEFINE_integer("max_parallel", 0, "slurm: array throttle (%N; 0 = none).")
    sbatch_args = flags.DEFINE_list("sbatch_args", [], "slurm: extra sbatch options.")
    only = flags.DEFINE_list("budgets", None, "Run only these budgets (0 = smallest); default all.")
    flags.mark_flags_as_required(["grid"])

    local.run_cli(lambda args: main_run(
        grid.value, backend.value, args, num_processes=num.value, devices_per_process=dev.value,
        submit=submit.value, max_parallel=par.value, sbatch_args=sbatch_args.value,
        budgets=None if only.value is None else [int(b) for b in only.value]), argv)


if __name__ == "__main__":
    main()
