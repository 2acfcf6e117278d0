"""Read training-run records (``run.json``, from ``train.run_record``) into arrays for fits.

``load_records("runs/sweep/*")`` accepts a glob of run directories (each holding ``run.json``) or of
``run.json`` files (``**`` recurses). Every record is validated: a missing key, a non-positive
count, a NaN, or a solve rate outside [0, 1] raises ValueError naming the file, the field and the
allowed range (``skip_invalid=True`` turns that into a warning and drops the record). The fits only
ever see the recorded numbers (params = non-embedding N, train_flops = C, tokens = D); nothing is
re-derived here. The schema, the validator and the atomic writers belong to ``scaling.run_json``
(the one owner of ``run.json``); their names are re-exported here for existing callers.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import warnings

import numpy as np

from scaling.run_json import (  # noqa: F401  (re-exported: the run.json owner's API)
    POSITIVE_KEYS,
    REQUIRED_KEYS,
    RUN_JSON,
    SEARCH_KEYS,
    validate_record,
    write_json,
    write_text,
)
from scaling.run_json import check_positive as _positive

COMPUTE_KEYS = {"flops": "search_flops_per_problem", "evals": "evals_per_problem",
                "simulations": "simulations"}  # axis name -> search_evals field


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
