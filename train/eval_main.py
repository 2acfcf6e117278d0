r"""The command line of ``python -m search.eval`` (``search/eval.py`` hands over to ``cli`` here).

It lives in ``train/`` because it loads networks (``train.run_model.load_network``: ``uniform``,
``oracle``, ``untrained:d<K>``, ``hf:<export dir>``), which ``search/`` never does; the sweep
itself is ``search.sweep.evaluate_run``. Flags and outputs: ``search/eval.py``'s docstring.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax

from scaling import workdir as workdir_lib
from search import sweep
from train import run_model


def main(argv: Sequence[str]) -> None:
    from absl import flags

    f = flags.FLAGS
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}; use --flag=value.")
    # Every check below reads flags and files only: nothing is built or compiled before they
    # pass (tests/test_play.py counts compilations).
    play, _ = run_model.conditions(f.model)  # the model's own slots and search settings
    opts = sweep.SweepOptions.played(play, **{name: f[name].value for name in OPTION_FLAGS
                                              if f[name].present})
    splits, methods = [s for s in f.splits.split(",") if s], [m for m in f.methods.split(",") if m]
    for flag in ("csv", "problems"):  # named in the error, not a bare codec error later
        if f[flag].value:
            workdir_lib.check_input_file(f[flag].value, f"--{flag}")
    if f.problems:  # a user's puzzle file replaces the default split (adds to explicit ones)
        splits = (splits if f["splits"].present else []) + [f"file:{f.problems}"]
    if not splits or not methods:
        raise ValueError(f"--splits={f.splits!r} / --methods={f.methods!r}: give at least one "
                         "of each.")
    if bad := [m for m in methods if m not in sweep.METHODS]:
        raise ValueError(f"--methods: {bad} unknown; allowed {', '.join(sweep.METHODS)}.")
    budgets = _ints(f.budgets, "budgets")
    if not budgets or min(budgets) < 1:
        raise ValueError(f"--budgets={f.budgets!r}: give simulations >= 1.")
    for spec in splits:  # every split spec and slot count fails here, before the network loads
        sweep.load_split(spec, f.csv, f.n_max, play)
    # The workdir lock: no second sweep or training run writes this workdir meanwhile; taking
    # it proves the workdir writable, and the sweep's output folder is checked before any search.
    with workdir_lib.hold(f.workdir):
        workdir_lib.ensure_writable(os.path.join(f.workdir, "search_eval"), create=False)
        mesh = jax.make_mesh((jax.device_count(),), ("data",)) if jax.device_count() > 1 else None
        out = sweep.evaluate_run(f.workdir, run_model.load_network(f.model, f.seed), splits,
                                 methods, budgets, f.csv, f.n_max, opts, mesh)
    print(sweep.markdown(out["entries"]))
    print(f"[search.eval] wrote {out['out_dir']}")


# Flags that are SweepOptions fields: an explicit flag wins over the model's own setting.
OPTION_FLAGS = ("batch_size", "seed", "max_num_considered_actions", "beam_expand", "dfs_expand",
                "dfs_threshold", "sample_temperature")


def _ints(value: str, field: str) -> list[int]:
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--{field}={value!r} is not a comma-separated list of "
                         "integers.") from None


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("workdir", None, "Run directory; outputs go to <workdir>/search_eval.")
    flags.DEFINE_string("model", "uniform", "uniform | oracle | untrained:d<K> | hf:<export dir>.")
    flags.DEFINE_string("splits", "g24:test:100", "Comma list of splits (search/eval.py).")
    flags.DEFINE_string("methods", ",".join(sweep.METHODS), f"Comma list of {sweep.METHODS}.")
    flags.DEFINE_string("budgets", ",".join(map(str, sweep.DEFAULT_BUDGETS)),
                        "Comma list of budgets.")
    flags.DEFINE_string("csv", None, "Path to the ToT 24.csv (for tot100/tsllm362/all1362/xot*).")
    flags.DEFINE_string("problems", None, "CSV/TSV with 'numbers' (space-separated) and 'target' "
                        "columns: score a model on your own puzzles (split 'file:<path>').")
    flags.DEFINE_integer("n_max", None, "Slots of the searched states (default: the model's own, "
                         "or more for longer problems; search/play.py).")
    flags.DEFINE_integer("batch_size", 128, "Problems per jitted search call.")
    flags.DEFINE_integer("seed", 0, "RNG seed (sampling, untrained init).")
    flags.DEFINE_integer("max_num_considered_actions", 16, "Gumbel root actions considered "
                         "(default: the model's own setting, else 16).")
    flags.DEFINE_integer("beam_expand", 8, "BFS-V: children expanded per beam state.")
    flags.DEFINE_integer("dfs_expand", 8, "DFS-V: children expanded per state.")
    flags.DEFINE_float("dfs_threshold", 0.05, "DFS-V: prune children with value below this.")
    flags.DEFINE_float("sample_temperature", 1.0, "Policy sampling temperature (0 = greedy).")
    flags.mark_flag_as_required("workdir")


def cli() -> None:
    import sys

    from absl import app

    _define_flags()

    def guarded(argv):
        from launch import host

        host.quiet_backend_probe()
        try:
            main(argv)
        except (ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    app.run(guarded)


if __name__ == "__main__":
    cli()
