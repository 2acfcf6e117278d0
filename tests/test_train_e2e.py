"""End-to-end supervised runs: loss falls, outputs, bad input, NaN stop, SIGKILL/SIGTERM resume."""

import glob
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import final_params

from train import modes, supervised
from train.configs import g24_supervised
from train.metrics import read_jsonl
from train.run_record import REQUIRED_KEYS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tiny run: d1 model (d_model 64), 4-slot states with whole-number tokens (27 tokens).
TINY = {"data.n_max": 4, "data.num_problems": 60, "data.eval_num_problems": 20,
        "data.eval_batches": 0, "data.generate_if_missing": False,
        "tokenizer.number_encoding": "whole", "tokenizer.whole_max": 40, "model.depth": 1,
        "train.batch_size": 16, "train.learning_rate": 3e-3, "train.warmup_steps": 2,
        "train.log_every": 5, "train.eval_every": 10, "checkpoint.every": 10, "checkpoint.keep": 3}


def tiny_config(data_dir: str, **overrides):
    c = g24_supervised.get_config("runlocal")
    for key, value in {**TINY, "data.data_dir": data_dir, **overrides}.items():
        *section, field = key.split(".")
        (c[section[0]] if section else c)[field] = value
    return c


def _args(c) -> list[str]:
    """The same config as command-line overrides (for the subprocess runs); a None field stays
    at the config file's None (the command line gives fields values, never None)."""
    return [f"--config.{s}.{k}={v}" for s in ("data", "tokenizer", "model", "train", "checkpoint")
            for k, v in c[s].items() if v is not None]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from train import data

    path = str(tmp_path_factory.mktemp("data"))
    data.generate(tiny_config(path), path)
    return path


def _files_digest(root: str) -> dict[str, str]:
    out = {}
    for p in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
        if os.path.isfile(p):
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


# 300 updates of 2 accumulated micro-batches of 16 (resume must restore the micro-step position),
# 5 updates per call (train/fast_loop.py: the SIGKILL resume below is then bit-identical).
RUN = {"train.steps": 300, "train.grad_accum_steps": 2, "train.log_every": 10,
       "train.eval_every": 100, "checkpoint.every": 20, "checkpoint.keep": 20,
       "train.steps_per_call": 5}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
    """An uninterrupted 300-update run in this process: (workdir, returned metrics)."""
    work = str(tmp_path_factory.mktemp("ref") / "run")
    config = tiny_config(data_dir, **RUN, profile_steps=2, profile_start=3)
    return work, supervised.train_and_evaluate(config, work)


def test_end_to_end_loss_falls_outputs_nan_stop(reference, data_dir):
    work, out = reference
    assert out["status"] == "completed" and out["update"] == 300
    rows = read_jsonl(os.path.join(work, "metrics.jsonl"))
    train = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in train] == [1] + list(range(10, 301, 10))
    assert np.mean([r["train/loss"] for r in train[-3:]]) < 0.85 * train[0]["train/loss"]
    evals = [r for r in rows if "eval/loss" in r]
    assert [r["step"] for r in evals] == [0, 100, 200, 300]
    # Held-out problems: 60 training problems generalise a little, then overfit (~40 epochs).
    assert min(r["eval/loss"] for r in evals[1:]) < 0.95 * evals[0]["eval/loss"]
    assert {"train/grad_norm", "train/learning_rate", "perf/tokens_per_s", "time/train_s",
            "train/policy_acc", "train/value_acc", "eval/policy_acc"} <= set(rows[-1])
    assert glob.glob(os.path.join(work, "tb", "events.out.tfevents.*"))
    assert glob.glob(os.path.join(work, "tb", "plugins", "profile", "*", "*.xplane.pb"))
    rec = json.load(open(os.path.join(work, "run.json")))
    assert set(REQUIRED_KEYS) <= set(rec) and rec["steps"] == 300 and rec["status"] == "completed"
    assert rec["tokens"] == 300 * 2 * 16 * rec["seq_len"] == 300 * 2 * 16 * 27
    assert rec["train_flops"] == rec["tokens"] * rec["flops_per_token"]
    assert rec["final_metrics"]["eval/loss"] == pytest.approx(out["eval/loss"])
    assert len(os.listdir(os.path.join(work, "checkpoints"))) == 15  # 20, 40, ..., 300

    # Continue to 320 updates with a poisoned loss: stops at the first log, saves nothing new.
    bad = tiny_config(data_dir, **{**RUN, "train.steps": 320, "train.policy_weight": float("nan")})
    before = _files_digest(os.path.join(work, "checkpoints"))
    with pytest.raises(supervised.NonFiniteError, match=r"Last good checkpoint: update 300"):
        supervised.train_and_evaluate(bad, work)
    assert _files_digest(os.path.join(work, "checkpoints")) == before

    # --mode=eval reads the newest checkpoint (the last good one) back.
    ev = supervised.evaluate_checkpoint(tiny_config(data_dir, **RUN), work)
    assert ev["update"] == 300 and ev["eval/loss"] == pytest.approx(out["eval/loss"], rel=1e-5)


