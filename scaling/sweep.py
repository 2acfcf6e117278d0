r"""IsoFLOP sweep design under a total compute budget, and hyperparameters for a predicted optimum.

    python -m scaling.sweep --total_flops=3e13 --num_budgets=3 --depths=1,2,3,4 \
        --calibrate_from=runs/default --root=runs/sweep --config=train/configs/g24_supervised.py

prints one ``python -m train.main`` invocation per run that has no ``run.json`` yet (finished runs
are the cache) and writes the plan to ``<root>/sweep.json``. Design: K budgets spaced by
``budget_ratio`` (geometric), S model sizes per budget, every run costing ~its budget, so
total = S * C_1 * (1 + r + ... + r^(K-1)). The S depths of a budget are those whose N lies closest
(in log N) to the prior optimum N* = sqrt(C / (6 * tokens_per_param)) (Chinchilla's ~20 tokens per
parameter as prior), so each IsoFLOP parabola brackets its vertex. Steps = floor(C / (F(depth) *
tokens_per_step)) with F the training FLOPs per token; runs under ``min_steps`` are dropped.
Model sizes come from ``params_fn(depth) -> N`` / ``flops_per_token_fn(depth)``; `model_fns` builds
them from ``nnx_models.ModelConfig.from_depth`` and ``scaling.flops``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable

import numpy as np


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """One planned run: nominal budget, size (the config's ``size=`` argument: ``d3``,
    ``d2w48``), N, steps, tokens D and FLOPs C it will spend."""

    name: str
    budget: float
    size: str
    params: float
    steps: int
    tokens: float
    flops: float


def model_fns(seq_len: int, **model_kw) -> tuple[Callable, Callable]:
    """(params_fn, flops_per_token_fn) of ``ModelConfig.from_depth(depth, **model_kw)``."""
    from nnx_models.config import ModelConfig  # lazy: the fits and the design need no JAX
    from scaling import flops

    cfg = lambda size: ModelConfig.from_depth(int(str(size).lstrip("d")), **model_kw)  # d<K> or K
    return (lambda d: flops.param_counts(cfg(d))["non_embedding"],
            lambda d: flops.train_flops_per_token(cfg(d), seq_len))


def _size_label(size) -> str:
    return f"d{int(size)}" if isinstance(size, (int, np.integer)) else str(size)


def design_isoflop_sweep(total_flops: float, num_budgets: int, sizes: Iterable,
                         params_fn: Callable[[str], float], tokens_per_step: int, *,
                         flops_per_token_fn: Callable[[str], float] | None = None,
                         budget_ratio: float = math.sqrt(10), sizes_per_budget: int = 4,
                         tokens_per_param: float = 20.0, min_steps: int = 20,
                         max_steps: int | None = None) -> list[SweepRun]:
    """Plan an IsoFLOP grid whose runs together spend at most ``total_flops`` (module docstring).

    ``sizes``: candidate ``size=`` arguments of the train config (an int K means ``d<K>``);
    ``params_fn`` / ``flops_per_token_fn`` take such a label. Runs that would need fewer than
    ``min_steps`` or more than ``max_steps`` updates (None: no cap; a machine's time per run)
    are not candidates."""
    for name, value, lo in (("total_flops", total_flops, 0), ("budget_ratio", budget_ratio, 1),
                            ("tokens_per_param", tokens_per_param, 0),
                            ("tokens_per_step", tokens_per_step, 0)):
        if not value > lo:
            raise ValueError(f"{name}={value} is out of range; allowed > {lo}.")
    if num_budgets < 1 or sizes_per_budget < 1 or min_steps < 1:
        raise ValueError(f"num_budgets={num_budgets}, sizes_per_budget={sizes_per_budget} and "
                         f"min_steps={min_steps} must all be >= 1.")
    if any(isinstance(z, (int, np.integer)) and z < 1 for z in sizes):
        raise ValueError(f"sizes={list(sizes)}: depths must be >= 1.")
    labels = list(dict.fromkeys(_size_label(z) for z in sizes))
    if not labels:
        raise ValueError("sizes is empty; give at least one model size.")
    fpt = flops_per_token_fn or (lambda z: 6.0 * params_fn(z))
    c1 = total_flops / (sizes_per_budget * sum(budget_ratio**i for i in range(num_budgets)))
    runs = []
    for i in range(num_budgets):
        budget = c1 * budget_ratio**i
        n_star = math.sqrt(budget / (6 * tokens_per_param))
        ok = [z for z in labels if min_steps <= budget // (fpt(z) * tokens_per_step)
              <= (max_steps or math.inf)]
        ok.sort(key=lambda z: abs(math.log(params_fn(z) / n_star)))
        for z in sorted(ok[:sizes_per_budget], key=params_fn):
            steps = int(budget // (fpt(z) * tokens_per_step))
            tokens = steps * tokens_per_step
            runs.append(SweepRun(f"C{budget:.2e}_{z}".replace("+", ""), budget, z,
                                 float(params_fn(z)), steps, float(tokens),
                                 float(fpt(z) * tokens)))
    return runs


def commands(design: list[SweepRun], root: str, config: str, extra_args: Iterable[str] = (),
             python: str = "python") -> list[str]:
    """``train.main`` invocations for the runs of ``design`` without ``<root>/<name>/run.json``."""
    out = []
    for r in design:
        workdir = os.path.join(root, r.name)
        if os.path.exists(os.path.join(workdir, "run.json")):
            continue
        args = [f"--config={config}:size={r.size}", f"--workdir={workdir}",
                f"--config.train.steps={r.steps}", *extra_args]
        out.append(f"{python} -m train.main " + " ".join(args))
    return out


def suggest_hparams(n_opt: float, flops: float, depths: Iterable[int],
                    params_fn: Callable[[int], float], seq_len: int) -> dict:
    """Depth closest to ``n_opt`` (log scale) plus batch size and learning rate for budget C.

    Batch and learning rate use DeepSeek LLM's published compute-optimal fits (Bi et al. 2024,
    eq. 1): B_opt = 0.2920 C^0.3271 tokens, lr_opt = 0.3118 C^-0.1250, fitted on 1e17..3e20
    FLOPs; outside that range they are an extrapolation and a starting point for a small lr sweep.
    Width and heads follow ``ModelConfig.from_depth`` (d_model = 64 depth, head dim 128).
    """
    depths = sorted(set(int(d) for d in depths))
    if not depths or not n_opt > 0 or not flops > 0 or seq_len < 1:
        raise ValueError(f"need depths, n_opt > 0, flops > 0, seq_len >= 1; got {depths}, "
                         f"{n_opt}, {flops}, {seq_len}.")
    depth = min(depths, key=lambda d: abs(math.log(params_fn(d) / n_opt)))
    d_model = 64 * depth
    batch_tokens = 0.2920 * flops**0.3271
    return {"depth": depth, "d_model": d_model, "num_heads": max(1, math.ceil(d_model / 128)),
            "params": float(params_fn(depth)),
            "batch_size": int(2 ** max(0, round(math.log2(max(batch_tokens / seq_len, 1))))),
            "learning_rate": float(0.3118 * flops**-0.1250),
            "source": "depth: nearest to N_opt; batch/lr: DeepSeek LLM (2024) fits, extrapolated"}


def calibrate(run_json: str) -> dict:
    """(batch_size, seq_len) as an existing run of the same train config counted them.

    ``tokens = steps * batch_size * seq_len`` in ``run.json`` (``train.run_record``), so one run
    (even a ``runlocal`` smoke test) gives the tokens per example the train code really uses.
    Also checks that `model_fns` reproduces the run's recorded N and FLOPs per token.
    """
    path = os.path.join(run_json, "run.json") if os.path.isdir(run_json) else run_json
    with open(path, encoding="utf-8") as fh:
        rec = json.load(fh)
    try:
        batch = int(rec["config"]["train"]["batch_size"])
        seq_len = int(round(rec["tokens"] / (rec["steps"] * batch)))
        depth = int(rec["config"]["model"]["depth"])
    except (KeyError, TypeError, ZeroDivisionError) as e:
        raise ValueError(f"{path}: cannot read tokens/steps/config.train.batch_size/"
                         f"config.model.depth to calibrate ({e!r}).") from e
    params_fn, fpt = model_fns(seq_len)
    if params_fn(depth) != rec["params"] or abs(fpt(depth) / rec["flops_per_token"] - 1) > 1e-6:
        raise ValueError(f"{path}: depth {depth} gives N={params_fn(depth)}, FLOPs/token "
                         f"{fpt(depth)} here but the run recorded N={rec['params']}, "
                         f"{rec['flops_per_token']}; pass model overrides or --seq_len by hand.")
    return {"batch_size": batch, "seq_len": seq_len}


def main(argv=None) -> int:
    from absl import app, flags

    f = flags.FLAGS
    flags.DEFINE_float("total_flops", None, "Total training FLOPs of the sweep.", required=True)
    flags.DEFINE_integer("num_budgets", 3, "IsoFLOP budgets.", lower_bound=1)
    flags.DEFINE_integer("sizes_per_budget", 4, "Model sizes per budget.", lower_bound=1)
    flags.DEFINE_integer("min_steps", 20, "Drop runs with fewer steps.", lower_bound=1)
    flags.DEFINE_list("depths", ["1", "2", "3", "4", "5", "6"], "Candidate depths.")
    flags.DEFINE_integer("batch_size", 64, "Sequences per step (the train config's).")
    flags.DEFINE_integer("seq_len", 83, "Tokens per example (83: g24_supervised.py's encoding).")
    flags.DEFINE_string("calibrate_from", None, "A finished run (dir or run.json) of the same "
                        "config: batch_size and seq_len are read from it.")
    flags.DEFINE_string("root", "runs/sweep", "Parent directory of the run workdirs.")
    flags.DEFINE_string("config", "train/configs/g24_supervised.py", "Train config file.")

    def run(_):
        shape = {"batch_size": f.batch_size, "seq_len": f.seq_len}
        if f.calibrate_from:
            shape = calibrate(f.calibrate_from)
            print(f"# calibrated from {f.calibrate_from}: {shape}")
        params_fn, fpt = model_fns(shape["seq_len"])
        design = design_isoflop_sweep(f.total_flops, f.num_budgets,
                                      [int(d) for d in f.depths], params_fn,
                                      shape["batch_size"] * shape["seq_len"],
                                      flops_per_token_fn=fpt, sizes_per_budget=f.sizes_per_budget,
                                      min_steps=f.min_steps)
        os.makedirs(f.root, exist_ok=True)
        with open(os.path.join(f.root, "sweep.json"), "w", encoding="utf-8") as fh:
            json.dump([dataclasses.asdict(r) for r in design], fh, indent=2)
        extra = [f"--config.train.batch_size={shape['batch_size']}"]
        print("\n".join(commands(design, f.root, f.config, extra)))
        spent = float(np.sum([r.flops for r in design]))
        print(f"# {len(design)} runs, {spent:.3g} of {f.total_flops:.3g} FLOPs", flush=True)

    app.run(run, argv)
    return 0


if __name__ == "__main__":
    main()
