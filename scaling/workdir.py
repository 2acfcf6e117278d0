"""Run-directory safety shared by every entry point: writable outputs, readable inputs, the lock.

Ground floor like ``scaling/records.py`` (imports nothing of ours), so ``train.main``,
``search.eval``, ``search.datasets`` and ``scaling.main`` run the same checks.

The workdir lock: ``<dir>/run.lock`` names the process that owns ``dir`` for the life of a run
(host, PID, start time, command). Two runs on one workdir would do all the work twice, double
every metrics row and interleave orbax writes, so a second run is refused at once (ValueError:
the entry points print one line and exit 2). Why these choices:
- The lock file is created with ``os.link`` of a finished temp file: creation is atomic and fails
  if the file exists (also on NFS), and a reader never sees half a lock.
- A lock whose PID is dead on this host (SIGKILL, OOM, a crashed node restarted) is stale and is
  taken over with a warning; "dead" includes a zombie and a PID reused by a process that started
  after the lock. Takeovers are serialised by ``flock`` on the directory, so two restarts racing
  for one stale lock cannot both win. A holder on another host cannot be checked from here; the
  message says which file to delete if that host is gone.
- Re-entrant per process: ``--mode=flagship`` holds ``<workdir>`` while its phases take the same
  directory again (and ``<workdir>/warm``, a directory of its own) in the same process.
- Multi-process runs lock on process 0 only (the others share its directory).
- A lock that created its directory removes it again if the run left nothing there, so a run
  refused by validation leaves no workdir behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator

LOCK_NAME = "run.lock"
_PID_START_SLACK_S = 2.0  # a lock is written after its process starts; clock-tick rounding
_log = logging.getLogger(__name__)


def ensure_writable(path: str, create: bool = True, flag: str = "--workdir") -> None:
    """Proves ``path`` can be written (``create=False``: without creating anything yet); the
    error names ``flag``."""
    full = os.path.abspath(path)
    probe_dir = full
    while not os.path.exists(probe_dir):  # nearest existing ancestor decides
        probe_dir = os.path.dirname(probe_dir)
    if not os.path.isdir(probe_dir) or not os.access(probe_dir, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}={path!r} is not writable ({probe_dir!r} is not a writable "
                         "directory); pass a directory you can write to.")
    if not create:
        return
    try:
        os.makedirs(full, exist_ok=True)
        # Host name + pid: processes of a multi-host run probe the same shared directory.
        probe = os.path.join(full, f".write_probe_{socket.gethostname()}_{os.getpid()}")
        with open(probe, "w", encoding="utf-8") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"{flag}={path!r} is not writable ({e.strerror}); pass a directory "
                         "you can write to.") from e


def check_input_file(path: str, flag: str) -> None:
    """A text input (csv) exists, is a file and decodes as UTF-8: errors name ``flag`` and the
    path, where the readers would fail later with a bare codec error or "does not exist"."""
    if os.path.isdir(path):
        raise ValueError(f"{flag}={path!r} is a directory; pass the path of a csv file.")
    if not os.path.exists(path):
        raise ValueError(f"{flag}={path!r} does not exist; pass the path of a csv file.")
    offset = 0
    try:
        with open(path, encoding="utf-8", newline="") as f:
            while chunk := f.read(1 << 20):
                offset += len(chunk)
    except UnicodeDecodeError as e:
        raise ValueError(f"{flag}={path!r} is not a text csv: byte 0x{e.object[e.start]:02x} "
                         f"near character {offset + e.start} is not UTF-8 (a binary or "
                         "compressed file?).") from None
    except OSError as e:
        raise ValueError(f"{flag}={path!r} cannot be read ({e.strerror}).") from None


def _is_primary() -> bool:
    """Process 0 of a multi-process jax run (or no jax at all: a single process)."""
    jax = sys.modules.get("jax")
    return jax is None or jax.process_index() == 0


def _read(path: str) -> dict | None:
    """The lock's holder, None if there is no lock file; {} if it cannot be parsed."""
    try:
        with open(path, encoding="utf-8") as f:
            out = json.load(f)
        return out if isinstance(out, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _proc_start(pid: int) -> float | None:
    """Unix start time of ``pid`` from /proc (None off Linux); -1.0 for a zombie (dead)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/stat", encoding="utf-8") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime"))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    if fields[0] in ("Z", "X"):
        return -1.0
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def pid_alive(pid: int, since: float | None = None) -> bool:
    """``pid`` is a live process on this host (not a zombie) and, with ``since``, one that
    already existed then (not a later process that got the same PID)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    started = _proc_start(pid)
    if started is None:
        return True
    return started >= 0 and (since is None or started <= since + _PID_START_SLACK_S)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))


@dataclasses.dataclass
class _Hold:
    depth: int
    nonce: str
    created: list[str]  # directories this lock created, outermost first


_HELD: dict[str, _Hold] = {}  # realpath -> this process's hold on it
_GUARD = threading.Lock()


