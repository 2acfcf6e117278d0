"""search/problems.py: classes, deterministic disjoint splits, the 24.csv reader."""

import itertools

import numpy as np
import pytest

from search import game, problems, solver


def test_registered_classes():
    for name in ("g24", "g24_10", "n5", "n6", "n7", "countdown6", "g4_t100"):
        cls = problems.get_class(name)
        assert cls.name == name and cls.rules.n_max == 8  # one action space for every class
    cd = problems.get_class("countdown6")
    assert cd.n == 6 and cd.number_range == (1, 100) and cd.target_range == (100, 999)
    assert not cd.rules.fractions
    assert not problems.get_class("g24").held_out and problems.get_class("n7").held_out


def test_split_assignment_is_disjoint_and_balanced():
    all4 = [
        problems.Problem(p, 24) for p in itertools.combinations_with_replacement(range(1, 14), 4)
    ]
    by_split = {
        s: {p.canonical for p in all4 if problems.split_of(p) == s} for s in problems.SPLITS
    }
    assert sum(len(v) for v in by_split.values()) == 1820
    for a, b in itertools.combinations(problems.SPLITS, 2):
        assert not by_split[a] & by_split[b]
    assert 0.7 < len(by_split["train"]) / 1820 < 0.9
    # Order of numbers does not matter: the split is a function of the canonical form.
    assert problems.split_of(problems.Problem((13, 1, 5, 2), 24)) == problems.split_of(
        problems.Problem((1, 2, 5, 13), 24)
    )


@pytest.mark.parametrize("name, count", [("g24", 40), ("n5", 15), ("countdown6", 6)])
def test_generate_deterministic_disjoint_and_in_class(name, count):
    cls = problems.get_class(name)
    sets = {}
    for split in problems.SPLITS:
        a = problems.generate(cls, count, seed=3, split=split)
        assert a == problems.generate(name, count, seed=3, split=split)  # deterministic
        assert len({p.canonical for p in a}) == count  # distinct
        for p in a:
            cls.validate(p)
            assert problems.split_of(p) == split
            assert solver.solve(p.numbers, p.target, cls.rules).solvable  # solvable_only
        sets[split] = {p.canonical for p in a}
    for x, y in itertools.combinations(problems.SPLITS, 2):
        assert not sets[x] & sets[y]
    assert problems.generate(cls, count, seed=4, split="train") != problems.generate(
        cls, count, 3, "train"
    )


def test_generate_small_class_exhaustion_and_all_solvable_test_split():
    test_all = problems.generate("g24_10", 0, 0, "test")
    assert test_all == []
    with pytest.raises(
        ValueError, match="exceeds the .* problems of class 'g24_10' in split 'test'"
    ):
        problems.generate("g24_10", 10_000, 0, "test")
    unsolvable = problems.ProblemClass("g24_all", 4, (1, 13), (24, 24), solvable_only=False)
    n_val = sum(
        problems.split_of(problems.Problem(p, 24)) == "val"
        for p in itertools.combinations_with_replacement(range(1, 14), 4)
    )
    assert len(problems.generate(unsolvable, n_val, 0, "val")) == n_val


def test_difficulty_stats():
    ps = [
        problems.Problem((8, 3, 8, 3), 24),
        problems.Problem((1, 2, 3, 4), 24),
        problems.Problem((1, 1, 1, 1), 24),
    ]
    d = problems.difficulty(ps)
    assert d[0] == 1 and d[1] > 10 and d[2] == 0
    s = problems.stats(ps)
    assert s["num_problems"] == 3 and abs(s["solvable_fraction"] - 2 / 3) < 1e-9


def test_24csv_splits_and_regenerated_set(shared_bench):
    path = shared_bench / "24.csv"
    all1362 = problems.load_24csv(path, "all1362")
    tot, ts = problems.load_24csv(path, "tot100"), problems.load_24csv(path, "tsllm362")
    assert len(all1362) == 1362 and len(tot) == 100 and len(ts) == 362
    assert tot == all1362[900:1000] and ts == all1362[1000:]
    assert tot[0].numbers == tuple(int(x) for x in _row(path, 901).split())
    file_set = {p.canonical for p in all1362}
    regenerated = {
        p.canonical
        for split in problems.SPLITS
        for p in problems.generate("g24", _split_size(split), 0, split)
    }
    assert len(file_set) == 1362 and regenerated == file_set
    xot = problems.load_24csv(shared_bench / "xot_game24_test.csv", "xot137")
    assert len(xot) == 137 and {p.canonical for p in xot} <= file_set
    state = problems.problems_to_state(tot, game.Rules())
    assert state.num.shape == (100, 8) and np.asarray(state.live).sum() == 400


def _row(path, rank):
    for line in path.read_text().splitlines()[1:]:
        if line.split(",")[0] == str(rank):
            return line.split(",")[1]
    raise AssertionError(rank)


def _split_size(split):
    return sum(
        problems.split_of(problems.Problem(p, 24)) == split and solver.solve(p, 24).solvable
        for p in itertools.combinations_with_replacement(range(1, 14), 4)
    )


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown problem class 'g25'"):
        problems.get_class("g25")
    with pytest.raises(ValueError, match="split='dev'"):
        problems.generate("g24", 3, 0, "dev")
    with pytest.raises(ValueError, match="not an integer"):
        problems.Problem((1, 2.5, 3), 24)
    with pytest.raises(ValueError, match="need at least 2"):
        problems.Problem((), 24)
    with pytest.raises(ValueError, match="n=9"):
        problems.ProblemClass("big", 9, (1, 13), (24, 24))
    with pytest.raises(ValueError, match="number_range"):
        problems.ProblemClass("neg", 4, (0, 13), (24, 24), rules=game.Rules(fractions=False))
    with pytest.raises(ValueError, match="numbers\\[1\\]=14 out of range; allowed 1..13"):
        problems.get_class("g24").validate(problems.Problem((1, 14, 2, 3), 24))
    with pytest.raises(ValueError, match="target=25"):
        problems.get_class("g24").validate(problems.Problem((1, 4, 2, 3), 25))
    bad = tmp_path / "24.csv"
    bad.write_text("Rank,Puzzles\n1,1 2 3\n")
    with pytest.raises(ValueError, match="24.csv:2: Puzzles='1 2 3'"):
        problems.load_24csv(bad)
    bad.write_text("Rank,Puzzles\n1,1 2 3 14\n")
    with pytest.raises(ValueError, match="outside 1..13"):
        problems.load_24csv(bad)
    bad.write_text("Rank,Puzzles\n1,1 2 3 4\n")
    with pytest.raises(ValueError, match="ranks .* missing"):
        problems.load_24csv(bad, "tot100")
    with pytest.raises(ValueError, match="does not exist"):
        problems.load_24csv(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="split='tot101'"):
        problems.load_24csv(bad, "tot101")


def test_from_config():
    cls = problems.ProblemClass.from_config(
        {
            "name": "c",
            "n": [4, 5],
            "number_range": [1, 9],
            "target_range": [10, 20],
            "rules": {"fractions": False},
        }
    )
    assert cls.n_range == (4, 5) and not cls.rules.fractions
    ps = problems.generate(cls, 5, 0)
    assert {len(p.numbers) for p in ps} <= {4, 5}
