"""Helpers shared by the benchmark modules: best-of-k timing and JSON output."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from launch import host
from scaling import run_json

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


def best_wall(fn: Callable[[], Any], repeats: int, warmup_calls: int = 0,
              warmup_s: float = 0.0) -> float:
    """Best-of-``repeats`` wall seconds after a warm-up of >= ``warmup_calls`` calls lasting
    >= ``warmup_s`` (compilation, allocator and kernel caches stay out of the timing)."""
    start, calls = time.perf_counter(), 0
    while calls < warmup_calls or time.perf_counter() - start < warmup_s:
        fn()
        calls += 1
    return best_time(fn, repeats)[0]


def write_json(result: dict, path: str) -> dict:
    """Write ``result`` to ``path`` (creating folders) and return it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    run_json.write_json(path, result)
    return result


def jax_gemm_flop_s(dtype: str = "float32", n: int = 1024, repeats: int = 10) -> float:
    """FLOP/s of one jitted [n, n] @ [n, n] matmul (fp32 accumulation), best of ``repeats`` after
    a warm-up: the compute roof that the network-bound rows of bench_model / bench_search are
    held against (their printed *ceilings*)."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), dtype)
    mm = jax.jit(lambda x: jnp.dot(x, x, preferred_element_type=jnp.float32))
    return 2 * n**3 / best_wall(lambda: mm(a).block_until_ready(), repeats, warmup_calls=3)
