r"""N local CPU processes as N "hosts": the multi-host code path of a real cluster, on one machine.

    python -m launch.local --num_processes=2 --devices_per_process=4 -- \
        --config=train/configs/g24_supervised.py:runlocal --workdir=runs/mh

Every process runs ``python -m train.main <args after -->`` (``--module`` picks another entry
point) with ``XLA_FLAGS=--xla_force_host_platform_device_count=K`` and the ``ZERO24_*`` variables
that ``launch.multihost`` reads (multihost on, coordinator ``127.0.0.1:<free port>``, process count
and id). Process 0 hosts JAX's coordinator; the processes then see one global mesh of N*K devices,
exactly as N GPU/TPU hosts would.

Their output is streamed line by line with a ``[p<i>]`` prefix (and copied to ``<dir>/p<i>.log``
with ``--process_log_dir=<dir>``). The first process that exits non-zero ends the run: the
others get SIGTERM and, after ``--kill_grace_s``, SIGKILL (a peer cannot finish a collective
without the dead one). The launcher exits with that process's status; with 124 when ``--timeout``
(seconds, whole run) passes first. Children also die when the launcher itself is killed (Linux).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

from absl import app, flags

EXIT_TIMEOUT = 124
_DEVICE_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S*")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def process_env(base: Mapping[str, str], process_id: int, num_processes: int,
                devices_per_process: int, coordinator: str, init_timeout_s: int) -> dict[str, str]:
    """The environment of local process ``process_id`` (CPU, K fake devices, multihost vars)."""
    env = dict(base)
    xla = _DEVICE_FLAG.sub("", env.get("XLA_FLAGS", "")).strip()
    env["XLA_FLAGS"] = f"{xla} --xla_force_host_platform_device_count={devices_per_process}".strip()
    env.update(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", ZERO24_MULTIHOST="1",
               ZERO24_COORDINATOR_ADDRESS=coordinator, ZERO24_NUM_PROCESSES=str(num_processes),
               ZERO24_PROCESS_ID=str(process_id), ZERO24_MULTIHOST_TIMEOUT=str(init_timeout_s))
    return env


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the launcher dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _pump(proc: subprocess.Popen, prefix: str, out: TextIO, log: TextIO | None,
          lock: threading.Lock) -> None:
    for line in proc.stdout:  # type: ignore[union-attr]
        with lock:
            out.write(f"{prefix}{line}" if line.endswith("\n") else f"{prefix}{line}\n")
            out.flush()
        if log is not None:
            log.write(line)
            log.flush()


def _stop(procs: Sequence[subprocess.Popen], grace_s: float) -> None:
    """SIGTERM the live processes, then SIGKILL whatever is still alive after ``grace_s``."""
    live = [p for p in procs if p.poll() is None]
    for p in live:
        p.terminate()
    deadline = time.monotonic() + grace_s
    for p in live:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def launch(args: Sequence[str], num_processes: int, devices_per_process: int, *,
           module: str | None = "train.main", timeout_s: float = 3600, init_timeout_s: int = 120,
           kill_grace_s: float = 5.0, port: int = 0, log_dir: str | None = None,
           compilation_cache_dir: str | None = None, out: TextIO | None = None) -> int:
    """Runs ``python -m module *args`` (``python *args`` when ``module`` is None or "") as
    ``num_processes`` local hosts; returns the exit status.

    0 when all processes succeed; otherwise the status of the first process that failed, or
    ``EXIT_TIMEOUT`` (124) when ``timeout_s`` passed first (module docstring).
    ``compilation_cache_dir``: JAX's persistent compilation cache for all processes, so a
    relaunch (e.g. a resume) loads its executables instead of compiling them again.
    """
    for name, value, lo in (("num_processes", num_processes, 1),
                            ("devices_per_process", devices_per_process, 1),
                            ("timeout", timeout_s, 1), ("init_timeout", init_timeout_s, 1)):
        if value < lo:
            raise ValueError(f"--{name}={value} is out of range; allowed >= {lo}.")
    if not 0 <= port <= 65535:
        raise ValueError(f"--port={port} is out of range; allowed 0..65535 (0 = pick a free one).")
    out = out or sys.stdout
    coordinator = f"127.0.0.1:{port or free_port()}"
    command = [sys.executable, *(["-m", module] if module else []), *args]
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
    lock, procs, pumps, logs = threading.Lock(), [], [], []
    out.write(f"[launch.local] {num_processes} processes x {devices_per_process} CPU devices, "
              f"coordinator {coordinator}: {' '.join(command)}\n")
    try:
        for i in range(num_processes):
            env = process_env(os.environ, i, num_processes, devices_per_process, coordinator,
                              init_timeout_s)
            if compilation_cache_dir:
                env.update(JAX_COMPILATION_CACHE_DIR=os.path.abspath(compilation_cache_dir),
                           JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
            log = open(os.path.join(log_dir, f"p{i}.log"), "w", encoding="utf-8") \
                if log_dir else None
            logs.append(log)
            proc = subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, bufsize=1,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            procs.append(proc)
            pump = threading.Thread(target=_pump, args=(proc, f"[p{i}] ", out, log, lock),
                                    daemon=True)
            pump.start()
            pumps.append(pump)
        return _supervise(procs, timeout_s, kill_grace_s, out, lock)
    finally:
        _stop(procs, kill_grace_s)
        for pump in pumps:
            pump.join(timeout=5)
        for log in logs:
            if log is not None:
                log.close()


def _supervise(procs: Sequence[subprocess.Popen], timeout_s: float, kill_grace_s: float,
               out: TextIO, lock: threading.Lock) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        codes = [p.poll() for p in procs]
        failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            i, code = failed[0]
            with lock:
                out.write(f"[launch.local] process {i} exited with status {code}; stopping the "
                          "others.\n")
            _stop(procs, kill_grace_s)
            return code if code > 0 else 128 - code  # killed by signal s: 128 + s, as a shell
        if all(c == 0 for c in codes):
            with lock:
                out.write(f"[launch.local] all {len(procs)} processes finished.\n")
            return 0
        if time.monotonic() > deadline:
            with lock:
                out.write(f"[launch.local] timeout: still running after {timeout_s:g} s; stopping "
                          f"all processes (raise --timeout for longer runs).\n")
            _stop(procs, kill_grace_s)
            return EXIT_TIMEOUT
        time.sleep(0.1)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI (module docstring). Flags are defined here, not at import: ``launch.multihost`` owns
    ``--num_processes`` in processes that import both."""
    num = flags.DEFINE_integer("num_processes", 2, "Local processes (simulated hosts).")
    dev = flags.DEFINE_integer("devices_per_process", 4, "Fake CPU devices per process.")
    module = flags.DEFINE_string("module", "train.main",
                                 "Module each process runs (python -m); '' runs python <args>.")
    timeout = flags.DEFINE_float("timeout", 3600, "Seconds for the whole run before stopping it.")
    init_timeout = flags.DEFINE_integer("init_timeout", 120,
                                        "Seconds for all processes to connect.")
    grace = flags.DEFINE_float("kill_grace_s", 5.0, "SIGTERM -> SIGKILL grace when stopping peers.")
    port = flags.DEFINE_integer("port", 0, "Coordinator port on 127.0.0.1 (0 = a free one).")
    log_dir = flags.DEFINE_string("process_log_dir", None,
                                  "Also write each process's output to <dir>/p<i>.log.")
    cache = flags.DEFINE_string("compilation_cache_dir", None,
                                "JAX persistent compilation cache shared by the processes.")

    run_cli(lambda args: launch(
        args, num.value, dev.value, module=module.value, timeout_s=timeout.value,
        init_timeout_s=init_timeout.value, kill_grace_s=grace.value, port=port.value,
        log_dir=log_dir.value, compilation_cache_dir=cache.value), argv)


def run_cli(fn: Callable[[list[str]], int], argv: Sequence[str] | None) -> None:
    """``app.run`` of ``fn(positional args) -> exit status``; ValueError -> message, status 2."""

    def run(args: list[str]) -> None:
        try:
            code = fn(args[1:])
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            code = 2
        sys.exit(code)

    app.run(run, argv)


if __name__ == "__main__":
    main()
