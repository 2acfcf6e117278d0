"""The labelled stream as training input: exclusion from the config, a grain loader, probe sets.

``config.data.source="stream"`` trains on ``search.stream`` instead of a fixed TFDS set. Batch
``p`` of a run is examples ``p*B .. (p+1)*B - 1`` of the stream, so the data position saved in a
checkpoint (``data_position``) is the loader's whole state: a resumed run rebuilds the grain
pipeline at that position and sees exactly the batches an uninterrupted run would. Each process
draws only its contiguous share of every global batch.

Why grain with threads (``ReadOptions.num_threads``): labelling is Python + numba, while the train
step runs inside XLA with the GIL released, so one prefetch thread overlaps the next batch's
labelling with the current step on the same cores without a second process.

Exclusion: ``exclusion_sets(config)`` lists every problem the run must never train on: each
evaluation set the config names (``search_eval.splits``, ``eval.sets``, ``data.exclude``) and all
1,362 puzzles of the ToT ``24.csv`` when the config names one (``data.exclude_csv`` or the csv of
the eval sections). ``run.json`` records the per-set counts and ``exclusion.json`` in the workdir
holds the canonical keys, which ``search.eval`` reads to warn about sets it was not excluded from.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import grain
import jax
import numpy as np

from nnx_models import tokenizer
from search import game, problems, stream, sweep
from train import data as data_lib
from train import mesh as mesh_lib

EVAL_SEED_OFFSET = 1_000_003  # eval/probe streams never share an rng key with the training one


def _specs(value) -> list[str]:
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    return [str(s) for s in value or ()]


def exclusion_sets(config: Mapping[str, Any]) -> dict[str, list[problems.Problem]]:
    """{set name: problems} that training must never see (module docstring)."""
    d = config["data"]
    csv = d.get("exclude_csv", "") or config.get("search_eval", {}).get("csv", "") or \
        config.get("eval", {}).get("csv", "")
    specs = _specs(config.get("search_eval", {}).get("splits", "")) + \
        _specs(config.get("eval", {}).get("sets", "")) + _specs(d.get("exclude", ""))
    out: dict[str, list[problems.Problem]] = {}
    for spec in dict.fromkeys(specs):
        if spec in sweep.CSV_SPLITS and not csv:
            continue  # a csv split with no csv cannot be evaluated either
        _, probs, _ = sweep.load_split(spec, csv or None)
        out[spec] = probs
    if csv:
        out["24.csv:all1362"] = problems.load_24csv(csv, "all1362")
    return out


def stream_config(config: Mapping[str, Any], rules: game.Rules, exclude: frozenset,
                  kind: str = "train") -> stream.StreamConfig:
    """The training stream ("train"), its held-out eval stream ("eval": val-split starts, another
    seed) or the start-state probe set ("probe": test-split starts, independent of any walk)."""
    d = config["data"]
    seed = d["seed"] + (0 if kind == "train" else EVAL_SEED_OFFSET)
    cfg = stream.StreamConfig(
        mixture=stream.parse_mixture(d["mixture"]), n_max=rules.n_max, seed=seed,
        split={"train": "train", "eval": "val", "probe": "test"}[kind],
        solvable_share=d["solvable_share"], exclude=exclude, fractions=rules.fractions,
        max_abs=rules.max_abs, start_only=kind == "probe")
    return cfg


def run_streams(config: Mapping[str, Any], rules: game.Rules):
    """(exclusion sets, ``kind -> StreamConfig``): every stream a run of ``config`` draws, all
    with the same exclusion (``exclusion_sets``)."""
    sets = exclusion_sets(config)
    exclude = frozenset(p.canonical for plist in sets.values() for p in plist)
    return sets, lambda kind="train": stream_config(config, rules, exclude, kind)


def tokenized(rows: Mapping[str, np.ndarray], tok_cfg: tokenizer.TokenizerConfig) -> dict:
    """Stream rows -> the train step's batch fields (plus ``n``, for per-n probes)."""
    out = data_lib.tokenize(rows, tok_cfg)
    out["n"] = np.asarray(rows["n"], np.int32)
    return out


def _draw_block(cfg: stream.StreamConfig, batch: int, block: int, lo: int, hi: int,
                index: int) -> dict[str, np.ndarray]:
    """Rows ``lo..hi-1`` of each of the ``block`` global batches of block ``index``, every field
    [block, hi - lo, ...] (top level: picklable for grain workers). One contiguous draw when this
    process reads whole batches, so the batched stream (or the cache) serves it in one call."""
    from train import stream_cache  # exact: serves the same rows when $ZERO24_STREAM_CACHE has them

    base = index * block * batch
    if lo == 0 and hi == batch:
        rows = stream_cache.draw_range(cfg, base, base + block * batch)
        return {k: v.reshape((block, batch) + v.shape[1:]) for k, v in rows.items()}
    parts = [stream_cache.draw_range(cfg, base + b * batch + lo, base + b * batch + hi)
             for b in range(block)]
    return {k: np.stack([p[k] for p in parts]) for k in parts[0]}


