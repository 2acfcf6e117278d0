"""Run records -> fits -> report.md, fits.json, PNGs, on a fake 3x4 grid of known truth."""
import json

import numpy as np
import pytest
from scipy import special

from scaling import main as scaling_main
from scaling import records, report, sweep

TRUTH = {"E": 0.3, "A": 60.0, "B": 300.0, "alpha": 0.35, "beta": 0.4}
M_TRUE, C_TRUE, SLOPE = -0.8, 20.0, 2.0  # solve-rate midpoint: log10 FLOPs = m log10 T + c
SIMS = [4, 8, 16, 32, 64, 128, 256]
BUDGETS = [1e13, 1e14, 1e15]


def _loss(n, d):
    return TRUTH["E"] + TRUTH["A"] / n ** TRUTH["alpha"] + TRUTH["B"] / d ** TRUTH["beta"]


def _record(name, n, c, loss, search_evals):
    d = c / (6 * n)
    return {"name": name, "config": {"model": {"depth": 1}}, "params": n, "params_total": n + 1000,
            "params_embedding": 1000, "flops_per_token": 6 * n, "train_flops": c, "tokens": d,
            "steps": 100, "final_metrics": {"eval/loss": loss, "train/loss": loss * 0.9},
            "search_evals": search_evals, "wall_time_s": 1.0, "device_kind": "cpu",
            "device_count": 1, "git_commit": "abc"}


def write_fake_runs(root, noise=0.003, seed=0, lonely=False):
    """3 budgets x 4 sizes around each optimum; run.json per run dir, search curves per run.

    ``lonely`` adds one run alone at a 4th budget (1e16): the parabola must skip it with a warning.
    """
    rng = np.random.default_rng(seed)
    a_exp = TRUTH["beta"] / (TRUTH["alpha"] + TRUTH["beta"])
    g = (TRUTH["alpha"] * TRUTH["A"] / (TRUTH["beta"] * TRUTH["B"])) ** (1 / (TRUTH["alpha"]
                                                                              + TRUTH["beta"]))
    for c in BUDGETS + ([1e16] if lonely else []):
        centre = np.log10(g * (c / 6) ** a_exp)
        grid = np.linspace(centre - 0.9, centre + 0.9, 4) if c in BUDGETS else [centre]
        for j, v in enumerate(grid):
            n = float(10**v)
            loss = _loss(n, c / (6 * n)) * float(np.exp(rng.normal(0, noise)))
            evals = []
            for s in SIMS:
                flops = s * 60.0 * n
                rate = special.expit(SLOPE * (np.log10(flops) - (M_TRUE * np.log10(c) + C_TRUE)))
                evals.append({"split": "test", "method": "mcts", "simulations": s,
                              "evals_per_problem": s, "search_flops_per_problem": flops,
                              "solve_rate": round(float(rate) * 1000) / 1000,
                              "solve_rate_ci": [0.0, 1.0], "num_problems": 1000})
            for k in (1, 2, 4, 8, 16):  # method names as search.eval writes them
                for method, rate in (("sample_pass", np.exp(-1.5 * k**-0.5)),
                                     ("sample_majority", 0.3)):
                    evals.append({"split": "test", "method": method, "simulations": k,
                                  "evals_per_problem": 4 * k, "search_flops_per_problem": k * n,
                                  "solve_rate": float(rate), "solve_rate_ci": [0.0, 1.0],
                                  "num_problems": 1000})
            # network-free search records 0 FLOPs: valid, but off the log-compute axis
            evals.append({"split": "test", "method": "exhaustive_dfs", "simulations": 4,
                          "evals_per_problem": 40.0, "search_flops_per_problem": 0.0,
                          "solve_rate": 0.9, "solve_rate_ci": [0.8, 1.0], "num_problems": 1000})
            run = root / f"C{c:.0e}_s{j}"
            run.mkdir(parents=True)
            (run / "run.json").write_text(json.dumps(_record(run.name, n, c, loss, evals)))
    return root


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory):
    return write_fake_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    runs = write_fake_runs(tmp_path_factory.mktemp("runs13"), lonely=True)
    out = tmp_path_factory.mktemp("report")
    recs = records.load_records(str(runs / "*"))
    with pytest.warns(UserWarning, match=r"budget C=1e\+16 has 1 distinct"):
        summary = report.build_report(recs, str(out), report.ReportOptions(bootstrap=60))
    return out, summary


