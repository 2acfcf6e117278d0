"""An unlimited, leak-free stream of solver-labelled states; example k is a function of (seed, k).

Why a stream: a fixed labelled set of ~1,000 problems is memorised by anything larger than the
smallest model (the CPU sweep's d1 saw each state 44 times), and a resumed or sharded run must see
exactly the batches an uninterrupted one would. Here example ``k`` is drawn with
``numpy.random.default_rng([seed, k])``, so it never runs out, never repeats (unless two (seed, k)
draw the same state by chance), and any process can produce any slice of any batch.

How one example is drawn (``StreamConfig`` names the knobs):
1. a mixture component (a ``problems.ProblemClass``) by weight, then its n, then the number of
   moves already played ``d`` uniform in 0..n-2, so the state holds ``n - d`` live numbers;
2. the wanted label: solvable with probability ``solvable_share`` (0.5: balanced at every n,
   unsolvable start states included, which solvable-only classes never give);
3. start numbers from the class, numbers in slots 0..n-1 in random order, then ``d`` uniformly
   random legal moves with ``game.step`` slot semantics (result in the lower slot, the higher
   slot dies), so dead slots sit where search puts them;
4. the target, on each try, with probability 1/2 uniform in the class's target range, else the
   value of a uniformly random playout to one number: of the SAME state for a wanted-solvable
   example (reachable by construction), of an INDEPENDENT draw of start numbers of the same class
   for a wanted-unsolvable one. Both labels draw targets from the same two sources and both states
   are uniform random walks, so "on-path states carry larger numbers" (the artefact a
   walk-along-solutions dataset taught the value) cannot give the label away; what remains is
   real arithmetic (two small numbers rarely reach a random target near 999);
5. rejection: the target must lie in the class's target range; the start problem must hash to
   ``split`` (``problems.split_of``) and, like the final state, must not be in ``exclude``; the
   exact label comes from ``labeller.label_batch`` (and must match the wanted one).
Labels: value = solvable, policy = uniform over the moves that keep the state solvable (every
solvable state has at least one), legal = the game's legal mask.

Exclusion (``exclusion_keys``): canonical keys ``(sorted numbers, target)`` of every problem that
must never be trained on. No excluded problem is ever a start state, and no emitted state (whose
live values are all integers) equals an excluded start state.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from scaling import run_json
from search import game, labeller, problems, solver

_MAX_TRIES = 2000  # rejection attempts per example before giving up with an error
FIELDS = ("num", "den", "live", "target_num", "target_den", "moves", "policy", "legal", "value",
          "n")


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    """What the stream draws. Hashable.

    mixture: ((class name, weight), ...); weights >= 0, at least one > 0.
    n_max: slots of every emitted state (>= the largest n of the mixture).
    seed: example k is drawn from ``default_rng([seed, k])``.
    split: the hash split start problems come from ("train" for training streams).
    solvable_share: probability that an example is solvable (at every n).
    exclude: canonical problem keys never to emit (``exclusion_keys``).
    fractions / max_abs: rules of the emitted states (use_all is always True here).
    start_only: emit start states only (no moves played): a probe set of "is this problem
      solvable" questions drawn independently of any walk.
    """

    mixture: tuple[tuple[str, float], ...]
    n_max: int = 6
    seed: int = 0
    split: str = "train"
    solvable_share: float = 0.5
    exclude: frozenset = frozenset()
    fractions: bool = True
    max_abs: int = game.INT32_SAFE_MAX_ABS
    start_only: bool = False

    def __post_init__(self):
        comps = components(self.mixture)  # validates names and weights
        need = max(c.n_range[1] for c, _ in comps)
        if not need <= self.n_max <= 16:
            raise ValueError(f"StreamConfig.n_max={self.n_max} is out of range for mixture "
                             f"{format_mixture(self.mixture)!r}; allowed {need}..16.")
        if self.split not in problems.SPLITS:
            raise ValueError(f"StreamConfig.split={self.split!r}; allowed {problems.SPLITS}.")
        if not 0.0 <= self.solvable_share <= 1.0:
            raise ValueError(f"StreamConfig.solvable_share={self.solvable_share} is out of range; "
                             "allowed 0..1.")

    @property
    def rules(self) -> game.Rules:
        return game.Rules(n_max=self.n_max, fractions=self.fractions, max_abs=self.max_abs)

    def replace(self, **kw) -> StreamConfig:
        return dataclasses.replace(self, **kw)


def parse_mixture(spec: str | Sequence) -> tuple[tuple[str, float], ...]:
    """``"n2:1,n3:1,g4_t100:2"`` (weight 1 when omitted) or pairs -> validated ((name, w), ...)."""
    if isinstance(spec, str):
        pairs = []
        for item in filter(None, (s.strip() for s in spec.split(","))):
            name, _, w = item.partition(":")
            try:
                pairs.append((name.strip(), float(w) if w else 1.0))
            except ValueError as e:
                raise ValueError(f"mixture item {item!r}: weight {w!r} is not a number.") from e
    else:
        pairs = [(str(n), float(w)) for n, w in spec]
    out = tuple(pairs)
    components(out)  # validates
    return out


def format_mixture(mixture: Sequence[tuple[str, float]]) -> str:
    return ",".join(f"{n}:{w:g}" for n, w in mixture)


@functools.lru_cache(maxsize=64)
def components(mixture: tuple[tuple[str, float], ...]) -> list[tuple[problems.ProblemClass, float]]:
    """(class, normalised weight) per component; ValueError for an unknown class, a negative
    weight or an empty mixture."""
    if not mixture:
        raise ValueError("data.mixture is empty; give at least one class, e.g. 'g4_t100:1'.")
    out = []
    for name, w in mixture:
        if name not in problems.class_names():
            raise ValueError(f"data.mixture class {name!r} is unknown; allowed "
                             f"{', '.join(problems.class_names())}.")
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"data.mixture weight {name}:{w} is out of range; allowed >= 0.")
        out.append((problems.get_class(name), w))
    total = sum(w for _, w in out)
    if total <= 0:
        raise ValueError(f"data.mixture {format_mixture(mixture)!r} has no positive weight.")
    for cls, _ in out:
        if not cls.rules.use_all:
            raise ValueError(f"data.mixture class {cls.name!r} uses use_all=False rules; the "
                             "stream labels use_all=True states only.")
    return [(c, w / total) for c, w in out]


def exclusion_keys(problem_lists: Iterable[Sequence[problems.Problem]]) -> frozenset:
    """Canonical keys ``(sorted numbers, target)`` of every problem in ``problem_lists``."""
    return frozenset(p.canonical for plist in problem_lists for p in plist)


# ----------------------------------------------------------------------------- one example


def _play(keys: list, moves: int, rng: np.random.Generator, rules: game.Rules) -> list | None:
    """``keys`` after ``moves`` uniformly random legal moves (None if stuck: no legal move).

    A uniform (pair, op) redrawn until legal is uniform over the legal moves; illegal ones
    (division by zero, overflow) are rare, so this beats enumerating every child.
    """
    keys = list(keys)
    for _ in range(moves):
        live = [s for s, k in enumerate(keys) if k is not None]
        for _ in range(64):
            a, b = int(rng.integers(len(live))), int(rng.integers(len(live) - 1))
            b += b >= a  # two distinct slots, uniformly
            i, j = live[min(a, b)], live[max(a, b)]
            r = solver.op_results(keys[i], keys[j], rules)[int(rng.integers(game.NUM_OPS))]
            if r is not None:
                break
        else:
            return None
        keys[i], keys[j] = r, None
    return keys


def _legal_mask(keys: list, rules: game.Rules) -> np.ndarray:
    """bool[A]: the game's legal mask of slot-aligned ``keys``."""
    legal = np.zeros(rules.num_actions, bool)
    live = [s for s, k in enumerate(keys) if k is not None]
    for a_i, i in enumerate(live):
        for j in live[a_i + 1:]:
            base = _PAIR_INDEX[rules.n_max][i, j] * game.NUM_OPS
            for op, r in enumerate(solver.op_results(keys[i], keys[j], rules)):
                legal[base + op] = r is not None
    return legal


