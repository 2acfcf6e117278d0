#!/usr/bin/env bash
# The real CPU scaling sweep (docs/scaling.md, "Real CPU sweep"): ~40 min on 2 shared cores.
#
#   bash scripts/cpu_sweep.sh                          # train 9 runs, search evals, report
#   bash scripts/cpu_sweep.sh --grid.total_flops=3e12  # extra flags go to launch.sweep
#   ROOT=runs/sweep_small BUDGETS=1,4 bash scripts/cpu_sweep.sh
#
# 1. launch.sweep plans the IsoFLOP grid of train/configs/sweep_tiny.py:grid and runs the
#    train.main commands one after another (runs with a finished run.json are skipped).
# 2. scripts/sweep_eval.py: Gumbel search (method mcts) at BUDGETS simulations per move on the
#    held-out g24 test split, appended to every run's run.json (already evaluated runs skipped);
#    uniform-prior MCTS at the same budgets as the network-free reference.
# 3. scaling.main: report.md, fits.json and the plots in $ROOT/report.
# Every step is a cache, so rerunning after an interruption finishes the sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ROOT=${ROOT:-runs/sweep_cpu}
SPLIT=${SPLIT:-g24:test:107}
BUDGETS=${BUDGETS:-1,4,16,64,256}
THRESHOLDS=${THRESHOLDS:-0.25,0.5,0.75}
# Runs of one depth compile the same eval and search programs: compile them once.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$ROOT/jax_cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0

t0=$SECONDS
"$PY" -m launch.sweep --grid=train/configs/sweep_tiny.py:grid --grid.root="$ROOT" \
    --backend=local "$@"
echo "[cpu_sweep] training done after $((SECONDS - t0)) s"
"$PY" scripts/sweep_eval.py --runs="$ROOT/C*" --splits="$SPLIT" --methods=mcts \
    --budgets="$BUDGETS"
# The network-free reference at the same budgets (uniform prior, zero value; ~1 min, cached).
[ -f "$ROOT/baseline_uniform/search_eval/results.json" ] || \
    "$PY" -m search.eval --workdir="$ROOT/baseline_uniform" --model=uniform --splits="$SPLIT" \
        --methods=uniform_mcts --budgets="$BUDGETS" --n_max=4
echo "[cpu_sweep] search evals done after $((SECONDS - t0)) s"
"$PY" -m scaling.main --runs="$ROOT/C*" --out="$ROOT/report" --split="$SPLIT" --method=mcts \
    --thresholds="$THRESHOLDS"
echo "[cpu_sweep] done in $((SECONDS - t0)) s: $ROOT/report/report.md"
