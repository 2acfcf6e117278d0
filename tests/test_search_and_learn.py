"""Search-and-learn end to end (tiny): outputs, per-phase timing, resume equivalence, compare."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

from search import game, sweep
from train import compare, grpo, loop, modes, run_model, run_record, selfplay, setup, ttt
from train import search_and_learn as sl
from train.configs import search
from train.metrics import read_jsonl

# The default 64-wide model (packed numbers, set layout, result-aware pair head) cut to one layer
# (half the network's compile time; nothing here depends on depth) on 4-slot states (7 positions).
TINY = {"model.depth": 1, "train.batch_size": 16,
        "sl.iterations": 3, "sl.train_steps": 3, "sl.selfplay_batch": 16,
        "sl.selfplay_simulations": 4, "sl.eval_every": 2, "eval.sets": ("g24:test:16",),
        "eval.simulations": (4,), "checkpoint.every": 1,
        "checkpoint.keep": 3, "relabel.enabled": True,  # hindsight is off by default; cover it
        # the flagship's phase-2 settings: exact value labels, 1 of 3 steps on a stream batch
        "sl.value_targets": "exact", "sl.stream_share": 0.34, "data.mixture": "n2:1,n3:1,g24:1"}


def tiny_config(**overrides):
    c = search.get_config("runlocal")
    for key, value in {**TINY, **overrides}.items():
        section, field = key.split(".")
        c[section][field] = value
    return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One uninterrupted run and one interrupted after 1 iteration, then resumed."""
    root = tmp_path_factory.mktemp("sl")
    full, split = str(root / "full"), str(root / "split")
    out_full = sl.train_and_evaluate(tiny_config(), full)
    out_paused = sl.train_and_evaluate(tiny_config(), split, max_iterations=1)
    out_split = sl.train_and_evaluate(tiny_config(), split)
    return {"full": full, "split": split, "out_full": out_full, "out_paused": out_paused,
            "out_split": out_split, "root": str(root)}


def test_outputs_run_record_and_phase_timing(runs):
    work = runs["full"]
    assert runs["out_full"]["status"] == "completed" and runs["out_full"]["iteration"] == 3
    rec = run_record.read_run_record(work)
    assert set(run_record.REQUIRED_KEYS) <= set(rec)
    assert rec["mode"] == "search_and_learn" and rec["steps"] == 9  # 3 iterations x 3 steps
    assert rec["tokens"] == 9 * 16 * rec["seq_len"] and rec["train_flops"] > 0
    methods = {(e["method"], e["simulations"]) for e in rec["search_evals"]}
    assert methods == {(m, 4) for m in ("mcts", "mcts_tree", "uniform_mcts", "uniform_mcts_tree")}
    for e in rec["search_evals"]:
        assert e["split"] == "g24:test:16" and e["num_problems"] == 16
        lo, hi = e["solve_rate_ci"]
        assert 0 <= lo <= e["solve_rate"] <= hi <= 1
        # n=4: 3 moves x (simulations + 1) evaluations per problem; uniform costs no FLOPs
        assert e["evals_per_problem"] == 3 * (e["simulations"] + 1)
        assert (e["search_flops_per_problem"] > 0) == e["method"].startswith("mcts")
        if e["method"].endswith("_tree"):  # a played solution is also a solution in the tree
            played = next(x for x in rec["search_evals"] if x["method"] == e["method"][:-5]
                          and x["simulations"] == e["simulations"])
            assert e["solve_rate"] >= played["solve_rate"]
    assert rec["selfplay_search_flops"] > 0
    # the eval set never enters training: recorded, and written for search.eval's warning
    assert rec["exclusion"]["g24:test:16"] == 16  # eval.sets (search_eval.splits also counts)
    assert len(json.load(open(os.path.join(work, "exclusion.json")))["g24:test:16"]) == 16
    # curve: untrained net (iteration 0), iteration 2 (eval_every) and the last one
    assert [h["iteration"] for h in rec["history"]] == [0, 2, 3]
    rows = read_jsonl(os.path.join(work, "metrics.jsonl"))
    it_rows = [r for r in rows if r["step"] >= 1]
    assert [r["step"] for r in it_rows] == [1, 2, 3]
    for r in it_rows:
        for phase in ("search", "relabel", "train", "save"):
            assert r[f"time/{phase}_s"] >= 0
        assert r["buffer/size"] > 0 and np.isfinite(r["train/loss"])
    assert "time/eval_s" in it_rows[1] and "eval/g24:test:16/mcts/sims4" in it_rows[2]
    assert it_rows[0]["buffer/size"] < it_rows[2]["buffer/size"]


def test_resume_is_equivalent_to_an_uninterrupted_run(runs):
    assert runs["out_paused"]["status"] == "paused"
    a, step_a = run_model.restore_numpy(runs["full"])
    b, step_b = run_model.restore_numpy(runs["split"])
    assert step_a == step_b == 3
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)  # params, optimizer, step, rng AND the buffer
    assert int(a["buffer"]["size"]) > 0
    ra, rb = (run_record.read_run_record(runs[k]) for k in ("full", "split"))
    strip = lambda es: [{k: v for k, v in e.items() if k != "wall_time_s"} for e in es]
    assert strip(ra["search_evals"]) == strip(rb["search_evals"])
    hist = lambda r: [strip(h["entries"]) for h in r["history"]]
    assert hist(ra) == hist(rb)


