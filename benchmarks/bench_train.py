r"""Train loop: updates/s one update per call (the old loop) vs K per call (``train.fast_loop``),
against the FLOP-bound rate, in one process.

    python -m benchmarks.bench_train            # ~3 minutes on 2 CPU cores
    python -m benchmarks.bench_train --quick    # fewer updates
    python -m benchmarks.bench_train --out=bench_out/bench_train.json

Models: the CPU sweep's sizes ``train/configs/sweep_cpu.py:size=d1w8`` (5.9k parameters, batch
64), ``d1w32`` and ``d3w64``, and ``flagship.py:cpu``'s warm-start model (0.78M, batch 128),
each with its own config's ``log_every``. Both loops train the same state from the same
tokenized examples of the run's own stream (a pool of ``--pool`` batches served by
``train.data.Loader``, the loader of fixed sets; a stream-cache run slices the same way):

- **one per call** (the loop before ``train.fast_loop``): ``Loader.batch`` for each update, one
  jitted ``train_step`` call, the metrics added on the device, pulled every ``log_every``;
- **K per call**: the run's ``train_steps`` program over [K, B] stacks from ``Loader.batches``,
  the next stack transferred while the call runs (``fast_loop.Feeder``), metrics pulled every
  ``log_every``; K as a run picks it (``train.steps_per_call=0``);
- **program**: the K-update program called on one fixed stack, no loader, no metric pulls:
  the rate of the compiled step itself, which no loop around it can beat;
- **live stream**: K per call with the batches drawn by the batched stream in the loop
  (``StreamLoader``, one prefetch thread), for the sweep models: where the stream, not the step,
  sets the rate.

The FLOP-bound rate is the GEMM rate measured here (``benchmarks.common.jax_gemm_flop_s``, a
1024^2 fp32 matmul) over the FLOPs XLA's ``cost_analysis`` counts for one compiled update; the
shape bound uses instead the rate of the step's own largest matmul ([B*L, d] @ [d, mlp]), which
small models cannot push to the 1024^2 rate. Rates are best of
``--repeats`` passes of ``--updates`` updates after a warm-up pass; the sides alternate.
"""

from __future__ import annotations

import argparse
import time

import jax

from benchmarks.common import best_wall, jax_gemm_flop_s, write_json

SWEEP_SIZES = ("d1w8", "d1w32", "d3w64")


def configs() -> list[tuple[str, dict]]:
    from train.configs import flagship, sweep_cpu

    out = [(f"sweep {s}", sweep_cpu.get_config(f"size={s}").to_dict()) for s in SWEEP_SIZES]
    return out + [("flagship:cpu", flagship.get_config("cpu").to_dict())]


def pool_arrays(s, config: dict, batches: int) -> dict:
    """``batches`` train batches of the run's stream (exclusion off: speed only), tokenized."""
    from search import stream
    from train import stream_data

    cfg = stream_data.stream_config(config, s.rules, frozenset())
    return stream_data.tokenized(stream.draw_range(
        cfg, 0, batches * config["train"]["batch_size"]), s.tok_cfg)


def update_flops(s, state, batch) -> float:
    cost = s.program.train_step.lower(state, batch).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost.get("flops", 0.0))


def shape_gemm_flop_s(m: int, k: int, n: int) -> float:
    """FLOP/s of the step's largest matmul shape, [m, k] @ [k, n] (the MLP's up-projection of
    every position of the batch): what the step's GEMMs can reach at their own size."""
    import jax.numpy as jnp

    a, b = jnp.ones((m, k), jnp.float32), jnp.ones((k, n), jnp.float32)
    mm = jax.jit(jnp.dot)
    return 2 * m * k * n / best_wall(lambda: mm(a, b).block_until_ready(), 20, warmup_calls=3)


def one_per_call(s, loader, log_every: int):
    """The old loop: returns ``run(state, start, n) -> state``."""
    step = s.program.train_step

    def run(state, start, n):
        acc = None
        for u in range(start, start + n):
            state, m = step(state, loader.batch(u))
            acc = m if acc is None else jax.tree.map(lambda a, b: a + b, acc, m)
            if (u + 1) % log_every == 0:
                jax.device_get(acc)
                acc = None
        jax.block_until_ready(state)
        return state

    return run


def k_per_call(s, loader, log_every: int, k: int, device_only: bool = False):
    """The fast loop's hot path (``train.supervised.train_phase`` without the bookkeeping);
    ``device_only``: the same calls on one fixed stack, no loader and no metric pulls (the rate
    of the compiled program alone: the ceiling of any loop around it)."""
    from train import fast_loop

    feeder = fast_loop.Feeder(loader)
    first = loader.batches(0, k)
    shapes, progs = fast_loop.compile_programs(s.program, first, {k})
    prog, fresh = progs[k], lambda: fast_loop.zeros(shapes)

    def run(state, start, n):
        acc = fresh()
        for u in range(start, start + n, k):
            if device_only:
                state, acc = prog(state, acc, first)
                continue
            state, acc = prog(state, acc, feeder.take(u, k))
            feeder.prefetch(u + k, k)
            if (u + k) % log_every == 0:
                jax.device_get(acc)
                acc = fresh()
        jax.block_until_ready(state)
        return state

    return run


def rate(run, state, updates: int, repeats: int, start: int = 0):
    """(best updates/s, state) over ``repeats`` timed passes after one warm-up pass."""
    state = run(state, start, updates)
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        state = run(state, start + (r + 1) * updates, updates)
        best = min(best, time.perf_counter() - t0)
    return updates / best, state


