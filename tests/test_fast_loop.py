"""The supervised hot path (train/fast_loop.py): K updates per call, same run as one per call.

- the call plan never crosses a log / eval / checkpoint / profile point and covers every update;
- a run with ``steps_per_call=5`` writes the same metrics rows, evals and checkpoints as one with
  ``steps_per_call=1`` and ends with the same parameters, from two compiled programs;
- a SIGKILLed ``steps_per_call=5`` run resumes to bit-identical parameters: the SIGKILL/SIGTERM
  test of ``test_train_e2e.py`` runs with ``steps_per_call=5``.
"""

import os

import numpy as np
import pytest
from helpers import final_params
from test_train_e2e import tiny_config

from train import data, fast_loop, supervised
from train.metrics import read_jsonl

RUN = {"train.steps": 60, "train.log_every": 10, "train.eval_every": 30, "checkpoint.every": 20,
       "checkpoint.keep": 10, "train.warmup_steps": 5}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("data"))
    data.generate(tiny_config(path), path)
    return path


def _cfg(**train):
    base = {"steps": 947, "log_every": 10, "eval_every": 15, "steps_per_call": 0}
    return {"train": {**base, **train}, "profile_steps": 2, "profile_start": 23}


def test_plan_covers_every_update_and_stops_at_every_boundary():
    cfg = _cfg()
    k = fast_loop.steps_per_call(cfg, flops_per_update=1e3)  # tiny model: as large as allowed
    assert k == 10  # the largest divisor of log_every=10 at most MAX_STEPS_PER_CALL
    must_stop = {1, 947, 23, 25} | set(range(10, 948, 10)) | set(range(15, 948, 15)) | \
        set(range(20, 948, 20))
    update, calls = 0, []
    while update < 947:
        n = fast_loop.chunk(update, k, cfg, checkpoint_every=20)
        calls.append(n)
        assert not any(update < b < update + n for b in must_stop), (update, n)
        update += n
    assert update == 947 and set(calls) == {1, 10}
    assert fast_loop.steps_per_call(_cfg(steps_per_call=4), 1e3) == 2  # divisor of 10, <= 4
    assert fast_loop.steps_per_call(_cfg(), 1e12) == 1  # a big model: one update per call
    assert fast_loop.steps_per_call(_cfg(steps=200), 1e3) == 1  # a short run: no second program
    assert fast_loop.auto_steps_per_call(2e8) == 8


def test_steps_per_call_same_run_as_single_updates(tmp_path, tiny_data):
    outs, works = {}, {}
    for k in (1, 5):
        works[k] = str(tmp_path / f"k{k}")
        config = tiny_config(tiny_data, **RUN, **{"train.steps_per_call": k})
        outs[k] = supervised.train_and_evaluate(config, works[k])
    rows = {k: read_jsonl(os.path.join(w, "metrics.jsonl")) for k, w in works.items()}
    steps_of = lambda k, key: [r["step"] for r in rows[k] if key in r]
    for key in ("train/loss", "eval/loss"):
        assert steps_of(1, key) == steps_of(5, key)
    assert steps_of(5, "train/loss") == [1, 10, 20, 30, 40, 50, 60]
    assert sorted(os.listdir(os.path.join(works[5], "checkpoints"))) == ["20", "40", "60"]
    for a, b in zip(final_params(works[1], 60), final_params(works[5], 60), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert outs[5]["train/loss"] == pytest.approx(outs[1]["train/loss"], rel=1e-5)
