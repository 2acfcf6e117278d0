"""Supervised input pipeline: TFDS dataset -> tokens (once) -> seeded, per-host-sharded batches.

The datasets are the ``search.datasets`` builds (``Zero24Supervised.FEATURES``), one for training
(``split="train"`` problems) and one for evaluation (``split="val"`` problems, disjoint by
canonical multiset). They are small, so each is read whole into host memory and tokenized ONCE
with the jitted ``nnx_models.tokenizer.encode``; batches are then numpy gathers.

Order: epoch ``e`` visits a permutation drawn from ``numpy.random.default_rng([seed, e])`` in
consecutive batches of the GLOBAL batch size (remainder dropped). Batch ``k`` of the run is thus a
pure function of ``(seed, k)``: the data position saved in a checkpoint is just ``k``, and a
resumed run sees exactly the batches an uninterrupted one would. Each process gathers only its
contiguous slice of every global batch and hands it to
``jax.make_array_from_process_local_data``, which assembles the globally sharded array.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh

from nnx_models import tokenizer
from search import game, problems
from train import mesh as mesh_lib

FIELDS = ("tokens", "policy", "legal", "value")


def data_dir(config: Mapping[str, Any], workdir: str) -> str:
    """``config.data.data_dir``, or ``<workdir>/../data`` so sibling runs share datasets."""
    return config["data"]["data_dir"] or os.path.join(
        os.path.dirname(os.path.abspath(workdir.rstrip("/"))), "data")


def problem_class(config: Mapping[str, Any]) -> problems.ProblemClass:
    """The configured class, with ``Rules.n_max`` replaced by ``data.n_max`` when that is set."""
    d = config["data"]
    cls = problems.get_class(d["problem_class"])
    if d["n_max"]:
        hi = cls.n if isinstance(cls.n, int) else cls.n[1]
        if not hi <= d["n_max"] <= cls.rules.n_max:
            raise ValueError(f"config.data.n_max={d['n_max']} is out of range for class "
                             f"{cls.name!r}; allowed {hi}..{cls.rules.n_max} (0 = class default).")
        cls = dataclasses.replace(cls, rules=dataclasses.replace(cls.rules, n_max=d["n_max"]))
    return cls


def dataset_names(config: Mapping[str, Any]) -> tuple[str, str]:
    """(train name, eval name): derived from class, slots, problem count and seed unless
    ``data.name`` is set (the eval name is always derived)."""
    d = config["data"]
    if d.get("source") == "stream":  # snapshots of the stream: examples, not problems
        stem = "stream_" + d["mixture"].replace(":", "-").replace(",", "_") + f"_n{d['n_max']}"
        base = d["name"] or f"{stem}_x{d['num_problems']}_s{d['seed']}"
        return f"{base}_train", f"{stem}_x{d['eval_examples']}_s{d['seed']}_val"
    stem = d["problem_class"] + (f"_n{d['n_max']}" if d["n_max"] else "")
    base = d["name"] or f"{stem}_p{d['num_problems']}_s{d['seed']}"
    return f"{base}_train", f"{stem}_p{d['eval_num_problems']}_s{d['seed']}_val"


def generate(config: Mapping[str, Any], workdir: str) -> list[str]:
    """Builds both datasets (idempotent: existing ones are kept); returns their paths."""
    d = config["data"]
    for key in ("num_problems", "eval_num_problems"):
        if d[key] < 1:
            raise ValueError(f"config.data.{key}={d[key]} is out of range; allowed >= 1.")
    from search import datasets  # lazy: tensorflow_datasets is slow to import

    cls = problem_class(config)
    root = data_dir(config, workdir)
    train_name, eval_name = dataset_names(config)
    if d.get("source") == "stream":  # a fixed snapshot of the run's own stream (and eval stream)
        from train import stream_data

        mk = stream_data.run_streams(config, cls.rules)[1]
        return [datasets.build_stream_snapshot(root, name, mk(kind), 0, n)
                for name, n, kind in ((train_name, d["num_problems"], "train"),
                                      (eval_name, d["eval_examples"], "eval"))]
    return [datasets.build_supervised(root, name, cls, n, d["seed"], split=split)
            for name, n, split in ((train_name, d["num_problems"], "train"),
                                   (eval_name, d["eval_num_problems"], "val"))]


def _missing_message(config: Mapping[str, Any], workdir: str, name: str, err: Exception) -> str:
    return (f"supervised dataset {name!r} not found in {data_dir(config, workdir)!r} ({err}). "
            f"Generate it with: python -m train.main --mode=generate_data "
            f"--config=<the same config and overrides> --workdir={workdir} "
            "(or set --config.data.generate_if_missing=True).")


def tokenize(examples: Mapping[str, np.ndarray], tok_cfg: tokenizer.TokenizerConfig,
             chunk: int = 4096) -> dict[str, np.ndarray]:
    """Dataset rows -> ``{tokens i32[E, L], policy f32[E, A], legal bool[E, A], value f32[E]}``."""
    from search import datasets
    state = datasets.examples_to_state(examples)
    count = int(state.num.shape[0])
    # tokenizer.encode is jitted with the config static: one compile per (config, shape), reused
    # across calls (a fresh jax.jit(lambda) here would recompile on every call).
    encode = functools.partial(tokenizer.encode, cfg=tok_cfg)
    pieces = []
    for lo in range(0, count, chunk):  # fixed chunk shape: one compile
        part = jax.tree.map(lambda x, lo=lo: np.asarray(x)[lo:lo + chunk], state)
        pad = chunk - int(part.num.shape[0]) if count > chunk else 0
        part = jax.tree.map(lambda x, pad=pad: np.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1),
                                                      mode="edge"), part)
        pieces.append(np.asarray(encode(part))[:min(chunk, count - lo)])
    return {"tokens": np.concatenate(pieces).astype(np.int32),
            "policy": np.asarray(examples["policy"], np.float32),
            "legal": np.asarray(examples["legal"], bool),
            "value": np.asarray(examples["value"], np.float32)}


def load(config: Mapping[str, Any], workdir: str, tok_cfg: tokenizer.TokenizerConfig,
         rules: game.Rules) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Tokenized (train, eval) arrays; generates the datasets first if allowed and missing."""
    from search import datasets
    root = data_dir(config, workdir)
    out = []
    for name in dataset_names(config):
        try:
            examples = datasets.load_supervised(root, name)
        except FileNotFoundError as e:
            if not config["data"]["generate_if_missing"]:
                raise FileNotFoundError(_missing_message(config, workdir, name, e)) from e
            logging.info("dataset %s missing in %s: generating it", name, root)
            generate(config, workdir)
            examples = datasets.load_supervised(root, name)
        num_slots = np.asarray(examples["num"]).shape[-1]
        if num_slots != rules.n_max:
            raise ValueError(f"dataset {name!r} has {num_slots} slots but class "
                             f"{config['data']['problem_class']!r} has n_max={rules.n_max}; "
                             "regenerate it or use another --config.data.name.")
        out.append(tokenize(examples, tok_cfg))
    return out[0], out[1]


