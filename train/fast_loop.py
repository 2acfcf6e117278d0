"""The supervised loop's hot path: K updates per dispatch, the next stack already on the device.

Why: with one call per update, the host's share (the call, a batch built and transferred, a
device-side metric add) cost ~0.9 ms per update of a sweep-sized model next to its 2.6 ms step
(``benchmarks/bench_train.py`` measures both ways side by side). So the loop

- runs ``train.steps.train_steps``: a ``lax.scan`` of the ordinary micro-step over a [K, B, ...]
  stack of batches, summing the metrics on the device (``train.steps_per_call``, 0 = from the
  model's FLOPs per update, ``auto_steps_per_call``; K is then lowered to a divisor of
  ``log_every``);
- takes each stack from the loader in one gather/draw and one transfer, and puts the NEXT stack
  on the device while the current call runs (``Feeder``; dispatch is asynchronous);
- pulls the metric sums to the host only at a log line.

Chunks never cross a point where the host must act (``next_boundary``: update 1, every
``log_every`` / ``eval_every`` / checkpoint, the profiler window, the last update). Between two
such points the loop calls the K-program while K updates fit and single updates for the rest,
so only two executables exist (K and 1), and the metrics rows, evals and checkpoints fall on
exactly the updates of a one-update-per-call run.

Determinism: the chunk lengths are a function of the update number and the config alone, so
a run resumed from a periodic checkpoint replays the same calls on the same batches as an
uninterrupted one. On XLA:CPU a scanned step also computes the same bits as a single one, so a
resume off the K grid (after SIGTERM) ends bit-identical too (``tests/test_train_e2e.py``, K = 5);
on other backends another K may differ by float reassociation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax

# Work per dispatch that amortises a call's host overhead (~0.1-1 ms) on a CPU or one GPU.
AUTO_FLOPS_PER_CALL = 2e9
MAX_STEPS_PER_CALL = 64
# A run shorter than this keeps one update per call under the automatic choice: compiling the
# K-program (seconds) costs more than it saves over a few hundred small updates.
AUTO_MIN_STEPS = 500


def auto_steps_per_call(flops_per_update: float) -> int:
    """K for ``train.steps_per_call=0``: a power of two with about ``AUTO_FLOPS_PER_CALL`` of
    train FLOPs per call, 1 for models big enough that a call is already long."""
    k = AUTO_FLOPS_PER_CALL / max(flops_per_update, 1.0)
    return int(min(MAX_STEPS_PER_CALL, 2 ** max(0, math.floor(math.log2(max(k, 1.0))))))


def steps_per_call(cfg: Mapping[str, Any], flops_per_update: float) -> int:
    """The run's K: the largest divisor of ``train.log_every`` that is at most
    ``train.steps_per_call`` (0: ``auto_steps_per_call``, or 1 for a run of fewer than
    ``AUTO_MIN_STEPS`` updates). Why a divisor: a call never crosses
    a log line, so with K dividing the cadence every interval is whole calls of K."""
    t = cfg["train"]
    k = t.get("steps_per_call", 0)
    if not k:
        k = auto_steps_per_call(flops_per_update) if t["steps"] >= AUTO_MIN_STEPS else 1
    return max(d for d in range(1, min(k, t["log_every"]) + 1) if t["log_every"] % d == 0)


def next_boundary(update: int, cfg: Mapping[str, Any], checkpoint_every: int | None) -> int:
    """The first update after ``update`` at which the host must run (log, eval, save, profile
    or stop)."""
    t = cfg["train"]
    out = [t["steps"]] + ([1] if update < 1 else [])
    for every in (t["log_every"], t["eval_every"], checkpoint_every):
        if every:
            out.append((update // every + 1) * every)
    if cfg["profile_steps"] > 0:
        out += [b for b in (cfg["profile_start"], cfg["profile_start"] + cfg["profile_steps"])
                if b > update]
    return min(out)


def chunk(update: int, k: int, cfg: Mapping[str, Any], checkpoint_every: int | None) -> int:
    """Updates in the call that starts at ``update``: K if K fit before the next boundary,
    else 1."""
    return k if next_boundary(update, cfg, checkpoint_every) - update >= k else 1


class Feeder:
    """Stacks of batches for the train calls, the next one transferred ahead of its call.

    ``take(position, count)`` returns micro-batches ``position .. position+count-1`` stacked
    ([count, B, ...], on the device); ``prefetch`` starts the transfer of the next stack right
    after a call was dispatched, so it overlaps the running step.
    """

    def __init__(self, loader):
        self.loader = loader
        self._ahead: tuple[tuple[int, int], dict] | None = None

    def take(self, position: int, count: int) -> dict[str, jax.Array]:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == (position, count):
            return ahead[1]
        return self.loader.batches(position, count)

    def prefetch(self, position: int, count: int) -> dict[str, jax.Array]:
        """Starts the transfer of that stack and returns it (``take`` hands it out next)."""
        self._ahead = ((position, count), self.loader.batches(position, count))
        return self._ahead[1]


def abstract_stack(batches: Mapping[str, jax.Array], count: int) -> dict:
    """ShapeDtypeStructs of a [count, B, ...] stack shaped like ``batches`` (any leading count),
    with its sharding: what the K-program is compiled for before its first stack exists."""
    return {k: jax.ShapeDtypeStruct((count,) + v.shape[1:], v.dtype, sharding=v.sharding)
            for k, v in batches.items()}


def compile_programs(program, first: Mapping[str, jax.Array], counts) -> tuple[dict, dict]:
    """(metric-sum shapes, {count: ``program.train_steps`` compiled for [count, B, ...]
    stacks}) for stacks shaped like ``first`` (a ``setup.TrainProgram``; nothing runs)."""
    one = {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in first.items()}
    shapes = jax.eval_shape(program.train_step, program.abs_state, one)[1]
    return shapes, {n: program.train_steps.lower(program.abs_state, shapes,
                                                 abstract_stack(first, n)).compile()
                    for n in sorted(counts)}


def zeros(shapes: Mapping[str, jax.ShapeDtypeStruct]) -> dict[str, jax.Array]:
    """Fresh metric sums (the programs donate theirs)."""
    return {k: jax.numpy.zeros(v.shape, v.dtype) for k, v in shapes.items()}