class StreamLoader:
    """``batch(position)`` / ``batches(position, count)``: global batches of the stream, sharded
    over the mesh (a stack [count, B, ...] for ``train.steps.train_steps``).

    The pipeline draws BLOCKS of ``block`` consecutive batches (the run's updates per dispatch
    times its micro-batches): one draw and one tokenize per block instead of per batch. Blocks
    are normally consumed in order; grain prefetches the next ones, in a thread (``workers=0``)
    or in ``workers`` processes (``grain.MultiprocessingOptions``: labelling then runs beside
    the train step on another core; tokenizing stays here, with jax). Asking for another block
    rebuilds the pipeline there (a resume), which is exact because example k depends on (seed, k)
    only: the batches are the same for any ``workers`` and any ``block``.
    """

    def __init__(self, cfg: stream.StreamConfig, global_batch: int, mesh,
                 tok_cfg: tokenizer.TokenizerConfig, workers: int = 0, prefetch: int = 2,
                 block: int = 1):
        mesh_lib.check_batch_size(global_batch, mesh)
        if workers < 0:
            raise ValueError(f"config.data.workers={workers} is out of range; allowed >= 0.")
        self.cfg, self.global_batch, self.tok_cfg = cfg, global_batch, tok_cfg
        self.workers, self.prefetch, self.block = workers, prefetch, max(1, block)
        p, i = jax.process_count(), jax.process_index()
        self.lo, self.hi = global_batch * i // p, global_batch * (i + 1) // p
        self.mesh = mesh
        self._iter, self._next, self._buf = None, None, (None, None)

    def _pipeline(self, index: int):
        draw = functools.partial(_draw_block, self.cfg, self.global_batch, self.block, self.lo,
                                 self.hi)
        ds = grain.MapDataset.range(index, 2**62 // self.block).map(draw)
        if self.workers:
            opts = grain.MultiprocessingOptions(num_workers=self.workers,
                                                per_worker_buffer_size=self.prefetch)
            return iter(ds.to_iter_dataset().mp_prefetch(opts))
        opts = grain.ReadOptions(num_threads=1 if self.prefetch else 0,
                                 prefetch_buffer_size=max(self.prefetch, 1))
        return iter(ds.to_iter_dataset(opts))

    def _block(self, index: int) -> dict[str, np.ndarray]:
        """Block ``index`` tokenized, every field [block, local batch, ...] (host)."""
        if self._buf[0] == index:
            return self._buf[1]
        if self._iter is None or index != self._next:
            self.close()
            self._iter = self._pipeline(index)
        rows = next(self._iter)
        self._next = index + 1
        flat = tokenized({k: v.reshape((-1,) + v.shape[2:]) for k, v in rows.items()},
                         self.tok_cfg)
        flat.pop("n")
        flat["weight"] = np.ones((len(flat["value"]),), np.float32)
        out = {k: v.reshape((self.block, -1) + v.shape[1:]) for k, v in flat.items()}
        self._buf = (index, out)
        return out

    def _rows(self, position: int, count: int) -> dict[str, np.ndarray]:
        """This process's rows of batches ``position .. position+count-1``: [count, b, ...]."""
        pieces, q, end = [], position, position + count
        while q < end:
            index, off = divmod(q, self.block)
            take = min(self.block - off, end - q)
            pieces.append({k: v[off:off + take] for k, v in self._block(index).items()})
            q += take
        if len(pieces) == 1:
            return pieces[0]
        return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}

    def batch(self, position: int) -> dict[str, jax.Array]:
        local = {k: v[0] for k, v in self._rows(position, 1).items()}
        return data_lib.to_global(local, self.global_batch, mesh_lib.batch_sharding(self.mesh))

    def batches(self, position: int, count: int) -> dict[str, jax.Array]:
        return data_lib.to_global(self._rows(position, count), self.global_batch,
                                  mesh_lib.stacked_batch_sharding(self.mesh), lead=(count,))

    def close(self) -> None:
        """Stops prefetching (worker processes exit)."""
        it, self._iter = self._iter, None
        if it is not None and hasattr(it, "close"):
            it.close()


def held_out(cfg: stream.StreamConfig, count: int, tok_cfg: tokenizer.TokenizerConfig) -> dict:
    """``count`` examples of a held-out stream, tokenized (an eval split for ``evaluate``)."""
    return tokenized(stream.draw_range(cfg, 0, count), tok_cfg)
