"""Fixed-capacity FIFO replay buffer of training examples with uniform sampling (host numpy).

Each field is a numpy array with a leading capacity axis (e.g. ``tokens int32[C, L]``,
``policy f32[C, A]``, ``legal bool[C, A]``, ``value f32[C]``). ``add`` writes a batch at the write
pointer, wrapping around and overwriting the oldest rows once full; ``sample`` draws rows uniformly
with replacement from the filled part.

Why on the host: the buffer is small (tens of thousands of ~50-token states), written once per
search-and-learn iteration and read once per train step; numpy gathers cost microseconds and the
batch is then placed with ``train.data.to_global`` (so multi-host runs each keep a full copy and
gather their own slice of a global batch, exactly like the supervised loader).

Sampling is a pure function of ``(seed, *key)`` (``numpy.random.default_rng([seed, *key])``), so a
run resumed from a checkpoint (which holds ``state_dict()``: every field plus ``ptr`` and ``size``)
draws exactly the batches an uninterrupted run draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


class ReplayBuffer:
    """FIFO ring buffer of named fields (module docstring)."""

    def __init__(self, capacity: int, spec: Mapping[str, tuple[Sequence[int], np.dtype]]):
        """spec: field -> (per-example shape, dtype)."""
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"replay buffer capacity={capacity!r} is out of range; allowed an "
                             "int >= 1.")
        if not spec:
            raise ValueError("replay buffer spec is empty; give at least one field.")
        self.capacity = capacity
        self.data = {k: np.zeros((capacity, *shape), dtype) for k, (shape, dtype) in spec.items()}
        self.ptr = 0  # next row to write
        self.size = 0  # filled rows
        self.total_added = 0

    def __len__(self) -> int:
        return self.size

    def add(self, rows: Mapping[str, np.ndarray]) -> int:
        """Append a batch (every field, same leading size); returns the number of rows added.

        A batch larger than the capacity keeps only its newest ``capacity`` rows.
        """
        if set(rows) != set(self.data):
            raise ValueError(f"replay buffer add: fields {sorted(rows)} != buffer fields "
                             f"{sorted(self.data)}.")
        sizes = {k: len(v) for k, v in rows.items()}
        n = next(iter(sizes.values()))
        if any(s != n for s in sizes.values()):
            raise ValueError(f"replay buffer add: fields have different lengths {sizes}.")
        for k, v in rows.items():
            if np.shape(v)[1:] != self.data[k].shape[1:]:
                raise ValueError(f"replay buffer add: field {k!r} has per-row shape "
                                 f"{np.shape(v)[1:]}; expected {self.data[k].shape[1:]}.")
        self.total_added += n
        if n == 0:
            return 0
        skip = max(n - self.capacity, 0)
        idx = (self.ptr + np.arange(n - skip)) % self.capacity
        for k, v in rows.items():
            self.data[k][idx] = np.asarray(v)[skip:]
        self.ptr = int((self.ptr + n - skip) % self.capacity)
        self.size = int(min(self.size + n - skip, self.capacity))
        return n - skip

    def indices(self, batch_size: int, seed: int, *key: int) -> np.ndarray:
        """Uniform row indices (with replacement) of the filled part; pure in (seed, key)."""
        if self.size == 0:
            raise ValueError("replay buffer is empty; add examples before sampling.")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} is out of range; allowed >= 1.")
        rng = np.random.default_rng([seed, *key])
        return rng.integers(0, self.size, size=batch_size)

    def sample(self, batch_size: int, seed: int, *key: int) -> dict[str, np.ndarray]:
        idx = self.indices(batch_size, seed, *key)
        return {k: v[idx] for k, v in self.data.items()}

    # ------------------------------------------------------------------------- checkpointing

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every field plus ``ptr``/``size``/``total_added`` as numpy arrays (an orbax pytree)."""
        return {"fields": dict(self.data), "ptr": np.asarray(self.ptr, np.int64),
                "size": np.asarray(self.size, np.int64),
                "total_added": np.asarray(self.total_added, np.int64)}

    def load_state_dict(self, state: Mapping) -> None:
        fields = state["fields"]
        if set(fields) != set(self.data):
            raise ValueError(f"checkpointed replay buffer has fields {sorted(fields)}; this run's "
                             f"buffer has {sorted(self.data)} (different config?).")
        for k, v in fields.items():
            v = np.asarray(v)
            if v.shape != self.data[k].shape:
                raise ValueError(f"checkpointed replay buffer field {k!r} has shape {v.shape}; "
                                 f"expected {self.data[k].shape} (changed capacity or shapes?).")
            self.data[k] = v.astype(self.data[k].dtype, copy=True)
        self.ptr, self.size = int(state["ptr"]), int(state["size"])
        self.total_added = int(state["total_added"])
