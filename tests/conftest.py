"""Test-wide setup: 8 fake CPU devices, set before jax is imported anywhere."""
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests never touch the network (HF hub, TFDS GCS).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("NO_GCE_CHECK", "true")

import pathlib  # noqa: E402

import pytest  # noqa: E402

from launch import host  # noqa: E402

host.tune_malloc()  # keep XLA:CPU's freed buffers mapped between calls (launch/host.py)

SHARED_BENCH = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"


@pytest.fixture
def shared_bench() -> pathlib.Path:
    """The read-only reference data folder `../shared/benchmarks`; skips when absent."""
    if not SHARED_BENCH.is_dir():
        pytest.skip(f"reference data folder {SHARED_BENCH} is absent")
    return SHARED_BENCH
