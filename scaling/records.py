"""Read training-run records (``run.json``, from ``train.run_record``) into arrays for fits.

``load_records("runs/sweep/*")`` accepts a glob of run directories (each holding ``run.json``) or of
``run.json`` files (``**`` recurses). Every record is validated: a missing key, a non-positive
count, a NaN, or a solve rate outside [0, 1] raises ValueError naming the file, the field and the
allowed range (``skip_invalid=True`` turns that into a warning and drops the record). The fits only
ever see the recorded numbers (params = non-embedding N, train_flops = C, tokens = D); nothing is
re-derived here. Imports nothing of ours, so every layer writes its JSON through ``write_text`` /
``write_json`` here (temp file + rename: a reader never sees half a file).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import warnings
from typing import Any

import numpy as np


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a same-directory temp file, then ``os.replace``)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path: str, obj: Any, **dump_kwargs) -> None:
    """``json.dumps(obj, indent=2, **dump_kwargs)`` written atomically (``write_text``)."""
    write_text(path, json.dumps(obj, indent=2, **dump_kwargs))

RUN_JSON = "run.json"
REQUIRED_KEYS = ("name", "config", "params", "params_total", "params_embedding",
                 "flops_per_token", "train_flops", "tokens", "steps", "final_metrics",
                 "search_evals", "wall_time_s", "device_kind", "device_count", "git_commit")
POSITIVE_KEYS = ("params", "params_total", "flops_per_token", "train_flops", "tokens", "steps")
COMPUTE_KEYS = {"flops": "search_flops_per_problem", "evals": "evals_per_problem",
                "simulations": "simulations"}  # axis name -> search_evals field
SEARCH_KEYS = ("split", "method", "simulations", "evals_per_problem", "search_flops_per_problem",
               "solve_rate", "num_problems")


def _positive(value, where: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{where}={value!r} is invalid; allowed: a finite number "
                         f"{'>= 0' if allow_zero else '> 0'}.")
    return float(value)


def validate_record(rec: dict, source: str = "<record>") -> dict:
    """Check one record against the run-record schema; raise ValueError naming the field."""
    if not isinstance(rec, dict):
        raise ValueError(f"{source}: a run record must be a JSON object, got {type(rec).__name__}.")
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise ValueError(f"{source}: missing key(s) {missing}; the run record requires "
                         f"{REQUIRED_KEYS}.")
    for key in POSITIVE_KEYS:
        _positive(rec[key], f"{source}: {key}")
    if not isinstance(rec["final_metrics"], dict):
        raise ValueError(f"{source}: final_metrics must be an object of metric -> number.")
    if not isinstance(rec["search_evals"], list):
        raise ValueError(f"{source}: search_evals must be a list, got "
                         f"{type(rec['search_evals']).__name__}.")
    for i, ev in enumerate(rec["search_evals"]):
        where = f"{source}: search_evals[{i}]"
        if not isinstance(ev, dict) or any(k not in ev for k in SEARCH_KEYS):
            raise ValueError(f"{where} must be an object with keys {SEARCH_KEYS}.")
        _positive(ev["simulations"], f"{where}.simulations")
        # Network-free methods (exhaustive search) record 0 FLOPs; an empty split 0 problems.
        for key in ("evals_per_problem", "search_flops_per_problem", "num_problems"):
            _positive(ev[key], f"{where}.{key}", allow_zero=True)
        rate = ev["solve_rate"]
        if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(f"{where}.solve_rate={rate!r} is invalid; allowed [0, 1].")
    return rec


def find_record_paths(pattern: str) -> list[str]:
    """Glob ``pattern``; directories contribute their ``run.json``. Sorted, without duplicates."""
    paths = set()
    for hit in glob.glob(pattern, recursive=True):
        path = os.path.join(hit, RUN_JSON) if os.path.isdir(hit) else hit
        if os.path.basename(path) == RUN_JSON and os.path.isfile(path):
            paths.add(os.path.abspath(path))
    return sorted(paths)


def load_records(pattern: str, skip_invalid: bool = False) -> list[dict]:
    """Validated records matching ``pattern`` (each gains ``_path``); ValueError if none match."""
    paths = find_record_paths(pattern)
    if not paths:
        raise ValueError(f"runs={pattern!r} matches no {RUN_JSON} (give run directories or "
                         f"{RUN_JSON} files, e.g. 'runs/sweep/*').")
    records = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                rec = validate_record(json.load(fh), path)
        except (ValueError, json.JSONDecodeError) as e:  # JSONDecodeError is a ValueError too
            if not skip_invalid:
                raise ValueError(str(e) if str(e).startswith(path) else f"{path}: {e}") from e
            warnings.warn(f"skipping invalid run record: {e}", stacklevel=2)
            continue
        records.append({**rec, "_path": path})
    if not records:
        raise ValueError(f"every run record matching {pattern!r} was invalid.")
    return records


@dataclasses.dataclass(frozen=True)
class RunTable:
    """One row per run: names [R], params N [R], flops C [R], tokens D [R], loss [R]."""

    names: list
    params: np.ndarray
    flops: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray
    loss_key: str


def to_table(records: list[dict], loss_key: str = "eval/loss") -> RunTable:
    """Arrays of (N, C, D, final_metrics[loss_key]) over ``records``."""
    losses = []
    for rec in records:
        src = rec.get("_path", rec["name"])
        if loss_key not in rec["final_metrics"]:
            raise ValueError(f"{src}: final_metrics lacks {loss_key!r}; it has "
                             f"{sorted(rec['final_metrics'])} (choose --loss_key).")
        losses.append(_positive(rec["final_metrics"][loss_key], f"{src}: final_metrics.{loss_key}"))
    return RunTable(names=[r["name"] for r in records],
                    params=np.array([r["params"] for r in records], dtype=np.float64),
                    flops=np.array([r["train_flops"] for r in records], dtype=np.float64),
                    tokens=np.array([r["tokens"] for r in records], dtype=np.float64),
                    loss=np.array(losses), loss_key=loss_key)


@dataclasses.dataclass(frozen=True)
class SearchCurve:
    """Solve rate vs search compute of one run on one (split, method), sorted by compute.

    compute: per-problem search compute on the chosen axis (``compute_axis``: a COMPUTE_KEYS key).
    """

    name: str
    params: float
    train_flops: float
    split: str
    method: str
    compute_axis: str
    compute: np.ndarray
    simulations: np.ndarray
    solve_rate: np.ndarray
    num_problems: np.ndarray


def usable(ev: dict, compute_axis: str = "flops") -> bool:
    """A search eval that can sit on a log-compute axis: compute > 0 and >= 1 problem."""
    return ev[COMPUTE_KEYS[compute_axis]] > 0 and ev["num_problems"] > 0


def search_curves(records: list[dict], split: str | None = None, method: str | None = None,
                  compute_axis: str = "flops") -> list[SearchCurve]:
    """One curve per (run, split, method) from its `usable` entries; ``split``/``method`` filter.

    ``compute_axis``: "flops" (search FLOPs per problem; network-free methods record 0 and drop
    out), "evals" (network evaluations or generated states per problem) or "simulations".
    """
    if compute_axis not in COMPUTE_KEYS:
        raise ValueError(f"compute_axis={compute_axis!r} is invalid; allowed {list(COMPUTE_KEYS)}.")
    key = COMPUTE_KEYS[compute_axis]
    curves = []
    for rec in records:
        groups: dict[tuple[str, str], list[dict]] = {}
        for ev in (e for e in rec["search_evals"] if usable(e, compute_axis)):
            if split in (None, ev["split"]) and method in (None, ev["method"]):
                groups.setdefault((str(ev["split"]), str(ev["method"])), []).append(ev)
        for (sp, me), evs in sorted(groups.items()):
            evs = sorted(evs, key=lambda e: e[key])
            col = lambda k, evs=evs: np.array([e[k] for e in evs], dtype=np.float64)
            curves.append(SearchCurve(rec["name"], float(rec["params"]), float(rec["train_flops"]),
                                      sp, me, compute_axis, col(key), col("simulations"),
                                      col("solve_rate"), col("num_problems")))
    return curves
