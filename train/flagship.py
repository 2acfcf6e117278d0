"""``--mode=flagship``: supervised warm start, then search-and-learn, then the HF export.

The phases and their settings are described in ``train/configs/flagship.py``. Phase 1 trains in
``<workdir>/warm`` with the config's ``train``/``data`` sections; phase 2 runs in ``<workdir>``
from phase 1's newest checkpoint with ``flagship.sl_learning_rate`` (fine-tuning a trained
network at the warm start's peak rate undoes much of it). A rerun skips a finished phase and
resumes an interrupted one, so a killed run continues where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import jax
import ml_collections

from search import play as play_lib
from search import stream
from train import modes, run_model

EXPORT = "export"


def _finished(workdir: str) -> bool:
    """The phase in ``workdir`` wrote its final run.json (completed or stopped at its limit)."""
    path = os.path.join(workdir, "run.json")
    if not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("status") in ("completed", "time_limit")


def phase_configs(config) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
    """(warm-start config, search-and-learn config) from the flagship config; ``init.path`` of the
    second is filled in by ``train_and_evaluate``."""
    warm = ml_collections.ConfigDict(config.to_dict())
    warm.name, warm.mode = f"{config.name}_warm", "supervised"
    sl = ml_collections.ConfigDict(config.to_dict())
    sl.mode = "search_and_learn"
    sl.train.learning_rate = config.flagship.sl_learning_rate
    sl.train.warmup_steps = config.flagship.sl_warmup_steps
    return warm, sl


def export(workdir: str) -> str:
    """``<workdir>/export``: the newest checkpoint as an HF directory, written atomically."""
    from nnx_models import hf

    out = os.path.join(workdir, EXPORT)
    model, _ = run_model.load_run_model(workdir)
    if jax.process_index() != 0:
        return out
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    # The export carries how it is played and what it trained on (search/play.py).
    play, prov = run_model.run_play(run_model.run_config(workdir))
    hf.save_pretrained(model, tmp, meta={"play": play_lib.play_to_json(play),
                                         "training_classes": None if prov.classes is None
                                         else list(prov.classes)})
    for name in (stream.EXCLUSION_JSON, "run.json"):
        if os.path.isfile(os.path.join(workdir, name)):
            shutil.copy2(os.path.join(workdir, name), os.path.join(tmp, name))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
    warm_cfg, sl_cfg = phase_configs(config)
    warm_dir = os.path.join(workdir, "warm")
    if _finished(warm_dir):
        print(f"[flagship] warm start in {warm_dir} is finished; skipping it", flush=True)
    else:
        modes.dispatch("supervised", warm_cfg, warm_dir)
    sl_cfg.init.source, sl_cfg.init.path = "supervised", warm_dir
    sl_cfg.lock()
    result = modes.dispatch("search_and_learn", sl_cfg, workdir)
    if result.get("status") in ("completed", "time_limit"):
        result["export"] = export(workdir)
        print(f"[flagship] exported the network to {result['export']}", flush=True)
    return result