def test_compare_two_runs(runs):
    out = os.path.join(runs["root"], "cmp")
    res = compare.main(tiny_config(), out, runs=[runs["full"], runs["split"]])
    md = open(res["compare_md"]).read()
    assert "| g24:test:16 | mcts | 4 |" in md and "| full |" in md and "| split |" in md
    table = json.load(open(os.path.join(out, "compare.json")))
    assert len(table["rows"]) == 4 and set(table["runs"]) == {"full", "split"}
    assert os.path.getsize(res["curves"]) > 1000
    with pytest.raises(FileNotFoundError, match="no run.json"):
        compare.main(tiny_config(), out, runs=[out + "/missing"])


def test_bad_config_fails_before_writing(tmp_path):
    work = str(tmp_path / "w")
    with pytest.raises(ValueError, match="class 'n5' has up to 5 numbers but states have n_max=4"):
        sl.train_and_evaluate(tiny_config(**{"sl.curriculum": ("g24", "n5")}), work)
    with pytest.raises(ValueError, match="config.init.source='x'"):
        sl.train_and_evaluate(tiny_config(**{"init.source": "x"}), work)
    assert not os.path.exists(work)


def test_ttt_per_problem_loop(runs, tmp_path):
    source = runs["full"]
    work = str(tmp_path / "ttt")
    # 16 rollouts = the self-play batch: the relabelling functions are already compiled
    c = tiny_config(**{"ttt.source": source, "ttt.simulations": 2, "ttt.epochs": 2,
                       "ttt.rollouts": 16, "ttt.lora_steps": 2, "ttt.batch_size": 8,
                       "eval.sets": ("g24:test:6",)})
    out = ttt.main(c, work)
    res = json.load(open(os.path.join(work, "ttt.json")))
    assert len(res["per_problem"]) == 6 and res["source"] == source
    curve = res["ttt"]
    assert [r["epochs"] for r in curve] == [1, 2]
    rates = [r["solve_rate"] for r in curve]
    assert rates == sorted(rates)  # more epochs never unsolve a problem
    assert out["ttt_solve_rate"] == rates[-1]
    flops = [r["flops_per_problem"] for r in curve]
    assert flops == sorted(flops) and flops[0] > 0
    for p in res["per_problem"]:
        assert len(p["flops"]) >= 1 and p["flops"] == sorted(p["flops"])
        assert p["time"]["time/search_s"] > 0
        if p["solved_epoch"] is None:  # an unsolved problem searched in every epoch
            assert len(p["flops"]) == 2 and "time/relabel_s" in p["time"]
    base = res["plain_search"]
    for a, b in zip(curve, base, strict=True):  # plain search gets at least TTT's compute
        assert b["flops_per_problem"] >= a["flops_per_problem"] * (1 - 1e-9)
        assert b["attempts"] >= a["epochs"]
    rec = run_record.read_run_record(work)
    assert rec["mode"] == "ttt"
    assert {e["method"] for e in rec["search_evals"]} == {"ttt_lora", "mcts_repeat"}