def test_report_files_and_recovered_truth(built):
    out, s = built
    for name in ("report.md", "fits.json", "isoflops.png", "optimal_vs_compute.png",
                 "loss_vs_compute.png", "solve_rate_vs_search.png", "frontier.png"):
        assert (out / name).stat().st_size > 500, name
    assert json.loads((out / "fits.json").read_text())["num_runs"] == 13
    assert any("1e+16 has 1 distinct" in w for w in s["warnings"])
    assert s["approach2"]["n_opt"][3] is None  # the lonely budget has no vertex (JSON null)
    a_true = TRUTH["beta"] / (TRUTH["alpha"] + TRUTH["beta"])
    law = s["approach2"]["n_law"]
    assert law["exponent_ci"][0] <= a_true <= law["exponent_ci"][1]
    assert law["exponent"] == pytest.approx(a_true, abs=0.03)
    assert s["approach2_lowest_biased"]["method"] == "lowest (biased)"
    a3 = s["approach3"]
    assert a3["converged"]
    for k in ("alpha", "beta"):
        assert a3["ci"][k][0] <= TRUTH[k] <= a3["ci"][k][1], k
    # per-run logistic slope and midpoint recovered (the lonely run's curve is saturated)
    for cur in s["search"]["curves"][:12]:
        mid_true = M_TRUE * np.log10(cur["train_flops"]) + C_TRUE
        assert cur["slope"] == pytest.approx(SLOPE, rel=0.05)
        assert cur["mid_log10_compute"] == pytest.approx(mid_true, abs=0.02)
    assert s["search"]["method"] == "mcts"  # pass@k / 0-FLOP entries are not mixed in
    assert len(s["search"]["curves"]) == 13
    assert s["frontier"]["m"] == pytest.approx(M_TRUE, abs=0.05)
    passk = s["pass_at_k"]
    assert len(passk) == 13 and passk[0]["fit"]["b"] == pytest.approx(0.5, abs=1e-6)
    md = (out / "report.md").read_text()
    for text in ("Approach 2", "BIASED", "Approach 3", "Jones 2021", "![frontier.png]",
                 "## Warnings"):
        assert text in md, text
    # predictions at 10x / 100x the largest run carry intervals around the estimate
    p = s["approach3"]["predictions"][0]
    assert p["flops"] == pytest.approx(1e17) and p["n_opt_ci"][0] < p["n_opt"] < p["n_opt_ci"][1]


