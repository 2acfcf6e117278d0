r"""Scaling report from training-run records.

    python -m scaling.main --runs='runs/sweep/*' --out=runs/sweep_report
    python -m scaling.main --runs='runs/**/run.json' --out=report --target_flops=1e17,1e18 \
        --split=test --method=gumbel --thresholds=0.5,0.8 --bootstrap=500

Writes ``report.md``, ``fits.json`` and PNG plots to ``--out`` (see ``scaling/report.py`` and
docs/scaling.md). Bad records and an unwritable ``--out`` exit non-zero with the file and field
named, before anything is written.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys

from absl import app, flags

from scaling import records, report, workdir

_RUNS = flags.DEFINE_string("runs", None, "Glob of run directories or run.json files.",
                            required=True)
_OUT = flags.DEFINE_string("out", None, "Output directory for report.md, fits.json, plots.",
                           required=True)
_LOSS_KEY = flags.DEFINE_string("loss_key", "eval/loss", "final_metrics key fitted as the loss.")
_SPLIT = flags.DEFINE_string("split", None, "search_evals split (default: most frequent).")
_METHOD = flags.DEFINE_string("method", None, "search_evals method (default: most frequent).")
_THRESHOLDS = flags.DEFINE_list("thresholds", ["0.25", "0.5", "0.75"],
                                "Solve-rate thresholds of the train/test frontier.")
_TARGETS = flags.DEFINE_list("target_flops", [], "Training budgets to predict at (FLOPs); "
                             "default 10x and 100x the largest run.")
_BOOTSTRAP = flags.DEFINE_integer("bootstrap", 200, "Bootstrap replicates per fit (0: none).",
                                  lower_bound=0)
_LEVEL = flags.DEFINE_float("ci", 0.95, "Confidence level of the intervals.", lower_bound=0.5,
                            upper_bound=0.999)
_RTOL = flags.DEFINE_float("budget_rtol", 0.05, "Runs within this relative FLOPs share a budget.",
                           lower_bound=0.0)
_AXIS = flags.DEFINE_enum("compute", "flops", ["flops", "evals", "simulations"],
                          "Search compute axis of the solve-rate curves and the frontier.")
_SKIP = flags.DEFINE_bool("skip_invalid", False, "Warn about and skip invalid records.")
_SEED = flags.DEFINE_integer("seed", 0, "Bootstrap seed.")
_DEPTHS = flags.DEFINE_list("suggest_depths", [], "Candidate depths: suggest depth, batch and "
                            "learning rate for each target budget (imports nnx_models).")
_SPLITS = flags.DEFINE_list("splits", [], "More search_evals splits, each with its own curves "
                            "and frontier (the first is --split's).")
_PREDICTION = flags.DEFINE_string("prediction", None, "scaling.holdout prediction.json: scored "
                                  "against the runs of its budget.")
_BASELINES = flags.DEFINE_string("baselines", None, "Directory or glob of search.eval "
                                 "results.json files of network-free references.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 32, "Tokens per example, for the suggested batch.",
                                lower_bound=1)


def _numbers(name: str, values: list[str], kind=float) -> tuple:
    try:
        return tuple(kind(v) for v in values)
    except ValueError as e:
        raise app.UsageError(f"--{name}={','.join(values)} must be {kind.__name__}s: {e}") from e


def _load(path: str | None):
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read ({e}).") from e


def _glob(pattern: str | None) -> list[str]:
    if not pattern:
        return []
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, "*.json")
    return sorted(glob.glob(pattern))


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    opts = report.ReportOptions(
        loss_key=_LOSS_KEY.value, split=_SPLIT.value, method=_METHOD.value,
        thresholds=_numbers("thresholds", _THRESHOLDS.value),
        target_flops=_numbers("target_flops", _TARGETS.value), bootstrap=_BOOTSTRAP.value,
        level=_LEVEL.value, budget_rtol=_RTOL.value, seed=_SEED.value, compute_axis=_AXIS.value,
        suggest_depths=_numbers("suggest_depths", _DEPTHS.value, int), seq_len=_SEQ_LEN.value,
        splits=tuple(_SPLITS.value))
    try:
        # Before the fits: a read-only --out would otherwise fail only after all of them.
        workdir.ensure_writable(_OUT.value, create=False, flag="--out")
        recs = records.load_records(_RUNS.value, skip_invalid=_SKIP.value)
        opts = dataclasses.replace(opts, prediction=_load(_PREDICTION.value),
                                   baselines=tuple(_load(p) for p in _glob(_BASELINES.value)))
        if opts.split is None and opts.splits:
            opts = dataclasses.replace(opts, split=opts.splits[0])
        summary = report.build_report(recs, _OUT.value, opts)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{summary['num_runs']} runs -> {_OUT.value}/report.md, fits.json, "
          f"{len(summary['plots'])} plots")
    return 0


if __name__ == "__main__":
    app.run(main)
