"""search/sweep.py, search/stats.py, train/eval_main.py: intervals, splits, the sweep (verified
solutions), outputs, run.json, CLI."""

import json
import os
import subprocess
import sys
from fractions import Fraction

import jax
import numpy as np
import pytest

from scaling.run_json import entry_key, merge_entries
from search import baselines, game, problems
from search import sweep as ev
from search.stats import clopper_pearson_ci, wilson_ci
from train.run_model import load_network

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_binomial_intervals_golden():
    # Published values for 8/10 at 95% (e.g. Brown, Cai & DasGupta 2001 tables / R binom.test).
    np.testing.assert_allclose(wilson_ci(8, 10), (0.4902, 0.9433), atol=1e-4)
    np.testing.assert_allclose(clopper_pearson_ci(8, 10), (0.4439, 0.9748), atol=1e-4)
    assert clopper_pearson_ci(0, 10) == pytest.approx((0.0, 1 - 0.025 ** 0.1))
    assert wilson_ci(10, 10)[1] == 1.0 and wilson_ci(0, 0) == (0.0, 1.0)


def test_split_and_input_errors(tmp_path):
    with pytest.raises(ValueError, match="--csv=/path/to/24.csv"):
        ev.load_split("tot100")
    with pytest.raises(ValueError, match="split 'g25' is unknown"):
        ev.load_split("g25")
    with pytest.raises(ValueError, match="--n_max=5"):
        ev.load_split("n5:test:3", n_max=4)
    with pytest.raises(ValueError, match="does not exist"):
        ev.load_split("tot100", csv_path=str(tmp_path / "24.csv"))
    net = load_network("uniform")
    with pytest.raises(ValueError, match="simulations must be >= 1"):
        ev.evaluate_run(str(tmp_path), net, ["g24:test:2"], budgets=[0, 1])
    with pytest.raises(ValueError, match="unknown"):
        ev.evaluate_run(str(tmp_path), net, ["g24:test:2"], methods=["astar"])
    with pytest.raises(ValueError, match="batch_size=0"):
        ev.SweepOptions(batch_size=0)
    with pytest.raises(ValueError, match="--model='gpt5'"):
        load_network("gpt5")
    assert not os.listdir(tmp_path)  # nothing half-written


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    with open(workdir / "run.json", "w") as f:
        json.dump({"name": "x", "search_evals": [{"split": "old"}]}, f)
    opts = ev.SweepOptions(batch_size=8, beam_expand=4)
    out = ev.evaluate_run(str(workdir), load_network("uniform"), ["g24:test:12"],
                          methods=["uniform_mcts", "sample", "beam", "exhaustive_dfs",
                                   "exhaustive_bfs"], budgets=[16], n_max=4, opts=opts,
                          progress=False)
    return workdir, out


def test_sweep_entries_and_verified_solutions(sweep):
    workdir, out = sweep
    entries = out["entries"]
    variants = {"uniform_mcts", "uniform_mcts_tree", "sample_pass", "sample_majority", "beam",
                "exhaustive_dfs", "exhaustive_bfs"}
    assert {e["method"] for e in entries} == variants and len(entries) == len(variants)
    assert {v for m in ("uniform_mcts", "sample", "beam", "exhaustive_dfs", "exhaustive_bfs")
            for v in ev.variants(m)} == variants
    recs = [json.loads(line) for line in open(workdir / "search_eval" / "per_problem.jsonl")]
    assert len(recs) == 12 * len(entries)
    for e in entries:
        mine = [r for r in recs if r["method"] == e["method"]]
        assert e["solve_rate"] == pytest.approx(np.mean([r["solved"] for r in mine]))
        assert e["evals_per_problem"] == pytest.approx(np.mean([r["evals"] for r in mine]))
        lo, hi = e["solve_rate_ci"]
        assert lo <= e["solve_rate"] <= hi and e["search_flops_per_problem"] == 0.0
    for r in recs:
        if r["solved"]:  # the recorded expression really evaluates to the target
            assert eval(r["solution"], {}, {}) == pytest.approx(r["target"])
        else:
            assert r["solution"] is None
        if r["method"].startswith("exhaustive"):
            assert r["evals"] <= (16 + 1) * 3
        if r["method"] == "uniform_mcts":
            assert r["evals"] == (16 + 1) * 3  # simulations + root, at each of 3 moves
    by = {e["method"]: e["solve_rate"] for e in entries}
    assert by["uniform_mcts_tree"] >= by["uniform_mcts"]
    assert by["sample_pass"] >= by["sample_majority"]
    # Cross-check one exhaustive record with a direct call.
    rules = game.Rules(n_max=4)
    r = next(r for r in recs if r["method"] == "exhaustive_bfs")
    ok, _, nodes = baselines.exhaustive(r["numbers"], r["target"], rules, 17 * 3, "bfs")
    assert (ok, nodes) == (r["solved"], r["evals"])


def test_run_method_compiles_once():
    _, probs, rules = ev.load_split("g24:test:3", n_max=4)
    net = load_network("uniform")
    outs = [ev.run_method("sample", 2, probs, rules, net, progress=False)[0] for _ in range(2)]
    assert outs[0] == outs[1]  # same seed, same answers
    fn = ev._batched_fn("sample", 2, net.make_evaluate, rules, ev.SweepOptions(), None)
    assert fn.jitted._cache_size() == 1


