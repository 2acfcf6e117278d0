"""Bad input at scale (hypothesis): ``search.solve`` and ``--problems`` files give exit 2 with
the field named, or a verified answer; never a traceback, never a hang."""

import os
import subprocess
import sys

import pytest
from helpers import expression_value
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search import problems, solve, sweep
from search.types import Play

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIX = Play(n_max=6, max_slots=16)

token = st.one_of(
    st.integers(-20, 1200).map(str),  # in and out of range, negative, zero
    st.integers(10**5, 10**40).map(str),  # huge
    st.sampled_from(["x", "", "1.5", "1e3", "²", "٣", "0x10", "nan", "--", "5,", " 7 "]),
    st.text(max_size=4))


@settings(max_examples=80, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # readouterr() empties capsys
@given(numbers=st.lists(token, min_size=0, max_size=10), target=token)
def test_solve_cli_exit_2_naming_the_field_or_a_verified_answer(numbers, target, capsys):
    argv = ["--target", target, "--model", "solver", "--json", "--", *numbers]
    try:
        code = solve.main(argv)
    except SystemExit as e:  # argparse: usage error (exit 2) with its message
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if code == 2:
        assert err.strip() and any(f in err for f in ("numbers", "--target", "argument",
                                                      "usage")), err
        return
    assert code in (0, 1), (code, err)
    import json

    answer = json.loads(out)
    nums = [int(x) for x in numbers]
    assert answer["solvable"] == (code == 0)
    if code == 0:
        assert expression_value(answer["expression"]) == (int(target), sorted(nums))


cell = st.one_of(token, st.lists(st.integers(-40000, 40000), min_size=0, max_size=18).map(
    lambda xs: " ".join(map(str, xs))))


@settings(max_examples=80, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(header=st.sampled_from(["numbers,target", "target,numbers", "numbers\ttarget", "nums,target",
                               "numbers", "", "id,numbers,target,note"]),
       rows=st.lists(st.tuples(cell, cell), max_size=4),
       bom=st.booleans(), crlf=st.booleans())
def test_problems_file_loads_or_names_line_and_field(tmp_path, header, rows, bom, crlf):
    sep = "\t" if "\t" in header else ","
    text = "\n".join([header] + [sep.join(r) for r in rows]) + "\n"
    text = text.replace("\n", "\r\n") if crlf else text
    path = tmp_path / "p.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    try:
        name, probs, rules = sweep.load_split(f"file:{path}", play=SIX)
    except ValueError as e:
        assert str(path) in str(e) or "has problems with" in str(e), e
        return
    assert name == "file:p.csv" and probs and rules.n_max == max(6, *map(
        lambda p: len(p.numbers), probs))
    for p in probs:
        assert all(abs(x) <= 32767 for x in (*p.numbers, p.target))


def test_bom_crlf_file_and_non_utf8_through_the_cli(tmp_path):
    good = tmp_path / "win.csv"
    good.write_bytes(b"\xef\xbb\xbfnumbers,target\r\n3 3 8 8,24\r\n1 1 1 1,24\r\n")
    assert [p.target for p in problems.load_problems_file(good)] == [24, 24]
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(b"numbers,target\n3 3 8 8,24\xe9\n")
    with pytest.raises(ValueError, match="not UTF-8 text"):
        problems.load_problems_file(bad)
    # the CLI refuses it before it loads a network or writes anything
    out = subprocess.run([sys.executable, "-m", "search.eval", f"--workdir={tmp_path / 'w'}",
                          f"--model=hf:{os.path.join(REPO, 'models', 'flagship')}",
                          f"--problems={bad}", "--methods=mcts", "--budgets=1"], cwd=REPO,
                         env={**os.environ, "XLA_FLAGS": ""}, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2 and "is not UTF-8" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and not os.path.exists(tmp_path / "w")