class WorkdirLock:
    """``acquire()`` / ``release()`` of ``<directory>/run.lock`` (module docstring); ``hold``
    is the context-manager form."""

    def __init__(self, directory: str, flag: str = "--workdir",
                 primary: bool | None = None) -> None:
        self.directory, self.flag = os.path.abspath(directory), flag
        self.path = os.path.join(self.directory, LOCK_NAME)
        self._primary = _is_primary() if primary is None else primary
        self._key: str | None = None

    def acquire(self) -> WorkdirLock:
        if self._key is not None or not self._primary:
            self._key = self._key or ""
            return self
        with _GUARD:
            key = os.path.realpath(self.directory)
            if key in _HELD:  # this process already owns it
                _HELD[key].depth += 1
                self._key = key
                return self
            ensure_writable(self.directory, create=False, flag=self.flag)
            created = []
            probe = self.directory
            while not os.path.exists(probe):
                created.insert(0, probe)
                probe = os.path.dirname(probe)
            try:
                try:
                    os.makedirs(self.directory, exist_ok=True)
                except OSError as e:
                    raise ValueError(f"{self.flag}={self.directory!r} is not writable "
                                     f"({e.strerror}); pass a directory you can write to.") from e
                nonce = self._take()
            except BaseException:
                _remove_empty(created)
                raise
            _HELD[os.path.realpath(self.directory)] = _Hold(1, nonce, created)
            self._key = os.path.realpath(self.directory)
        return self

    def release(self) -> None:
        key, self._key = self._key, None
        if not key:
            return
        with _GUARD:
            h = _HELD[key]
            h.depth -= 1
            if h.depth:
                return
            del _HELD[key]
            if (_read(self.path) or {}).get("nonce") == h.nonce:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)
            _remove_empty(h.created)

    def _take(self) -> str:
        """Creates the lock file (or takes over a stale one); returns its nonce."""
        me = {"host": socket.gethostname(), "pid": os.getpid(), "start_time": time.time(),
              "command": " ".join(sys.argv)[:1000], "nonce": uuid.uuid4().hex}
        me["start"] = _when(me["start_time"])
        tmp = f"{self.path}.{me['nonce']}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(me, f)
                f.flush()
                os.fsync(f.fileno())
            for _ in range(5):  # a lock that vanishes while we look is retried
                if _create_from(tmp, self.path):
                    return me["nonce"]
                holder = _read(self.path)
                if holder is None:
                    continue
                why = self._stale(holder)
                if why is None:
                    raise ValueError(self._refusal(holder))
                if self._take_over(holder, tmp):
                    _log.warning("%s=%s: took over the stale lock %s (%s)", self.flag,
                                 self.directory, self.path, why)
                    return me["nonce"]
            raise ValueError(self._refusal(_read(self.path) or {}))
        except OSError as e:
            raise ValueError(f"{self.flag}={self.directory!r} is not writable ({e.strerror} on "
                             f"{self.path}); pass a directory you can write to.") from e
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)

    def _stale(self, holder: dict) -> str | None:
        """Why ``holder``'s lock is stale, or None when it may be live."""
        host, pid, t = holder.get("host"), holder.get("pid"), holder.get("start_time")
        if host != socket.gethostname() or not isinstance(pid, int):
            if not holder and time.time() - _mtime(self.path) > 60:
                return "an unreadable lock file older than a minute"
            return None
        if pid == os.getpid():  # not in _HELD: an earlier process that had our PID
            return f"PID {pid} was an earlier process (this one does not hold the lock)"
        if not pid_alive(pid, float(t or 0.0)):
            return f"PID {pid} on {host}, started {holder.get('start', '?')}, is dead"
        return None

    def _take_over(self, holder: dict, tmp: str) -> bool:
        """Replaces the stale lock ``holder`` with ours unless another process moved first."""
        import fcntl  # POSIX; the stale check above only passes on this host

        fd = os.open(self.directory, os.O_RDONLY)
        try:
            with contextlib.suppress(OSError):  # a filesystem without flock: best effort
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _read(self.path) != holder:
                return False
            os.replace(tmp, self.path)
            return True
        finally:
            os.close(fd)  # closing drops the flock

    def _refusal(self, holder: dict) -> str:
        who = (f"host {holder.get('host', '?')}, PID {holder.get('pid', '?')}, started "
               f"{holder.get('start', '?')}")
        cmd = f" ({holder['command']})" if holder.get("command") else ""
        return (f"{self.flag}={self.directory} is in use by another run: {who}{cmd}; lock "
                f"{self.path}. Wait for it to finish or use another {self.flag}; if that run "
                f"is gone (its host crashed), delete {self.path}.")


def _create_from(tmp: str, path: str) -> bool:
    """Atomically creates ``path`` with ``tmp``'s content; False if it exists."""
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links (some FUSE / SMB mounts): exclusive create instead
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f, open(tmp, encoding="utf-8") as src:
            f.write(src.read())
        return True


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return time.time()


def _remove_empty(created: list[str]) -> None:
    for d in reversed(created):
        try:
            os.rmdir(d)
        except OSError:
            return  # not empty: the run wrote something, keep it


def held(directory: str) -> bool:
    """Whether this process holds ``directory``'s lock."""
    with _GUARD:
        return os.path.realpath(os.path.abspath(directory)) in _HELD


@contextlib.contextmanager
def hold(directory: str, flag: str = "--workdir",
         primary: bool | None = None) -> Iterator[WorkdirLock]:
    """``with hold(workdir): run()``: owns ``directory`` for the block (module docstring)."""
    lock = WorkdirLock(directory, flag, primary).acquire()
    try:
        yield lock
    finally:
        lock.release()
