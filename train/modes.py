"""Mode dispatch behind ``train.main``: importable without defining absl flags.

``train/main.py`` owns the flags; tests, notebooks and sweep drivers call ``run`` directly. Keeping
the two apart lets one process import this next to another absl entry point (``scaling.main``
also defines ``--runs``) without a duplicate-flag error.

Every mode writes into ``workdir``, so ``run`` validates the config (``configs.common.validate``)
and then holds the workdir lock (``scaling/workdir.py``) for the whole mode: a second run on the
same directory is refused at once, before it reads or writes anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from launch import host
from scaling import workdir as workdir_lib
from train.configs import common


def run(mode: str, config, workdir: str, runs: Sequence[str] = ()) -> object:
    """Runs ``mode`` on ``config`` in ``workdir``, validated first, under the workdir lock.
    The training and eval modes run ``train.check.preflight`` first: every check that needs only
    the config and the input files, before anything compiles. ``mode="check"`` runs only those
    checks for ``config.mode``, prints the plan and writes nothing (no lock is taken)."""
    from train import check

    common.validate(config)
    host.compile_cache(config.get("compile_cache_dir", "auto"))
    if mode == "check":
        plan = check.preflight(config.mode, config, workdir)
        print(f"[train] check passed; the plan of --mode={config.mode}:\n"
              + check.format_plan(plan), flush=True)
        return plan
    with workdir_lib.hold(workdir):
        if mode in check.TRAIN_MODES + ("eval",):
            check.preflight(mode, config, workdir)
        return dispatch(mode, config, workdir, runs)


def dispatch(mode: str, config, workdir: str, runs: Sequence[str] = ()) -> object:
    """Runs ``mode`` without the checks and the lock of ``run`` (a mode that runs other modes
    in its own workdir, ``train.flagship``, holds them already). Lazy imports: generate_data
    needs no model, and no mode imports another."""
    if mode == "generate_data":
        from train import data

        return data.generate(config, workdir)
    if mode == "supervised":
        from train import supervised

        return supervised.train_and_evaluate(config, workdir)
    if mode == "eval":
        from train import run_model

        return run_model.eval_checkpoint(config, workdir)
    if mode == "search_and_learn":
        from train import search_and_learn

        return search_and_learn.train_and_evaluate(config, workdir)
    if mode == "flagship":
        from train import flagship

        return flagship.train_and_evaluate(config, workdir)
    if mode == "compare":
        from train import compare

        return compare.main(config, workdir, runs=list(runs))
    if mode in ("ttt", "grpo"):
        return importlib.import_module(f"train.{mode}").main(config, workdir)
    raise NotImplementedError(f"--mode={mode} is not implemented.")
