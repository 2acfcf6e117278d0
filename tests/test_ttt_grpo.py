"""Tiny end-to-end runs of --mode=ttt (on a search-and-learn checkpoint) and --mode=grpo."""

import json
import os

import numpy as np
import pytest

from tests.test_search_and_learn import tiny_config
from train import grpo, run_record, ttt
from train import search_and_learn as sl


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("src") / "sl")
    sl.train_and_evaluate(tiny_config(**{"sl.iterations": 1}), work)
    return work


def test_ttt_per_problem_loop(source, tmp_path):
    work = str(tmp_path / "ttt")
    c = tiny_config(**{"ttt.source": source, "ttt.simulations": 2, "ttt.epochs": 3,
                       "ttt.lora_steps": 2, "ttt.batch_size": 8, "eval.sets": "g24:test:6"})
    out = ttt.main(c, work)
    res = json.load(open(os.path.join(work, "ttt.json")))
    assert len(res["per_problem"]) == 6 and res["source"] == source
    curve = res["ttt"]
    assert [r["epochs"] for r in curve] == [1, 2, 3]
    rates = [r["solve_rate"] for r in curve]
    assert rates == sorted(rates)  # more epochs never unsolve a problem
    assert out["ttt_solve_rate"] == rates[-1]
    flops = [r["flops_per_problem"] for r in curve]
    assert flops == sorted(flops) and flops[0] > 0
    for p in res["per_problem"]:
        assert len(p["flops"]) >= 1 and p["flops"] == sorted(p["flops"])
        assert p["time"]["time/search_s"] > 0
        if p["solved_epoch"] is None:  # an unsolved problem used every epoch, with training
            assert len(p["flops"]) == 3 and "time/train_s" in p["time"] or \
                "time/relabel_s" in p["time"]
    base = res["plain_search"]
    for a, b in zip(curve, base, strict=True):  # plain search gets at least TTT's compute
        assert b["flops_per_problem"] >= a["flops_per_problem"] - 1e-6 * a["flops_per_problem"] \
            or b["attempts"] >= a["epochs"]
    rec = run_record.read_run_record(work)
    assert rec["mode"] == "ttt"
    assert {e["method"] for e in rec["search_evals"]} == {"ttt_lora", "mcts_repeat"}


def test_ttt_needs_a_source_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="ttt.source"):
        ttt.main(tiny_config(**{"ttt.source": str(tmp_path / "none")}), str(tmp_path / "w"))


def test_grpo_tiny_run(tmp_path):
    work = str(tmp_path / "grpo")
    out = grpo.main(tiny_config(), work)
    rec = run_record.read_run_record(work)
    assert rec["mode"] == "grpo" and rec["steps"] == 2 * 4  # iterations x steps_per_iter
    assert {(e["method"], e["simulations"]) for e in rec["search_evals"]} == {
        (m, 3) for m in ("mcts", "mcts_tree", "uniform_mcts", "uniform_mcts_tree")}
    assert set(out) == set(sl.eval_metrics(rec["search_evals"]))
    rows = [json.loads(line) for line in open(os.path.join(work, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(np.isfinite(r["train/loss"]) and r["time/search_s"] > 0 for r in rows)
    with pytest.raises(ValueError, match="config.grpo.group=1 is out of range"):
        grpo.main(tiny_config(**{"grpo.group": 1}), str(tmp_path / "bad"))


def test_grpo_advantages_are_group_relative():
    import jax.numpy as jnp

    from search import baselines, game, problems
    from train import relabel  # noqa: F401  (rollout_batch replays through it)

    s = {"rules": game.Rules(n_max=4), "tok_cfg": __import__(
        "nnx_models.tokenizer", fromlist=["x"]).TokenizerConfig(n_max=4)}
    start = problems.problems_to_state(problems.generate("g24", 2, 0, "train"), s["rules"])
    solved = np.array([[True, False, False, False], [True, True, True, True]])
    acts = np.full((2, 4, 3), -1, np.int32)
    acts[..., 0] = 0  # one legal move (slot 0 + slot 1) per rollout
    z = jnp.zeros((2, 4), jnp.int32)
    ro = baselines.Rollouts(actions=jnp.asarray(acts), solved=jnp.asarray(solved),
                            complete=z > 0, final_num=z, final_den=z + 1, evals=z + 1)
    b = grpo.rollout_batch(s, ro, start, normalize=False)
    adv = b["advantage"].reshape(2, 4, 3)[..., 0]
    np.testing.assert_allclose(adv, [[0.75, -0.25, -0.25, -0.25], [0, 0, 0, 0]])
    np.testing.assert_array_equal(b["weight"].reshape(2, 4, 3), [[[1, 0, 0]] * 4] * 2)
    np.testing.assert_array_equal(b["value"].reshape(2, 4, 3)[..., 0], solved.astype(float))
