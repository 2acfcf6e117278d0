"""search/datasets.py: TFDS array_record build, read back, labels, idempotency, atomic, offline."""

import os
import socket
import subprocess
import sys
from fractions import Fraction

import jax
import numpy as np
import pytest

from search import datasets, game, problems, solver

NAME = "g24_p24_train"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One small build shared by the tests, made with the network switched off."""
    root = tmp_path_factory.mktemp("data")
    real_connect = socket.socket.connect

    def no_network(self, *a, **k):
        raise AssertionError(f"network access attempted: {a}")

    socket.socket.connect = no_network
    try:
        path = datasets.build_supervised(root, NAME, "g24", 24, seed=5, progress=False)
        examples = datasets.load_supervised(root, NAME)
    finally:
        socket.socket.connect = real_connect
    return root, path, examples


def test_features_and_labels(built):
    _, _, ex = built
    rules = problems.get_class("g24").rules
    e = len(ex["value"])
    a = rules.num_actions
    shapes = {"num": (e, 8), "den": (e, 8), "live": (e, 8), "target_num": (e,),
              "target_den": (e,), "moves": (e,), "policy": (e, a), "legal": (e, a), "value": (e,),
              "n": (e,), "class_name": (e,)}
    assert {k: v.shape for k, v in ex.items()} == shapes
    assert ex["num"].dtype == np.int32 and ex["policy"].dtype == np.float32
    assert ex["live"].dtype == bool and ex["value"].dtype == np.float32
    assert set(ex["class_name"]) == {"g24"} and set(ex["n"]) == {4}
    # 24 solvable problems: 3 on-path states each (depth 0, 1, 2) plus off-path states.
    assert (ex["moves"] == 0).sum() == 24 and e > 72 and set(ex["moves"]) == {0, 1, 2}
    assert 0.3 < ex["value"].mean() < 1.0  # off-path states include unsolvable ones
    # Recompute labels independently: engine legality and the solver on slot-aligned values.
    state = datasets.examples_to_state(ex)
    assert np.array_equal(np.asarray(jax.jit(game.legal_mask, static_argnums=1)(state, rules)),
                          ex["legal"])
    assert not np.asarray(game.is_terminal(state, rules)).any()
    for k in range(e):
        vals = [Fraction(int(n), int(d)) if alive else None
                for n, d, alive in zip(ex["num"][k], ex["den"][k], ex["live"][k], strict=True)]
        value, good = solver.state_labels(vals, int(ex["target_num"][k]), rules)
        assert ex["value"][k] == float(value)
        expected = good / good.sum() if good.any() else np.zeros(a)
        np.testing.assert_allclose(ex["policy"][k], expected, rtol=1e-6)
    assert np.allclose(ex["policy"].sum(-1), ex["value"], atol=1e-5)
    assert not (ex["policy"] > 0)[~ex["legal"]].any()


def test_idempotent_rebuild_and_conflict(built):
    root, path, ex = built
    record = next(path.glob("*.array_record*"))
    mtime = record.stat().st_mtime_ns
    assert datasets.build_supervised(root, NAME, "g24", 24, seed=5, progress=False) == path
    assert record.stat().st_mtime_ns == mtime  # kept, not rebuilt
    with pytest.raises(ValueError, match="other parameters"):
        datasets.build_supervised(root, NAME, "g24", 24, seed=6, progress=False)
    again = datasets.load_supervised(root, NAME)
    assert all(np.array_equal(again[k], ex[k]) for k in ex)


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = solver.labels_for_states

    def flaky(state, rules):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if the user hit Ctrl-C mid-way
        return real(state, rules)

    monkeypatch.setattr(solver, "labels_for_states", flaky)
    with pytest.raises(KeyboardInterrupt):
        datasets.build_supervised(tmp_path, "broken", "g24_10", 8, progress=False)
    assert calls["n"] == 3
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == [] and not (tmp_path / "zero24_supervised" / "broken").exists()
    with pytest.raises(FileNotFoundError, match="no dataset 'broken'"):
        datasets.load_supervised(tmp_path, "broken")


def test_problem_sets_roundtrip_in_order(tmp_path, shared_bench):
    tot = problems.load_24csv(shared_bench / "24.csv", "tot100")
    gen = problems.generate("n5", 5, 0, "test")
    datasets.build_problem_set(tmp_path, "mixed", {"test": tot, "n5": gen}, "mixed")
    assert datasets.load_problem_set(tmp_path, "mixed", "test") == tot  # rank order kept
    assert datasets.load_problem_set(tmp_path, "mixed", "n5") == gen
    with pytest.raises(ValueError, match="split='val' not in dataset 'mixed'"):
        datasets.load_problem_set(tmp_path, "mixed", "val")


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="num_problems=0"):
        datasets.build_supervised(tmp_path, "x", "g24", 0)
    with pytest.raises(ValueError, match="name='../x'"):
        datasets.build_supervised(tmp_path, "../x", "g24", 3)
    with pytest.raises(ValueError, match="unknown problem class 'nope'"):
        datasets.build_supervised(tmp_path, "x", "nope", 3)
    with pytest.raises(ValueError, match="off_path=2"):
        datasets.supervised_examples([problems.Problem((1, 2), 3)], game.Rules(), 0, off_path=2)
    assert not any(tmp_path.iterdir())


def test_cli(tmp_path, capsys):
    rc = datasets.cli(["prog", "--class=g24_10", "--num_problems=3", f"--data_dir={tmp_path}",
                       "--split=val"])
    assert rc == 0 and "g24_10_p3_s0_val" in capsys.readouterr().out
    assert datasets.load_supervised(tmp_path, "g24_10_p3_s0_val")["n"].tolist()[0] == 4
    assert datasets.cli(["prog", "--num_problems=-1", f"--data_dir={tmp_path}"]) == 2
    assert "num_problems=-1" in capsys.readouterr().err
    # The module entry point exits non-zero with the message (run as a user would).
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "search.datasets", "--class=g25",
                           f"--data_dir={tmp_path}"], capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.dirname(__file__)), timeout=120)
    assert proc.returncode == 2 and "unknown problem class 'g25'" in proc.stderr
