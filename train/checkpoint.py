"""Checkpoints: an orbax ``CheckpointManager`` wrapper with auto-resume and preemption handling.

Layout: ``<workdir>/checkpoints/<step>/{state, meta}``. ``state`` is the sharded pytree (params,
optimizer state, step, RNG key data, anything the caller adds such as a replay buffer), written
with ``StandardSave`` and restored into the shardings of an abstract target, so a restore never
materialises a full host copy. ``meta`` is JSON (data position, config digest, metrics).

Why these choices:
- Saves are async (training continues while the previous step is written); orbax writes into a
  temporary directory and renames it on commit, so a process killed mid-save leaves the previous
  checkpoint intact and the partial one is ignored (and cleaned up) on the next start.
- ``save`` is called on every process (orbax coordinates multi-host writes).
- SIGTERM (preemption on Cloud TPU / SLURM) only sets a flag; the training loop checks it after
  each step, saves synchronously and exits cleanly. Multi-host preemption notices from JAX's
  coordination service are honoured through ``CheckpointManager.reached_preemption``.
- A committed checkpoint can still rot (a truncated or zeroed data file, a cut-off JSON file: a
  full disk, a bad copy, bit rot). The first ``latest_step()`` of a ``Checkpointer`` (and
  ``restorable_step`` for readers such as ``--mode=eval``) therefore reads the newest step back
  in full (``corruption``: array by array, bounded memory; the OS page cache makes the real
  restore after it cheap) and falls back to the newest step that restores, with one warning
  naming the bad step and why; the bad step is moved to ``checkpoints/corrupt-<step>``, never
  deleted (orbax ignores names that are not integers). When no step restores,
  ``CheckpointError`` lists every step tried and nothing is moved. Multi-process runs verify on
  every process and agree on the verdict, so all of them resume from the same step; process 0
  moves the bad ones.
- The ``Checkpointer`` holds the workdir lock (``scaling/workdir.py``) while it is open, so two
  writers never share one ``checkpoints/`` directory, also when a library caller bypasses
  ``train.main``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from scaling import workdir as workdir_lib
from scaling.workdir import ensure_writable  # noqa: F401 (re-exported: ckpt_lib.ensure_writable)
from train.configs import common

CORRUPT_PREFIX = "corrupt-"


class CheckpointError(ValueError):
    """No checkpoint in a directory restores; the message names every step tried and why."""


class _QuietOrbax(logging.Filter):
    """Orbax logs a dozen INFO lines per save; keep its warnings, drop its chatter (and all of
    it inside ``_silent``)."""

    silent = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "/orbax/" not in record.pathname:
            return True
        return record.levelno >= logging.WARNING and not self.silent


_QUIET = _QuietOrbax()
absl_logging.get_absl_logger().addFilter(_QUIET)


@contextlib.contextmanager
def _silent() -> Iterator[None]:
    _QUIET.silent = True
    try:
        yield
    finally:
        _QUIET.silent = False


class Checkpointer:
    """Keep-last-N, every-K-steps checkpoints of a ``state`` pytree plus a JSON ``meta`` dict."""

    def __init__(self, directory: str, *, every: int, keep: int, async_save: bool = True) -> None:
        common.check_checkpoint(every, keep)
        self.directory, self.every = os.path.abspath(directory), every
        # The run directory is the parent of checkpoints/ (re-entrant: train.main holds it too).
        self._lock = workdir_lib.WorkdirLock(os.path.dirname(self.directory)).acquire()
        try:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True,
                enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
            self._mngr = ocp.CheckpointManager(self.directory, options=options,
                                               item_names=("state", "meta"))
        except BaseException:
            self._lock.release()
            raise
        self._verified = False

    def latest_step(self) -> int | None:
        """The newest step; the first call reads it back first (module docstring: a corrupt
        newest step is moved aside and the newest one that restores is returned)."""
        if not self._verified:
            self._verified = True
            step = restorable_step(self.directory, self.all_steps(), move_aside=True)
            self._mngr.reload()  # steps moved aside are gone from orbax's list
            return step
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def should_save(self, step: int) -> bool:
        """Every ``every`` steps, never with ``every=None`` (orbax's own policy would also save
        the very first step)."""
        return common.due(step, self.every)

    def reached_preemption(self, step: int) -> bool:
        return self._mngr.reached_preemption(step)

    def save(self, step: int, state: Any, meta: dict) -> bool:
        """Starts an (async) save of ``step`` unless it exists; returns whether it started."""
        if step in self.all_steps():
            return False  # e.g. the final save right after a periodic one
        return self._mngr.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """Restores ``step`` into the shapes/dtypes/shardings of ``abstract_state``."""
        out = self._mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return out["state"], dict(out["meta"])

    def load_numpy(self, step: int) -> Any:
        """``step``'s whole state as host numpy arrays (see the module-level ``load_numpy``)."""
        return load_numpy(self.directory, step)

    def wait(self) -> None:
        self._mngr.wait_until_finished()

    def close(self) -> None:
        try:
            self._mngr.wait_until_finished()
            self._mngr.close()
        finally:
            self._lock.release()