_PAIR_INDEX = {n: np.full((n, n), -1, np.int64) for n in range(2, 17)}
for _n, _tab in _PAIR_INDEX.items():
    for _p, (_i, _j) in enumerate(game.pair_table(_n)):
        _tab[_i, _j] = _p


def _final_value(keys: list, rng: np.random.Generator, rules: game.Rules) -> int | None:
    """Packed key of the last number of a random playout of ``keys``, or None if it gets stuck."""
    end = _play(keys, sum(k is not None for k in keys) - 1, rng, rules)
    return None if end is None else next(k for k in end if k is not None)


def _int_in(key: int | None, lo_hi: tuple[int, int]) -> int | None:
    """The integer value of ``key`` if it is an integer within ``lo_hi``, else None."""
    if key is None or key & solver.DEN_MASK != 1:
        return None
    v = key >> solver.SHIFT
    return v if lo_hi[0] <= v <= lo_hi[1] else None


def _start(cls: problems.ProblemClass, n: int, rng: np.random.Generator, n_max: int) -> list:
    lo, hi = cls.number_range
    nums = rng.integers(lo, hi + 1, size=n)
    return [solver.pack_int(int(x)) for x in nums] + [None] * (n_max - n)


def _state_key(keys: list, target: int) -> tuple | None:
    """Canonical problem key of a state whose live values are all integers (else None)."""
    live = [k for k in keys if k is not None]
    if any(k & solver.DEN_MASK != 1 for k in live):
        return None
    return tuple(sorted(k >> solver.SHIFT for k in live)), target


