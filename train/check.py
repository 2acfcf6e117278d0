r"""Every check that needs only the config and the input files, before any compilation.

    python -m train.main --config=train/configs/default.py --workdir=runs/default --mode=check
    python -m train.main --config=train/configs/flagship.py:cpu --workdir=runs/flagship \
        --mode=check --config.data.exclude_csv=24.csv

``train.modes.run`` calls ``preflight`` for every training mode before it dispatches, so a
config that cannot run fails in seconds, not after the baselines and the untrained evals
(a ``make run`` that excludes the ToT csv used to stop after 111 s: every training problem of
``g24`` is a ToT puzzle). ``--mode=check`` runs exactly these checks and prints the plan:
what will be trained, on which data, what is excluded, what is evaluated and what is written.

The checks: config values (``configs.common.validate``, run by ``modes.run``), the rules,
tokenizer, model and mesh config; the slot counts of every class the run draws; the workdir
(writable, and a resume only of the same model and data); the exclusion sets (the csv's
contents, every split spec); the curriculum against the exclusion (each class keeps training
problems); the eval sets against the run's rules; for ``--mode=eval``, the checkpoint to read.
Nothing here builds an array on a device, so nothing compiles (tests/test_play.py counts).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from nnx_models import tokenizer
from scaling import flops
from search import problems, stream, sweep
from train import checkpoint as ckpt_lib
from train import data as data_lib
from train import mesh as mesh_lib
from train import setup as setup_lib
from train import steps
from train.configs import common

TRAIN_MODES = ("supervised", "search_and_learn", "flagship")
SAMPLE = 32  # curriculum problems generated to show a class keeps training problems


def preflight(mode: str, config, workdir: str) -> dict[str, Any]:
    """The plan of ``mode`` on ``config`` in ``workdir``, after every check (module docstring);
    ValueError / FileNotFoundError naming the field otherwise. Writes nothing."""
    cfg = setup_lib.as_dict(config)
    common.check_values(cfg)
    if mode == "flagship":
        import ml_collections

        from train import flagship

        warm, sl = (setup_lib.as_dict(c) for c in flagship.phase_configs(
            ml_collections.ConfigDict(cfg)))
        return {"mode": mode, "phases": {
            "warm": _plan("supervised", warm, os.path.join(workdir, "warm")),
            "search_and_learn": _plan("search_and_learn", {**sl, "init": {
                "source": "supervised", "path": os.path.join(workdir, "warm")}}, workdir,
                init_pending=True)}}
    return _plan(mode, cfg, workdir)


def _plan(mode: str, cfg: dict, workdir: str, init_pending: bool = False) -> dict[str, Any]:
    from train import stream_data

    if mode == "eval":  # the network and its data come from the run's own config.json
        from train import run_model

        args = run_model.search_eval_args(cfg)
        _check_splits(args["splits"], args["csv_path"])
        return {"mode": mode, "workdir": workdir, "search_eval": args,
                "checkpoint": run_model.newest_step(workdir)}
    rules = data_lib.problem_class(cfg).rules
    tok_cfg = tokenizer.TokenizerConfig(n_max=rules.n_max, **cfg["tokenizer"])
    model_cfg = steps.model_config(cfg["model"], tok_cfg)
    mesh_lib.check_batch_size(cfg["train"]["batch_size"], mesh_lib.make_mesh(cfg["mesh"]))
    ckpt_lib.ensure_writable(workdir, create=False)
    setup_lib.check_resume_config(workdir, cfg)
    seq = tokenizer.seq_len(tok_cfg)
    plan: dict[str, Any] = {
        "mode": mode, "workdir": workdir, "slots": rules.n_max,
        "model": {"params": flops.param_counts(model_cfg, tok_cfg=tok_cfg)["non_embedding"],
                  "seq_len": seq, "depth": model_cfg.depth, "d_model": model_cfg.d_model}}
    sets = stream_data.exclusion_sets(cfg)  # reads the csv, generates every named test split
    plan["excluded"] = {k: len(v) for k, v in sets.items()}
    keys = stream.exclusion_keys(sets.values())
    d = cfg["data"]
    if d["source"] == "stream" or cfg.get("sl", {}).get("stream_share"):
        # StreamConfig checks the mixture's classes against the slots (no example is drawn).
        stream_data.stream_config(cfg, rules, keys)
        plan["stream"] = {"mixture": d["mixture"], "seed": d["seed"]}
    if mode == "supervised":
        t = cfg["train"]
        plan["train"] = {"updates": t["steps"], "batch": t["batch_size"],
                         "tokens": t["steps"] * t["batch_size"] * t["grad_accum_steps"] * seq}
    if mode == "search_and_learn":
        plan["curriculum"] = check_curriculum(cfg, rules, keys)
        plan["eval_sets"] = check_eval_sets(cfg, rules)
        sl = cfg["sl"]
        plan["train"] = {"iterations": sl["iterations"], "updates": sl["iterations"] *
                         sl["train_steps"], "selfplay": f"{sl['selfplay_batch']} problems x "
                         f"{sl['selfplay_simulations']} simulations"}
        init = cfg.get("init", {})
        if init.get("source") == "supervised" and not init_pending:
            from train import run_model

            plan["init"] = f"{init['path']} update {run_model.newest_step(init['path'])}"
    if cfg.get("search_eval", {}).get("splits"):
        _check_splits(cfg["search_eval"]["splits"], cfg["search_eval"].get("csv") or None)
    plan["writes"] = [os.path.join(workdir, f) for f in
                      ("config.json", "exclusion.json", "checkpoints/", "metrics.jsonl", "tb/",
                       "run.json")]
    return plan


def check_curriculum(cfg: Mapping[str, Any], rules, keys: frozenset) -> dict[str, str]:
    """Each curriculum class fits the run's rules and keeps training problems once the
    evaluation problems are excluded (``train.selfplay.Curriculum`` draws its pools from the
    same generator; a prefix of ``SAMPLE`` problems is enough unless all of it is excluded)."""
    from train import selfplay

    out, sl = {}, cfg["sl"]
    for name in sl["curriculum"]:
        cls = selfplay.check_class(name, rules, "sl.curriculum")
        sample = problems.generate(cls, min(SAMPLE, sl["train_problems"]), cfg["data"]["seed"],
                                   "train")
        if all(p.canonical in keys for p in sample):  # rare: look at the whole pool
            pool = problems.generate(cls, sl["train_problems"], cfg["data"]["seed"], "train")
            if all(p.canonical in keys for p in pool):
                raise ValueError(
                    f"config.sl.curriculum: every training problem of {name!r} is an evaluation "
                    f"problem (excluded: {len(keys)} problems, e.g. the ToT 24.csv covers every "
                    "solvable g24 puzzle); use another class, e.g. g4_t100.")
        out[name] = "ok"
    return out


def check_eval_sets(cfg: Mapping[str, Any], rules) -> dict[str, int]:
    """``eval.sets``: {spec: problems}, each under the run's rules (``train.loop``)."""
    from train import loop

    return {name: len(probs) for name, probs in loop.eval_problems(cfg, rules)}


def _check_splits(specs, csv_path: str | None) -> None:
    for spec in specs:
        sweep.load_split(spec, csv_path)


def format_plan(plan: Mapping[str, Any], indent: str = "") -> str:
    """The plan as indented ``key: value`` lines."""
    lines = []
    for k, v in plan.items():
        if isinstance(v, Mapping):
            lines += [f"{indent}{k}:", format_plan(v, indent + "  ")]
        else:
            lines.append(f"{indent}{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}")
    return "\n".join(lines)