def read_steps(directory: str) -> list[int]:
    """Committed steps in ``directory``, oldest first ([] if none or no directory), read only:
    nothing is created or cleaned up, so it is safe next to a run that is still saving."""
    if not os.path.isdir(directory):
        return []
    options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0)
    with _silent():  # "Given directory is read only": that is the point here
        mngr = ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))
        try:
            return sorted(mngr.all_steps())
        finally:
            mngr.close()


def read_latest_step(directory: str) -> int | None:
    """The newest committed step in ``directory`` (None: none), read only and not read back
    (``restorable_step`` does that)."""
    steps = read_steps(directory)
    return steps[-1] if steps else None


def _first_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split("\n", 1)[0].split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _read_back(state_dir: str) -> None:
    """Reads every array of an orbax ``state`` directory, one at a time (memory: the largest
    array), through tensorstore directly: orbax's own reader, on a damaged step, leaves failed
    asyncio tasks that print pages of "Event loop is closed" long after the error. The layout
    read here is orbax's (``_METADATA``: one zarr array per leaf, named by its dotted key path,
    in one OCDBT database)."""
    import tensorstore as ts

    with open(os.path.join(state_dir, "_METADATA"), encoding="utf-8") as f:
        meta = json.load(f)
    base = {"driver": "file", "path": state_dir + "/"}
    kvstore = {"driver": "ocdbt", "base": base} if meta.get("use_ocdbt", True) else base
    driver = "zarr3" if meta.get("use_zarr3") else "zarr"
    for entry in meta["tree_metadata"].values():
        value = entry.get("value_metadata", {})
        if value.get("value_type") not in ("jax.Array", "np.ndarray") or \
                value.get("skip_deserialize"):
            continue  # empty nodes (None) and leaves orbax itself does not read
        name = ".".join(str(k["key"]) for k in entry["key_metadata"])
        spec = {"driver": driver, "kvstore": {**kvstore, "path": name + "/"}}
        ts.open(spec, open=True, read=True).result().read().result()


def corruption(directory: str, step: int) -> str | None:
    """Why ``step`` in ``directory`` would not restore, or None: its JSON files parse and every
    array of its state reads back (decompressed, so zeroed or truncated data is found)."""
    step_dir = os.path.join(directory, str(step))
    for rel in ("meta/metadata", "state/_METADATA"):
        try:
            with open(os.path.join(step_dir, rel), encoding="utf-8") as f:
                json.load(f)
        except FileNotFoundError:
            return f"{rel} is missing"
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            return f"{rel} is not valid JSON ({_first_line(e)})"
        except OSError as e:
            return f"{rel} cannot be read ({e.strerror})"
    try:
        _read_back(os.path.join(step_dir, "state"))
    except Exception as e:  # noqa: BLE001 (tensorstore raises ValueError, OSError, ...)
        return f"state data does not read back ({_first_line(e)})"
    return None


def _agree(why: str | None) -> str | None:
    """One verdict for all processes (bad if any process found the step bad), so that all of
    them make the same restore calls and resume from the same step."""
    if jax.process_count() == 1:
        return why
    from jax.experimental import multihost_utils

    ok = np.asarray(multihost_utils.process_allgather(np.array([why is None], np.int32)))
    if ok.all():
        return None
    return why or f"unreadable on process(es) {np.flatnonzero(ok.reshape(-1) == 0).tolist()}"


