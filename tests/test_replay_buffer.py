"""Replay buffer: FIFO order, capacity, deterministic uniform sampling, orbax save/restore."""

import os

import numpy as np
import pytest

from train import checkpoint
from train.replay_buffer import ReplayBuffer

SPEC = {"tokens": ((3,), np.int32), "value": ((), np.float32), "legal": ((2,), bool)}


def rows(start: int, n: int) -> dict[str, np.ndarray]:
    ids = np.arange(start, start + n)
    return {"tokens": np.stack([ids, ids + 1, ids + 2], -1).astype(np.int32),
            "value": ids.astype(np.float32), "legal": np.stack([ids % 2 == 0, ids % 3 == 0], -1)}


def test_fifo_overwrites_oldest_rows():
    buf = ReplayBuffer(5, SPEC)
    assert len(buf) == 0
    assert buf.add(rows(0, 3)) == 3
    assert (len(buf), buf.ptr) == (3, 3)
    buf.add(rows(3, 4))  # 7 rows into capacity 5: rows 0, 1 are overwritten
    assert (len(buf), buf.ptr, buf.total_added) == (5, 2, 7)
    assert sorted(buf.data["value"].tolist()) == [2, 3, 4, 5, 6]
    np.testing.assert_array_equal(buf.data["value"], [5, 6, 2, 3, 4])  # ring order
    np.testing.assert_array_equal(buf.data["tokens"][0], [5, 6, 7])
    buf.add(rows(100, 12))  # larger than the capacity: only the newest 5 rows stay
    assert sorted(buf.data["value"].tolist()) == [107, 108, 109, 110, 111]


def test_sampling_is_uniform_deterministic_and_only_from_filled_rows():
    buf = ReplayBuffer(1000, SPEC)
    buf.add(rows(0, 10))
    a, b = buf.sample(4000, 0, 7, 1), buf.sample(4000, 0, 7, 1)
    np.testing.assert_array_equal(a["value"], b["value"])  # pure in (seed, key)
    assert not np.array_equal(a["value"], buf.sample(4000, 0, 7, 2)["value"])
    assert set(a["value"].tolist()) == set(range(10))  # never the empty rows
    counts = np.bincount(a["value"].astype(int), minlength=10)
    assert counts.min() > 300 and counts.max() < 500  # ~400 each (binomial sd ~19)
    np.testing.assert_array_equal(a["tokens"][:, 0], a["value"])  # fields stay aligned


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="capacity=0 is out of range"):
        ReplayBuffer(0, SPEC)
    buf = ReplayBuffer(4, SPEC)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(2, 0)
    with pytest.raises(ValueError, match="fields"):
        buf.add({"tokens": rows(0, 1)["tokens"]})
    bad = rows(0, 2)
    bad["tokens"] = np.zeros((2, 4), np.int32)
    with pytest.raises(ValueError, match="'tokens' has per-row shape"):
        buf.add(bad)


def test_save_restore_through_orbax_checkpoint(tmp_path):
    buf = ReplayBuffer(6, SPEC)
    buf.add(rows(0, 8))
    ck = checkpoint.Checkpointer(os.path.join(tmp_path, "ck"), every=1, keep=1, async_save=True)
    ck.save(3, {"buffer": buf.state_dict()}, {"iteration": 3})
    ck.wait()
    fresh = ReplayBuffer(6, SPEC)
    out, meta = ck.restore(3, {"buffer": checkpoint.abstract_like(fresh.state_dict())})
    ck.close()
    fresh.load_state_dict(out["buffer"])
    assert meta == {"iteration": 3}
    assert (fresh.ptr, fresh.size, fresh.total_added) == (buf.ptr, buf.size, buf.total_added)
    for k in SPEC:
        np.testing.assert_array_equal(fresh.data[k], buf.data[k])
        assert fresh.data[k].dtype == buf.data[k].dtype
    np.testing.assert_array_equal(fresh.sample(9, 1, 2)["value"], buf.sample(9, 1, 2)["value"])
    with pytest.raises(ValueError, match="shape"):
        ReplayBuffer(7, SPEC).load_state_dict(out["buffer"])
