"""Helpers shared by the benchmark modules: best-of-k timing and JSON output."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from launch import host

host.tune_malloc()  # every benchmark imports this module: same allocator policy for both sides


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """(best wall seconds, best process-CPU seconds, last result) over ``repeats`` calls.

    Best-of-k because the machines these run on are shared: the minimum is the least disturbed.
    """
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(max(1, repeats)):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, out


def write_json(result: dict, path: str) -> dict:
    """Write ``result`` to ``path`` (creating folders) and return it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    return result
