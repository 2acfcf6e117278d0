"""The committed CPU sweep (results/sweep_cpu) regenerates its report without training, and its
records keep the protocol: stream training, no collapsed value, the prediction made first."""
import datetime
import glob
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results", "sweep_cpu")
pytestmark = pytest.mark.skipif(not os.path.isfile(os.path.join(RESULTS, "prediction.json")),
                                reason="results/sweep_cpu not present")


def _runs():
    return sorted(glob.glob(os.path.join(RESULTS, "C*")))


def test_records_follow_the_sweep_protocol():
    plan = json.load(open(os.path.join(RESULTS, "sweep.json")))
    names = {os.path.basename(r) for r in _runs()}
    assert names == {r["name"] for r in plan["runs"]}  # every planned run finished
    budgets = sorted({r["budget"] for r in plan["runs"]})
    assert len(budgets) >= 4
    for b in budgets:
        assert sum(r["budget"] == b for r in plan["runs"]) >= 5
    widths = set()
    for run in _runs():
        rec = json.load(open(os.path.join(run, "run.json")))
        cfg = rec["config"]
        assert cfg["data"]["source"] == "stream" and rec["exclusion"]  # leak-free stream
        assert rec["final_metrics"]["probe/walk/collapsed"] == 0.0
        widths.add(cfg["model"]["d_model"])
    assert len(widths) >= 3  # width varies, not only depth
    # The prediction was written before any run of its budget started training.
    pred = json.load(open(os.path.join(RESULTS, "prediction.json")))
    created = datetime.datetime.fromisoformat(pred["created"]).timestamp()
    for name in pred["held_out_runs"]:
        with open(os.path.join(RESULTS, name, "metrics.jsonl")) as f:
            first = json.loads(f.readline())
        assert created < first["time"], name
        assert name not in pred["runs"]


def test_report_regenerates_from_the_committed_records(tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "scaling.main", f"--runs={RESULTS}/C*", f"--out={out}",
         "--splits=tsllm362,g4_t100:test:100", "--method=mcts", "--bootstrap=20",
         f"--prediction={RESULTS}/prediction.json", f"--baselines={RESULTS}/baselines"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fits = json.load(open(out / "fits.json"))
    assert fits["num_runs"] == len(_runs()) and fits["collapsed"] == []
    assert len(fits["approach2"]["budgets"]) >= 4
    assert "rows" in fits["holdout"] and fits["holdout"]["rows"]
    assert set(fits["search_splits"]) == {"tsllm362", "g4_t100:test:100"}
    md = (out / "report.md").read_text()
    for section in ("Runs and the collapse check", "Held-out budget: prediction vs outcome",
                    "Approach 3", "Train-vs-test compute frontier", "Network-free reference"):
        assert section in md
    assert {"isoflops.png", "solve_rate_vs_search.png"} <= set(fits["plots"])
