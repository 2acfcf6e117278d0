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


def _draw_rows(cfg: stream.StreamConfig, batch: int, lo: int, hi: int,
               position: int) -> dict[str, np.ndarray]:
    """Rows ``lo..hi-1`` of global batch ``position`` (top level: picklable for grain workers)."""
    from train import stream_cache  # exact: serves the same rows when $ZERO24_STREAM_CACHE has them

    base = position * batch
    return stream_cache.draw_range(cfg, base + lo, base + hi)


class StreamLoader:
    """``batch(position)``: global batch ``position`` of the stream, sharded over the mesh.

    Positions are normally consumed in order; grain prefetches the next ones, in a thread
    (``workers=0``) or in ``workers`` processes (``grain.MultiprocessingOptions``: labelling then
    runs beside the train step on another core; tokenizing stays here, with jax). Asking for
    another position rebuilds the pipeline there (a resume), which is exact because example k
    depends on (seed, k) only. The batches are the same for any ``workers``.
    """

    def __init__(self, cfg: stream.StreamConfig, global_batch: int, mesh,
                 tok_cfg: tokenizer.TokenizerConfig, workers: int = 0, prefetch: int = 2):
        mesh_lib.check_batch_size(global_batch, mesh)
        if workers < 0:
            raise ValueError(f"config.data.workers={workers} is out of range; allowed >= 0.")
        self.cfg, self.global_batch, self.tok_cfg = cfg, global_batch, tok_cfg
        self.workers, self.prefetch = workers, prefetch
        p, i = jax.process_count(), jax.process_index()
        self.lo, self.hi = global_batch * i // p, global_batch * (i + 1) // p
        self.sharding = mesh_lib.batch_sharding(mesh)
        self._iter, self._next = None, None

    def _pipeline(self, position: int):
        draw = functools.partial(_draw_rows, self.cfg, self.global_batch, self.lo, self.hi)
        ds = grain.MapDataset.range(position, 2**62).map(draw)
        if self.workers:
            opts = grain.MultiprocessingOptions(num_workers=self.workers,
                                                per_worker_buffer_size=self.prefetch)
            return iter(ds.to_iter_dataset().mp_prefetch(opts))
        opts = grain.ReadOptions(num_threads=1 if self.prefetch else 0,
                                 prefetch_buffer_size=max(self.prefetch, 1))
        return iter(ds.to_iter_dataset(opts))

    def batch(self, position: int) -> dict[str, jax.Array]:
        if self._iter is None or position != self._next:
            self.close()
            self._iter = self._pipeline(position)
        local = tokenized(next(self._iter), self.tok_cfg)
        local.pop("n")
        local["weight"] = np.ones((self.hi - self.lo,), np.float32)
        self._next = position + 1
        return data_lib.to_global(local, self.global_batch, self.sharding)

    def close(self) -> None:
        """Stops prefetching (worker processes exit)."""
        it, self._iter = self._iter, None
        if it is not None and hasattr(it, "close"):
            it.close()


def held_out(cfg: stream.StreamConfig, count: int, tok_cfg: tokenizer.TokenizerConfig) -> dict:
    """``count`` examples of a held-out stream, tokenized (an eval split for ``evaluate``)."""
    return tokenized(stream.draw_range(cfg, 0, count), tok_cfg)
