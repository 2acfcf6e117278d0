#!/usr/bin/env bash
# The CPU scaling sweep (`make sweep-cpu`, docs/scaling.md): 4 budgets x 6 sizes on the labelled
# stream, the largest budget held out and predicted before it is trained.
#
#   bash scripts/cpu_sweep.sh                         # everything, ~90 min on 2 cores
#   ROOT=runs/sw GRID=launch/sweeps/cpu.py bash scripts/cpu_sweep.sh --grid.total_flops=6e12
#
# 0. train.stream_cache draws the stream's first examples once (every run reads the same stream
#    from example 0; exact, see train/stream_cache.py);
# 1. launch.sweep trains budgets 0..K-2 (finished runs are skipped, interrupted ones resume);
# 2. scaling.holdout predicts budget K-1's N_opt and loss from them -> $ROOT/prediction.json
#    (refused once a held-out run exists; never overwritten);
# 3. launch.sweep trains budget K-1;
# 4. search evals (Gumbel MCTS, 1..256 simulations, TS-LLM-362 and g4_t100 test) of the
#    lowest-loss run of every budget, and uniform-prior MCTS as the network-free reference;
# 5. scaling.main writes $ROOT/report (report.md, fits.json, plots);
# 6. the small records (run.json, config.json, metrics.jsonl, sweep.json, prediction.json) are
#    copied to $RESULTS, from which `scaling.main` regenerates the report without training.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ROOT=${ROOT:-runs/sweep_cpu}
GRID=${GRID:-launch/sweeps/cpu.py}
RESULTS=${RESULTS:-results/sweep_cpu}
SPLITS=${SPLITS:-tsllm362,g4_t100:test:100}
BUDGETS=${BUDGETS:-1,4,16,64,256}
CSV=${CSV:-../shared/benchmarks/24.csv}  # the ToT puzzles: TS-LLM-362 is a subset of them
PROCS=${PROCS:-2}                         # labelling processes for the stream cache
export ZERO24_STREAM_CACHE=${ZERO24_STREAM_CACHE:-runs/stream_cache}
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$ROOT/jax_cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
sweep() { "$PY" -m launch.sweep --grid="$GRID" --grid.root="$ROOT" "$@"; }

t0=$SECONDS
sweep --backend=print "$@" > /dev/null  # writes $ROOT/sweep.json
read -r K EXAMPLES TRAIN_CONFIG < <("$PY" - "$ROOT/sweep.json" <<'PYEOF'
import json, sys
plan = json.load(open(sys.argv[1]))
print(len({r["budget"] for r in plan["runs"]}),
      max(int(r["tokens"]) // plan["seq_len"] for r in plan["runs"]), plan["train_config"])
PYEOF
)
LAST=$((K - 1))
"$PY" -m train.stream_cache --config="$TRAIN_CONFIG" --examples="$EXAMPLES" \
    --dir="$ZERO24_STREAM_CACHE" --processes="$PROCS"
echo "[cpu_sweep] stream cache ready after $((SECONDS - t0)) s"
sweep --backend=local --budgets="$(seq -s, 0 $((LAST - 1)))" "$@"
echo "[cpu_sweep] budgets 0..$((LAST - 1)) trained after $((SECONDS - t0)) s"
"$PY" -m scaling.holdout --plan="$ROOT/sweep.json" --runs="$ROOT/C*" --budget="$LAST" \
    --out="$ROOT/prediction.json"
sweep --backend=local --budgets="$LAST" "$@"
echo "[cpu_sweep] held-out budget trained after $((SECONDS - t0)) s"
mapfile -t BEST < <("$PY" -m scaling.holdout --plan="$ROOT/sweep.json" --runs="$ROOT/C*" \
    --best_per_budget)
for RUN in "${BEST[@]}"; do  # cached: a run with every entry already is skipped
    "$PY" scripts/sweep_eval.py --runs="$RUN" --splits="$SPLITS" --methods=mcts \
        --budgets="$BUDGETS" --batch_size=512
done
for SPLIT in ${SPLITS//,/ }; do  # the network-free reference at the same budgets (cached)
    OUT="$ROOT/baseline_uniform/${SPLIT//:/_}"
    [ -f "$OUT/search_eval/results.json" ] || "$PY" -m search.eval --workdir="$OUT" --model=uniform \
        --splits="$SPLIT" --methods=uniform_mcts --budgets="$BUDGETS" --n_max=4 \
        ${CSV:+$([ -f "$CSV" ] && echo "--csv=$CSV")}
done
echo "[cpu_sweep] search evals done after $((SECONDS - t0)) s"
"$PY" scripts/export_records.py --runs="$ROOT/C*" --extra="$ROOT/sweep.json,$ROOT/prediction.json" \
    --baselines="$ROOT/baseline_uniform/*/search_eval/results.json" --out="$RESULTS"
"$PY" -m scaling.main --runs="$RESULTS/C*" --out="$ROOT/report" --splits="$SPLITS" \
    --method=mcts --prediction="$RESULTS/prediction.json" --baselines="$RESULTS/baselines"
echo "[cpu_sweep] done in $((SECONDS - t0)) s: $ROOT/report/report.md"
