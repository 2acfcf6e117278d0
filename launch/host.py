"""Host-process tuning for XLA:CPU: keep freed heap memory instead of returning it to the OS.

Why: each call of a jitted step allocates its temporaries and outputs with ``malloc`` and frees
them at the end. glibc's default policy gives the top of the heap back to the kernel once more
than 128 KiB is free (``M_TRIM_THRESHOLD``) and serves large blocks with fresh ``mmap`` pages
(``M_MMAP_THRESHOLD``), so the next call page-faults and zero-fills the same memory again. On the
2-core sandbox this made a d2 train step (B=16, L=64) take 32 ms instead of 23 ms, and it hits
the search and the benchmarks alike. Raising both thresholds once per process keeps the pages
(the resident size stays at the high-water mark, which a training process reaches anyway).

Only glibc (Linux) has ``mallopt``; elsewhere, or with ``ZERO24_MALLOC_TUNING=0`` in the
environment, or when the user already set ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_``,
nothing is changed. Called at start-up by the entry points allowed to import ``launch``:
``train.main``, ``benchmarks/common.py`` (so both frameworks of a comparison get it) and
``tests/conftest.py``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_THRESHOLD = -3
_TRIM_BYTES = 2**31 - 1  # effectively never trim
_MMAP_BYTES = (2**30, 32 * 2**20)  # some glibc builds cap it at HEAP_MAX_SIZE / 2 (32 MiB)

_applied: bool | None = None


def tune_malloc() -> bool:
    """Raise glibc's trim and mmap thresholds for this process; True if they are now set.

    Idempotent; safe to call before or after jax is imported.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("ZERO24_MALLOC_TUNING", "1") == "0":
        return False
    if any(k in os.environ for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")):
        return False  # the user chose; glibc already read them at start-up
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and friends: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # The mmap threshold first: if glibc refuses every value, nothing has been changed at all.
    if not any(mallopt(M_MMAP_THRESHOLD, n) == 1 for n in _MMAP_BYTES):
        return False
    _applied = mallopt(M_TRIM_THRESHOLD, _TRIM_BYTES) == 1
    return _applied


DEFAULT_CACHE = os.path.join("~", ".cache", "zero24", "jax")


def compile_cache(setting: str = "auto") -> str:
    """Turns on JAX's persistent compilation cache; returns its folder ("" when off).

    ``setting``: "auto" (``$JAX_COMPILATION_CACHE_DIR``, else ``~/.cache/zero24/jax``), a
    folder, or "" (off). Why on by default: every run of the same model recompiles the same
    train, eval and search programs (8-15 s of a sweep-sized run's start); the cache serves
    them from disk on the second start. Programs that compile in under 0.1 s are not worth a file.
    """
    import jax

    if setting == "auto":
        setting = os.environ.get("JAX_COMPILATION_CACHE_DIR") or DEFAULT_CACHE
    if not setting:
        return ""
    path = os.path.expanduser(setting)
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    return path


def quiet_backend_probe() -> None:
    """Silences jax's "Unable to initialize backend 'tpu'" line: absl entry points show INFO, and
    jax probes for a TPU (and logs the miss) on every CPU or GPU machine. Real failures of the
    backend a run uses still raise."""
    import logging

    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
