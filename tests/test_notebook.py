"""Runs notebooks/quickstart.ipynb end to end in a fresh kernel (nbclient + ipykernel)."""

import json
import os
import re
from fractions import Fraction

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "quickstart.ipynb")


def _exact(expression: str) -> Fraction:
    """Value of an infix expression of integers with + - * / and parentheses, in exact rationals."""
    assert re.fullmatch(r"[0-9+\-*/() ]+", expression), expression
    return eval(re.sub(r"(\d+)", r"Fraction(\1)", expression), {"Fraction": Fraction})


@pytest.mark.slow
def test_quickstart_notebook_runs_end_to_end(tmp_path, monkeypatch):
    workdir = str(tmp_path / "quickstart")
    monkeypatch.setenv("ZERO24_QUICKSTART_WORKDIR", workdir)  # the kernel inherits it
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}})
    client.execute()  # raises CellExecutionError naming the failing cell

    code = [c for c in nb.cells if c.cell_type == "code"]
    text = ["".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                    for o in c.outputs) for c in code]
    images = [sum("image/png" in o.get("data", {}) for o in c.outputs) for c in code]
    assert images[3] == 1 and images[5] == 1  # the solve-rate curve and the IsoFLOP plot
    # the shipped model's answers: each expression uses exactly the numbers and hits the target
    answers = re.findall(r"\(([\d, ]+)\) -> (\d+): (\S+) = \d+  \(found by: (\w+)", text[1])
    assert len(answers) == 4, text[1]
    for nums, target, expr, _ in answers:
        assert sorted(int(x) for x in re.findall(r"\d+", expr)) == sorted(
            int(x) for x in nums.split(","))
        assert _exact(expr) == int(target)

    rec = json.load(open(os.path.join(workdir, "run.json")))
    assert rec["status"] == "completed" and [h["iteration"] for h in rec["history"]] == [0, 1, 2]
    assert {e["method"] for e in rec["search_evals"]} >= {"mcts", "uniform_mcts"}

    solved = re.search(r"puzzle: \(([\d, ]+)\) -> 24\n(?:.*\n)?exact solver: (\S+) = 24", text[4])
    assert solved, text[4]
    numbers = sorted(int(x) for x in solved.group(1).split(","))
    assert sorted(int(x) for x in re.findall(r"\d+", solved.group(2))) == numbers
    assert _exact(solved.group(2)) == 24
    mcts = re.search(r"MCTS: (\S+) = 24", text[4])
    if mcts:  # the network's own solution, when it found one, is exact too
        assert _exact(mcts.group(1)) == 24

    exponent = float(re.search(r"with a = ([0-9.]+)", text[5]).group(1))
    assert abs(exponent - 0.28 / (0.34 + 0.28)) < 0.05  # synthetic truth: beta / (alpha + beta)
