"""Test-wide setup: 8 fake CPU devices, set before jax is imported anywhere."""
import os

# LLVM at -O0 for the tests' programs: the suite is mostly compiling tiny models (an update of
# them runs in milliseconds either way), and -O0 compiles a train step ~1.5x faster. Results
# stay within float reassociation; a user's XLA_FLAGS that sets the level wins.
_level = "" if "xla_backend_optimization_level" in os.environ.get("XLA_FLAGS", "") else \
    " --xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8" + _level
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

# JAX's persistent compilation cache, one folder for the whole test session: the pytest process
# (or pytest-xdist's controller, which imports this file before it starts the workers) creates it
# and names it in the environment, so every worker and every subprocess a test starts
# (train.main, search.eval, the notebook kernel) loads the executables that another process
# already compiled for the same tiny configs. Removed at exit by the process that made it.
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    _jax_cache = tempfile.mkdtemp(prefix="zero24-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _jax_cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    atexit.register(shutil.rmtree, _jax_cache, ignore_errors=True)

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))

SHARED_BENCH = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"


@pytest.fixture
def shared_bench() -> pathlib.Path:
    """The read-only reference data folder `../shared/benchmarks`; skips when absent."""
    if not SHARED_BENCH.is_dir():
        pytest.skip(f"reference data folder {SHARED_BENCH} is absent")
    return SHARED_BENCH
