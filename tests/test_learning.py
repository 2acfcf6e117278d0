"""Training on the stream: the value cannot collapse, and a SIGKILLed stream run resumes exactly."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import final_params

from train import modes, probe
from train.configs import supervised

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["width=32", "head_dim=16", "size=d2", "n_max=4", "warmup=20"]


def _config(arg: str, **over):
    c = supervised.get_config(arg)
    c.unlock()
    c.search_eval.csv, c.search_eval.splits = "", ("g24:test:8",)
    c.data.eval_examples = c.data.probe_examples = 400
    c.checkpoint.async_save = False
    for k, v in over.items():
        section, _, field = k.partition(".")
        c[section][field] = v
    c.lock()
    return c


@pytest.mark.slow
def test_value_varies_across_inputs_and_beats_the_base_rate_at_n2(tmp_path):
    # results=false: the value must come from the backbone's pooled slot states (the result-aware
    # head would read the answer off the exact move results at n=2).
    c = _config(",".join(TINY + ["mixture=n2:1", "steps=400", "lr=3e-3", "batch=64",
                                 "results=false"]),
                **{"train.eval_every": 400, "checkpoint.every": 400})
    out = modes.run("supervised", c, str(tmp_path / "run"))
    assert out["status"] == "completed"
    rec = json.load(open(tmp_path / "run" / "run.json"))
    fm = rec["final_metrics"]
    assert fm["probe/walk/n2/value_distinct"] > 100  # per 1,000 states: not a constant
    assert fm["probe/walk/n2/value_spread"] > 0.1
    assert fm["probe/walk/n2/value_acc"] > fm["probe/walk/n2/value_base_rate"] + 0.1
    assert fm["probe/walk/collapsed"] == 0.0
    assert rec["exclusion"] == {"g24:test:8": 8}
    assert rec["stream"]["mixture"] == "n2:1"


def test_collapse_flag_catches_a_constant_value():
    arrays = {"value": np.array([1, 0, 1, 0] * 50, np.float32), "n": np.full(200, 2),
              "policy": np.ones((200, 6), np.float32) / 6, "legal": np.ones((200, 6), bool)}
    const = probe.summarize(np.zeros((200, 6)), np.full(200, 0.3), arrays)
    varied = probe.summarize(np.zeros((200, 6)), np.linspace(-2, 2, 200), arrays)
    assert probe.collapsed(const) and not probe.collapsed(varied)
    assert const["n2/value_acc"] == 0.5 == const["n2/value_base_rate"]
    assert probe.auc(np.array([0.1, 0.9, 0.2, 0.8]), np.array([0, 1, 0, 1])) == 1.0
    assert probe.auc(np.array([0.9, 0.1]), np.array([0, 1])) == 0.0


def _launch(work: str, log: str, env: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "train.main",
           "--config=train/configs/supervised.py:" + ",".join(
               TINY + ["steps=60", "batch=16", "mixture=n2:1+n3:1+g4_t100:1"]),
           f"--workdir={work}", "--config.search_eval.csv=", "--config.search_eval.splits=",
           "--config.data.eval_examples=32", "--config.data.probe_examples=32",
           "--config.checkpoint.every=10", "--config.checkpoint.keep=10",
           "--config.train.eval_every=1000"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"))


@pytest.mark.slow
def test_stream_run_sigkilled_and_resumed_equals_uninterrupted(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO}  # the session's compilation cache (conftest.py)
    ref, work = str(tmp_path / "ref"), str(tmp_path / "run")
    assert _launch(ref, str(tmp_path / "log0"), env).wait(timeout=400) == 0
    ckdir = os.path.join(work, "checkpoints")
    committed = lambda: [int(d) for d in os.listdir(ckdir) if d.isdigit()] \
        if os.path.isdir(ckdir) else []
    p = _launch(work, str(tmp_path / "log1"), env)
    t0 = time.time()
    while not committed():
        assert p.poll() is None and time.time() - t0 < 400, open(tmp_path / "log1").read()[-2000:]
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert max(committed()) < 60
    p = _launch(work, str(tmp_path / "log2"), env)
    assert p.wait(timeout=400) == 0, open(tmp_path / "log2").read()[-3000:]
    assert "resumed from" in open(tmp_path / "log2").read()
    for a, b in zip(final_params(work, 60), final_params(ref, 60), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