def _move_aside(directory: str, step: int) -> str:
    base = os.path.join(directory, f"{CORRUPT_PREFIX}{step}")
    dest, k = base, 1
    while os.path.exists(dest):  # the same step went bad before (a rerun saved it again)
        k += 1
        dest = f"{base}.{k}"
    os.rename(os.path.join(directory, str(step)), dest)
    return dest


def restorable_step(directory: str, steps: Sequence[int] | None = None, *,
                    move_aside: bool = False) -> int | None:
    """The newest step of ``directory`` that restores (None: there are no steps); see the
    module docstring. ``steps``: the committed steps (default: read from disk). ``move_aside``:
    move the corrupt steps newer than it to ``corrupt-<step>`` (for the directory's owner).
    Raises ``CheckpointError`` naming every step tried when none restores."""
    directory = os.path.abspath(directory)
    steps = sorted(read_steps(directory) if steps is None else steps)
    bad: list[tuple[int, str]] = []
    for step in reversed(steps):
        why = _agree(corruption(directory, step))
        if why is None:
            if bad:
                _report(directory, bad, step, move_aside)
            return step
        bad.append((step, why))
    if bad:
        tried = "; ".join(f"step {s}: {w}" for s, w in bad)
        raise CheckpointError(
            f"no checkpoint in {directory} restores (tried {len(bad)}: {tried}). Nothing was "
            f"moved; restore a backup, or delete {directory} to start the run over.")
    return None


def _report(directory: str, bad: list[tuple[int, str]], good: int, move_aside: bool) -> None:
    """The one warning of a fallback; moves the bad steps aside (on process 0) if asked."""
    moved = []
    if move_aside:
        if jax.process_index() == 0:
            moved = [os.path.basename(_move_aside(directory, s)) for s, _ in bad]
        if jax.process_count() > 1:  # the others reload only after the moves
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("zero24_checkpoint_moved_aside")
    what = "; ".join(f"step {s} does not restore: {w}" for s, w in bad)
    where = (f"moved to {', '.join(moved)}" if moved else
             "moved aside by process 0" if move_aside else "left in place")
    absl_logging.warning("checkpoint %s: %s (%s); using step %d, the newest that restores.",
                         directory, what, where, good)


def saved_structure(directory: str, step: int) -> dict:
    """The tree of ``step``'s state (leaves: array metadata), read without loading arrays."""
    path = os.path.join(directory, str(step), "state")
    return ocp.PyTreeCheckpointer().metadata(path).item_metadata.tree


def load_numpy(directory: str, step: int, keys: Sequence[str] = ()) -> Any:
    """``step``'s state, or only its subtree at ``keys`` (the rest is not read: parameters
    without the optimizer moments), as nested dicts of host numpy arrays, on any device
    topology (inspection, tests, evals; training restores through ``Checkpointer.restore``)."""
    path = os.path.join(directory, str(step), "state")
    reader = ocp.PyTreeCheckpointer()
    item = reader.metadata(path).item_metadata.tree
    for k in keys:
        item = item[k]
    for k in reversed(keys):
        item = {k: item}
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
    out = reader.restore(path, args=ocp.args.PyTreeRestore(
        item=item if keys else None, restore_args=restore_args, partial_restore=bool(keys)))
    for k in keys:
        out = out[k]
    return out


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) of a pytree of arrays: a restore target."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        tree)


def rng_to_data(key: jax.Array) -> jax.Array:
    """Typed PRNG keys cannot be serialised; checkpoints hold their uint32 key data."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def rng_from_data(data: Any) -> jax.Array:
    return jax.random.wrap_key_data(np.asarray(data, np.uint32))


class PreemptionGuard:
    """Context manager: SIGTERM sets ``requested`` instead of killing the process.

    Only installable from the main thread (Python's rule); elsewhere, and in multi-process runs
    (see ``__enter__``), it is a no-op flag.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM,)) -> None:
        self._signals = signals
        self._previous: dict[int, Any] = {}
        self.requested = False

    def _handler(self, signum, frame) -> None:  # noqa: ARG002 (signal API)
        self.requested = True

    def __enter__(self) -> PreemptionGuard:
        # Several processes: leave SIGTERM to JAX's preemption notifier, so that
        # ``reached_preemption`` stops all of them at the same step. A per-process flag would
        # send one process into a save while the others train on: a collective deadlock.
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            for s in self._signals:
                self._previous[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous.clear()
