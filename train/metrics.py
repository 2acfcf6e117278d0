"""Metric writers: TensorBoard (tensorboardX, no TensorFlow), ``metrics.jsonl``, a tqdm bar, MFU.

Writers are active on process 0 only (other processes get no-op writers), as in big_vision/nanodo.
``metrics.jsonl`` holds one JSON object per write: ``{"step": int, "time": unix_s, <name>: float}``.
A resumed run (``initial_step`` = the restored step) keeps one continuous log without duplicates:
the writer first cuts the file back to the rows of steps <= ``initial_step`` (written to a temp
file and renamed over, so a kill leaves the old or the new file, never half of one; a row torn
by a kill mid-write is dropped), and tells TensorBoard to hide the older event files' steps after
``initial_step`` (``purge_step``: a ``SessionLog.START`` at ``initial_step + 1``). A run that
starts at step 0 rewrites step 0 too, so it starts a new log (the old rows are from an attempt
that never checkpointed).

MFU = achieved model FLOPs/s / (peak FLOPs/s per device * devices). Achieved FLOPs use
``scaling.flops.train_flops_per_token`` (6N plus the attention term). The peak table holds dense
bf16 tensor-core figures from vendor spec sheets; unknown devices (e.g. CPU) report no MFU unless
``config.train.peak_flops_per_device`` is set.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping

import jax

# Dense bf16 peak FLOP/s per device (no sparsity). Keys are matched as substrings of the lower-cased
# jax device_kind, longest key first.
PEAK_FLOPS: dict[str, float] = {
    "h200": 989e12,
    "h100": 989e12,  # SXM; the PCIe part is 756e12
    "gh200": 989e12,
    "b200": 2250e12,
    "a100": 312e12,
    "l40s": 362e12,
    "l4": 121e12,
    "a10g": 125e12,
    "v100": 125e12,
    "tpu v6 lite": 918e12,  # v6e
    "tpu v5 lite": 197e12,  # v5e
    "tpu v5p": 459e12,
    "tpu v5": 459e12,
    "tpu v4": 275e12,
    "tpu v3": 123e12,
}


def peak_flops_per_device(device_kind: str, override: float | None = None) -> float | None:
    """Peak bf16 FLOP/s of one device of this kind; ``override`` (when set) wins; None when
    unknown."""
    if override:
        return float(override)
    kind = device_kind.lower()
    for key in sorted(PEAK_FLOPS, key=len, reverse=True):
        if key in kind:
            return PEAK_FLOPS[key]
    return None


def mfu(flops_per_second: float, device_kind: str, num_devices: int,
        override: float | None = None) -> float | None:
    peak = peak_flops_per_device(device_kind, override)
    if peak is None or num_devices < 1:
        return None
    return flops_per_second / (peak * num_devices)


_TB_ILLEGAL = re.compile(r"[^-/\w.]")  # what tensorboard rewrites to "_" in a tag


class PhaseTimer:
    """Accumulates wall time per named phase: ``with timer("train"): ...``; ``pop()`` resets."""

    def __init__(self) -> None:
        self._totals: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._totals[phase] += time.perf_counter() - t0

    def totals(self) -> dict[str, float]:
        return dict(self._totals)

    def pop(self) -> dict[str, float]:
        """``{"time/<phase>_s": seconds}`` since the last pop."""
        out = {f"time/{k}_s": v for k, v in self._totals.items()}
        self._totals.clear()
        return out


class MetricWriter:
    """TensorBoard + ``metrics.jsonl`` + console progress bar, on process 0 only."""

    def __init__(self, workdir: str, total_steps: int, initial_step: int = 0,
                 enabled: bool | None = None, progress: bool = True) -> None:
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._tb = self._jsonl = self._bar = None
        if not self.enabled:
            return
        from tensorboardX import SummaryWriter  # local: only process 0 pays the import

        os.makedirs(workdir, exist_ok=True)
        path, tb_dir = os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "tb")
        # Steps after initial_step are redone by this run: drop them from both logs.
        cut_back(path, initial_step if initial_step > 0 else -1)
        purge = None
        if glob.glob(os.path.join(tb_dir, "events.out.tfevents.*")):
            purge = initial_step + 1 if initial_step > 0 else 0
        self._tb = SummaryWriter(logdir=tb_dir, purge_step=purge)
        self._jsonl = open(path, "a", encoding="utf-8")
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=initial_step, unit="step",
                             dynamic_ncols=True, desc="train")

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in metrics.items() if v is not None}
        for k, v in clean.items():
            if math.isfinite(v):  # TB's own name rule, applied here so it logs no line per tag
                self._tb.add_scalar(_TB_ILLEGAL.sub("_", k), v, step)
        row = {"step": int(step), "time": time.time(),
               **{k: (v if math.isfinite(v) else str(v)) for k, v in clean.items()}}
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        if self._bar is not None:
            shown = {k.split("/")[-1]: f"{clean[k]:.4g}" for k in
                     ("train/loss", "eval/loss", "perf/tokens_per_s") if k in clean}
            self._bar.set_postfix(shown, refresh=False)

    def advance(self, step: int) -> None:
        """Moves the progress bar to ``step`` (ETA comes from tqdm's rate estimate)."""
        if self._bar is not None and step > self._bar.n:
            self._bar.update(step - self._bar.n)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.enabled:
            self._tb.add_text(tag, text, step)

    def flush(self) -> None:
        if self.enabled:
            self._tb.flush()
            self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            if self._bar is not None:
                self._bar.close()
            self._tb.close()
            self._jsonl.close()
            self.enabled = False


def _rows(f) -> Iterator[tuple[dict, str]]:
    """(parsed row, its line); a line torn by a kill mid-write (not JSON, no step) is skipped."""
    for line in f:
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                yield row, line.rstrip("\n") + "\n"


def cut_back(path: str, last_step: int) -> None:
    """Atomically keeps only the rows of ``path`` with step <= ``last_step`` (module docstring)."""
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        keep = [line for row, line in _rows(f) if row["step"] <= last_step]
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(keep)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_jsonl(path: str) -> list[dict]:
    """Rows of a ``metrics.jsonl`` merged per step (train and eval rows of one step become one
    dict; a repeated step keeps the later values), sorted by step."""
    by_step: dict[int, dict] = {}
    with open(path, encoding="utf-8") as f:
        for row, _ in _rows(f):
            by_step.setdefault(row["step"], {}).update(row)
    return [by_step[s] for s in sorted(by_step)]
