"""Problem classes, deterministic generators, disjoint splits and the ToT ``24.csv`` reader.

A problem class is a named generator: count of numbers n (fixed or a range), number range, target
range, rule variant, and whether only solvable problems are kept. Splits are disjoint by
construction: a problem's split is a stable hash of its canonical form (sorted numbers + target),
independent of class and seed, so the same puzzle lands in the same split in every class
(``g24_10`` test problems are ``g24`` test problems). Held-out classes (``held_out=True``) differ
from the training class ``g24`` in n or in the targets; generalisation to them is the research
result.

Standard splits of the 1362 solvable 4nums.com puzzles (user-supplied ToT ``24.csv``, ordered by
human solve time): ToT-100 = ranks 901-1000, TS-LLM-362 = ranks 1001-1362 (TS-LLM trains on ranks
1-1000), all-1362; XoT-137 / XoT-1225 come from XoT's own csv files.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import itertools
import math
import pathlib
import re
from collections.abc import Mapping, Sequence

import numpy as np

from search import game, solver

SPLITS = ("train", "val", "test")
SPLIT_BUCKETS = {"train": (0, 80), "val": (80, 90), "test": (90, 100)}  # percent of the hash space
_ENUMERATE_LIMIT = 20_000  # classes with at most this many canonical problems are enumerated
_DEFAULT_RULES = game.Rules()


@dataclasses.dataclass(frozen=True)
class Problem:
    numbers: tuple[int, ...]
    target: int

    def __post_init__(self):
        object.__setattr__(self, "numbers", tuple(self.numbers))
        for k, x in enumerate(self.numbers):
            if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
                raise ValueError(f"Problem.numbers[{k}]={x!r} is not an integer.")
        if len(self.numbers) < 2:
            raise ValueError(f"Problem.numbers has {len(self.numbers)} numbers; need at least 2.")
        if isinstance(self.target, bool) or not isinstance(self.target, (int, np.integer)):
            raise ValueError(f"Problem.target={self.target!r} is not an integer.")
        object.__setattr__(self, "numbers", tuple(int(x) for x in self.numbers))
        object.__setattr__(self, "target", int(self.target))

    @property
    def canonical(self) -> tuple[tuple[int, ...], int]:
        return tuple(sorted(self.numbers)), self.target

    def __str__(self) -> str:
        return " ".join(map(str, self.numbers)) + f" -> {self.target}"


def split_of(problem: Problem) -> str:
    """'train' | 'val' | 'test' from a stable hash of the canonical problem."""
    nums, target = problem.canonical
    digest = hashlib.blake2b(f"{','.join(map(str, nums))}|{target}".encode(), digest_size=8)
    bucket = int.from_bytes(digest.digest(), "little") % 100
    return next(s for s, (lo, hi) in SPLIT_BUCKETS.items() if lo <= bucket < hi)


@dataclasses.dataclass(frozen=True)
class ProblemClass:
    """A named problem generator. ``n`` is an int or an inclusive (lo, hi) range."""

    name: str
    n: int | tuple[int, int]
    number_range: tuple[int, int]
    target_range: tuple[int, int]
    rules: game.Rules = _DEFAULT_RULES
    solvable_only: bool = True
    held_out: bool = False

    def __post_init__(self):
        lo, hi = self.n_range
        if not 2 <= lo <= hi <= self.rules.n_max:
            raise ValueError(
                f"ProblemClass {self.name!r}: n={self.n} out of range; allowed 2..n_max="
                f"{self.rules.n_max} with lo <= hi."
            )
        for field in ("number_range", "target_range"):
            a, b = getattr(self, field)
            if not -self.rules.max_abs <= a <= b <= self.rules.max_abs:
                raise ValueError(
                    f"ProblemClass {self.name!r}: {field}={(a, b)} invalid; need lo <= hi "
                    f"within +-{self.rules.max_abs} (Rules.max_abs)."
                )
        if not self.rules.fractions and self.number_range[0] < 1:
            raise ValueError(
                f"ProblemClass {self.name!r}: number_range={self.number_range} must be "
                ">= 1 under integer-only rules."
            )

    @property
    def n_range(self) -> tuple[int, int]:
        return (self.n, self.n) if isinstance(self.n, int) else tuple(self.n)

    def validate(self, problem: Problem) -> None:
        """Raise ValueError naming the field if ``problem`` is outside this class."""
        lo, hi = self.n_range
        if not lo <= len(problem.numbers) <= hi:
            raise ValueError(
                f"{self.name}: problem has {len(problem.numbers)} numbers; allowed {lo}..{hi}."
            )
        a, b = self.number_range
        for k, x in enumerate(problem.numbers):
            if not a <= x <= b:
                raise ValueError(f"{self.name}: numbers[{k}]={x} out of range; allowed {a}..{b}.")
        if not self.target_range[0] <= problem.target <= self.target_range[1]:
            raise ValueError(
                f"{self.name}: target={problem.target} out of range; allowed "
                f"{self.target_range[0]}..{self.target_range[1]}."
            )

    def space_size(self) -> int:
        """Number of canonical problems (multisets x targets) in the class."""
        span = self.number_range[1] - self.number_range[0] + 1
        lo, hi = self.n_range
        multisets = sum(math.comb(span + k - 1, k) for k in range(lo, hi + 1))
        return multisets * (self.target_range[1] - self.target_range[0] + 1)

    def is_solvable(self, problem: Problem) -> bool:
        return solver.solve(problem.numbers, problem.target, self.rules).solvable

    @classmethod
    def from_config(cls, cfg: Mapping) -> ProblemClass:
        """From a dict / ml_collections ConfigDict; ``rules`` may itself be a mapping."""
        d = dict(cfg)
        rules = d.pop("rules", {})
        rules = rules if isinstance(rules, game.Rules) else game.Rules(**dict(rules))
        for key in ("n", "number_range", "target_range"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        return cls(rules=rules, **d)


_REGISTRY: dict[str, ProblemClass] = {}


def register(cls: ProblemClass) -> ProblemClass:
    _REGISTRY[cls.name] = cls
    return cls


_INT_ANY = game.Rules(fractions=False, use_all=False)
for _c in (
    ProblemClass("g24", 4, (1, 13), (24, 24)),
    ProblemClass("g24_10", 4, (1, 10), (24, 24)),
    ProblemClass("g4_t100", 4, (1, 13), (1, 100), held_out=True),  # unseen targets, same n
    # n = 2..4 with targets 1..999: stream mixture components (short states, the arithmetic table).
    ProblemClass("n2", 2, (1, 13), (1, 999), held_out=True),
    ProblemClass("n3", 3, (1, 13), (1, 999), held_out=True),
    ProblemClass("n4", 4, (1, 13), (1, 999), held_out=True),
    ProblemClass("n5", 5, (1, 13), (1, 999), held_out=True),
    ProblemClass("n6", 6, (1, 13), (1, 999), held_out=True),
    ProblemClass("n7", 7, (1, 13), (1, 999), held_out=True),
    ProblemClass("countdown6", 6, (1, 100), (100, 999), rules=_INT_ANY, held_out=True),
):
    register(_c)


def class_names() -> list[str]:
    return sorted(_REGISTRY)


def get_class(name: str) -> ProblemClass:
    """A registered class by name."""
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown problem class {name!r}; registered: {', '.join(class_names())} "
            "(define others with ProblemClass(...) / ProblemClass.from_config + register)."
        )
    return _REGISTRY[name]


def _enumerate(cls: ProblemClass):
    lo, hi = cls.n_range
    for n in range(lo, hi + 1):
        for nums in itertools.combinations_with_replacement(
            range(cls.number_range[0], cls.number_range[1] + 1), n
        ):
            for t in range(cls.target_range[0], cls.target_range[1] + 1):
                yield Problem(nums, t)


def generate(cls: ProblemClass | str, count: int, seed: int, split: str = "train") -> list[Problem]:
    """``count`` distinct problems of ``split``, deterministic in (class, seed, split).

    Small classes (<= 20k canonical problems) are enumerated and shuffled, so asking for more
    problems than exist raises an error naming the available count. Large classes are sampled
    (n uniform, numbers i.i.d. uniform, target uniform) with rejection of other splits, duplicates
    and, with ``solvable_only``, unsolvable problems. Numbers are returned shuffled, not sorted.
    """
    cls = get_class(cls) if isinstance(cls, str) else cls
    if split not in SPLITS:
        raise ValueError(f"split={split!r} unknown; allowed {SPLITS}.")
    if count < 0:
        raise ValueError(f"count={count} must be >= 0.")
    rng = np.random.default_rng([seed, SPLITS.index(split), *cls.name.encode()])
    if cls.space_size() <= _ENUMERATE_LIMIT:
        pool = [p for p in _enumerate(cls) if split_of(p) == split]
        order = rng.permutation(len(pool))
        # Solve lazily in shuffled order: only ~count / solvable-rate problems are solved.
        keep = (pool[i] for i in order if not cls.solvable_only or cls.is_solvable(pool[i]))
        picked = list(itertools.islice(keep, count))
        if len(picked) < count:
            raise ValueError(
                f"count={count} exceeds the {len(picked)} problems of class {cls.name!r} "
                f"in split {split!r}; allowed 0..{len(picked)}."
            )
        return [Problem(tuple(rng.permutation(p.numbers).tolist()), p.target) for p in picked]
    out, seen, attempts = [], set(), 0
    while len(out) < count:
        attempts += 1
        if attempts > 1000 * count + 10_000:
            raise ValueError(
                f"class {cls.name!r}: found only {len(out)} of count={count} problems for "
                f"split {split!r}; the class is too small or mostly unsolvable."
            )
        n = int(rng.integers(cls.n_range[0], cls.n_range[1] + 1))
        nums = rng.integers(cls.number_range[0], cls.number_range[1] + 1, size=n).tolist()
        p = Problem(tuple(nums), int(rng.integers(cls.target_range[0], cls.target_range[1] + 1)))
        if p.canonical in seen or split_of(p) != split:
            continue
        seen.add(p.canonical)
        if not cls.solvable_only or cls.is_solvable(p):
            out.append(p)
    return out


def difficulty(problems: Sequence[Problem], rules: game.Rules = _DEFAULT_RULES) -> np.ndarray:
    """int64[len]: number of distinct solutions of each problem (solver.count_solutions)."""
    return np.array(
        [solver.count_solutions(p.numbers, p.target, rules) for p in problems], np.int64
    )


def stats(problems: Sequence[Problem], rules: game.Rules = _DEFAULT_RULES) -> dict:
    """Difficulty summary: solvable fraction and solution-count quantiles."""
    sols = difficulty(problems, rules)
    q = np.percentile(sols, [10, 50, 90]) if len(sols) else [0, 0, 0]
    return {
        "num_problems": len(problems),
        "solvable_fraction": float((sols > 0).mean()) if len(sols) else 0.0,
        "solutions_p10": float(q[0]),
        "solutions_median": float(q[1]),
        "solutions_p90": float(q[2]),
        "single_solution_fraction": float((sols == 1).mean()) if len(sols) else 0.0,
    }


# ----------------------------------------------------------------------------- 24.csv

CSV_SPLITS = {
    "all1362": (1, 1362),
    "tot100": (901, 1000),
    "tsllm362": (1001, 1362),
    "tsllm_train1000": (1, 1000),
}
XOT_SPLITS = {"xot137": 137, "xot1225": 1225}


def _parse_puzzle(text: str, where: str) -> Problem:
    parts = text.split()
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{where}: Puzzles={text!r} is not 4 space-separated integers.")
    nums = tuple(int(p) for p in parts)
    if not all(1 <= x <= 13 for x in nums):
        raise ValueError(f"{where}: Puzzles={text!r} has a number outside 1..13.")
    return Problem(nums, 24)


def load_24csv(path: str | pathlib.Path, split: str = "all1362") -> list[Problem]:
    """Read a ToT ``24.csv`` (columns ``Rank,Puzzles,...``) or an XoT ``xot_game24_*.csv``.

    split: one of CSV_SPLITS (ranks of the ToT file, in rank order) or XOT_SPLITS (every row of
    the XoT file, checked against its expected size).
    """
    path = pathlib.Path(path)
    if split not in CSV_SPLITS and split not in XOT_SPLITS:
        raise ValueError(
            f"split={split!r} unknown; allowed {sorted(CSV_SPLITS) + sorted(XOT_SPLITS)}."
        )
    if not path.is_file():
        raise ValueError(
            f"24.csv path={str(path)!r} does not exist; download it (see docs/foundation.md)."
        )
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "Puzzles" not in rows[0]:
        raise ValueError(f"{path}: no 'Puzzles' column; expected a ToT 24.csv or XoT csv.")
    if split in XOT_SPLITS:
        out = [_parse_puzzle(r["Puzzles"], f"{path}:{i + 2}") for i, r in enumerate(rows)]
        if len(out) != XOT_SPLITS[split]:
            raise ValueError(
                f"{path}: {len(out)} rows, but split={split!r} has {XOT_SPLITS[split]}."
            )
        return out
    if "Rank" not in rows[0]:
        raise ValueError(f"{path}: no 'Rank' column; split={split!r} needs the ToT 24.csv.")
    by_rank = {}
    for i, r in enumerate(rows):
        where = f"{path}:{i + 2}"
        if not str(r["Rank"]).strip().isdigit():
            raise ValueError(f"{where}: Rank={r['Rank']!r} is not a positive integer.")
        by_rank[int(r["Rank"])] = _parse_puzzle(r["Puzzles"], where)
    lo, hi = CSV_SPLITS[split]
    missing = [k for k in range(lo, hi + 1) if k not in by_rank]
    if missing:
        raise ValueError(
            f"{path}: ranks {missing[:5]}... missing; split={split!r} needs ranks {lo}..{hi}."
        )
    return [by_rank[k] for k in range(lo, hi + 1)]


_INTEGER = re.compile(r"-?[0-9]{1,9}")  # ASCII digits only: int() also reads "²" or "1_0"


def load_problems_file(path: str | pathlib.Path) -> list[Problem]:
    """A researcher's own puzzle list: a CSV or TSV (the delimiter is sniffed from the header;
    UTF-8 with or without a BOM, LF or CRLF line ends) whose header has a ``numbers`` column
    (space-separated integers, 2..16 of them) and a ``target`` column (an integer); other columns
    are ignored. Every value must lie within +-``game.INT32_SAFE_MAX_ABS`` (the exact
    arithmetic's range). Errors name the file, the line and the field."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"--problems={str(path)!r} does not exist.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save the "
                         "puzzle list as a UTF-8 CSV.") from None
    lines = text.splitlines()
    delimiter = "\t" if lines and "\t" in lines[0] else ","
    reader = csv.DictReader(lines, delimiter=delimiter)
    cols = [c.strip() for c in (reader.fieldnames or [])]
    if "numbers" not in cols or "target" not in cols:
        raise ValueError(f"{path}: header has columns {cols}; needs 'numbers' and 'target'.")
    bound, out = game.INT32_SAFE_MAX_ABS, []
    for i, r in enumerate(reader):
        r = {k.strip(): (v or "").strip() for k, v in r.items() if isinstance(k, str)}
        where, parts = f"{path}:{i + 2}", r["numbers"].split()
        if not 2 <= len(parts) <= 16 or not all(_INTEGER.fullmatch(p) for p in parts):
            raise ValueError(f"{where}: numbers={r['numbers']!r} is not 2..16 space-separated "
                             "integers.")
        if not _INTEGER.fullmatch(r["target"]):
            raise ValueError(f"{where}: target={r['target']!r} is not an integer.")
        values = [int(p) for p in parts] + [int(r["target"])]
        if bad := [x for x in values if abs(x) > bound]:
            raise ValueError(f"{where}: {bad[0]} is out of range; numbers and target must lie "
                             f"within -{bound}..{bound}.")
        out.append(Problem(tuple(values[:-1]), values[-1]))
    if not out:
        raise ValueError(f"{path}: no puzzles below the header.")
    return out


def problems_to_state(problems: Sequence[Problem], rules: game.Rules) -> game.State:
    """A batch of initial game states (validated by game.new_state)."""
    return game.new_state([p.numbers for p in problems], [p.target for p in problems], rules)