def test_grpo_tiny_run(tmp_path):
    work = str(tmp_path / "grpo")
    out = grpo.main(tiny_config(), work)
    rec = run_record.read_run_record(work)
    assert rec["mode"] == "grpo" and rec["steps"] == 2 * 4  # iterations x steps_per_iter
    assert {(e["method"], e["simulations"]) for e in rec["search_evals"]} == {
        (m, 4) for m in ("mcts", "mcts_tree", "uniform_mcts", "uniform_mcts_tree")}
    assert set(out) == set(loop.eval_metrics(rec["search_evals"]))
    rows = [json.loads(line) for line in open(os.path.join(work, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(np.isfinite(r["train/loss"]) and r["time/search_s"] > 0 for r in rows)
    with pytest.raises(ValueError, match="config.grpo.group=1 is out of range"):
        grpo.main(tiny_config(**{"grpo.group": 1}), str(tmp_path / "bad"))


def test_init_from_another_runs_checkpoint(runs, tmp_path):
    """``init.source=supervised`` restores the newest parameters of a finished run's workdir."""
    c = tiny_config(**{"init.source": "supervised", "init.path": runs["full"]})
    got = setup.initial_state(setup.build(c, from_init=True))
    want, _ = run_model.restore_numpy(runs["full"])
    saved = {run_model.path_key(p): x for p, x in
             jax.tree_util.tree_leaves_with_path(want["train"]["params"])}
    for p, x in jax.tree_util.tree_leaves_with_path(got["params"]):
        np.testing.assert_array_equal(np.asarray(x), saved[run_model.path_key(p)])
    assert int(got["step"]) == 0  # optimizer state and step start fresh
    wrong = tiny_config(**{"init.source": "supervised", "init.path": runs["full"],
                           "model.d_model": 32})
    with pytest.raises(ValueError, match="this config expects"):
        setup.initial_state(setup.build(wrong, from_init=True))


def test_mode_eval_on_a_search_and_learn_checkpoint(runs, tmp_path):
    """``--mode=eval`` reads the parameters of a search_and_learn checkpoint (under
    ``state["train"]``, next to the buffer): no supervised eval split there, only the search
    sweep, which repeats the run's own last eval (same network, split, budget and search), so
    its entries replace the loop's in run.json instead of duplicating them."""
    work = str(tmp_path / "full")
    shutil.copytree(runs["full"], work)  # the other tests read this run's search_evals
    model, rules = run_model.load_run_model(work)
    want, step = run_model.restore_numpy(work)
    saved = {run_model.path_key(p): x for p, x in
             jax.tree_util.tree_leaves_with_path(want["train"]["params"])}
    got = jax.tree_util.tree_leaves_with_path(nnx.state(model))
    assert step == 3 and rules.n_max == 4 and len(got) == len(saved)
    for p, x in got:
        np.testing.assert_array_equal(np.asarray(x), saved[run_model.path_key(p)])
    before = run_record.read_run_record(work)["search_evals"]
    c = tiny_config(**{"search_eval.splits": ("g24:test:16",), "search_eval.budgets": (4,)})
    out = modes.run("eval", c, work)
    assert out["mode"] == "search_and_learn" and out["update"] == 3 and "eval/loss" not in out
    after = run_record.read_run_record(work)["search_evals"]
    assert after[:2] == [e for e in before if e["method"].startswith("uniform_mcts")]
    assert len(after) == len(before) and [e["method"] for e in after[2:]] == ["mcts", "mcts_tree"]
    for e in after[2:]:
        loop = next(x for x in before if (x["method"], x["simulations"]) == (e["method"], 4))
        assert e["num_problems"] == 16 and e["solve_rate"] == loop["solve_rate"]
        assert e["search_flops_per_problem"] == pytest.approx(loop["search_flops_per_problem"])
    assert os.path.isfile(os.path.join(out["search_eval_dir"], "solve_rate_g24_test_16.png"))


def test_resume_keeps_search_evals_appended_outside(runs, tmp_path):
    """A resumed run.json keeps what ``search.eval`` appended (e.g. sweep_eval at another budget)
    and replaces an appended entry of its own (split, method, budget) with the loop's."""
    work = str(tmp_path / "full")
    shutil.copytree(runs["full"], work)
    own = run_record.read_run_record(work)["search_evals"]
    mcts4 = next(e for e in own if e["method"] == "mcts")
    outside = dict(mcts4, simulations=64, solve_rate=0.5, network="sweep label")
    stale = dict(mcts4, solve_rate=0.123, network="sweep label")
    assert sweep.append_to_run_record(work, [outside, stale])
    assert sl.train_and_evaluate(tiny_config(), work)["status"] == "completed"  # finished: 0 its
    assert run_record.read_run_record(work)["search_evals"] == [outside, *own]


def test_curriculum_pools_skip_excluded_problems():
    rules = game.Rules(n_max=4)
    cfg = {"sl": {"curriculum": ("g24",), "train_problems": 50, "curriculum_threshold": 0.5},
           "data": {"seed": 0}}
    full = selfplay.Curriculum(cfg, rules).pool(0)
    drop = frozenset(p.canonical for p in full[:10])
    kept = selfplay.Curriculum(cfg, rules, drop).pool(0)
    assert len(kept) == 40 and not {p.canonical for p in kept} & drop
    with pytest.raises(ValueError, match="every training problem of 'g24'"):
        selfplay.Curriculum(cfg, rules, frozenset(p.canonical for p in full)).pool(0)


def test_stream_mixer_spacing_and_bad_share(tmp_path):
    class Fake:
        def __init__(self):
            self.positions = []

        def batch(self, position):
            self.positions.append(position)
            return {"position": position}

    mixer = selfplay.StreamMixer.__new__(selfplay.StreamMixer)
    mixer.per_it, mixer.k, mixer.loader = 3, 8, Fake()
    used = [k for k in range(8) if mixer.batch(5, k) is not None]
    assert len(used) == 3 and used == sorted(set(used))  # 3 of 8 steps, each once
    assert mixer.loader.positions == [selfplay.StreamMixer.OFFSET + 15 + j for j in range(3)]
    with pytest.raises(ValueError, match="config.sl.stream_share=1.5"):
        sl.train_and_evaluate(tiny_config(**{"sl.stream_share": 1.5}), str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w")


def test_time_limit_ends_the_run_evaluated_and_saved(tmp_path):
    work = str(tmp_path / "w")
    out = sl.train_and_evaluate(tiny_config(**{"sl.time_limit_s": 1e-3}), work)
    assert out["status"] == "time_limit" and out["iteration"] == 1
    rec = run_record.read_run_record(work)
    assert rec["status"] == "time_limit" and rec["steps"] == 3
    assert run_model.newest_step(work) == 1
    assert [h["iteration"] for h in rec["history"]] == [0, 1]
