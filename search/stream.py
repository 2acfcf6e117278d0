"""An unlimited, leak-free stream of solver-labelled states; example k is a function of (seed, k).

Why a stream: a fixed labelled set of ~1,000 problems is memorised by anything larger than the
smallest model (the CPU sweep's d1 saw each state 44 times), and a resumed or sharded run must see
exactly the batches an uninterrupted one would. Here every random number of example ``k`` is a
counter-based draw keyed by (seed, k, try, draw index) (``search.stream_kernels``), so it never
runs out, never repeats (unless two (seed, k) draw the same state by chance), and any process can
produce any slice of any batch: ``draw_range(cfg, a, c)`` is ``draw_range(cfg, a, b)`` followed
by ``draw_range(cfg, b, c)`` for every b.

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
   exact label comes from ``search.labeller`` (and must match the wanted one).
Labels: value = solvable, policy = uniform over the moves that keep the state solvable (every
solvable state has at least one), legal = the game's legal mask.

Batched (why: per-example Python served ~1-2k examples/s, below a small model's train step):
compiled kernels (``search.stream_kernels``) draw the headers (1, 2) of all examples at once, then
rounds run until every example is done: for each unfinished example the kernel plays its next
tries (3, 4) until one passes the cheap checks of 5 (target range, blake2b split hash, exclusion
probe), the labeller labels every round's candidates in one call per wanted label, and the
examples whose label is the wanted one are done. Later rounds, with few examples left, propose
up to ``_MAX_PER_ROUND`` such tries per example (fewer rounds) and take the first hit in try
order. An example's result is thus its first try that passes every check, whichever round finds
it and whatever else is drawn with it, so batching changes no example.

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
from search import stream_kernels as kernels

# The stream's content version: a change of what example k is (generator, rules of a draw) must
# bump it, so that stored copies of a stream (train.stream_cache files, TFDS snapshots, whose
# keys include it) are never served for another one. 1: numpy Generators per example (until
# 2026-12); 2: the counter-based batched draw.
VERSION = 2
_MAX_TRIES = 2000  # rejection attempts per example before giving up with an error
_MAX_PER_ROUND = 4  # candidates of one example labelled in one round (draw_range)
FIELDS = ("num", "den", "live", "target_num", "target_den", "moves", "policy", "legal", "value",
          "n")


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    """What the stream draws. Hashable.

    mixture: ((class name, weight), ...); weights >= 0, at least one > 0.
    n_max: slots of every emitted state (>= the largest n of the mixture).
    seed: the generator's key (0 <= seed < 2**63): example k is a function of (seed, k).
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
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"StreamConfig.seed={self.seed} is out of range; allowed "
                             "0..2**63-1.")
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


# ----------------------------------------------------------------------------- batched draws


@functools.lru_cache(maxsize=16)
def _tables(cfg: StreamConfig) -> dict[str, np.ndarray]:
    """The kernels' view of ``cfg``: per-component ranges, cumulative weights and the exclusion
    rows sorted by hash (built once per stream)."""
    comps = components(cfg.mixture)
    w = np.array([p for _, p in comps])
    cum = np.cumsum(w)
    cum[np.flatnonzero(w > 0)[-1]:] = np.inf  # u < 1 always picks a component of weight > 0
    width = cfg.n_max + 2
    rows = [[len(nums), t, *nums] + [0] * (cfg.n_max - len(nums))
            for nums, t in cfg.exclude if len(nums) <= cfg.n_max]
    rows = np.array(rows, np.int64).reshape(-1, width)
    hashes = np.array([kernels.row_hash(r) for r in rows], np.uint64)
    order = np.argsort(hashes, kind="stable")
    lo, hi = problems.SPLIT_BUCKETS[cfg.split]
    return {"cum": cum, "n_range": np.array([c.n_range for c, _ in comps], np.int64),
            "cls": np.array([(*c.number_range, *c.target_range) for c, _ in comps], np.int64),
            "ex_hash": hashes[order], "ex_rows": rows[order], "split": np.array([lo, hi])}


def _labels(keys, target, want, rules: game.Rules) -> tuple[np.ndarray, np.ndarray]:
    """Exact (value, good) of candidates, complete where value == want. A wanted-unsolvable
    candidate needs its value only (an unsolvable state has no good move), and the labeller stops
    at a state's first good child: most such candidates are solvable (rejected), and at n = 6 a
    full label costs several times a value."""
    args = (keys >> solver.SHIFT, np.where(keys != 0, keys & solver.DEN_MASK, 1), keys != 0,
            target, np.ones_like(target))
    value, good = np.zeros(len(keys), bool), np.zeros((len(keys), rules.num_actions), bool)
    if want.any():
        value[want], good[want] = labeller.label_batch(*(a[want] for a in args), rules)
    if not want.all():
        value[~want] = labeller.solvable_batch(*(a[~want] for a in args), rules)
    return value, good


