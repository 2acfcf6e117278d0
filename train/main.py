r"""Entry point: ``python -m train.main --config=train/configs/<name>.py[:arg] --workdir=DIR``.

    python -m train.main --config=train/configs/default.py --workdir=runs/default
    python -m train.main --config=train/configs/g24_supervised.py:size=d2 --workdir=runs/d2 \
        --config.train.steps=500 --mode=supervised

``--mode`` (default: ``config.mode``) is one of generate_data | supervised | eval |
search_and_learn | flagship | ttt | grpo | compare, or check: every check of ``config.mode`` that
needs only the config and the input files, and the plan, without compute (``train/check.py``).
The work happens in importable functions (``train.supervised.train_and_evaluate(config,
workdir)``) that notebooks and tests call too.
Configs are locked: a misspelt ``--config.x.y`` override is an error. Bad input (flags, config,
a workdir held by another run, see ``train/flag_errors.py`` and ``scaling/workdir.py``) exits with
status 2 and a one-line message naming the field (``--traceback`` shows the full stack).
Multi-host: ``--multihost`` plus ``--coordinator_address/--num_processes/--process_id`` (or
auto-detection on SLURM / Cloud TPU); see ``launch/multihost.py`` and ``launch/README.md``.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from launch import host, multihost  # multihost defines --multihost & co.; no jax devices
from train import flag_errors, modes
from train.configs.common import MODES

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (train/configs/*.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, run.json).")
_MODE = flags.DEFINE_enum("mode", None, MODES + ("check",),
                          "What to run; defaults to config.mode. check: every check of "
                          "config.mode and its plan, no compute (train/check.py).")
_TRACEBACK = flags.DEFINE_bool("traceback", False, "Show the full stack on bad-input errors.")
_RUNS = flags.DEFINE_list("runs", [], "--mode=compare: run directories to compare.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; use --flag=value.")
    mode = _MODE.value or _CONFIG.value.mode
    if mode not in MODES + ("check",):
        raise app.UsageError(f"config.mode={mode!r} is unknown; allowed {MODES}.")
    host.tune_malloc()  # XLA:CPU steps re-fault their buffers otherwise (launch/host.py)
    host.quiet_backend_probe()
    try:
        multihost.initialize_from_flags()  # before anything touches jax devices
        result = modes.run(mode, _CONFIG.value, _WORKDIR.value, runs=_RUNS.value)
    except (ValueError, FileNotFoundError, NotImplementedError, FloatingPointError) as e:
        if _TRACEBACK.value:
            raise
        print(f"error: {e}", file=sys.stderr)  # one line (a logging.error would repeat it)
        sys.exit(2)
    logging.info("done: %s", result)
    if mode != "check":  # check printed its plan
        print(f"[train] {mode} done: {result}", flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=flag_errors.parser(_CONFIG))
