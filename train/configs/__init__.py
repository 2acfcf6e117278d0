"""Experiment config files (one job per file); ``load_config_file`` reads one by path."""

import importlib.util
import os


def load_config_file(spec: str):
    """``path/to/config.py[:arg]`` -> its ``get_config(arg)`` (as ``train.main --config=``)."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ValueError(f"config file {spec!r}: no file {path!r}.")
    mod_spec = importlib.util.spec_from_file_location(f"_zero24_cfg_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module.get_config(arg or None)
