r"""Search-and-learn (AlphaZero / expert iteration) on the exact game: ``--mode=search_and_learn``.

    python -m train.main --config=train/configs/search.py --workdir=runs/sl

Each iteration: (1) **search**: Gumbel-MuZero self-play episodes (``search.mcts`` episode runner,
``lax.scan`` over moves) on a batch of training problems drawn from the active curriculum classes;
(2) **relabel**: self-play rows (search policy, outcome value), verified in-tree solutions and,
with ``relabel.enabled`` (off by default), hindsight relabels (``train.relabel``) go into the FIFO
``ReplayBuffer``; (3) **train**: K steps of the supervised train step (``train.steps``, same
sharding and optimizer) on uniform buffer samples;
(4) **eval** (every ``sl.eval_every``): played-trajectory solve rate at each ``eval.simulations``
budget on held-out splits/classes, next to the uniform-prior MCTS baseline at the same budgets;
(5) **save**: orbax checkpoint of train state + buffer, iteration, curriculum level and history.
Per-phase wall time is printed as a table and written to ``metrics.jsonl`` (``time/<phase>_s``).

Every random choice is a pure function of ``(config.seed, iteration, ...)``, so a resumed run
continues at the same iteration with the same buffer and reproduces an uninterrupted run.
The curriculum adds the next class of ``sl.curriculum`` when the played solve rate of the newest
class in self-play reaches ``sl.curriculum_threshold``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any

import jax
import numpy as np
from absl import logging

from search import mcts, problems, stream
from train import checkpoint as ckpt_lib
from train import loop, selfplay, stream_data
from train import setup as setup_lib

PHASES = ("search", "relabel", "train", "eval", "save")


def prepare(config, workdir: str) -> setup_lib.RunSetup:
    """The run's ``RunSetup`` with its ``loop.LoopData`` and checkpointer; every check (config,
    curriculum, stream, eval sets, resume compatibility) runs before anything is written."""
    cfg = setup_lib.as_dict(config)
    sl = cfg["sl"]
    s = setup_lib.build(cfg, total_steps=sl["iterations"] * sl["train_steps"], from_init=True)
    excluded = stream_data.exclusion_sets(s.cfg)  # the eval sets and, with a csv, all ToT puzzles
    keys = stream.exclusion_keys(excluded.values())
    curriculum, mixer = selfplay.Curriculum(s.cfg, s.rules, keys), selfplay.StreamMixer(s, keys)
    sets, sims = loop.eval_sets(s.cfg, s.rules), loop.sims_list(s.cfg)
    ckpt_lib.ensure_writable(workdir)
    setup_lib.check_resume_config(workdir, s.cfg)
    setup_lib.write_config(workdir, s.cfg)
    exclusion = stream.write_exclusion(workdir, excluded) if jax.process_index() == 0 else {}
    return dataclasses.replace(
        s, data=loop.LoopData(curriculum, sets, sims, mixer, exclusion),
        ckpt=setup_lib.checkpointer(s, workdir, every=1))


def restore_or_init(s: setup_lib.RunSetup, workdir: str, t_start: float):
    """(``loop.LoopRun`` at the newest checkpoint's iteration or at 0, the replay buffer)."""
    buf = selfplay.make_buffer(s)
    state, extras, meta, it0 = setup_lib.restore_or_init(
        s, {"buffer": ckpt_lib.abstract_like(buf.state_dict())})
    if meta is not None:
        buf.load_state_dict(extras["buffer"])
        logging.info("resumed %s at iteration %d (buffer %d rows)", workdir, it0, len(buf))
    run = loop.start(s, workdir, state, meta, it0, t_start, s.cfg["sl"]["iterations"])
    # Setup = config checks, problem pools, init/restore, the baseline and iteration-0 evals
    # (their compilation included): wall time that belongs to no iteration.
    setup_s = time.time() - t_start
    run.writer.write(it0, {"time/setup_s": setup_s})
    print(f"[search_and_learn] setup {setup_s:.1f} s (init or restore, uniform-prior baseline and "
          "untrained-network evals, their compilation)", flush=True)
    return run, buf


def self_play(run: loop.LoopRun, it: int):
    """(episodes, played-solved per episode, curriculum class per episode) of iteration ``it``."""
    s, sl, seed = run.s, run.s.cfg["sl"], run.s.cfg["seed"]
    runner = selfplay.cached_runner(s.evaluate, s.rules, mcts.SearchConfig(
        num_simulations=sl["selfplay_simulations"], max_num_considered_actions=sl["max_considered"],
        gumbel_scale=sl["gumbel_scale"]), s.mesh)
    probs, cls_idx = s.data.curriculum.batch(run.meta["level"], sl["selfplay_batch"], seed, it)
    ep = runner(run.state["params"], jax.random.fold_in(jax.random.key(seed), it),
                problems.problems_to_state(probs, s.rules))
    solved = np.asarray(ep.solved)
    run.meta["selfplay_evals"] += float(np.asarray(ep.num_evals).sum())
    return ep, solved, cls_idx


def train_phase(run: loop.LoopRun, buf, it: int) -> dict[str, float]:
    """``sl.train_steps`` updates on buffer (or stream) batches; the mean train metrics."""
    s, sl, bs = run.s, run.s.cfg["sl"], run.s.cfg["train"]["batch_size"]
    acc = None
    for k in range(sl["train_steps"]):
        batch = (s.data.mixer.batch(it, k)
                 or selfplay.buffer_batch(buf, bs, s.mesh, s.cfg["seed"], 3, it, k))
        run.state, m = s.program.train_step(run.state, batch)
        acc = m if acc is None else jax.tree.map(lambda a, b: a + b, acc, m)
    host = {f"train/{k}": float(v) / sl["train_steps"] for k, v in jax.device_get(acc).items()}
    setup_lib.finite_or_raise(host, it + 1, s.ckpt)
    run.meta["updates"] += sl["train_steps"]
    return host


def advance_curriculum(run: loop.LoopRun, it: int, solved, cls_idx, counts: dict, buf) -> dict:
    """Self-play and buffer metrics of iteration ``it``; opens the next curriculum class when
    the newest one's played solve rate reached the threshold."""
    cur, meta = run.s.data.curriculum, run.meta
    rate_new = float(solved[cls_idx == meta["level"] - 1].mean())
    out = {"selfplay/solve_rate": float(solved.mean()),
           "selfplay/newest_class_solve_rate": rate_new,
           "selfplay/found_rate": counts["found"] / len(solved),
           "selfplay/relabelled": counts.get("relabelled", 0),
           "buffer/rows_added": counts["rows"], "buffer/size": len(buf),
           "curriculum/level": meta["level"]}
    if rate_new >= cur.threshold and meta["level"] < len(cur.classes):
        meta["level"] += 1
        print(f"[search_and_learn] curriculum: {cur.names[meta['level'] - 1]} opens at "
              f"iteration {it + 1}", flush=True)
    return out


def iteration(run: loop.LoopRun, buf, it: int, guard, max_iterations: int | None) -> str | None:
    """One iteration (module docstring); returns the status that ends the run, or None."""
    s, sl = run.s, run.s.cfg["sl"]
    with run.timer("search"):
        ep, solved, cls_idx = self_play(run, it)
    with run.timer("relabel"):
        rows, counts = selfplay.self_play_rows(s, ep, s.cfg["seed"], it)
        buf.add(rows)
    with run.timer("train"):
        host = train_phase(run, buf, it)
    host.update(advance_curriculum(run, it, solved, cls_idx, counts, buf))
    # The time limit ends the run like its last iteration: evaluated, saved, recorded.
    limit = sl.get("time_limit_s")
    out_of_time = limit is not None and limit <= run.meta["wall_time_s"] + time.time() - \
        run.t_start
    last = it + 1 == sl["iterations"] or out_of_time
    pause = max_iterations is not None and it + 1 - run.it0 >= max_iterations and not last
    preempt = guard.requested or s.ckpt.reached_preemption(it + 1) or pause
    loop.maybe_eval_and_save(run, it + 1, last, host, {"train": run.state,
                                                       "buffer": buf.state_dict()}, preempt)
    phases = loop.end_iteration(run, it + 1, host)
    loop.log_iteration(f"[search_and_learn] iteration {it + 1}/{sl['iterations']}: self-play "
                       f"solve {host['selfplay/solve_rate']:.3f}, loss {host['train/loss']:.4f}",
                       {p: phases.get(f"time/{p}_s", 0.0) for p in PHASES}, it == run.it0)
    if preempt:
        return "paused" if pause else "preempted"
    if out_of_time:
        print(f"[search_and_learn] time limit {sl['time_limit_s']:.0f} s reached at iteration "
              f"{it + 1}", flush=True)
        return "time_limit"
    return None


def train_and_evaluate(config, workdir: str, max_iterations: int | None = None) -> dict[str, Any]:
    """Runs (or resumes) search-and-learn in ``workdir``; returns the final solve rates.

    ``max_iterations`` stops after that many iterations in this call (checkpointed, status
    "paused"); calling again resumes. Used by tests and notebooks to interrupt a run.
    """
    with ckpt_lib.PreemptionGuard() as guard:
        return _run(config, workdir, guard, max_iterations)


def _run(config, workdir: str, guard, max_iterations: int | None) -> dict[str, Any]:
    t_start = time.time()
    s, status = prepare(config, workdir), "completed"
    with contextlib.ExitStack() as stack:  # also on errors: pending saves, stream workers, logs
        stack.callback(s.ckpt.close)
        stack.callback(s.data.mixer.close)
        run, buf = restore_or_init(s, workdir, t_start)
        stack.callback(run.writer.close)
        for it in range(run.it0, s.cfg["sl"]["iterations"]):
            if (stop := iteration(run, buf, it, guard, max_iterations)) is not None:
                status = stop
                break
    meta = run.meta
    meta["wall_time_s"] += time.time() - run.t_start
    last_eval = run.last_eval or (meta["history"][-1]["entries"] if meta["history"] else [])
    # A resume keeps the search_evals that --mode=eval / sweep_eval appended meanwhile.
    loop.record(s, workdir, meta, last_eval, status, resumed=run.it0 > 0)
    _print_summary(last_eval, meta["baseline"])
    return {"status": status, "iteration": meta["history"][-1]["iteration"] if meta["history"]
            else 0, **loop.eval_metrics(last_eval + meta["baseline"])}


def _print_summary(entries: list[dict], baseline: list[dict]) -> None:
    base = {(b["split"], b["simulations"]): b["solve_rate"] for b in baseline
            if b["method"] == "uniform_mcts"}
    rows = [(e["split"], e["simulations"], f"{e['solve_rate']:.3f}",
             f"{base.get((e['split'], e['simulations']), float('nan')):.3f}") for e in entries
            if e["method"] == "mcts"]
    loop.log_table("[search_and_learn] played-trajectory solve rate (learned vs uniform-prior "
                   "MCTS)", rows, ("split", "sims", "learned", "uniform"))