def test_exhaustive_budget_monotone():
    _, probs, rules = ev.load_split("g24:test:12", n_max=4)
    rates = []
    for budget in (2, 16, 64, 2000):
        out, _ = ev.run_method("exhaustive_dfs", budget, probs, rules, load_network("uniform"))
        rates.append(np.mean([ok for ok, _, _ in out["exhaustive_dfs"]]))
    assert rates == sorted(rates) and rates[0] == 0 and rates[-1] == 1.0  # g24 is all solvable


def test_outputs_and_run_record(sweep):
    workdir, out = sweep
    files = sorted(os.listdir(out["out_dir"]))
    assert files == ["per_problem.jsonl", "results.json", "results.md",
                     "solve_rate_g24_test_12.png"]
    record = json.load(open(workdir / "run.json"))
    assert record["search_evals"][0] == {"split": "old"}  # appended, not replaced
    new = record["search_evals"][1:]
    assert len(new) == len(out["entries"])
    for key in ("split", "method", "simulations", "evals_per_problem", "search_flops_per_problem",
                "solve_rate", "solve_rate_ci", "num_problems"):  # the run-record entry keys
        assert all(key in e for e in new)
    md = open(os.path.join(out["out_dir"], "results.md")).read()
    assert "| exhaustive_dfs | 16 |" in md


def test_run_record_merge_replaces_the_same_measurement(tmp_path):
    """Evaluating the same budgets again replaces their entries (the newer values, whatever the
    network label); another budget is added; other entries keep their order."""
    g24 = "g24:test:12"
    stale = dict(split=g24, method="exhaustive_dfs", simulations=16, network="old label",
                 solve_rate=0.123)
    other = dict(split=g24, method="exhaustive_dfs", simulations=4, solve_rate=0.0)
    with open(tmp_path / "run.json", "w") as f:
        json.dump({"name": "x", "search_evals": [{"split": "old"}, stale, other, stale]}, f)
    run = lambda methods, budgets: ev.evaluate_run(
        str(tmp_path), load_network("uniform"), [g24], methods=methods, budgets=budgets,
        n_max=4, opts=ev.SweepOptions(batch_size=8, beam_expand=4), progress=False)["entries"]
    first = run(["uniform_mcts", "exhaustive_dfs"], [16])
    second = run(["uniform_mcts", "exhaustive_dfs"], [16])
    assert len(second) == 3 and [entry_key(e) for e in first] == [
        entry_key(e) for e in second]
    read = lambda: json.load(open(tmp_path / "run.json"))["search_evals"]
    assert read() == [{"split": "old"}, other, *second]  # stale (twice) and first replaced
    third = run(["exhaustive_dfs"], [64])
    assert read() == [{"split": "old"}, other, *second, *third]
    # ttt entries differ by epochs at one budget; duplicates in `new` collapse too.
    ttt = [dict(split="s", method="ttt_lora", simulations=8, epochs=k, solve_rate=r)
           for k, r in ((1, 0.1), (2, 0.2), (1, 0.3))]
    assert merge_entries([], ttt) == ttt[1:]


def test_model_network_cost_and_resize():
    from nnx_models import ModelConfig, seq_len
    from nnx_models.tokenizer import TokenizerConfig
    from scaling.flops import forward_flops_per_state

    net = load_network("untrained:d1")
    rules = game.Rules(n_max=5)
    cfg = ModelConfig.from_depth(1)
    want = forward_flops_per_state(cfg, seq_len(TokenizerConfig(n_max=5)), 5)
    assert net.flops_per_eval(rules) == want > 0
    st = problems.problems_to_state([problems.Problem((1, 2, 3, 4, 5), 24)], rules)
    logits, value = jax.jit(net.make_evaluate(rules))(net.params, st)
    assert logits.shape == (1, rules.num_actions) and 0 <= float(value[0]) <= 1
    assert (np.asarray(logits)[~np.asarray(game.legal_mask(st, rules))] <= -1e8).all()


def test_tot100_exhaustive_solves_all(shared_bench):
    _, probs, rules = ev.load_split("tot100", str(shared_bench / "24.csv"), n_max=4)
    assert len(probs) == 100
    out, _ = ev.run_method("exhaustive_dfs", 2000, probs, rules, load_network("uniform"))
    rows = out["exhaustive_dfs"]
    assert all(ok for ok, _, _ in rows)
    for p, (_, expr, _) in zip(probs, rows, strict=True):
        assert Fraction(eval(expr, {}, {})).limit_denominator(1000) == p.target


def test_cli(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    cmd = [sys.executable, "-m", "search.eval", f"--workdir={tmp_path}", "--model=uniform",
           "--methods=exhaustive_dfs", "--budgets=4,32", "--n_max=4"]
    ok = subprocess.run(cmd + ["--splits=g24:test:6"], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "| exhaustive_dfs | 32 |" in ok.stdout
    assert os.path.exists(tmp_path / "search_eval" / "results.json")
    bad = subprocess.run(cmd + ["--splits=tsllm362"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "--csv=" in bad.stderr
