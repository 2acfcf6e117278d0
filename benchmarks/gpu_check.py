r"""Everything a lent GPU should measure, in one command (<= 8 minutes on one H100/H200).

    bash benchmarks/gpu_check.sh                       # on the device: bench_out/gpu_check.json
    bash benchmarks/gpu_check.sh --dry-run             # CPU: the same code at tiny sizes
    python -m benchmarks.gpu_check --dry-run --out=/tmp/g.json

Sections of the JSON (each also printed):
- ``mfu``: a SmolLM2-135M-shaped bf16 train step (``benchmarks.bench_model``, B=32, L=512, JAX
  only): achieved train TFLOP/s over the device's dense bf16 peak (``PEAK_BF16``) and over the
  1024^3 GEMM rate measured in the same run;
- ``search``: ``benchmarks.bench_search`` at B=1024, S=32 with the flagship:gpu network
  (11.3M parameters, untrained: the timing does not depend on the weights): search overhead
  (search / ((S+1) x forward)) and simulations/s;
- ``engine``: ``benchmarks.bench_game`` state transitions/s of the jitted exact engine;
- ``flagship``: the first iterations of ``flagship.py:gpu`` (a 120 s warm start, 2 search-and-learn
  iterations): compile time, steps/s, tokens/s of phase 1, per-phase seconds of phase 2.
``--dry-run`` swaps every size for a tiny one (and flagship:gpu for flagship:runlocal), so CI
checks the code path on CPU; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time

import jax

from benchmarks import bench_game, bench_model, bench_search, common

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' datasheets (SXM parts).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "B200": 2250e12}


def peak_bf16(device_kind: str) -> float | None:
    return next((v for k, v in PEAK_BF16.items() if k in device_kind.upper()), None)


def mfu(dry: bool, out_dir: str) -> dict:
    args = (["--sizes=d2", "--batch=4", "--seq=32", "--repeats=2"] if dry else
            ["--sizes=smollm2_135m", "--batch=32", "--seq=512", "--repeats=5",
             "--dtype=bfloat16"])
    r = bench_model.main(args + ["--no_torch", f"--out={out_dir}/bench_model.json"])
    row, peak = r["rows"][0], peak_bf16(r["device"])
    achieved = row["jax_train_tflop_s"] * 1e12
    return dict(size=row["size"], params=row["params"], batch=row["batch"], seq=row["seq"],
                train_tflop_s=row["jax_train_tflop_s"], tokens_per_s=row["jax_train_tok_s"],
                peak_bf16_flop_s=peak, mfu=achieved / peak if peak else None,
                of_measured_gemm=achieved / max(r["gemm_peak_flop_s"].values()))


def search(dry: bool) -> dict:
    from flax import nnx

    from nnx_models import PolicyValueNet, tokenizer
    from train import steps
    from train.configs import flagship

    c = flagship.get_config("runlocal" if dry else "gpu")
    tok = tokenizer.TokenizerConfig(n_max=4, **c.tokenizer.to_dict())
    model = PolicyValueNet(steps.model_config(c.model.to_dict(), tok), tok, rngs=nnx.Rngs(0))
    batch, sims = (32, 4) if dry else (1024, 32)
    r = bench_search.run(batch, sims, 0, 2 if dry else 5, 0, model=model)
    return {k: r[k] for k in ("batch", "simulations", "params", "overhead", "simulations_per_s",
                              "tree_and_game_fraction", "overhead_vs_forward_loop", "times_s",
                              "compile_s")}


def engine(dry: bool, out_dir: str) -> dict:
    args = ["--batch=256", "--ref_states=64", "--repeats=1"] if dry else \
        ["--batch=65536", "--ref_states=256", "--repeats=3"]
    return bench_game.main(args + [f"--out={out_dir}/bench_game.json"])


def flagship_steps(dry: bool, workdir: str | None = None) -> dict:
    """The first iterations of flagship:gpu (runlocal when ``dry``) in ``workdir`` (default: a
    temporary directory, removed afterwards)."""
    from train import modes
    from train.configs import flagship
    from train.metrics import read_jsonl

    c = flagship.get_config("runlocal" if dry else "gpu")
    with c.unlocked():
        if not dry:
            c.train.time_limit_s, c.sl.iterations, c.sl.eval_every = 120.0, 2, 100
            c.eval.sets, c.eval.simulations = ("n6:test:64",), (32,)
    with (contextlib.nullcontext(workdir) if workdir else tempfile.TemporaryDirectory()) as work:
        t0 = time.perf_counter()
        modes.run("flagship", c, work)
        wall = time.perf_counter() - t0
        warm = read_jsonl(os.path.join(work, "warm", "metrics.jsonl"))
        sl = [r for r in read_jsonl(os.path.join(work, "metrics.jsonl")) if r["step"] >= 1]
    perf = [r for r in warm if "perf/steps_per_s" in r]
    return dict(wall_s=wall, warm_updates=max((r["step"] for r in warm), default=0),
                compile_s=next((r["time/compile_s"] for r in warm if "time/compile_s" in r),
                               None),
                steps_per_s=[r["perf/steps_per_s"] for r in perf][-5:],
                tokens_per_s=[r["perf/tokens_per_s"] for r in perf][-5:],
                sl_iterations=[{k: v for k, v in r.items() if k.startswith("time/")} for r in sl])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on any machine")
    ap.add_argument("--out", default="bench_out/gpu_check.json")
    ap.add_argument("--flagship_workdir", default=None,
                    help="keep the flagship run here (default: a temporary directory)")
    a = ap.parse_args(argv)
    out_dir = os.path.dirname(os.path.abspath(a.out))
    os.makedirs(out_dir, exist_ok=True)
    result = {"device": jax.devices()[0].device_kind, "device_count": jax.device_count(),
              "jax": jax.__version__, "dry_run": a.dry_run, "seconds": {}}
    for name, fn in (("mfu", lambda: mfu(a.dry_run, out_dir)),
                     ("search", lambda: search(a.dry_run)),
                     ("engine", lambda: engine(a.dry_run, out_dir)),
                     ("flagship", lambda: flagship_steps(a.dry_run, a.flagship_workdir))):
        t0 = time.perf_counter()
        result[name] = fn()
        result["seconds"][name] = time.perf_counter() - t0
        common.write_json(result, a.out)  # partial results survive a timeout
        print(f"[gpu_check] {name}: {json.dumps(result[name], default=str)[:400]}", flush=True)
    print(f"[gpu_check] wrote {a.out}")
    return result


if __name__ == "__main__":
    main()
