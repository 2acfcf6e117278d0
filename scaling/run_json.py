"""``run.json``, the record of one run, and the atomic writer of every JSON result file.

This module owns the record: its schema (``RunRecord``, ``SearchEval``), the identity of a
``search_evals`` entry (``entry_key``), how entries merge (``merge_entries``), the validator
(``validate_record``) and the writes (``write_record``, ``merge_search_evals``). Nothing else
writes ``run.json``: ``train.run_record.write_run_record`` builds a training run's record and
``search.sweep.append_to_run_record`` merges search results, both through here; ``scaling.records``
reads and validates with it. It imports nothing of ours and no JAX, so every layer may import it
(it sits on the ground floor, docs/architecture.md); callers decide which process writes.

Every JSON or text result file of the repository goes through ``write_text`` / ``write_json``: a
same-directory temp file, then ``os.replace``, so a reader never sees half a file.
"""

# No ``from __future__ import annotations``: TypedDict must see ``NotRequired`` to derive the keys.
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

RUN_JSON = "run.json"


class SearchEval(TypedDict):
    """One measurement in ``run.json["search_evals"]`` (``search.sweep.run_sweep`` writes them;
    ``train.ttt`` adds ``epochs``). ``solve_rate_ci`` is the 95% Wilson interval."""

    split: str  # a search.sweep split spec ("g24:test:100", "tsllm362")
    method: str  # a search.sweep variant ("mcts", "mcts_tree", "sample_pass", ...)
    simulations: int  # the budget B (module docstring of search/sweep.py)
    evals_per_problem: float  # network evaluations (or generated states) actually spent
    search_flops_per_problem: float  # 0 for network-free methods
    solve_rate: float  # in [0, 1]
    num_problems: int
    network: NotRequired[str]  # a label, not an identity (entry_key)
    solve_rate_ci: NotRequired[list[float]]
    solve_rate_ci_clopper_pearson: NotRequired[list[float]]
    wall_time_s: NotRequired[float]
    slots: NotRequired[int]  # Rules.n_max of the searched states (search.play.slot_count)
    epochs: NotRequired[int]  # train.ttt entries only


class RunRecord(TypedDict):
    """``run.json`` (``REQUIRED_KEYS``, checked by ``validate_record``). ``tokens`` counts every
    token position trained on (examples x sequence length, padding included); ``train_flops`` is
    ``flops_per_token * tokens``; ``params`` is the non-embedding count N the fits use."""

    name: str
    config: dict[str, Any]
    params: int
    params_total: int
    params_embedding: int
    flops_per_token: float
    train_flops: float
    tokens: int
    steps: int
    final_metrics: dict[str, float]
    search_evals: list[SearchEval]
    wall_time_s: float
    device_kind: str
    device_count: int
    git_commit: str | None
    status: NotRequired[str]  # completed | preempted | time_limit (training loops)
    exclusion: NotRequired[dict[str, int]]  # eval set -> problems kept out of training


REQUIRED_KEYS = tuple(k for k in RunRecord.__annotations__ if k in RunRecord.__required_keys__)
POSITIVE_KEYS = ("params", "params_total", "flops_per_token", "train_flops", "tokens", "steps")
SEARCH_KEYS = tuple(k for k in SearchEval.__annotations__ if k in SearchEval.__required_keys__)
ENTRY_KEY = ("split", "method", "simulations", "epochs")


# ----------------------------------------------------------------------------- atomic writes


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a same-directory temp file, then ``os.replace``)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path: str, obj: Any, **dump_kwargs) -> None:
    """``json.dumps(obj, indent=2, **dump_kwargs)`` written atomically (``write_text``)."""
    write_text(path, json.dumps(obj, indent=2, **dump_kwargs))


# ----------------------------------------------------------------------------- entries


def entry_key(entry: Mapping[str, Any]) -> tuple:
    """Which measurement a ``search_evals`` entry is: its ``ENTRY_KEY`` values (None if absent;
    ``epochs`` only in ``train.ttt`` entries).

    Entries carry no checkpoint identity, and ``network`` is a label, not an identity: the same
    checkpoint is labelled with its config name by ``--mode=eval`` and the training loops, with
    its directory name by ``scripts/sweep_eval.py``, and network-free methods carry whatever
    label the caller had. A run.json records one run, so a later entry of the same split, method
    and budget supersedes: the newest checkpoint (or search options) wins, as readers key the
    points (``scaling`` curves per (split, method), ``train.compare`` rows, the sweep_eval cache).
    """
    return tuple(entry.get(k) for k in ENTRY_KEY)


def merge_entries(old: Sequence[Mapping[str, Any]],
                  new: Sequence[Mapping[str, Any]]) -> list[dict]:
    """``old`` then ``new`` with one entry per ``entry_key``: an entry replaces every earlier one
    of its measurement (duplicates already in ``old`` included) and is placed last; the entries of
    other measurements keep their order."""
    out: dict[tuple, Any] = {}
    for entry in [*old, *new]:
        key = entry_key(entry)
        out.pop(key, None)
        out[key] = entry
    return list(out.values())


# ----------------------------------------------------------------------------- read / write


def read_record(workdir: str) -> dict | None:
    """``<workdir>/run.json`` as written (not validated), or None when there is none."""
    path = os.path.join(workdir, RUN_JSON)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_record(workdir: str, record: Mapping[str, Any]) -> str:
    """``record`` as ``<workdir>/run.json`` (atomic, sorted keys); returns the path."""
    path = os.path.join(workdir, RUN_JSON)
    write_json(path, dict(record), sort_keys=True)
    return path


def merge_search_evals(workdir: str, entries: Sequence[Mapping[str, Any]]) -> bool:
    """Merge ``entries`` into the ``search_evals`` of ``<workdir>/run.json`` if it exists
    (``merge_entries``: measuring the same thing again replaces, never duplicates)."""
    record = read_record(workdir)
    if record is None:
        return False
    record["search_evals"] = merge_entries(record.get("search_evals", []), entries)
    write_record(workdir, record)
    return True


# ----------------------------------------------------------------------------- validation


def check_positive(value, where: str, allow_zero: bool = False) -> float:
    """``value`` as a float if it is a finite number > 0 (>= 0 with ``allow_zero``)."""
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
        check_positive(rec[key], f"{source}: {key}")
    if not isinstance(rec["final_metrics"], dict):
        raise ValueError(f"{source}: final_metrics must be an object of metric -> number.")
    if not isinstance(rec["search_evals"], list):
        raise ValueError(f"{source}: search_evals must be a list, got "
                         f"{type(rec['search_evals']).__name__}.")
    for i, ev in enumerate(rec["search_evals"]):
        where = f"{source}: search_evals[{i}]"
        if not isinstance(ev, dict) or any(k not in ev for k in SEARCH_KEYS):
            raise ValueError(f"{where} must be an object with keys {SEARCH_KEYS}.")
        check_positive(ev["simulations"], f"{where}.simulations")
        # Network-free methods (exhaustive search) record 0 FLOPs; an empty split 0 problems.
        for key in ("evals_per_problem", "search_flops_per_problem", "num_problems"):
            check_positive(ev[key], f"{where}.{key}", allow_zero=True)
        rate = ev["solve_rate"]
        if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(f"{where}.solve_rate={rate!r} is invalid; allowed [0, 1].")
    return rec