def row(name: str, config: dict, updates: int, repeats: int, pool: int, gemm: float) -> dict:
    from train import data as data_lib
    from train import setup as setup_lib
    from train import stream_data, supervised

    s = setup_lib.build(config)
    t = config["train"]
    arrays = pool_arrays(s, config, pool)
    loader = data_lib.Loader(arrays, t["batch_size"], s.mesh, seed=0)
    k = supervised.steps_per_call(s)
    updates = max(k, updates - updates % k)
    state = s.program.init_fn()
    flops = update_flops(s, state, loader.batch(0))
    old, new = one_per_call(s, loader, t["log_every"]), k_per_call(s, loader, t["log_every"], k)
    dev = k_per_call(s, loader, t["log_every"], k, device_only=True)
    rates = {"old": [], "new": [], "device": []}
    for _ in range(repeats):  # alternate the sides: both see the same load
        for side, run in (("old", old), ("new", new), ("device", dev)):
            r, state = rate(run, state, updates, 1)
            rates[side].append(r)
    out = {"model": name, "params": int(sum(x.size for x in jax.tree.leaves(state["params"]))),
           "batch": t["batch_size"], "steps_per_call": k, "log_every": t["log_every"],
           "old_updates_per_s": max(rates["old"]), "new_updates_per_s": max(rates["new"]),
           "device_updates_per_s": max(rates["device"]),
           "update_flops": flops, "flop_bound_updates_per_s": gemm / max(flops, 1.0)}
    mc = s.model_cfg
    shape = (t["batch_size"] * s.seq_len, mc.d_model, mc.mlp_dim)
    out["shape_gemm_flop_s"] = shape_gemm_flop_s(*shape)
    out["shape_bound_updates_per_s"] = out["shape_gemm_flop_s"] / max(flops, 1.0)
    out["gemm_shape"] = list(shape)
    if name.startswith("sweep"):
        live = stream_data.StreamLoader(stream_data.stream_config(config, s.rules, frozenset()),
                                        t["batch_size"], s.mesh, s.tok_cfg, block=k)
        r, state = rate(k_per_call(s, live, t["log_every"], k), state, updates, repeats)
        live.close()
        out["stream_updates_per_s"] = r
    out["new_over_old"] = out["new_updates_per_s"] / out["old_updates_per_s"]
    out["bound_over_new"] = out["flop_bound_updates_per_s"] / out["new_updates_per_s"]
    out["shape_bound_over_new"] = out["shape_bound_updates_per_s"] / out["new_updates_per_s"]
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer updates per pass")
    ap.add_argument("--updates", type=int, default=1000, help="updates per timed pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pool", type=int, default=64, help="distinct batches the loaders cycle")
    ap.add_argument("--out", default="bench_out/bench_train.json")
    args = ap.parse_args(argv)
    gemm = jax_gemm_flop_s()
    rows = []
    for name, config in configs():
        big = name == "flagship:cpu"
        n = max(10, (args.updates // (20 if big else 1)) // (4 if args.quick else 1))
        rows.append(row(name, config, n, args.repeats, args.pool, gemm))
        r = rows[-1]
        print(f"  {name}: old {r['old_updates_per_s']:.0f}/s, new {r['new_updates_per_s']:.0f}/s",
              flush=True)
    dev = jax.devices()[0]
    print(f"\ntrain updates/s on {dev.platform} ({dev.device_kind}, {jax.device_count()} "
          f"device(s)); GEMM {gemm / 1e9:.1f} GFLOP/s (fp32 1024^2 matmul, measured here)")
    print(f"{'model':<14}{'params':>9}{'batch':>6}{'K':>4}{'1/call':>9}{'K/call':>9}"
          f"{'ratio':>7}{'program':>9}{'stream':>9}{'MFLOP/upd':>11}{'bound':>9}{'bound/K':>8}"
          f"{'shape':>8}{'shape/K':>8}")
    for r in rows:
        live = f"{r['stream_updates_per_s']:>9.0f}" if "stream_updates_per_s" in r else \
            f"{'-':>9}"
        print(f"{r['model']:<14}{r['params']:>9}{r['batch']:>6}{r['steps_per_call']:>4}"
              f"{r['old_updates_per_s']:>9.0f}{r['new_updates_per_s']:>9.0f}"
              f"{r['new_over_old']:>6.1f}x{r['device_updates_per_s']:>9.0f}{live}"
              f"{r['update_flops'] / 1e6:>11.2f}"
              f"{r['flop_bound_updates_per_s']:>9.0f}{r['bound_over_new']:>7.2f}x"
              f"{r['shape_bound_updates_per_s']:>8.0f}{r['shape_bound_over_new']:>7.2f}x")
    print("1/call, K/call, program (the compiled K-update program alone on one stack), "
          "stream: updates/s; bound: GEMM rate / XLA's FLOPs per update; "
          "bound/K: how far the K-per-call loop is from it (1.0 = at the bound); shape: the same "
          "with the GEMM rate of the step's own largest matmul, [B*L, d] @ [d, mlp].")
    result = {"device": f"{dev.platform}:{dev.device_kind}", "gemm_flop_s": gemm,
              "rows": rows, "updates": args.updates, "quick": args.quick}
    return write_json(result, args.out)


if __name__ == "__main__":
    main()
