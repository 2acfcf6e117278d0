"""``python -m search.solve``: verified expressions, "no solution" with exit 1, exit 2 on bad
input; ``--problems`` files for ``search.eval``; the shipped model solves puzzles it is given."""

import json
import os

import pytest
from helpers import expression_value as _value

from search import problems, solve

SHIPPED = solve.DEFAULT_MODEL


def test_solvable_prints_a_verified_expression(capsys):
    assert solve.main(["3", "3", "8", "8", "--model", "solver"]) == 0
    expr, _, rest = capsys.readouterr().out.partition(" = ")
    assert rest.startswith("24") and _value(expr) == (24, [3, 3, 8, 8])
    assert solve.main(["1", "5", "7", "11", "13", "--target", "937", "--model", "solver",
                       "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["solvable"] and out["found_by"] == "solver"
    assert _value(out["expression"]) == (937, [1, 5, 7, 11, 13])


def test_unsolvable_says_no_solution_and_exits_1(capsys):
    assert solve.main(["1", "1", "1", "1"]) == 1  # the solver decides before any model loads
    assert "no solution" in capsys.readouterr().out
    assert solve.main(["2", "2", "--target", "5", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["solvable"] is False


@pytest.mark.parametrize("argv,message", [
    ([str(k) for k in range(1, 10)], "numbers has 9 values; allowed 2..8"),
    (["5"], "numbers has 1 values; allowed 2..8"),
    (["1", "x", "3"], "numbers[1]='x' is not an integer"),
    (["1", "2", "1000"], "numbers[2]=1000 is out of range; allowed 1..999"),
    (["4", "6", "--target", "100000"], "--target=100000 is out of range"),
    (["4", "6", "--target", "2.5"], "--target='2.5' is not an integer"),
    (["4", "6", "--simulations", "0"], "--simulations=0 is out of range"),
    (["4", "6", "--model", "/no/such/dir"], "is not a directory"),
])
def test_bad_input_exits_2_naming_the_field(argv, message, capsys):
    assert solve.main(argv) == 2
    assert message in capsys.readouterr().err


def test_problems_file_csv_tsv_and_errors(tmp_path):
    good = tmp_path / "p.csv"
    good.write_text("id,numbers,target,note\n1,3 3 8 8,24,x\n2,1 2 3 4 5,-7,\n")
    assert problems.load_problems_file(good) == [problems.Problem((3, 3, 8, 8), 24),
                                                 problems.Problem((1, 2, 3, 4, 5), -7)]
    tsv = tmp_path / "p.tsv"
    tsv.write_text("target\tnumbers\n10\t4 6\n")
    assert problems.load_problems_file(tsv) == [problems.Problem((4, 6), 10)]
    for text, message in (("nums,target\n1 2,3\n", "needs 'numbers' and 'target'"),
                          ("numbers,target\n1 x,3\n", ":2: numbers='1 x' is not 2..16"),
                          ("numbers,target\n5,3\n", ":2: numbers='5' is not 2..16"),
                          ("numbers,target\n1 2,3\n1 2,y\n", ":3: target='y' is not an integer"),
                          ("numbers,target\n", "no puzzles below the header")):
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            problems.load_problems_file(bad)
    with pytest.raises(ValueError, match="does not exist"):
        problems.load_problems_file(tmp_path / "missing.csv")


def test_search_eval_scores_a_problems_file(tmp_path):
    from search import sweep
    from train.run_model import load_network

    f = tmp_path / "mine.csv"
    f.write_text("numbers,target\n3 3 8 8,24\n1 1 1 1,24\n2 3 5 7 11,100\n")
    name, probs, rules = sweep.load_split(f"file:{f}")
    assert name == "file:mine.csv" and len(probs) == 3 and rules.n_max == 5
    out = sweep.evaluate_run(str(tmp_path / "w"), load_network("oracle"),
                             [f"file:{f}"], ["mcts"], [2])
    played = next(e for e in out["entries"] if e["method"] == "mcts")
    assert played["num_problems"] == 3 and played["solve_rate"] == pytest.approx(2 / 3)


def test_shipped_model_solves_puzzles_with_verified_expressions():
    """models/flagship loads and its search at 32 simulations finds these; each printed
    expression is re-checked here with exact arithmetic (solve rates live in docs/)."""
    assert os.path.isfile(os.path.join(SHIPPED, "model.safetensors")), SHIPPED
    for numbers, target in (((4, 9, 10, 13), 24), ((1, 8, 12, 12), 24), ((13, 2, 12, 9, 4), 41),
                            ((13, 5, 7, 4, 12, 1), 125)):
        a = solve.solve(numbers, target, SHIPPED, 32)
        assert a.solvable and a.found_by in ("played", "tree"), a
        assert _value(a.expression) == (target, sorted(numbers)) and a.evaluations > 0
