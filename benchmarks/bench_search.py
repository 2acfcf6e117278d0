r"""Batched jitted MCTS (``search.mcts``, mctx Gumbel) vs the bare network, and vs a Python tree.

    python -m benchmarks.bench_search            # B=1024, S=32, depth-1 net (~72k params)
    python -m benchmarks.bench_search --quick    # B=256, S=8
    python -m benchmarks.bench_search --batch=1024 --sims=32 --depth=2 --out=bench_out/x.json

Rows (same untrained ``nnx_models`` policy/value net, same 4-number Game-of-24 problems, n_max=4):
- ``forward``: one jitted batched ``evaluate`` of B root states;
- ``search``: one ``search.mcts`` search, S simulations, at batch B (S + 1 network calls);
- ``search (uniform, no net)``: the same search with ``uniform_evaluate``: tree + game cost only;
- ``S+1 forwards in one jit``: S + 1 dependent forwards in one ``lax.fori_loop`` (in-loop cost).
overhead = t(search) / ((S + 1) * t(forward)); 1.0 is the physical limit (the search is nothing
but network calls). ``python tree``: ``benchmarks.python_mcts`` (TS-LLM style: one batch-1 network
call per simulation) on a few problems (best of ``--repeats``); speedup = batched simulations/s /
Python simulations/s, with the network and with ``uniform_evaluate`` (the search machinery alone).
The *network ceiling* is the speedup the batched search would reach if every network evaluation
ran at this machine's fp32 GEMM peak (a jitted 1024^3 matmul, measured in the same run): the
physical limit of the "with network" row on this hardware.
Timing: compile excluded (one warm-up call), then best of ``--repeats`` calls, the forward and
the search interleaved so that machine load hits both alike. JSON goes to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import common
from benchmarks.python_mcts import PythonMCTS
from nnx_models import ModelConfig, PolicyValueNet, TokenizerConfig, make_evaluate, seq_len
from scaling import flops
from search import baselines, game, mcts, problems


def _problems(count: int) -> list[problems.Problem]:
    rng = np.random.default_rng(0)
    return [problems.Problem(tuple(rng.integers(1, 14, 4).tolist()), 24) for _ in range(count)]


def run(batch: int, sims: int, depth: int, repeats: int, python_problems: int,
        model: PolicyValueNet | None = None) -> dict:
    """The rows of the module docstring. ``model``: time this network (its tokenizer re-sized to
    4 slots) instead of an untrained depth-``depth`` one; ``python_problems=0`` skips the
    Python tree."""
    rules = game.Rules(n_max=4)
    if model is None:
        tok, cfg = TokenizerConfig(n_max=4), ModelConfig.from_depth(depth, n_max=4)
        model = PolicyValueNet(cfg, tok, rngs=nnx.Rngs(0))
    cfg, tok = model.cfg, dataclasses.replace(model.tok_cfg, n_max=4)
    graphdef, params = nnx.split(model)
    evaluate = make_evaluate(graphdef, tok, rules)
    probs = _problems(batch)
    state = problems.problems_to_state(probs, rules)
    scfg = mcts.SearchConfig(num_simulations=sims)
    fwd = jax.jit(evaluate)
    search = mcts.make_search(evaluate, rules, scfg)
    uniform = mcts.make_search(baselines.uniform_evaluate(rules), rules, scfg)
    rng = jax.random.PRNGKey(0)
    loop = jax.jit(functools.partial(_forward_loop, evaluate=evaluate, n=sims + 1))
    calls = {"forward": lambda: jax.block_until_ready(fwd(params, state)),
             f"{sims + 1} forwards in one jit": lambda: jax.block_until_ready(loop(params, state)),
             "search": lambda: jax.block_until_ready(search(params, rng, state)),
             "search (uniform, no net)": lambda: jax.block_until_ready(uniform(None, rng, state))}
    compile_s = {name: common.best_time(fn, 1)[0] for name, fn in calls.items()}  # first call
    best = {name: (float("inf"), float("inf")) for name in calls}
    for _ in range(repeats):  # interleaved best-of-k
        for name, fn in calls.items():
            wall, cpu, _ = common.best_time(fn, 1)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    t_fwd, t_search = best["forward"][0], best["search"][0]
    t_uni = best["search (uniform, no net)"][0]
    one = jax.tree.map(lambda x: x[:1], state)
    t_fwd1 = common.best_wall(lambda: jax.block_until_ready(fwd(params, one)), 20, warmup_calls=1)
    python = {}
    for name, ev, p in (("network", evaluate, params),
                        ("uniform, no net", baselines.uniform_evaluate(rules), None)
                        )[:2 if python_problems > 0 else 0]:
        py = PythonMCTS(ev, p, rules)
        py.run(probs[0].numbers, 24, 2)  # compile the batch-1 evaluate
        py.calls = 0
        wall = common.best_time(lambda py=py: [py.run(q.numbers, q.target, sims)
                                               for q in probs[:python_problems]], repeats)[0]
        py.calls //= repeats
        batched = batch * sims / (t_search if name == "network" else t_uni)
        python[name] = dict(problems=python_problems, simulations=python_problems * sims,
                            network_calls=py.calls, wall_s=wall,
                            sims_per_s=python_problems * sims / wall, batched_sims_per_s=batched,
                            speedup=batched / (python_problems * sims / wall))
    # The most the batched search could gain over the Python tree with this network on this
    # machine: every simulation needs one forward, and no forward can beat the GEMM peak.
    fwd_flops = flops.forward_flops_per_state(cfg, seq_len(tok), 4)
    peak = common.jax_gemm_flop_s()
    ceiling = (peak / fwd_flops) / python["network"]["sims_per_s"] if python else None
    return dict(
        batch=batch, simulations=sims, depth=cfg.depth, params=flops.param_counts(cfg)["total"],
        simulations_per_s=batch * sims / t_search,
        forward_flops_per_state=fwd_flops,
        times_s={k: v[0] for k, v in best.items()}, cpu_times_s={k: v[1] for k, v in best.items()},
        compile_s=compile_s, forward_batch1_s=t_fwd1,
        overhead=t_search / ((sims + 1) * t_fwd), tree_and_game_fraction=t_uni / t_search,
        overhead_vs_forward_loop=t_search / best[f"{sims + 1} forwards in one jit"][0],
        # Batched states/s over batch-1 states/s of the bare network: what any search that makes
        # one network call per simulation can gain from batching on this machine.
        forward_batching_gain=batch * t_fwd1 / t_fwd, python_tree=python,
        gemm_peak_flop_s=peak, network_ceiling_speedup=ceiling,
        device=jax.devices()[0].device_kind, device_count=jax.device_count())


def _forward_loop(params, state, evaluate, n: int):
    """n dependent forwards (each target depends on the previous output: nothing is hoisted)."""

    def body(_, acc_B):
        st = state.replace(target_num=state.target_num + (acc_B > 1e9).astype(jnp.int32))
        return acc_B + evaluate(params, st)[1]

    return jax.lax.fori_loop(0, n, body, jnp.zeros(state.num.shape[:1]))




def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--sims", type=int, default=None)
    ap.add_argument("--depth", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--python_problems", type=int, default=None)
    ap.add_argument("--out", default="bench_out/bench_search.json")
    a = ap.parse_args(argv)
    batch = a.batch or (256 if a.quick else 1024)
    sims = a.sims or (8 if a.quick else 32)
    r = run(batch, sims, a.depth, a.repeats or (2 if a.quick else 3),
            a.python_problems or (2 if a.quick else 4))
    print(f"search.mcts vs bare forward and a Python tree  (B={batch}, S={sims}, "
          f"depth-{a.depth} net, {r['params']} params, {r['device']})")
    print(f"{'row':28s} {'best wall s':>12s} {'cpu s':>10s} {'compile s':>10s}")
    for k, v in r["times_s"].items():
        print(f"{k:28s} {v:12.4f} {r['cpu_times_s'][k]:10.3f} {r['compile_s'][k]:10.1f}")
    print(f"overhead = search / ((S+1) * forward)  = {r['overhead']:.3f}   (target <= 1.5)")
    print(f"search / (S+1 forwards in one jit)      = {r['overhead_vs_forward_loop']:.3f}")
    print(f"tree + game share of the search time    = {r['tree_and_game_fraction']:.3f}")
    print(f"forward at batch 1: {r['forward_batch1_s'] * 1e3:.2f} ms; batching gain of the bare "
          f"network (states/s at B over states/s at 1) = {r['forward_batching_gain']:.1f}x")
    print(f"network ceiling: {r['forward_flops_per_state'] / 1e6:.1f} MFLOP per evaluation at the "
          f"{r['gemm_peak_flop_s'] / 1e9:.0f} GFLOP/s GEMM peak caps the speedup with the network "
          f"at {r['network_ceiling_speedup']:.1f}x on this machine")
    for name, py in r["python_tree"].items():
        print(f"python tree ({name}): {py['simulations']} sims in {py['wall_s']:.2f}s = "
              f"{py['sims_per_s']:.0f}/s; batched: {py['batched_sims_per_s']:.0f}/s; "
              f"speedup = {py['speedup']:.1f}x (target >= 100x)")
    return common.write_json(r, a.out)


if __name__ == "__main__":
    main()
