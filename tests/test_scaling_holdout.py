"""Held-out budget protocol: predict from the other budgets, refuse once the outcome exists, score;
collapsed runs are left out of the fits."""
import json
import os

import numpy as np
import pytest

from scaling import holdout, records, report
from tests.test_scaling_report import BUDGETS, TRUTH, _loss, _record


def _runs(root, budgets, sizes=5, noise=0.002, seed=0, write=True):
    """``sizes`` runs per budget around the true optimum of TRUTH (C = 6ND); returns the plan
    rows (``write=False``: the plan only, no run.json)."""
    rng = np.random.default_rng(seed)
    a = TRUTH["beta"] / (TRUTH["alpha"] + TRUTH["beta"])
    g = (TRUTH["alpha"] * TRUTH["A"] / (TRUTH["beta"] * TRUTH["B"])) ** (
        1 / (TRUTH["alpha"] + TRUTH["beta"]))
    plan = []
    for c in budgets:
        centre = np.log10(g * (c / 6) ** a)
        for j, v in enumerate(np.linspace(centre - 0.8, centre + 0.8, sizes)):
            n = float(10**v)
            name = f"C{c:.0e}_s{j}"
            plan.append({"name": name, "budget": c, "params": n, "tokens": c / (6 * n)})
            loss = _loss(n, c / (6 * n)) * float(np.exp(rng.normal(0, noise)))
            if not write:
                continue
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / "run.json").write_text(json.dumps(_record(name, n, c, loss, [])))
    return plan


def test_prediction_of_a_held_out_budget_matches_the_truth_and_scores(tmp_path):
    held = 1e16
    plan = _runs(tmp_path, BUDGETS) + _runs(tmp_path, [held], write=False)
    (tmp_path / "sweep.json").write_text(json.dumps({"runs": plan}))
    pred_path = tmp_path / "prediction.json"
    args = [f"--plan={tmp_path}/sweep.json", f"--runs={tmp_path}/C*", "--budget=3",
            f"--out={pred_path}", "--bootstrap=20"]
    assert holdout.main(args) == 0
    pred = json.loads(pred_path.read_text())
    assert pred["budget"] == held and len(pred["runs"]) == 15 and pred["held_out_runs"]
    # The truth's optimum at 1e16 (C = 6ND): inside the approach-2 interval, loss close.
    a = TRUTH["beta"] / (TRUTH["alpha"] + TRUTH["beta"])
    g = (TRUTH["alpha"] * TRUTH["A"] / (TRUTH["beta"] * TRUTH["B"])) ** (
        1 / (TRUTH["alpha"] + TRUTH["beta"]))
    n_true = g * (held / 6) ** a
    lo, hi = pred["approach2"]["n_opt_ci"]
    assert lo <= n_true <= hi and pred["approach2"]["n_opt"] == pytest.approx(n_true, rel=0.15)
    l_true = _loss(n_true, held / (6 * n_true))
    assert pred["approach2"]["loss"] == pytest.approx(l_true, rel=0.03)
    assert pred["approach3"]["loss"] == pytest.approx(l_true, rel=0.03)
    # A rerun keeps the earlier prediction; once a held-out run exists a new one is refused.
    stamp = pred_path.read_text()
    assert holdout.main(args) == 0 and pred_path.read_text() == stamp
    _runs(tmp_path, [held])
    os.remove(pred_path)
    assert holdout.main(args) == 2 and not pred_path.exists()
    pred_path.write_text(stamp)
    # Scoring: the held-out runs' own parabola against the prediction.
    recs = records.load_records(str(tmp_path / "C*"))
    scored = holdout.score(pred, recs)
    assert scored["outcome"]["interior"] and len(scored["outcome"]["runs"]) == 5
    rows = {(r["method"], r["quantity"]): r for r in scored["rows"]}
    assert rows[("approach2", "loss")]["error"] == pytest.approx(
        scored["outcome"]["loss_opt"] - pred["approach2"]["loss"])
    assert abs(rows[("approach2", "loss")]["error"]) < 0.03 * l_true
    # every held-out run's loss was predicted from its planned N and D (approach 3)
    assert [r["name"] for r in scored["per_run"]] == pred["held_out_runs"]
    for r in scored["per_run"]:
        assert r["loss"] == pytest.approx(r["actual"], rel=0.02)
        assert r["loss_ci"][0] < r["loss_ci"][1]
    # The best run per budget, for the search evals.
    best = holdout.best_per_budget(recs)
    assert len(best) == 4 and all(os.path.isdir(b) for b in best)


def test_collapsed_runs_are_flagged_and_left_out_of_the_fits(tmp_path):
    _runs(tmp_path, BUDGETS)
    recs = records.load_records(str(tmp_path / "C*"))
    bad = recs[2]
    bad["final_metrics"].update({"eval/loss": 0.01, "probe/walk/collapsed": 1.0})
    summary, _ = report.fit_all(recs, report.ReportOptions(bootstrap=10))
    assert summary["collapsed"] == [bad["name"]]
    row = next(r for r in summary["runs"] if r["run"] == bad["name"])
    assert row["collapsed"] and not any(r["collapsed"] for r in summary["runs"] if r is not row)
    # the absurd loss of the collapsed run would drag its budget's vertex; it is not used
    assert min(summary["approach2"]["loss_opt"]) > 0.3
    assert summary["approach2"]["num_interior"] == 3
    md = report.render({**summary, "plots": [], "warnings": []})
    assert "YES: left out" in md and "Runs and the collapse check" in md