def draw_range(cfg: StreamConfig, start: int, stop: int) -> dict[str, np.ndarray]:
    """Examples ``start..stop-1`` stacked along a leading batch axis.

    Rounds (module docstring): the kernel proposes, for every unfinished example, its next
    candidates that pass the cheap checks; they are labelled in one call per wanted label; an
    example whose candidate has the wanted label is done, the others go on from their next try.
    """
    if not 0 <= start <= stop:
        raise ValueError(f"draw_range({start}, {stop}): need 0 <= start <= stop.")
    rules, tab, n_max = cfg.rules, _tables(cfg), cfg.n_max
    ks = np.arange(start, stop, dtype=np.int64)
    b = len(ks)
    comp, n = np.zeros(b, np.int64), np.zeros(b, np.int64)
    moves, want = np.zeros(b, np.int64), np.zeros(b, bool)
    kernels.headers(cfg.seed, ks, tab["cum"], tab["n_range"], cfg.start_only,
                    cfg.solvable_share, comp, n, moves, want)
    cls = tab["cls"][comp]
    keys, target = np.zeros((b, n_max), np.int64), np.zeros(b, np.int64)
    value, good = np.zeros(b, bool), np.zeros((b, rules.num_actions), bool)
    tries, pending = np.ones(b, np.int64), np.arange(b)
    while pending.size:
        # Later rounds propose several tries per example (about a batch of candidates per
        # round): fewer rounds; the first hit in try order is taken, so no result changes.
        p, per = len(pending), min(_MAX_PER_ROUND, max(1, b // len(pending)))
        ck, ct = np.zeros((p * per, n_max), np.int64), np.zeros(p * per, np.int64)
        ctry = np.zeros(p * per, np.int64)
        kernels.propose(cfg.seed, ks[pending], tries[pending], n[pending], moves[pending],
                        want[pending], cls[pending], _MAX_TRIES, cfg.fractions, cfg.max_abs,
                        tab["split"][0], tab["split"][1], tab["ex_hash"], tab["ex_rows"],
                        ck, ct, ctry)
        ctry = ctry.reshape(p, per)
        if (ctry[:, 0] < 0).any():
            r = pending[np.flatnonzero(ctry[:, 0] < 0)[0]]
            raise RuntimeError(
                f"stream example {ks[r]}: no {'solvable' if want[r] else 'unsolvable'} state "
                f"of class {components(cfg.mixture)[comp[r]][0].name!r} (n={n[r]}, {moves[r]} "
                f"moves) in {_MAX_TRIES} tries; the class's target range is too narrow for "
                "this label.")
        valid = (ctry >= 0).reshape(-1)
        cw = np.repeat(want[pending], per)
        cv, cg = np.zeros(p * per, bool), np.zeros((p * per, rules.num_actions), bool)
        cv[valid], cg[valid] = _labels(ck[valid], ct[valid], cw[valid], rules)
        hit = (valid & (cv == cw)).reshape(p, per)
        done = hit.any(1)
        src = np.flatnonzero(done) * per + hit[done].argmax(1)
        rows = pending[done]
        keys[rows], target[rows], value[rows], good[rows] = ck[src], ct[src], cv[src], cg[src]
        tries[pending] = ctry.max(1) + 1
        pending = pending[~done]
    legal = np.zeros((b, rules.num_actions), bool)
    kernels.legal_masks(keys, cfg.fractions, cfg.max_abs, legal)
    live = keys != 0
    policy = good / np.maximum(good.sum(1, keepdims=True), 1)
    return {"num": (keys >> solver.SHIFT).astype(np.int32),
            "den": np.where(live, keys & solver.DEN_MASK, 1).astype(np.int32), "live": live,
            "target_num": target.astype(np.int32), "target_den": np.ones(b, np.int32),
            "moves": moves.astype(np.int32), "policy": policy.astype(np.float32),
            "legal": legal, "value": value.astype(np.float32),
            "n": live.sum(1).astype(np.int32)}


def draw(cfg: StreamConfig, k: int) -> dict[str, np.ndarray]:
    """Example ``k`` of the stream ``cfg``: one labelled state (arrays without a batch axis)."""
    return {f: v[0] for f, v in draw_range(cfg, k, k + 1).items()}


def as_mapping(cfg: StreamConfig) -> dict:
    """JSON-able description (for run records)."""
    return {"mixture": format_mixture(cfg.mixture), "n_max": cfg.n_max, "seed": cfg.seed,
            "split": cfg.split, "solvable_share": cfg.solvable_share,
            "excluded_problems": len(cfg.exclude), "fractions": cfg.fractions,
            "max_abs": cfg.max_abs, "start_only": cfg.start_only, "version": VERSION}


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

