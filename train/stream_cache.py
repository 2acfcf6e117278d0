r"""An exact on-disk cache of a labelled stream's first examples (like JAX's compilation cache).

    python -m train.stream_cache --config=train/configs/sweep_cpu.py --examples=1500000 \
        --dir=runs/stream_cache [--processes=2]
    ZERO24_STREAM_CACHE=runs/stream_cache python -m train.main --config=... --workdir=...

Why: the runs of a scaling sweep all read the same training stream from example 0 (at equal D two
runs saw the same examples), and drawing it (~28k examples/s per core for the flagship mixture,
docs/data.md) takes a core away from a small model's train step. Drawing the stream once and
reading it back makes the small runs compute-bound instead of labeller-bound; it changes no
batch.

Exactness: example k of a stream is a function of its ``StreamConfig`` (mixture, seed, split,
exclusion set, rules) and k alone (``search.stream``). A cache file is named by a SHA-256 of the
whole ``StreamConfig``, exclusion keys included, and of ``stream.VERSION`` (the generator), so a
run reads it only for the very stream it would draw; examples past the cached count are drawn
live. ``tests/test_stream_cache.py`` checks that cached and live batches are identical. Files
are written atomically (a partial cache is never visible).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import sys
import time

import numpy as np

from search import stream

ENV = "ZERO24_STREAM_CACHE"
_CHUNK = 4096
_served: set[str] = set()  # streams already announced as served from a cache (one log line each)


def key(cfg: stream.StreamConfig) -> str:
    """Content hash of everything that determines the stream's examples: the generator's version
    (``stream.VERSION``: a file of another version of the stream is never served) and the whole
    ``StreamConfig``."""
    return _key(cfg, stream.VERSION)


@functools.lru_cache(maxsize=32)  # per batch on the loader's path: hash the exclusion set once
def _key(cfg: stream.StreamConfig, version: int) -> str:
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    fields["exclude"] = sorted(repr(k) for k in cfg.exclude)
    fields["stream_version"] = version
    blob = json.dumps(fields, sort_keys=True, default=repr).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def path_for(cache_dir: str, cfg: stream.StreamConfig) -> str:
    return os.path.join(cache_dir, f"stream-{key(cfg)}.npz")


@functools.lru_cache(maxsize=8)
def _open(path: str, mtime: float) -> dict[str, np.ndarray]:
    with np.load(path) as z:  # the whole file: ~60 bytes per example on 4 slots
        return {f: z[f] for f in stream.FIELDS}


def lookup(cfg: stream.StreamConfig, cache_dir: str | None = None) -> dict[str, np.ndarray] | None:
    """The cached arrays of ``cfg``'s stream, or None (no cache dir, or none for this stream)."""
    cache_dir = cache_dir if cache_dir is not None else os.environ.get(ENV, "")
    if not cache_dir:
        return None
    path = path_for(cache_dir, cfg)
    if not os.path.isfile(path):
        return None
    return _open(path, os.path.getmtime(path))


def draw_range(cfg: stream.StreamConfig, start: int, stop: int,
               cache_dir: str | None = None) -> dict[str, np.ndarray]:
    """``stream.draw_range`` served from the cache where it covers ``start..stop-1``."""
    cached = lookup(cfg, cache_dir)
    count = 0 if cached is None else len(cached["value"])
    if stop <= count:
        if not _served:
            _served.add(key(cfg))
            print(f"[stream_cache] serving {path_for(cache_dir or os.environ[ENV], cfg)} "
                  f"({count} examples)", flush=True)
        return {f: v[start:stop] for f, v in cached.items()}
    return stream.draw_range(cfg, start, stop)


def _chunk(cfg: stream.StreamConfig, lo: int, hi: int) -> dict[str, np.ndarray]:
    return stream.draw_range(cfg, lo, hi)


def build(cfg: stream.StreamConfig, examples: int, cache_dir: str, processes: int = 1,
          log=print) -> str:
    """Draws examples 0..examples-1 of ``cfg`` into ``cache_dir`` (atomic); returns the path.
    An existing cache of at least ``examples`` examples is kept."""
    if examples < 1 or processes < 1:
        raise ValueError(f"examples={examples} and processes={processes} must be >= 1.")
    path = path_for(cache_dir, cfg)
    have = lookup(cfg, cache_dir)
    if have is not None and len(have["value"]) >= examples:
        log(f"[stream_cache] {path}: {len(have['value'])} examples cached already")
        return path
    os.makedirs(cache_dir, exist_ok=True)
    bounds = [(lo, min(lo + _CHUNK, examples)) for lo in range(0, examples, _CHUNK)]
    t0 = time.time()
    if processes == 1:
        parts = [_chunk(cfg, lo, hi) for lo, hi in bounds]
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(processes) as pool:
            parts = pool.starmap(_chunk, [(cfg, lo, hi) for lo, hi in bounds], chunksize=1)
    arrays = {f: np.concatenate([p[f] for p in parts]) for f in stream.FIELDS}
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    log(f"[stream_cache] {path}: {examples} examples in {time.time() - t0:.0f} s")
    return path


def train_stream(config: dict) -> stream.StreamConfig:
    """The training ``StreamConfig`` a run of ``config`` draws (as ``train.supervised`` does)."""
    from train import data as data_lib
    from train import stream_data

    return stream_data.run_streams(config, data_lib.problem_class(config).rules)[1]("train")


def main(argv=None) -> int:
    import argparse

    from train.configs import load_config_file

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="train config file[:arg]")
    p.add_argument("--examples", type=int, required=True, help="examples to cache (>= 1)")
    p.add_argument("--dir", required=True, help="cache directory (the value of $" + ENV + ")")
    p.add_argument("--processes", type=int, default=1, help="labelling processes (>= 1)")
    a = p.parse_args(argv)
    try:
        build(train_stream(load_config_file(a.config).to_dict()), a.examples, a.dir, a.processes)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
