"""launch/host.py: the glibc allocator tuning that keeps XLA:CPU buffers mapped between steps."""

import ctypes
import ctypes.util
import os
import subprocess
import sys

import pytest

_SNIPPET = "from launch import host; print(host.tune_malloc(), host.tune_malloc())"


def _run(env_extra: dict) -> str:
    """Both calls of tune_malloc() in a fresh interpreter with a clean allocator environment."""
    mine = ("MALLOC_", "ZERO24_MALLOC_TUNING")
    env = {k: v for k, v in os.environ.items() if not k.startswith(mine)} | env_extra
    out = subprocess.run([sys.executable, "-c", _SNIPPET], env=env, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def _has_glibc_mallopt() -> bool:
    try:
        return hasattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "mallopt")
    except OSError:
        return False


@pytest.mark.skipif(not (sys.platform.startswith("linux") and _has_glibc_mallopt()),
                    reason="needs glibc mallopt")
def test_tune_malloc_applies_once_per_process_on_glibc():
    assert _run({}) == "True True"  # second call is the cached answer


def test_tune_malloc_respects_opt_out_and_user_settings():
    assert _run({"ZERO24_MALLOC_TUNING": "0"}) == "False False"
    assert _run({"MALLOC_TRIM_THRESHOLD_": "131072"}) == "False False"