class _Example:
    """The draw of one example: its own rng, component, n, moves and wanted label, and tries.

    Every random number example k uses comes from its own ``default_rng([seed, k])`` in a fixed
    order, so the example does not depend on which other examples are drawn alongside it: that is
    what lets ``draw_range`` label the candidates of many examples in one compiled call.
    """

    def __init__(self, cfg: StreamConfig, k: int):
        self.k, self.rng = k, np.random.default_rng([cfg.seed, k])
        comps = components(cfg.mixture)
        self.cls = comps[int(self.rng.choice(len(comps), p=[w for _, w in comps]))][0]
        self.n = int(self.rng.integers(self.cls.n_range[0], self.cls.n_range[1] + 1))
        self.moves = 0 if cfg.start_only else int(self.rng.integers(0, self.n - 1))
        self.want = bool(self.rng.random() < cfg.solvable_share)
        self.tries = 0

    def propose(self, cfg: StreamConfig) -> tuple[list, int] | None:
        """One try: (state keys, target) that passed the cheap checks, or None (try again)."""
        self.tries += 1
        if self.tries > _MAX_TRIES:
            raise RuntimeError(
                f"stream example {self.k}: no {'solvable' if self.want else 'unsolvable'} state "
                f"of class {self.cls.name!r} (n={self.n}, {self.moves} moves) in {_MAX_TRIES} "
                "tries; the class's target range is too narrow for this label.")
        cls, rng, rules = self.cls, self.rng, cfg.rules
        start = _start(cls, self.n, rng, cfg.n_max)
        nums = tuple(sorted(k >> solver.SHIFT for k in start if k is not None))
        uniform = rng.random() < 0.5
        if uniform:  # cheap rejections first: val/test streams keep only ~10% of the hashes
            target = int(rng.integers(cls.target_range[0], cls.target_range[1] + 1))
            if problems.split_of(problems.Problem(nums, target)) != cfg.split:
                return None
        state = _play(start, self.moves, rng, rules)
        if state is None:
            return None
        if not uniform:  # a playout value: reachable from the state itself or from a donor
            donor = state if self.want else _start(cls, self.n, rng, cfg.n_max)
            target = _int_in(_final_value(donor, rng, rules), cls.target_range)
            if target is None or problems.split_of(problems.Problem(nums, target)) != cfg.split:
                return None
        if (nums, target) in cfg.exclude or _state_key(state, target) in cfg.exclude:
            return None
        return state, target


