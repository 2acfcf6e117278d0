r"""Networks for search: a trained run's from its workdir, an HF export's, and ``--mode=eval``.

    python -m train.main --config=train/configs/default.py:runlocal --workdir=runs/x --mode=eval \
        --config.search_eval.budgets=1,8,64

``load_run_model(workdir)`` rebuilds the ``PolicyValueNet`` of a run from its own ``config.json``
(model and tokenizer exactly as trained, states with the run's ``Rules.n_max`` slots) and puts
in the parameters of its newest checkpoint that restores. Checkpoints of both layouts are read:
``--mode=supervised`` saves ``{"params", "opt_state", "step", "rng"}``, ``--mode=search_and_learn``
saves ``{"train": <that train state>, "buffer": <replay buffer>}``; only the parameters are read
from disk, never the optimizer moments or the buffer.

``load_network(spec)`` / ``model_network(model)`` wrap a network (or a network-free baseline) as
the ``search.types.Network`` that ``search.sweep`` searches with; ``search/`` itself never builds
a network. ``python -m search.eval`` (``train/eval_main.py``) loads its ``--model`` here.

``eval_checkpoint(config, workdir)`` (``--mode=eval``) reports on the newest checkpoint: the
eval-split losses for a supervised run (its dataset is the eval data), and for every run the
``search.sweep`` solve-rate sweep over ``config.search_eval`` (splits x methods x budgets), which
writes ``<workdir>/search_eval/`` and merges ``search_evals`` entries into ``<workdir>/run.json``
(``scaling.run_json.merge_entries``: same split, method and budget replaced).
``scripts/sweep_eval.py`` runs the same sweep over many runs of a scaling grid.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from scaling import workdir as workdir_lib
from search import play as play_lib
from search import stream, sweep
from search.types import Network, Play, Provenance
from train import checkpoint as ckpt_lib
from train import data as data_lib
from train import steps
from train.configs import common

# Where each mode's checkpoints keep the parameters (see the module docstring).
PARAMS_KEYS = {"supervised": ("params",), "search_and_learn": ("train", "params")}


def newest_step(workdir: str, move_aside: bool = False) -> int:
    """The newest checkpoint of ``workdir`` that restores (a corrupt newer one is skipped with a
    warning: ``train.checkpoint.restorable_step``); FileNotFoundError naming the train command
    if there is none. Nothing is written unless ``move_aside`` (the caller owns the workdir:
    corrupt steps go to ``checkpoints/corrupt-<step>``), so a bad ``--workdir`` leaves no
    trace."""
    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    step = ckpt_lib.restorable_step(directory, move_aside=move_aside)
    if step is None:
        raise FileNotFoundError(
            f"run directory {workdir} holds no checkpoint (nothing in {workdir}/checkpoints); "
            f"train it first: python -m train.main --config=<config> --workdir={workdir} "
            "--mode=supervised (or --mode=search_and_learn).")
    return step


def checkpoint_mode(workdir: str, step: int) -> str:
    """``supervised`` or ``search_and_learn``: which layout ``step`` was saved in."""
    tree = ckpt_lib.saved_structure(os.path.join(os.path.abspath(workdir), "checkpoints"), step)
    return "search_and_learn" if "train" in tree else "supervised"


def restore_numpy(workdir: str, params_only: bool = False,
                  step: int | None = None) -> tuple[Any, int]:
    """(checkpoint ``step``'s state, or only its parameters, as numpy arrays; the step).
    ``step=None``: the newest."""
    step = newest_step(workdir) if step is None else step
    keys = PARAMS_KEYS[checkpoint_mode(workdir, step)] if params_only else ()
    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    return ckpt_lib.load_numpy(directory, step, keys), step


def path_key(path) -> tuple[str, ...]:
    """A leaf path as strings, without the ``value`` level orbax keeps for nnx Variables (and
    with ``nnx.List`` indices, which orbax stores as strings, compared as strings)."""
    out = tuple(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)
    return tuple(k for k in out if k != "value")


def load_params(workdir: str, abs_params, shardings=None, step: int | None = None):
    """Parameters of checkpoint ``step`` (None: the newest) of a supervised or search-and-learn
    run in the structure of ``abs_params`` (an ``nnx.State``, abstract or not), placed in
    ``shardings`` (None: the default device). Paths and shapes must match (same model config)."""
    pure, step = restore_numpy(workdir, params_only=True, step=step)
    saved = {path_key(p): x for p, x in jax.tree_util.tree_leaves_with_path(pure)}
    leaves = []
    for path, a in jax.tree_util.tree_leaves_with_path(abs_params):
        key = path_key(path)
        if key not in saved or tuple(np.shape(saved[key])) != tuple(a.shape):
            got = np.shape(saved[key]) if key in saved else "missing"
            raise ValueError(f"checkpoint {workdir} (update {step}): parameter {'/'.join(key)} is "
                             f"{got}; this config expects {a.shape}. Use the run's own "
                             "config.model and config.tokenizer.")
        leaves.append(np.asarray(saved[key], a.dtype))
    params = jax.tree.unflatten(jax.tree.structure(abs_params), leaves)
    return jax.device_put(params, shardings)


def run_config(workdir: str) -> dict:
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing; {workdir} is not a train.main run directory.")
    with open(path, encoding="utf-8") as f:
        return common.from_json(json.load(f))


def load_run_model(workdir: str, step: int | None = None):
    """(PolicyValueNet with checkpoint ``step``'s parameters (None: the newest), its Rules)."""
    from flax import nnx

    from nnx_models import PolicyValueNet, tokenizer

    cfg = run_config(workdir)
    rules = data_lib.problem_class(cfg).rules
    tok = tokenizer.TokenizerConfig(n_max=rules.n_max, **cfg["tokenizer"])
    model = PolicyValueNet(steps.model_config(cfg["model"], tok), tok, rngs=nnx.Rngs(0))
    nnx.update(model, load_params(workdir, nnx.state(model), step=step))
    return model, rules


def run_play(cfg: dict) -> tuple[Play, Provenance]:
    """A run's playing conditions (its rules' slots) and its training classes, from its config
    (the excluded keys are added by ``run_conditions`` from the workdir's exclusion.json)."""
    from nnx_models.token_layout import MAX_SLOTS

    rules = data_lib.problem_class(cfg).rules
    # The eval's settings of the run's own evaluation (train.loop.Evaluator) travel with it.
    considered = cfg.get("eval", {}).get("max_considered")
    search = {} if considered is None else {"max_num_considered_actions": considered}
    play = Play(n_max=rules.n_max, max_slots=MAX_SLOTS, fractions=rules.fractions,
                use_all=rules.use_all, search=search)
    classes = list(play_lib.training_classes(cfg))
    init = cfg.get("init", {})
    if init.get("source") == "supervised" and init.get("path"):  # a warm start's data too
        try:
            classes += play_lib.training_classes(run_config(init["path"]))
        except FileNotFoundError:
            return play, Provenance(classes=None)
    return play, Provenance(classes=tuple(dict.fromkeys(classes)))


def run_conditions(workdir: str) -> tuple[Play, Provenance]:
    """``run_play`` of the run in ``workdir`` with its exclusion record."""
    play, prov = run_play(run_config(workdir))
    return play, dataclasses.replace(prov, excluded=stream.read_exclusion(workdir))


def export_conditions(path: str) -> tuple[Play | None, Provenance]:
    """Playing conditions and provenance of an ``nnx_models.hf`` export: the ``play`` and
    ``training_classes`` entries of its zero24_model.json (an export without ``play`` was
    trained on its tokenizer's slot count), and its exclusion.json. Reads JSON only, so every
    check can run before a network is built."""
    from nnx_models.token_layout import MAX_SLOTS

    meta = os.path.join(path, "zero24_model.json")
    if not os.path.isfile(meta):  # a plain Llama checkpoint: fresh heads, never trained here
        return None, Provenance()
    with open(meta, encoding="utf-8") as f:
        saved = json.load(f)
    if "play" in saved:
        play = play_lib.play_from_json(saved["play"])
    else:
        play = Play(n_max=saved["tokenizer"]["n_max"], max_slots=MAX_SLOTS)
    classes = saved.get("training_classes")
    return play, Provenance(classes=None if classes is None else tuple(classes),
                            excluded=stream.read_exclusion(path))


def model_network(model, name: str = "model", play: Play | None = None,
                  provenance: Provenance | None = None) -> Network:
    """A ``nnx_models.PolicyValueNet`` as a ``search.types.Network`` (its tokenizer re-sized to
    each ``rules.n_max``): what ``search.sweep`` searches with. ``play`` defaults to the
    model's own slot count."""
    from flax import nnx

    from nnx_models import make_evaluate, seq_len
    from nnx_models.token_layout import MAX_SLOTS
    from scaling.flops import forward_flops_per_state

    graphdef, params = nnx.split(model)
    tok = lambda rules: dataclasses.replace(model.tok_cfg, n_max=rules.n_max)
    return Network(
        name=name, params=params,
        make_evaluate=lambda rules: make_evaluate(graphdef, tok(rules), rules),
        flops_per_eval=lambda rules: float(forward_flops_per_state(
            model.cfg, seq_len(tok(rules)), rules.n_max)),
        play=play or Play(n_max=model.tok_cfg.n_max, max_slots=MAX_SLOTS),
        provenance=provenance)


def conditions(spec: str) -> tuple[Play | None, Provenance | None]:
    """(playing conditions, provenance) of a ``load_network`` spec, from JSON alone (no network
    is built): what the command lines check their inputs against before any compute."""
    from nnx_models.token_layout import MAX_SLOTS

    if spec in sweep.BASELINES:
        return None, None
    if spec.startswith("untrained:d") and spec[len("untrained:d"):].isdigit():
        # never trained: any slot count plays it alike, and no problem is a training problem
        return Play(n_max=2, max_slots=MAX_SLOTS), Provenance(classes=(), excluded=frozenset())
    if spec.startswith("hf:"):
        path = spec[3:]
        if not os.path.isdir(path):
            raise ValueError(f"--model={spec!r}: {path} is not a directory; export a model with "
                             "nnx_models.hf.save_pretrained(model, path) first.")
        return export_conditions(path)
    raise ValueError(f"--model={spec!r} is unknown; allowed uniform, oracle, untrained:d<K>, "
                     "hf:<export dir>.")


def load_network(spec: str, seed: int = 0) -> Network:
    """A Network from a spec: ``uniform`` | ``oracle`` (``search.sweep.BASELINES``) |
    ``untrained:d<depth>`` | ``hf:<dir>`` (an ``nnx_models.hf`` export), with its playing
    conditions (``conditions``)."""
    play, prov = conditions(spec)  # validates the spec
    if spec in sweep.BASELINES:  # network-free: nothing to load
        return sweep.BASELINES[spec]
    from flax import nnx

    from nnx_models import ModelConfig, PolicyValueNet

    if spec.startswith("untrained:d"):
        cfg = ModelConfig.from_depth(int(spec[len("untrained:d"):]))
        return model_network(PolicyValueNet(cfg, rngs=nnx.Rngs(seed)), spec, play, prov)
    from nnx_models.hf import load_policy_value

    return model_network(load_policy_value(spec[3:], seed=seed), spec, play, prov)


def search_evaluate(workdir: str, splits: Sequence[str], methods: Sequence[str],
                    budgets: Sequence[int], *, batch_size: int = 128, csv_path: str | None = None,
                    name: str | None = None, progress: bool = False,
                    step: int | None = None) -> dict:
    """``search.sweep.evaluate_run`` on the run's own network (``load_run_model``): writes
    ``<workdir>/search_eval/``, merges into ``run.json``; returns {"entries", "out_dir"}."""
    model, _ = load_run_model(workdir, step)
    play, prov = run_conditions(workdir)
    net = model_network(model, name or run_config(workdir).get("name", "model"), play, prov)
    return sweep.evaluate_run(workdir, net, splits, methods, budgets, csv_path=csv_path,
                              opts=sweep.SweepOptions.played(play, batch_size=batch_size),
                              progress=progress)


def search_eval_args(cfg: dict) -> dict:
    """``config.search_eval`` checked (each error names its field) -> ``search_evaluate`` args:
    ``configs.common.check_values`` types and ranges, then what ``--mode=eval`` adds (one split,
    method and budget at least; method names from ``search.sweep.METHODS``)."""
    common.check_values(cfg)
    se = cfg["search_eval"]
    for field, example in (("splits", "g24:test:32"), ("methods", "mcts"), ("budgets", "1,8")):
        if not se[field]:
            raise ValueError(f"config.search_eval.{field}=() is empty; --mode=eval needs one "
                             f"at least, e.g. --config.search_eval.{field}={example}.")
    if bad := [m for m in se["methods"] if m not in sweep.METHODS]:
        raise ValueError(f"config.search_eval.methods: {bad} unknown; allowed {sweep.METHODS}.")
    return dict(splits=list(se["splits"]), methods=list(se["methods"]),
                budgets=list(se["budgets"]), batch_size=se["batch_size"],
                csv_path=se["csv"] or None)


def eval_checkpoint(config, workdir: str) -> dict[str, Any]:
    """``--mode=eval``: eval-split losses (supervised runs) and the search solve rates of the
    newest checkpoint in ``workdir``. Returns ``{"update", "mode", "eval/<loss>"...,
    "search/<split>/<method>/sims<B>": solve rate..., "search_eval_dir"}``."""
    from train import supervised

    cfg = supervised.as_dict(config)
    args = search_eval_args(cfg)  # before any work: a typo fails at once
    # train.main holds the workdir lock, which proved the workdir writable; the sweep's own
    # output directory may still be read-only (a copied run): find out before the sweep.
    workdir_lib.ensure_writable(os.path.join(workdir, "search_eval"), create=False,
                                flag="--workdir")
    # This mode writes the workdir (train.main holds its lock): a corrupt step is moved aside
    # (by process 0; every process must pass the same flag, the move is a collective).
    step = newest_step(workdir, move_aside=True)
    mode = checkpoint_mode(workdir, step)
    out: dict[str, Any] = {"update": step, "mode": mode}
    if mode == "supervised":  # search_and_learn runs have no supervised eval split
        # The run's own config (model, tokenizer, data as trained), like the search half below:
        # the command line only chooses what to evaluate and the mesh of this machine.
        own = {**run_config(workdir), "mesh": cfg["mesh"]}
        out.update(supervised.evaluate_checkpoint(own, workdir, step=step))
    res = search_evaluate(workdir, **args, step=step)
    rates = {f"search/{e['split']}/{e['method']}/sims{e['simulations']}": e["solve_rate"]
             for e in res["entries"]}
    loss = f"eval/loss {out['eval/loss']:.4f}; " if "eval/loss" in out else ""
    print(f"[train] eval {workdir} ({mode}, update {step}): {loss}solve rate "
          + ", ".join(f"{e['split']} {e['method']}@{e['simulations']} {e['solve_rate']:.3f}"
                      for e in res["entries"]) + f"; wrote {res['out_dir']}", flush=True)
    return {**out, **rates, "search_eval_dir": res["out_dir"]}
