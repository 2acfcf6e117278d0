"""Multi-host start: ``jax.distributed.initialize`` behind an explicit flag, with clear failures.

``train.main`` calls ``initialize_from_flags()`` before anything touches jax devices. Nothing
happens unless ``--multihost`` (or ``ZERO24_MULTIHOST=1``) is given; then the processes are wired
up in one of two ways:

- explicit: ``--coordinator_address=host:port --num_processes=N --process_id=i`` (or the env vars
  ``ZERO24_COORDINATOR_ADDRESS``, ``ZERO24_NUM_PROCESSES``, ``ZERO24_PROCESS_ID``; flags win).
  Process 0 hosts the coordinator on that port. ``python -m launch.local`` sets the env vars.
- auto-detect: no explicit values on a SLURM job step (``srun``) or a Cloud TPU VM; JAX reads the
  topology from the environment (SLURM_* variables / TPU metadata). Partial explicit values are
  allowed there and override the detected ones (e.g. the coordinator port).

No silent fallback: explicit values without ``--multihost``, ``--multihost`` with neither explicit
values nor a detected cluster, partial values off-cluster, a process id outside 0..N-1, and a
multi-task SLURM step or multi-worker TPU VM without ``--multihost`` (N copies of a single-process
run writing one workdir) are all errors (``MultihostError``, a ``ValueError``; ``train.main`` exits
with status 2). After connecting, every process checks that all agree on the process count and
have the same number of local devices; a disagreement is an error on every process.

Timeout: ``--multihost_timeout`` seconds (default 300) to connect all processes, with a "still
connecting to <coordinator>" line every 30 s meanwhile. JAX's own timeout
aborts the process from C++ with a terse DEADLINE_EXCEEDED; a watchdog thread fires first, prints
what was waited for and what to check, and exits with status ``EXIT_TIMEOUT`` (3). A process that
registers an id the coordinator does not expect (e.g. ``--process_id=2`` when process 0 says
``--num_processes=2``) is aborted by JAX at once with "Unexpected task registered with task=2";
the coordinator then hits the watchdog timeout with the message below.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from collections.abc import Mapping

from absl import flags, logging

ENV_PREFIX = "ZERO24_"
EXIT_TIMEOUT = 3
PROGRESS_EVERY_S = 30.0  # "still connecting" lines (env ZERO24_MULTIHOST_PROGRESS_S overrides)
# JAX's own init timeout is set this much later than ours, so our watchdog message comes first.
_JAX_TIMEOUT_GRACE_S = 30

_MULTIHOST = flags.DEFINE_bool(
    "multihost", None, "Start JAX's multi-host runtime (jax.distributed.initialize). Default: env "
    "ZERO24_MULTIHOST (1/true), else off.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0's coordinator (explicit mode). Default: "
    "env ZERO24_COORDINATOR_ADDRESS.")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Total processes (explicit mode). Default: env ZERO24_NUM_PROCESSES.")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's id in 0..num_processes-1 (explicit mode). Default: env "
    "ZERO24_PROCESS_ID.")
_TIMEOUT = flags.DEFINE_integer(
    "multihost_timeout", None, "Seconds to wait for all processes to connect. Default: env "
    "ZERO24_MULTIHOST_TIMEOUT, else 300.")


class MultihostError(ValueError):
    """Misconfigured multi-host start (bad or inconsistent flags, processes that disagree)."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """How this process joins: ``method`` is "explicit", "slurm" or "tpu"; None = detected."""

    method: str
    coordinator_address: str | None
    num_processes: int | None
    process_id: int | None
    timeout_s: int


def detect_cluster(env: Mapping[str, str]) -> str | None:
    """"slurm" inside an srun job step, "tpu" on a multi-worker Cloud TPU VM, else None.

    Same variables JAX's own detectors read; a lone ``sbatch`` shell (no step) is not a cluster.
    """
    slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
             "SLURM_LOCALID")
    if all(k in env for k in slurm):
        return "slurm"
    if env.get("TPU_WORKER_HOSTNAMES") or env.get("TPU_PROCESS_ADDRESSES") or \
            env.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "tpu"
    return None


def _cluster_size(cluster: str, env: Mapping[str, str]) -> int:
    if cluster == "slurm":
        return int(env["SLURM_NTASKS"])
    hosts = env.get("TPU_WORKER_HOSTNAMES") or env.get("TPU_PROCESS_ADDRESSES") or ""
    return max(1, len([h for h in hosts.split(",") if h.strip()]))


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(ENV_PREFIX + name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError as e:
        raise MultihostError(f"{ENV_PREFIX}{name}={raw!r} is not an integer.") from e


def _check_address(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise MultihostError(f"--coordinator_address={address!r} is invalid; allowed host:port "
                             "with port in 1..65535 (e.g. 10.0.0.1:12355).")


def resolve(multihost: bool | None = None, coordinator_address: str | None = None,
            num_processes: int | None = None, process_id: int | None = None,
            timeout_s: int | None = None, env: Mapping[str, str] | None = None) -> Plan | None:
    """Flag values (None = unset, then ``ZERO24_*`` env) -> a ``Plan``, or None for one process.

    Raises ``MultihostError`` for every misconfiguration listed in the module docstring.
    """
    env = os.environ if env is None else env
    if multihost is None:
        raw = env.get(ENV_PREFIX + "MULTIHOST", "").lower()
        if raw not in ("", "0", "1", "false", "true"):
            raise MultihostError(f"{ENV_PREFIX}MULTIHOST={raw!r}; allowed 0/1/true/false.")
        multihost = raw in ("1", "true")
    if coordinator_address is None:
        coordinator_address = env.get(ENV_PREFIX + "COORDINATOR_ADDRESS") or None
    num_processes = _env_int(env, "NUM_PROCESSES") if num_processes is None else num_processes
    process_id = _env_int(env, "PROCESS_ID") if process_id is None else process_id
    timeout_s = _env_int(env, "MULTIHOST_TIMEOUT") if timeout_s is None else timeout_s
    timeout_s = 300 if timeout_s is None else timeout_s
    given = {"--coordinator_address": coordinator_address, "--num_processes": num_processes,
             "--process_id": process_id}
    set_names = [k for k, v in given.items() if v is not None]
    cluster = detect_cluster(env)
    if not multihost:
        if set_names:
            raise MultihostError(f"{', '.join(set_names)} given without --multihost; add "
                                 "--multihost (or ZERO24_MULTIHOST=1) or drop them.")
        if cluster and _cluster_size(cluster, env) > 1:
            raise MultihostError(
                f"this is one of {_cluster_size(cluster, env)} {cluster} processes but "
                "--multihost is off: each would train alone into the same workdir. Add "
                "--multihost (or ZERO24_MULTIHOST=1), or start a single process.")
        return None
    if timeout_s < 1:
        raise MultihostError(f"--multihost_timeout={timeout_s} is out of range; allowed >= 1 s.")
    if num_processes is not None and num_processes < 1:
        raise MultihostError(f"--num_processes={num_processes} is out of range; allowed >= 1.")
    if process_id is not None and (process_id < 0 or (num_processes is not None and
                                                      process_id >= num_processes)):
        hi = "num_processes-1" if num_processes is None else num_processes - 1
        raise MultihostError(f"--process_id={process_id} is out of range; allowed 0..{hi}.")
    if coordinator_address is not None:
        _check_address(coordinator_address)
    if len(set_names) == 3:
        return Plan("explicit", coordinator_address, num_processes, process_id, timeout_s)
    if cluster is None:
        missing = [k for k, v in given.items() if v is None]
        raise MultihostError(
            f"--multihost needs {', '.join(missing)}: no SLURM job step or Cloud TPU VM was "
            "detected to supply them (pass all of --coordinator_address, --num_processes, "
            "--process_id, or use python -m launch.local for processes on this machine).")
    return Plan(cluster, coordinator_address, num_processes, process_id, timeout_s)


def _timeout_message(plan: Plan) -> str:
    who = "all processes" if plan.num_processes is None else f"{plan.num_processes} processes"
    me = "?" if plan.process_id is None else plan.process_id
    where = plan.coordinator_address or f"the {plan.method}-detected coordinator"
    return (f"error: multihost start timed out after {plan.timeout_s} s: process {me} waited for "
            f"{who} to connect to {where} (mode {plan.method}). Check that the coordinator "
            "(process 0) is running and reachable from this host on that port, that every "
            "process got the same --num_processes and a distinct --process_id, and raise "
            "--multihost_timeout if starts are just slow.")


def initialize(plan: Plan) -> None:
    """Connects this process (watchdog-guarded) and checks that all processes agree."""
    import jax

    if jax.distributed.is_initialized():
        raise MultihostError("jax.distributed is already initialized in this process; "
                             "initialize_from_flags() must run once, before any jax device use.")
    t0 = time.monotonic()

    def fire() -> None:  # runs while the main thread blocks in C++ (which releases the GIL)
        print(_timeout_message(plan), file=sys.stderr, flush=True)
        os._exit(EXIT_TIMEOUT)

    watchdog = threading.Timer(plan.timeout_s, fire)
    watchdog.daemon = True
    watchdog.start()
    connected = threading.Event()
    threading.Thread(target=_progress, args=(plan, t0, connected), daemon=True).start()
    try:
        jax.distributed.initialize(
            coordinator_address=plan.coordinator_address, num_processes=plan.num_processes,
            process_id=plan.process_id,
            cluster_detection_method="deactivate" if plan.method == "explicit" else None,
            initialization_timeout=plan.timeout_s + _JAX_TIMEOUT_GRACE_S)
        _check_agreement(plan)
    finally:
        watchdog.cancel()
        connected.set()
    logging.info("multihost (%s): process %d of %d (pid %d), %d local / %d global devices, "
                 "connected in %.1f s", plan.method, jax.process_index(), jax.process_count(),
                 os.getpid(), jax.local_device_count(), jax.device_count(), time.monotonic() - t0)


def _progress(plan: Plan, t0: float, done: threading.Event) -> None:
    """Every ``PROGRESS_EVERY_S`` until connected: a line naming what is waited for (the
    default timeout is minutes, and JAX prints nothing meanwhile)."""
    where = plan.coordinator_address or f"the {plan.method}-detected coordinator"
    me = "?" if plan.process_id is None else plan.process_id
    every = float(os.environ.get(ENV_PREFIX + "MULTIHOST_PROGRESS_S", PROGRESS_EVERY_S))
    while not done.wait(every):
        print(f"[multihost] process {me}: still connecting to {where} after "
              f"{time.monotonic() - t0:.0f} s (gives up after {plan.timeout_s} s, "
              "--multihost_timeout)", file=sys.stderr, flush=True)


def _check_agreement(plan: Plan) -> None:
    """All processes have equally many devices and were told the same process count.

    Device counts come from the global device list (no collective needed, and an allgather
    would fail on unequal counts); the claimed counts are allgathered, so all fail together.
    """
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    per_process = np.bincount([d.process_index for d in jax.devices()],
                              minlength=jax.process_count())
    if (per_process != per_process[0]).any():
        raise MultihostError(
            f"processes have different local device counts {per_process.tolist()} (by process "
            "index); use hosts with the same number of accelerators (or the same "
            "--xla_force_host_platform_device_count on CPU).")
    claimed = plan.num_processes or jax.process_count()
    table = np.asarray(multihost_utils.process_allgather(np.array([claimed], np.int32)))
    if (table.reshape(-1) != jax.process_count()).any():
        raise MultihostError(
            f"mismatched process counts: the coordinator runs {jax.process_count()} processes but "
            f"they were told --num_processes={table.reshape(-1).tolist()} (by process index); "
            "give every process the same --num_processes.")


def initialize_from_flags() -> Plan | None:
    """``resolve`` the absl flags / env, then ``initialize``; returns the plan (None = 1 process).

    Call after flag parsing and before anything that touches jax devices.
    """
    plan = resolve(_MULTIHOST.value, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                   _TIMEOUT.value)
    if plan is not None:
        initialize(plan)
    return plan
