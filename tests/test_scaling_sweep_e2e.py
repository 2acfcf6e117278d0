"""A micro IsoFLOP sweep end to end: launch.sweep plan -> train.main runs -> search evals -> report.

Four runs (2 budgets x sizes d1w8, d1w16) of ``train/configs/sweep_cpu.py:runlocal``, each trained
in-process through ``train.modes.run`` with exactly the arguments ``launch.sweep`` would pass on
its command line, then ``scripts/sweep_eval.py`` and ``python -m scaling.main`` as the real
sweep (``scripts/cpu_sweep.sh``) runs them. Cost: ~15 s of CPU per train run (jit compiles),
~10 s per searched (run, budget); the module is marked slow.
"""

import importlib.util
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from launch import sweep as launch_sweep
from launch.sweeps import cpu as cpu_grid
from scaling import flops
from train import checkpoint, run_model
from train import modes as train_modes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPLIT, BUDGETS = "g4_t100:test:8", (1, 2)


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parse(args: list[str]):
    """The config train.main gets from these command-line arguments (absl config_flags)."""
    argv = ["train.main", *args]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True,
                                    sys_argv=argv)
    flags.DEFINE_string("workdir", None, "", flag_values=fv)
    fv(argv)
    return fv.config, fv.workdir


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("sweep"))
    grid = cpu_grid.get_config()
    with grid.unlocked():  # 2 budgets x 2 sizes of the runlocal shape (batch 8, 7 tokens)
        grid.update(train_config="train/configs/sweep_cpu.py:runlocal", total_flops=3e8,
                    num_budgets=2, budget_ratio=2.0, sizes_per_budget=2, sizes="d1w8,d1w16",
                    min_steps=3, max_steps=0, root=root)
    plan = launch_sweep.design(grid)
    for run in plan.runs:
        config, workdir = _parse(launch_sweep.run_args(plan, run))
        train_modes.run("supervised", config, workdir)
    return plan


def test_plan_is_isoflop_and_runs_record_what_was_planned(sweep):
    assert [(f"{r.budget:.2g}", r.size) for r in sweep.runs] == [
        ("5e+07", "d1w8"), ("5e+07", "d1w16"), ("1e+08", "d1w8"), ("1e+08", "d1w16")]
    assert sweep.seq_len == 7 and sweep.tokens_per_step == 8 * 7
    for r in sweep.runs:
        workdir = os.path.join(sweep.root, r.name)
        assert launch_sweep.run_status(workdir, r.steps) == "done"
        rec = json.load(open(os.path.join(workdir, "run.json")))
        # launch.sweep's FLOP accounting (from the train config) is what train records.
        assert (rec["steps"], rec["params"], rec["tokens"]) == (r.steps, r.params, r.tokens)
        assert rec["train_flops"] == pytest.approx(r.flops, rel=1e-9)
        assert r.flops <= r.budget and r.flops > r.budget * (1 - 1 / r.steps) * 0.999
        assert np.isfinite(rec["final_metrics"]["eval/loss"])
    # Same budget -> same C; the bigger model trains on fewer tokens.
    d1, d2 = sweep.runs[2:]
    assert d2.params > 2 * d1.params and d2.steps < d1.steps / 2


def test_search_evals_of_sweep_runs_then_report(sweep, tmp_path):
    evals = _load_script("sweep_eval")
    # Search evals of the larger budget's two runs only: each (run, budget) compiles its own
    # search, the costliest step here; the two others show a report with partial search data.
    runs = [os.path.join(sweep.root, r.name) for r in sweep.runs[2:]]

    # The network rebuilt from config.json (train.run_model, which the script calls) carries
    # the trained (checkpointed) parameters.
    model, rules = run_model.load_run_model(runs[0])
    from flax import nnx

    ck = checkpoint.Checkpointer(os.path.join(runs[0], "checkpoints"), every=1, keep=1)
    saved = jax.tree.leaves(ck.load_numpy(ck.latest_step())["params"])
    ck.close()
    loaded = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert rules.n_max == 4 and len(saved) == len(loaded)
    assert sorted(float(np.abs(x).sum()) for x in saved) == pytest.approx(
        sorted(float(np.abs(x).sum()) for x in loaded), rel=1e-6)
    rec0 = json.load(open(os.path.join(runs[0], "run.json")))
    assert sum(x.size for x in loaded) == rec0["params_total"]

    status = evals.evaluate_runs(runs + [str(tmp_path)], [SPLIT], ["mcts"], list(BUDGETS))
    assert status[str(tmp_path)].startswith("no run.json")
    for workdir in runs:
        assert status[workdir].startswith("evaluated")
        rec = json.load(open(os.path.join(workdir, "run.json")))
        mine = {e["simulations"]: e for e in rec["search_evals"] if e["method"] == "mcts"}
        assert sorted(mine) == list(BUDGETS)
        model_cfg = run_model.load_run_model(workdir)[0].cfg
        per_eval = flops.forward_flops_per_state(model_cfg, 7, 4)
        for b, e in mine.items():
            assert e["split"] == SPLIT and e["num_problems"] == 8 and 0 <= e["solve_rate"] <= 1
            # Every 4-number episode is 3 moves of b simulations plus the root's evaluation.
            assert e["evals_per_problem"] == 3 * (b + 1)
            assert e["search_flops_per_problem"] == pytest.approx(3 * (b + 1) * per_eval)
    # A second pass is a cache hit: nothing is appended twice; a new budget alone would be run.
    assert set(evals.evaluate_runs(runs, [SPLIT], ["mcts"], list(BUDGETS)).values()) == {"cached"}
    assert evals.missing_budgets(runs[0], [SPLIT], ["mcts", "mcts_tree"], [4, 1, 2]) == [4]
    assert evals.missing_budgets(runs[0], ["g24:val:8"], ["mcts"], [1]) == [1]

    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "scaling.main", f"--runs={sweep.root}/C*", f"--out={out}",
         f"--split={SPLIT}", "--method=mcts", "--bootstrap=10"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fits = json.load(open(out / "fits.json"))
    assert fits["num_runs"] == 4
    # Two sizes per budget cannot bracket a vertex: the section says so instead of fitting.
    assert fits["approach2"]["skipped"].startswith("only 0 budget(s) gave an optimum")
    assert any("has 2 distinct model size(s)" in w for w in fits["warnings"])
    curves = fits["search"]["curves"]
    # Records are named after their directories (sweep_eval.name_run), so curves are told apart.
    assert fits["search"]["split"] == SPLIT
    assert sorted(c["run"] for c in curves) == sorted(r.name for r in sweep.runs[2:])
    assert {"isoflops.png", "loss_vs_compute.png", "solve_rate_vs_search.png"} <= set(fits["plots"])
    assert "# Scaling report" in (out / "report.md").read_text()


def test_missing_budgets_needs_every_variant(tmp_path):
    """``sample`` is recorded as ``sample_pass`` / ``sample_majority`` and ``mcts`` with
    ``mcts_tree``: a budget counts as done only when every variant of the method is there."""
    evals = _load_script("sweep_eval")
    have = [("sample_pass", 1), ("sample_majority", 1), ("sample_pass", 2), ("mcts", 1)]
    with open(tmp_path / "run.json", "w") as f:
        json.dump({"search_evals": [dict(split="s", method=m, simulations=b) for m, b in have]}, f)
    assert evals.missing_budgets(str(tmp_path), ["s"], ["sample"], [1, 2]) == [2]
    assert evals.missing_budgets(str(tmp_path), ["s"], ["mcts"], [1]) == [1]