def _arrays(keys: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    num = np.array([0 if k is None else k >> solver.SHIFT for k in keys], np.int64)
    den = np.array([1 if k is None else k & solver.DEN_MASK for k in keys], np.int64)
    return num, den, np.array([k is not None for k in keys])


def draw_range(cfg: StreamConfig, start: int, stop: int) -> dict[str, np.ndarray]:
    """Examples ``start..stop-1`` stacked along a leading batch axis.

    Rounds: every unfinished example proposes one candidate; all candidates are labelled in one
    ``labeller.label_batch`` call; those whose label is the wanted one are done.
    """
    rules = cfg.rules
    pending = [_Example(cfg, k) for k in range(start, stop)]
    done: dict[int, dict[str, np.ndarray]] = {}
    while pending:
        cands = [(ex, ex.propose(cfg)) for ex in pending]
        cands = [(ex, c) for ex, c in cands if c is not None]
        if cands:
            num, den, live = (np.stack(x) for x in zip(*(_arrays(c[0]) for _, c in cands),
                                                       strict=True))
            tgt = np.array([c[1] for _, c in cands], np.int64)
            value, good = labeller.label_batch(num, den, live, tgt, np.ones_like(tgt), rules)
            for r, (ex, (keys, target)) in enumerate(cands):
                if bool(value[r]) != ex.want:
                    continue
                policy = good[r] / max(int(good[r].sum()), 1)
                done[ex.k] = {
                    "num": num[r].astype(np.int32), "den": den[r].astype(np.int32),
                    "live": live[r], "target_num": np.int32(target), "target_den": np.int32(1),
                    "moves": np.int32(ex.moves), "policy": policy.astype(np.float32),
                    "legal": _legal_mask(keys, rules), "value": np.float32(value[r]),
                    "n": np.int32(int(live[r].sum()))}
        pending = [ex for ex in pending if ex.k not in done]
    rows = [done[k] for k in range(start, stop)]
    return {f: np.stack([r[f] for r in rows]) for f in FIELDS}


def draw(cfg: StreamConfig, k: int) -> dict[str, np.ndarray]:
    """Example ``k`` of the stream ``cfg``: one labelled state (arrays without a batch axis)."""
    return {f: v[0] for f, v in draw_range(cfg, k, k + 1).items()}


def as_mapping(cfg: StreamConfig) -> dict:
    """JSON-able description (for run records)."""
    return {"mixture": format_mixture(cfg.mixture), "n_max": cfg.n_max, "seed": cfg.seed,
            "split": cfg.split, "solvable_share": cfg.solvable_share,
            "excluded_problems": len(cfg.exclude), "fractions": cfg.fractions,
            "max_abs": cfg.max_abs, "start_only": cfg.start_only}


# ----------------------------------------------------------------------------- exclusion records

EXCLUSION_JSON = "exclusion.json"


def write_exclusion(workdir: str, sets: Mapping[str, Sequence[problems.Problem]]) -> dict:
    """``<workdir>/exclusion.json`` ({set: [[numbers], target], ...}) written atomically;
    returns {set: count} for run.json. Call it on one process only."""
    body = {name: sorted([list(p.canonical[0]), p.target] for p in plist)
            for name, plist in sets.items()}
    run_json.write_json(os.path.join(workdir, EXCLUSION_JSON), body, sort_keys=True)
    return {name: len(plist) for name, plist in sets.items()}


def read_exclusion(workdir: str) -> frozenset | None:
    """Canonical keys a run excluded from training (None when it recorded none)."""
    path = os.path.join(workdir, EXCLUSION_JSON)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        body = json.load(f)
    return frozenset((tuple(nums), t) for rows in body.values() for nums, t in rows)


def leaked(plist: Sequence[problems.Problem], excluded: frozenset | None) -> int:
    """How many of ``plist`` a run's training did not exclude (all of them when unknown)."""
    if excluded is None:
        return len(plist)
    return sum(p.canonical not in excluded for p in plist)
