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

import atexit  # noqa: E402
import pathlib  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import pytest  # noqa: E402

from launch import host  # noqa: E402

host.tune_malloc()  # keep XLA:CPU's freed buffers mapped between calls (launch/host.py)

# JAX's persistent compilation cache in a folder of this test process (each pytest-xdist worker
# its own; subprocesses that want one set it in their env), removed at exit: a resumed run,
# --mode=eval on a finished run or a second run of the same tiny config re-creates its jitted
# functions, and then loads their executables instead of compiling them again.
import jax  # noqa: E402

if not jax.config.jax_compilation_cache_dir:  # unless JAX_COMPILATION_CACHE_DIR names one
    _jax_cache = tempfile.mkdtemp(prefix="zero24-test-jax-cache-")
    atexit.register(shutil.rmtree, _jax_cache, ignore_errors=True)
    jax.config.update("jax_compilation_cache_dir", _jax_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

SHARED_BENCH = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"


@pytest.fixture
def shared_bench() -> pathlib.Path:
    """The read-only reference data folder `../shared/benchmarks`; skips when absent."""
    if not SHARED_BENCH.is_dir():
        pytest.skip(f"reference data folder {SHARED_BENCH} is absent")
    return SHARED_BENCH
