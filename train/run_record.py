"""A training run's ``run.json`` record, built from what the run knows (``write_run_record``).

The schema (``scaling.run_json.RunRecord``: ``name, config, params (non-embedding N),
params_total, params_embedding, flops_per_token, train_flops (C = flops_per_token * tokens),
tokens (D), steps, final_metrics, search_evals, wall_time_s, device_kind, device_count,
git_commit``), the merge and the atomic write belong to ``scaling.run_json``; this module fills
the record in. ``tokens`` counts every token position the model was trained on (examples *
sequence length, padding included: the model computes on it). ``search_evals`` entries that
``search.sweep`` appended are preserved (``search_evals=None``), or merged with the writer's own
(``merge_search_evals=True``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import jax

from scaling import run_json
from scaling.run_json import REQUIRED_KEYS, RUN_JSON  # noqa: F401  (re-exported)


def git_commit(repo_dir: str | None = None) -> str | None:
    """HEAD of the repository holding this code (``None`` outside git); ``+dirty`` if modified."""
    repo_dir = repo_dir or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=repo_dir, capture_output=True,
                                        text=True, timeout=10, check=True).stdout.strip()
        head = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no"))
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:
        return x.item()
    return x


read_run_record = run_json.read_record


def write_run_record(
    workdir: str, *, name: str, config: Mapping[str, Any], param_counts: Mapping[str, int],
    flops_per_token: float, tokens: int, steps: int, final_metrics: Mapping[str, float],
    wall_time_s: float, search_evals: Sequence[Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None, merge_search_evals: bool = False,
) -> str:
    """Writes (or updates) ``<workdir>/run.json`` on process 0; returns its path.

    ``param_counts`` is ``scaling.flops.param_counts(cfg)``: keys total, embedding, non_embedding.
    ``search_evals=None`` keeps the entries already in the file; ``merge_search_evals=True``
    keeps them too, except those that ``search_evals`` measures again
    (``scaling.run_json.merge_entries``: same split, method, budget), which the new entries
    replace.
    """
    path = os.path.join(workdir, RUN_JSON)
    if jax.process_index() != 0:
        return path
    for key in ("total", "embedding", "non_embedding"):
        if key not in param_counts:
            raise ValueError(f"param_counts lacks {key!r}; got keys {sorted(param_counts)}.")
    if search_evals is None or merge_search_evals:
        old = (read_run_record(workdir) or {}).get("search_evals", [])
        search_evals = old if search_evals is None else run_json.merge_entries(old, search_evals)
    devices = jax.devices()
    record = {
        "name": name,
        "config": _jsonable(dict(config)),
        "params": int(param_counts["non_embedding"]),
        "params_total": int(param_counts["total"]),
        "params_embedding": int(param_counts["embedding"]),
        "flops_per_token": float(flops_per_token),
        "train_flops": float(flops_per_token) * int(tokens),
        "tokens": int(tokens),
        "steps": int(steps),
        "final_metrics": {k: float(v) for k, v in final_metrics.items()},
        "search_evals": _jsonable(list(search_evals)),
        "wall_time_s": float(wall_time_s),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "git_commit": git_commit(),
        **_jsonable(dict(extra or {})),
    }
    return run_json.write_record(workdir, record)