class Loader:
    """Deterministic, per-host-sharded batches of a tokenized split (module docstring)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], global_batch: int, mesh: Mesh, seed: int):
        self.arrays = {k: np.asarray(arrays[k]) for k in FIELDS}
        self.size = int(self.arrays["tokens"].shape[0])
        mesh_lib.check_batch_size(global_batch, mesh)
        if self.size < global_batch:
            raise ValueError(f"config.train.batch_size={global_batch} exceeds the {self.size} "
                             "training examples; lower it or raise config.data.num_problems.")
        self.global_batch, self.seed, self.mesh = global_batch, seed, mesh
        self.batches_per_epoch = self.size // global_batch
        self.sharding = mesh_lib.batch_sharding(mesh)
        self._perm_epoch, self._perm = -1, None

    def indices(self, position: int) -> np.ndarray:
        """Global example indices of batch number ``position`` (int64[global_batch])."""
        epoch, k = divmod(position, self.batches_per_epoch)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            self._perm_epoch = epoch
        return self._perm[k * self.global_batch:(k + 1) * self.global_batch]

    def batch(self, position: int) -> dict[str, jax.Array]:
        idx = local_slice(self.indices(position))  # this process gathers only its rows
        rows = {k: v[idx] for k, v in self.arrays.items()}
        rows["weight"] = np.ones((len(idx),), np.float32)
        return to_global(rows, self.global_batch, self.sharding)

    def batches(self, position: int, count: int) -> dict[str, jax.Array]:
        """Batches ``position .. position+count-1`` stacked: every field [count, B, ...] (one
        gather and one transfer for the ``train.steps.train_steps`` hot path)."""
        idx = np.stack([local_slice(self.indices(q)) for q in range(position, position + count)])
        rows = {k: v[idx] for k, v in self.arrays.items()}
        rows["weight"] = np.ones(idx.shape, np.float32)
        return to_global(rows, self.global_batch, mesh_lib.stacked_batch_sharding(self.mesh),
                         lead=(count,))


def local_slice(x: np.ndarray) -> np.ndarray:
    """This process's contiguous share of a global-batch array (the batch axis is split evenly)."""
    n, p, i = len(x), jax.process_count(), jax.process_index()
    return x[n * i // p:n * (i + 1) // p]


def to_global(local_rows: Mapping[str, np.ndarray], global_batch: int, sharding,
              lead: tuple[int, ...] = ()) -> dict[str, jax.Array]:
    """This process's rows -> globally sharded arrays of shape ``lead + (global_batch, ...)``
    (``lead``: e.g. the step axis of a stack of batches, which is not split)."""
    n = len(lead)
    return {k: jax.make_array_from_process_local_data(
        sharding, np.ascontiguousarray(v), lead + (global_batch,) + v.shape[n + 1:])
        for k, v in local_rows.items()}


def eval_batches(arrays: Mapping[str, np.ndarray], global_batch: int, mesh: Mesh,
                 max_batches: int = 0) -> Iterator[dict[str, jax.Array]]:
    """The eval split in fixed-size batches, the last padded with weight-0 rows.

    Rows go in one fixed permutation (seed 0), so ``max_batches`` takes a representative sample
    (the datasets store states grouped by move number) and is the same sample every time.
    """
    size = int(arrays["tokens"].shape[0])
    total = -(-size // global_batch)
    total = min(total, max_batches) if max_batches > 0 else total
    order = np.random.default_rng(0).permutation(size)
    sharding = mesh_lib.batch_sharding(mesh)
    for b in range(total):
        idx = local_slice(np.arange(b * global_batch, (b + 1) * global_batch))
        valid = idx < size
        rows = {k: np.asarray(arrays[k])[order[np.where(valid, idx, 0)]] for k in FIELDS}
        rows["weight"] = valid.astype(np.float32)
        yield to_global(rows, global_batch, sharding)