def test_bad_input_clear_errors_nothing_written(tmp_path, data_dir):
    work = str(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match=r"python -m train.main --mode=generate_data"):
        supervised.train_and_evaluate(tiny_config(str(tmp_path / "nodata")), work)
    with pytest.raises(ValueError, match=r"config.train.batch_size=12 is not divisible by the "
                                         r"data-parallel size 8"):
        supervised.train_and_evaluate(tiny_config(data_dir, **{"train.batch_size": 12}), work)
    with pytest.raises(ValueError, match=r"config.model.depth=0 is out of range"):
        supervised.train_and_evaluate(tiny_config(data_dir, **{"model.depth": 0}), work)
    with pytest.raises(ValueError, match=r"config.data.n_max=3 is out of range for class 'g24'"):
        supervised.train_and_evaluate(tiny_config(data_dir, **{"data.n_max": 3}), work)
    assert not os.path.exists(work)  # validation happens before anything is written
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"is not writable"):
        supervised.train_and_evaluate(tiny_config(data_dir), str(blocker / "run"))
    # A workdir holding another model's run is refused, untouched.
    os.makedirs(work)
    other = tiny_config(data_dir, **{"model.depth": 2}).to_dict()
    json.dump(other, open(f"{work}/config.json", "w"))
    before = _files_digest(work)
    with pytest.raises(ValueError, match=r"different config.model \(fields \['depth'\]\)"):
        supervised.train_and_evaluate(tiny_config(data_dir), work)
    assert _files_digest(work) == before


def test_mode_eval_losses_and_search_sweep(tmp_path, data_dir):
    """``--mode=eval`` on a 10-update run: eval-split losses of the newest checkpoint plus the
    ``search.eval`` sweep of its network (``config.search_eval``), written to ``search_eval/``
    and appended to ``run.json``; without a checkpoint: exit 2 naming the workdir, nothing
    written."""
    work = str(tmp_path / "run")
    config = tiny_config(data_dir, **{"search_eval.splits": ("g24:test:8",),
                                      "search_eval.budgets": (1, 2)})
    no_ckpt = f"run directory {re.escape(work)} holds no checkpoint.*train it first: python -m"
    with pytest.raises(FileNotFoundError, match=no_ckpt):
        modes.run("eval", config, work)
    assert not os.path.exists(work)
    proc = subprocess.run([sys.executable, "-m", "train.main", "--mode=eval", f"--workdir={work}",
                           "--config=train/configs/g24_supervised.py:runlocal"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and f"{work} holds no checkpoint" in proc.stderr

    trained = modes.run("supervised", config, work)
    out = modes.run("eval", config, work)
    assert out["mode"] == "supervised" and out["update"] == trained["update"] == 10
    assert out["eval/loss"] == pytest.approx(trained["eval/loss"], rel=1e-5)  # whole val split
    # Any config selects the run: the network and data come from the run's config.json.
    other = tiny_config(data_dir, **{"search_eval.splits": ("g24:test:8",),
                                     "search_eval.budgets": (1, 2), "model.depth": 2})
    assert modes.run("eval", other, work)["eval/loss"] == pytest.approx(out["eval/loss"], rel=1e-6)
    assert sorted(os.listdir(out["search_eval_dir"])) == [
        "per_problem.jsonl", "results.json", "results.md", "solve_rate_g24_test_8.png"]
    entries = json.load(open(os.path.join(work, "run.json")))["search_evals"]
    assert sorted((e["method"], e["simulations"]) for e in entries) == [
        ("mcts", 1), ("mcts", 2), ("mcts_tree", 1), ("mcts_tree", 2)]
    rows = [json.loads(line) for line in open(os.path.join(out["search_eval_dir"],
                                                           "per_problem.jsonl"))]
    for e in entries:
        mine = [r["solved"] for r in rows if (r["method"], r["simulations"]) == (
            e["method"], e["simulations"])]
        assert e["split"] == "g24:test:8" and e["num_problems"] == len(mine) == 8
        assert 0 <= e["solve_rate"] == sum(mine) / 8 <= 1
        assert e["evals_per_problem"] == 3 * (e["simulations"] + 1)  # 3 moves, root included
        assert out[f"search/g24:test:8/{e['method']}/sims{e['simulations']}"] == e["solve_rate"]


def _launch(c, work: str, log: str, env: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "train.main", "--config=train/configs/g24_supervised.py:runlocal",
           f"--workdir={work}", *_args(c)]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"))


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    t0 = time.time()
    while not predicate():
        assert proc.poll() is None, "the run ended before the awaited event"
        assert time.time() - t0 < timeout, "timed out waiting for the run"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigkill_and_sigterm_resume_match_uninterrupted(tmp_path, data_dir, reference):
    c = tiny_config(data_dir, **RUN)
    env = {**os.environ, "PYTHONPATH": REPO}  # the session's compilation cache (conftest.py)
    work, ckdir = str(tmp_path / "run"), str(tmp_path / "run" / "checkpoints")
    committed = lambda: [int(d) for d in os.listdir(ckdir) if d.isdigit()] \
        if os.path.isdir(ckdir) else []
    # 1) SIGKILL as soon as the first checkpoint is committed (mid-training, no chance to clean up).
    p = _launch(c, work, str(tmp_path / "log1"), env)
    _wait_for(lambda: committed(), p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed_at = max(committed())
    assert killed_at < 300
    # 2) Resume; SIGTERM once it has resumed: it saves at the next update and exits cleanly.
    log2 = str(tmp_path / "log2")
    p = _launch(c, work, log2, env)
    _wait_for(lambda: "resumed from" in open(log2).read(), p)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=240) == 0, open(log2).read()[-3000:]
    preempted_at = max(committed())
    assert killed_at < preempted_at < 300
    assert json.load(open(os.path.join(work, "run.json")))["status"] == "preempted"
    # 3) Resume to the end: the very parameters of the uninterrupted run (the calls of K=5 and
    # of single updates compute the same bits, so a resume off the K grid changes nothing).
    p = _launch(c, work, str(tmp_path / "log3"), env)
    assert p.wait(timeout=240) == 0, open(str(tmp_path / "log3")).read()[-3000:]
    for a, b in zip(final_params(work, 300), final_params(reference[0], 300), strict=True):
        np.testing.assert_array_equal(a, b)