def test_cli_writes_report_and_rejects_bad_records(fake_runs, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["scaling.main", f"--runs={fake_runs}/*", f"--out={out}", "--bootstrap=0",
            "--target_flops=1e16", "--thresholds=0.5", "--suggest_depths=1,2,3,4,5,6"]
    from absl import flags

    flags.FLAGS.unparse_flags()
    flags.FLAGS(argv)
    assert scaling_main.main(argv[:1]) == 0
    assert "## Suggested settings" in (out / "report.md").read_text()
    hp = json.loads((out / "fits.json").read_text())["hparams"][0]
    assert hp["flops"] == 1e16 and 1 <= hp["depth"] <= 6 and hp["learning_rate"] > 0
    bad = tmp_path / "bad" / "r0"
    bad.mkdir(parents=True)
    rec = json.loads(next(fake_runs.glob("*/run.json")).read_text())
    rec["train_flops"] = float("nan")
    (bad / "run.json").write_text(json.dumps(rec))
    flags.FLAGS.unparse_flags()
    flags.FLAGS([argv[0], f"--runs={bad.parent}/*", f"--out={tmp_path / 'bad_out'}"])
    assert scaling_main.main(argv[:1]) == 1
    assert "train_flops=nan" in capsys.readouterr().err
    assert not (tmp_path / "bad_out").exists()  # nothing half-written
    flags.FLAGS.unparse_flags()


def test_record_validation_names_file_and_field(fake_runs, tmp_path):
    rec = json.loads(next(fake_runs.glob("*/run.json")).read_text())
    with pytest.raises(ValueError, match=r"x.json: missing key\(s\) \['tokens'\]"):
        records.validate_record({k: v for k, v in rec.items() if k != "tokens"}, "x.json")
    rec["search_evals"][0]["solve_rate"] = 1.2
    with pytest.raises(ValueError, match=r"search_evals\[0\].solve_rate=1.2"):
        records.validate_record(rec, "x.json")
    with pytest.raises(ValueError, match="matches no run.json"):
        records.load_records(str(tmp_path / "nothing*"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "run.json").write_text("{")
    with pytest.warns(UserWarning, match="skipping invalid"), pytest.raises(ValueError,
                                                                           match="was invalid"):
        records.load_records(str(tmp_path / "junk"), skip_invalid=True)
    recs = records.load_records(str(fake_runs / "*"))
    by_flops = records.search_curves(recs, compute_axis="flops")
    by_evals = records.search_curves(recs, compute_axis="evals")
    assert {c.method for c in by_flops} == {"mcts", "sample_pass", "sample_majority"}
    assert "exhaustive_dfs" in {c.method for c in by_evals}  # 0 FLOPs but 40 states
    mcts = [c for c in by_evals if c.method == "mcts"][0]
    np.testing.assert_array_equal(mcts.compute, SIMS)
    with pytest.raises(ValueError, match="compute_axis='tokens'"):
        records.search_curves(recs, compute_axis="tokens")
    table = records.to_table(recs)
    assert table.params.size == 12 and np.all(table.flops > 0)
    with pytest.raises(ValueError, match="lacks 'eval/acc'"):
        records.to_table(records.load_records(str(fake_runs / "*")), "eval/acc")


def test_report_skips_sections_without_data(fake_runs, tmp_path):
    recs = records.load_records(str(fake_runs / "*"))[:2]  # one budget, no search thresholds met
    for r in recs:
        r["search_evals"] = []
    summary = report.build_report(recs, str(tmp_path), report.ReportOptions(bootstrap=0))
    assert "skipped" in summary["approach2"] and "skipped" in summary["approach3"]
    assert "skipped" in summary["frontier"]
    assert (tmp_path / "report.md").exists() and (tmp_path / "loss_vs_compute.png").exists()


# ----------------------------------------------------------------------------- sweep design
def test_isoflop_sweep_design(tmp_path):
    depth = lambda size: int(size.lstrip("d"))  # labels "d1".."d8"
    params_fn = lambda z: 12 * (64 * depth(z)) ** 2 * depth(z)  # ~12 d^2 per layer
    design = sweep.design_isoflop_sweep(total_flops=3e15, num_budgets=3, sizes=range(1, 9),
                                        params_fn=params_fn, tokens_per_step=64 * 32,
                                        sizes_per_budget=4)
    assert sum(r.flops for r in design) <= 3e15 * 1.0001
    budgets = sorted({r.budget for r in design})
    assert len(budgets) == 3 and budgets[1] / budgets[0] == pytest.approx(budgets[2] / budgets[1])
    for r in design:  # steps fill the budget at 6 N per token
        assert r.flops == pytest.approx(6 * params_fn(r.size) * r.steps * 64 * 32)
        assert abs(r.flops - r.budget) / r.budget < 0.05 or r.steps == 1
    (tmp_path / design[0].name).mkdir()
    (tmp_path / design[0].name / "run.json").write_text("{}")
    cmds = sweep.commands(design, str(tmp_path), config="train/configs/g24_supervised.py")
    assert len(cmds) == len(design) - 1  # cached run skipped
    assert cmds[0].startswith(
        "python -m train.main --config=train/configs/g24_supervised.py:size=d")
    assert "--config.train.steps=" in cmds[0] and f"--workdir={tmp_path}/" in cmds[0]
    by_depth = lambda d: params_fn(f"d{d}")
    hp = sweep.suggest_hparams(n_opt=by_depth(4) * 1.1, flops=1e16, depths=range(1, 9),
                               params_fn=by_depth, seq_len=32)
    assert hp["depth"] == 4 and hp["batch_size"] >= 1 and 0 < hp["learning_rate"] < 1
    with pytest.raises(ValueError, match="total_flops"):
        sweep.design_isoflop_sweep(total_flops=-1, num_budgets=3, sizes=[1],
                                   params_fn=params_fn, tokens_per_step=64)


def test_sweep_calibrates_tokens_per_example_from_a_run(tmp_path):
    params_fn, fpt = sweep.model_fns(47)
    rec = {"config": {"train": {"batch_size": 8}, "model": {"depth": 2}}, "steps": 10,
           "tokens": 10 * 8 * 47, "params": params_fn(2), "flops_per_token": fpt(2)}
    (tmp_path / "run.json").write_text(json.dumps(rec))
    assert sweep.calibrate(str(tmp_path)) == {"batch_size": 8, "seq_len": 47}
    rec["params"] += 1
    (tmp_path / "run.json").write_text(json.dumps(rec))
    with pytest.raises(ValueError, match="recorded N="):
        sweep.calibrate(str(tmp_path / "run.json"))
