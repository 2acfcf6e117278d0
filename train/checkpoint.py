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
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging


class _QuietOrbax(logging.Filter):
    """Orbax logs a dozen INFO lines per save; keep its warnings, drop its chatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "/orbax/" not in record.pathname


absl_logging.get_absl_logger().addFilter(_QuietOrbax())


def ensure_writable(workdir: str, create: bool = True) -> None:
    """Proves ``workdir`` can be written (``create=False``: without creating anything yet)."""
    path = os.path.abspath(workdir)
    probe_dir = path
    while not os.path.exists(probe_dir):  # nearest existing ancestor decides
        probe_dir = os.path.dirname(probe_dir)
    if not os.path.isdir(probe_dir) or not os.access(probe_dir, os.W_OK | os.X_OK):
        raise ValueError(f"--workdir={workdir!r} is not writable ({probe_dir!r} is not a writable "
                         "directory); pass a directory you can write to.")
    if not create:
        return
    try:
        os.makedirs(path, exist_ok=True)
        # Host name + pid: processes of a multi-host run probe the same shared directory.
        probe = os.path.join(path, f".write_probe_{socket.gethostname()}_{os.getpid()}")
        with open(probe, "w", encoding="utf-8") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"--workdir={workdir!r} is not writable ({e.strerror}); pass a directory "
                         "you can write to.") from e


class Checkpointer:
    """Keep-last-N, every-K-steps checkpoints of a ``state`` pytree plus a JSON ``meta`` dict."""

    def __init__(self, directory: str, *, every: int, keep: int, async_save: bool = True) -> None:
        if every < 1:
            raise ValueError(f"config.checkpoint.every={every} is out of range; allowed >= 1.")
        if keep < 1:
            raise ValueError(f"config.checkpoint.keep={keep} is out of range; allowed >= 1.")
        self.directory, self.every = os.path.abspath(directory), every
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True,
            enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
        self._mngr = ocp.CheckpointManager(self.directory, options=options,
                                           item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def should_save(self, step: int) -> bool:
        """Every ``every`` steps (orbax's own policy would also save the very first step)."""
        return step % self.every == 0

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
        self._mngr.wait_until_finished()
        self._mngr.close()


def read_latest_step(directory: str) -> int | None:
    """The newest committed step in ``directory`` (None: no checkpoint or no directory), read
    only: nothing is created or cleaned up, so it is safe next to a run that is still saving."""
    if not os.path.isdir(directory):
        return None
    options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0)
    mngr = ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))
    try:
        return mngr.latest_step()
    finally:
        mngr.close()


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
