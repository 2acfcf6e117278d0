"""The flagship pipeline end to end (tiny): warm start on the stream -> search-and-learn from its
weights -> HF export that search.solve loads; a rerun resumes instead of retraining; and the
GPU check's --dry-run runs the same code at tiny sizes."""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from benchmarks import gpu_check
from nnx_models import tokenizer
from scaling import flops
from search import solve
from train import flagship, modes, run_model, run_record, steps
from train.configs import flagship as flagship_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``benchmarks/gpu_check.sh --dry-run``, keeping its flagship:runlocal workdir: the GPU
    check's code path and the flagship pipeline in one tiny run."""
    root = tmp_path_factory.mktemp("flagship")
    work, path = str(root / "w"), str(root / "g.json")
    gpu_check.main(["--dry-run", f"--out={path}", f"--flagship_workdir={work}"])
    return work, json.load(open(path))


def test_gpu_check_dry_run(run):
    _, r = run
    assert r["dry_run"] and set(r["seconds"]) == {"mfu", "search", "engine", "flagship"}
    assert r["mfu"]["train_tflop_s"] > 0 and r["mfu"]["of_measured_gemm"] > 0
    assert r["search"]["overhead"] > 0 and r["search"]["simulations_per_s"] > 0
    assert r["engine"]["rows"][0]["op"] == "step" and r["engine"]["rows"][0]["jax_states_per_s"] > 0
    assert r["flagship"]["warm_updates"] == 10 and len(r["flagship"]["sl_iterations"]) == 2


def test_two_phases_and_the_export(run):
    work, _ = run
    export = os.path.join(work, "export")
    warm = run_record.read_run_record(os.path.join(work, "warm"))
    assert warm["mode"] == "supervised" and warm["status"] == "completed" and warm["steps"] == 10
    sl = run_record.read_run_record(work)
    assert sl["mode"] == "search_and_learn" and sl["status"] == "completed"
    assert sl["config"]["init"] == {"source": "supervised", "path": os.path.join(work, "warm")}
    assert sl["config"]["train"]["learning_rate"] == 3e-4  # flagship.sl_learning_rate
    assert sl["exclusion"] == warm["exclusion"] and "n6:test:200" in sl["exclusion"]
    # the export holds the final search-and-learn parameters, exactly
    net = run_model.load_network(f"hf:{export}")
    model, _ = run_model.load_run_model(work)
    want = {run_model.path_key(p): np.asarray(x) for p, x in
            jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))}
    have = {run_model.path_key(p): np.asarray(x) for p, x in
            jax.tree_util.tree_leaves_with_path(net.params)}
    assert want.keys() <= have.keys()
    for k, v in want.items():
        np.testing.assert_array_equal(have[k], v)
    a = solve.solve((3, 3, 8, 8), 24, export, 4)
    assert a.solvable and a.expression and a.evaluations > 0


def test_rerun_skips_the_finished_warm_start(run, capsys):
    work, _ = run
    before = os.path.getmtime(os.path.join(work, "warm", "run.json"))
    out = modes.run("flagship", flagship_config.get_config("runlocal"), work)
    assert out["status"] == "completed" and out["iteration"] == 2
    assert "warm start in" in capsys.readouterr().out
    assert os.path.getmtime(os.path.join(work, "warm", "run.json")) == before


def test_phase_configs_and_bad_arguments():
    warm, sl = flagship.phase_configs(flagship_config.get_config("cpu"))
    assert warm.mode == "supervised" and sl.mode == "search_and_learn"
    assert warm.train.learning_rate == 1e-3 and sl.train.learning_rate == 3e-4
    assert sl.sl.curriculum == ("g4_t100", "n5", "n6") and sl.data.n_max == 6
    gpu = flagship_config.get_config("gpu")
    tok = tokenizer.TokenizerConfig(n_max=6, **gpu.tokenizer.to_dict())
    assert flops.param_counts(steps.model_config(gpu.model.to_dict(), tok))["total"] >= 10e6
    with pytest.raises(ValueError, match="pick one of cpu, gpu, runlocal"):
        flagship_config.get_config("cpu,gpu")
