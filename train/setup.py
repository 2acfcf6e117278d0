"""Run state as a type: ``RunSetup``, what every mode builds from, and its shared guards.

``build(config)`` validates the config (``configs.common.check_values``) and returns a frozen
``RunSetup``: the config as a plain dict, the game rules, tokenizer and model configs, the mesh,
and a ``TrainProgram`` (optimizer, graphdef, abstract train state with its shardings, the sharded
init and the jitted train and eval steps of ``train.steps``). Modes add their inputs (``data``)
and checkpoint manager (``ckpt``) with ``dataclasses.replace`` once their checks have passed, so
nothing is written for a config that fails. ``initial_state`` materialises a fresh train state
(parameters from ``config.init``: scratch, a finished run's checkpoint, or an HF directory).

``train_program`` is memoized on its frozen arguments, like ``cached_evaluate``: a second run of
the same model, optimizer and mesh in one process (a resume, a notebook, the tests) reuses the
compiled executables, and the optimizer stays paired with the steps that close over it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from nnx_models import evaluate as evaluate_lib
from nnx_models import tokenizer
from nnx_models.config import ModelConfig
from scaling import flops, records
from search import game
from train import checkpoint as ckpt_lib
from train import data as data_lib
from train import mesh as mesh_lib
from train import optim, steps
from train.configs import common

# Config fields that must match a workdir's checkpoints for a resume to make sense (None: all).
RESUME_KEYS = {"model": None, "tokenizer": None,
               "data": ("problem_class", "n_max", "num_problems", "seed", "name", "source",
                        "mixture", "solvable_share")}


class NonFiniteError(FloatingPointError):
    """Raised when training produced NaN/inf; the newest checkpoint predates it."""


def as_dict(config) -> dict:
    return config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)


@dataclasses.dataclass(frozen=True)
class TrainProgram:
    """The optimizer and everything compiled against it (``train.steps``)."""

    tx: optax.GradientTransformation
    graphdef: Any
    abs_state: Any  # ShapeDtypeStructs of {"params", "opt_state", "step", "rng"}, with shardings
    shardings: Any  # the same tree of NamedShardings
    init_fn: Callable[[], dict]  # the sharded init (one jitted call)
    train_step: Callable  # (state, batch) -> (state, metrics); the state is donated
    eval_step: Callable  # (params, batch) -> weighted sums (``steps.eval_step``)
    # (state, metric sums, batches[K, B, ...]) -> (state, sums): K updates per dispatch
    # (``steps.train_steps``, the supervised loop's hot path); state and sums are donated
    train_steps: Callable


@functools.lru_cache(maxsize=16)
def train_program(model_cfg: ModelConfig, tok_cfg: tokenizer.TokenizerConfig,
                  train_items: tuple, seed: int, mesh: Mesh) -> TrainProgram:
    """``TrainProgram`` of a model on ``mesh`` for ``config.train`` given as sorted items."""
    train_cfg = dict(train_items)
    tx = optim.make_optimizer(train_cfg)
    graphdef, abs_state, shardings, init_fn = steps.abstract_train_state(
        model_cfg, tok_cfg, tx, mesh, seed)
    loss_cfg = steps.loss_config(train_cfg)
    return TrainProgram(tx, graphdef, abs_state, shardings, init_fn,
                        steps.jit_train_step(graphdef, tx, loss_cfg, shardings, mesh),
                        steps.jit_eval_step(graphdef, loss_cfg, shardings["params"], mesh),
                        steps.jit_train_steps(graphdef, tx, loss_cfg, shardings, mesh))


@functools.lru_cache(maxsize=32)
def cached_evaluate(graphdef, tok_cfg: tokenizer.TokenizerConfig, rules: game.Rules):
    """``nnx_models.evaluate.make_evaluate``, one per (graphdef, tokenizer, rules): search
    caches its jitted runners on this function, so equal runs share their executables."""
    return evaluate_lib.make_evaluate(graphdef, tok_cfg, rules)


@dataclasses.dataclass(frozen=True)
class RunSetup:
    """What a mode runs on (module docstring). ``cfg`` is the config as built (loop modes:
    ``train.steps`` spans every update of the run); ``data`` and ``ckpt`` are the mode's inputs
    and checkpoint manager, set with ``dataclasses.replace`` after its checks."""

    cfg: dict
    rules: game.Rules
    tok_cfg: tokenizer.TokenizerConfig
    model_cfg: ModelConfig
    mesh: Mesh
    seq_len: int
    program: TrainProgram
    flops_per_eval: float  # forward FLOPs of one search evaluation (one state)
    init: dict  # where ``initial_state`` takes the parameters from (``config.init`` or scratch)
    init_params: Any = None  # ``init.source="hf"``: the imported weights (host)
    data: Any = None
    ckpt: ckpt_lib.Checkpointer | None = None

    @property
    def tx(self) -> optax.GradientTransformation:
        return self.program.tx

    @property
    def graphdef(self):
        return self.program.graphdef

    @property
    def abs_state(self):
        return self.program.abs_state

    @property
    def shardings(self):
        return self.program.shardings

    @property
    def evaluate(self) -> Callable:
        """``evaluate(params, states) -> (logits_BxA, value_B)`` for search."""
        return cached_evaluate(self.graphdef, self.tok_cfg, self.rules)

    def tokens(self, states: game.State) -> np.ndarray:
        """Batched game states -> token ids i32[..., seq_len] (host)."""
        return np.asarray(tokenizer.encode(states, self.tok_cfg))


def build(config, *, total_steps: int | None = None, from_init: bool = False) -> RunSetup:
    """Validated ``RunSetup`` of ``config`` (module docstring). ``total_steps``: the updates of a
    loop mode's whole run, which replace ``train.steps`` (and cap the warmup); ``from_init``:
    ``initial_state`` starts from ``config.init`` (the loop modes), else from scratch."""
    cfg = as_dict(config)
    common.check_values(cfg)
    if total_steps is not None:
        total = max(total_steps, 1)
        cfg["train"] = dict(cfg["train"], steps=total,
                            warmup_steps=min(cfg["train"]["warmup_steps"], total))
    init = cfg["init"] if from_init else {"source": "scratch", "path": ""}
    if init["source"] != "scratch" and not init["path"]:
        raise ValueError(f"config.init.source={init['source']!r} needs config.init.path.")
    rules = data_lib.problem_class(cfg).rules
    tok_cfg = tokenizer.TokenizerConfig(n_max=rules.n_max, **cfg["tokenizer"])
    model_cfg = steps.model_config(cfg["model"], tok_cfg)
    mesh = mesh_lib.make_mesh(cfg["mesh"])
    mesh_lib.check_batch_size(cfg["train"]["batch_size"], mesh)
    init_params = None
    if init["source"] == "hf":
        from flax import nnx

        from nnx_models import hf

        model = hf.load_policy_value(init["path"], tok_cfg, seed=cfg["seed"])
        model_cfg, init_params = model.cfg, nnx.state(model)
    seq_len = tokenizer.seq_len(tok_cfg)
    program = train_program(model_cfg, tok_cfg, tuple(sorted(cfg["train"].items())),
                            cfg["seed"], mesh)
    return RunSetup(cfg=cfg, rules=rules, tok_cfg=tok_cfg, model_cfg=model_cfg, mesh=mesh,
                    seq_len=seq_len, program=program, init=init, init_params=init_params,
                    flops_per_eval=float(flops.forward_flops_per_state(model_cfg, seq_len,
                                                                       rules.n_max)))


def initial_state(s: RunSetup) -> dict:
    """A fresh train state; parameters from ``config.init`` (optimizer state always fresh)."""
    state = s.program.init_fn()
    init = s.init
    if init["source"] == "supervised":
        from train.run_model import load_params

        state["params"] = load_params(init["path"], s.abs_state["params"],
                                      s.shardings["params"])
    elif init["source"] == "hf":
        state["params"] = jax.device_put(s.init_params, s.shardings["params"])
    if init["source"] != "scratch":
        state["opt_state"] = jax.jit(s.tx.init, out_shardings=s.shardings["opt_state"])(
            state["params"])
    return state


def checkpointer(s: RunSetup, workdir: str, every: int | None = None) -> ckpt_lib.Checkpointer:
    """``<workdir>/checkpoints`` with ``config.checkpoint`` (``every`` overrides the cadence)."""
    c = s.cfg["checkpoint"]
    return ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                 every=c["every"] if every is None else every, keep=c["keep"],
                                 async_save=c["async_save"])


def restore_or_init(s: RunSetup, extra_abs: Mapping[str, Any] | None = None, timer=None):
    """(train state, restored extras, checkpoint meta or None, step) from the newest checkpoint
    of ``s.ckpt``, or a fresh ``initial_state`` at step 0 (always, for a mode without a
    checkpointer). ``extra_abs``: what is saved beside the train state (``{"buffer": ...}``,
    layout ``{"train": state, **extras}``); ``timer``: a ``metrics.PhaseTimer`` that times it
    as phase "restore" or "init"."""
    latest = None if s.ckpt is None else s.ckpt.latest_step()  # no checkpointer: fresh
    phase = "init" if latest is None else "restore"
    with timer(phase) if timer is not None else contextlib.nullcontext():
        if latest is None:
            return initial_state(s), {}, None, 0
        if extra_abs is None:
            state, meta = s.ckpt.restore(latest, s.abs_state)
            return state, {}, meta, latest
        full, meta = s.ckpt.restore(latest, {"train": s.abs_state, **extra_abs})
        return full.pop("train"), full, meta, latest


def check_resume_config(workdir: str, cfg: dict) -> None:
    """Refuses to resume a workdir whose checkpoints came from a different model/data config."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        old = json.load(f)
    for key, fields in RESUME_KEYS.items():
        before, now = old.get(key, {}), cfg[key]
        diff = sorted(k for k in (fields or set(before) | set(now)) if before.get(k) != now.get(k))
        if diff:
            raise ValueError(f"--workdir={workdir} holds a run with a different config.{key} "
                             f"(fields {diff}); resume with the same config or use a new "
                             "--workdir.")


def write_config(workdir: str, cfg: dict) -> None:
    if jax.process_index() == 0:
        records.write_json(os.path.join(workdir, "config.json"), cfg, sort_keys=True)


def finite_or_raise(host_metrics: dict, update: int, ckpt: ckpt_lib.Checkpointer) -> None:
    bad = {k: v for k, v in host_metrics.items() if not np.isfinite(v)}
    if bad:
        ckpt.wait()
        last = ckpt.latest_step()
        raise NonFiniteError(
            f"non-finite training metrics {bad} by update {update}; stopped without saving. "
            f"Last good checkpoint: {'none' if last is None else f'update {last}'} in "
            f"{ckpt.directory}. Lower config.train.learning_rate or raise warmup_steps, then "
            "rerun the same command to resume from it.")
