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

import dataclasses
import functools
import json
import os
import time
from typing import Any

import jax
import numpy as np
from absl import logging

from nnx_models import evaluate as evaluate_lib
from nnx_models import tokenizer
from scaling import flops
from search import game, mcts, problems, stream, sweep
from train import checkpoint as ckpt_lib
from train import data as data_lib
from train import mesh as mesh_lib
from train import metrics as metrics_lib
from train import relabel, replay_buffer, run_record, steps, stream_data, supervised
from train.run_model import load_params

PHASES = ("search", "relabel", "train", "eval", "save")


# ----------------------------------------------------------------------------- setup


def split_names(text: str, field: str) -> list[str]:
    out = [s.strip() for s in str(text).split(",") if s.strip()]
    if not out:
        raise ValueError(f"config.{field}={text!r} is empty; give comma-separated values.")
    return out


def _class(name: str, rules: game.Rules, field: str) -> problems.ProblemClass:
    cls = problems.get_class(name)
    if cls.n_range[1] > rules.n_max:
        raise ValueError(f"config.{field}: class {name!r} has up to {cls.n_range[1]} numbers but "
                         f"states have n_max={rules.n_max}; raise config.data.n_max.")
    if dataclasses.replace(cls.rules, n_max=rules.n_max) != rules:
        raise ValueError(f"config.{field}: class {name!r} has rules {cls.rules}, different from "
                         f"the run's {rules} (config.data.problem_class); use one rule variant.")
    return cls


@dataclasses.dataclass
class EvalSet:
    name: str  # the split spec, as search.eval names it ("g24:test:100", "tot100")
    problems: list[problems.Problem]
    state: game.State


def eval_sets(cfg: dict, rules: game.Rules) -> list[EvalSet]:
    """``eval.sets``: comma-separated ``search.eval`` split specs (``class[:split[:count]]``, or
    ``tot100``-style ToT splits read from ``eval.csv``), played with the run's rules."""
    out = []
    for spec in split_names(cfg["eval"]["sets"], "eval.sets"):
        name, probs, set_rules = sweep.load_split(spec, cfg["eval"]["csv"] or None,
                                                        rules.n_max)
        if set_rules != rules:
            raise ValueError(f"config.eval.sets: {spec!r} has rules {set_rules}, different from "
                             f"the run's {rules}; evaluate classes of one rule variant.")
        out.append(EvalSet(name, list(probs), problems.problems_to_state(probs, rules)))
    return out


def sims_list(cfg: dict) -> list[int]:
    return [int(s) for s in split_names(cfg["eval"]["simulations"], "eval.simulations")]


# Jitted functions are cached on hashable keys (frozen configs, graphdef, mesh): a second run
# in the same process (a resumed run, a notebook, the tests) reuses the compiled executables.
@functools.lru_cache(maxsize=32)
def cached_evaluate(graphdef, tok_cfg: tokenizer.TokenizerConfig, rules: game.Rules):
    return evaluate_lib.make_evaluate(graphdef, tok_cfg, rules)


@functools.lru_cache(maxsize=64)
def cached_runner(evaluate, rules: game.Rules, search_cfg: mcts.SearchConfig, mesh):
    return mcts.make_episode_runner(evaluate, rules, search_cfg, mesh)


class Evaluator:
    """Played-trajectory solve rates of one network on every eval set and budget, computed by
    ``search.eval.run_sweep`` (entries in its format): method ``mcts`` (deterministic
    Gumbel search with the network) or ``uniform_mcts`` (uniform prior, zero value, no FLOPs),
    each with ``<method>_tree`` (a verified solution anywhere in a search tree).
    ``search.eval`` caches its runners on ``make_evaluate``, so this object keeps one."""

    def __init__(self, evaluate, rules: game.Rules, sims: list[int], cfg: dict, mesh,
                 method: str, flops_per_eval: float, network: str = ""):
        e = cfg["eval"]
        self.rules, self.sims, self.mesh, self.method = rules, sims, mesh, method
        self.network = network or cfg["name"]
        self.make_evaluate = lambda rules: evaluate
        self.flops_per_eval = lambda rules: flops_per_eval
        self.opts = sweep.SweepOptions(max_num_considered_actions=e["max_considered"],
                                             seed=e["seed"])

    def __call__(self, params, sets: list[EvalSet]) -> list[dict[str, Any]]:
        net = sweep.Network(self.network, self.make_evaluate, params, self.flops_per_eval)
        out = []
        for es in sets:
            entries, _ = sweep.run_sweep(es.name, es.problems, self.rules, net,
                                               (self.method,), self.sims, self.opts, self.mesh,
                                               progress=False)
            out += entries
        return out


def eval_metrics(entries: list[dict]) -> dict[str, float]:
    return {f"eval/{e['split']}/{e['method']}/sims{e['simulations']}": e["solve_rate"]
            for e in entries}


def log_table(title: str, rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: " | ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True))
    text = "\n".join([title, fmt(header), "-+-".join("-" * w for w in widths), *map(fmt, rows)])
    print(text, flush=True)  # stdout only: absl would print INFO to stderr a second time
    return text


def build(config, workdir: str, total_steps: int | None = None) -> dict:
    """Validated setup shared by search_and_learn / ttt / grpo: rules, model, train state init,
    evaluate, FLOPs per evaluation. ``init.source`` picks scratch, a supervised/search run's
    checkpoint (``init.path`` = its workdir) or an HF/SmolLM2 directory."""
    cfg = supervised.as_dict(config)
    # The schedule spans every update of the run: train.steps is derived, not read.
    total = total_steps or cfg["sl"]["iterations"] * cfg["sl"]["train_steps"]
    cfg["train"] = dict(cfg["train"], steps=max(total, 1),
                        warmup_steps=min(cfg["train"]["warmup_steps"], max(total, 1)))
    init = cfg["init"]
    if init["source"] not in ("scratch", "supervised", "hf"):
        raise ValueError(f"config.init.source={init['source']!r}; allowed scratch, supervised, hf.")
    if init["source"] != "scratch" and not init["path"]:
        raise ValueError(f"config.init.source={init['source']!r} needs config.init.path.")
    s = supervised.setup(cfg, workdir)
    s["cfg"] = cfg
    if init["source"] == "hf":
        from flax import nnx

        from nnx_models import hf

        model = hf.load_policy_value(init["path"], s["tok_cfg"], seed=cfg["seed"])
        s["model_cfg"], s["hf_params"] = model.cfg, nnx.state(model)
    graphdef, abs_state, shardings, init_fn = steps.abstract_train_state(
        s["model_cfg"], s["tok_cfg"], s["tx"], s["mesh"], cfg["seed"])
    s.update(graphdef=graphdef, abs_state=abs_state, shardings=shardings, init_fn=init_fn,
             evaluate=cached_evaluate(graphdef, s["tok_cfg"], s["rules"]),
             flops_per_eval=float(flops.forward_flops_per_state(s["model_cfg"], s["seq_len"],
                                                                s["rules"].n_max)))
    return s


def initial_state(s: dict) -> dict:
    """A fresh train state; parameters from ``init`` (optimizer state always fresh)."""
    state = s["init_fn"]()
    init = s["cfg"]["init"]
    if init["source"] == "supervised":
        state["params"] = load_params(init["path"], s["abs_state"]["params"],
                                      s["shardings"]["params"])
    elif init["source"] == "hf":
        state["params"] = jax.device_put(s.pop("hf_params"), s["shardings"]["params"])
    if init["source"] != "scratch":
        state["opt_state"] = jax.jit(s["tx"].init, out_shardings=s["shardings"]["opt_state"])(
            state["params"])
    return state


# ----------------------------------------------------------------------------- the loop


class Curriculum:
    """Training-problem pools of the curriculum classes, generated lazily when a class opens."""

    def __init__(self, cfg: dict, rules: game.Rules, exclude: frozenset = frozenset()):
        sl = cfg["sl"]
        self.exclude = exclude  # canonical keys of evaluation problems: never trained on
        self.names = split_names(sl["curriculum"], "sl.curriculum")
        self.classes = [_class(n, rules, "sl.curriculum") for n in self.names]
        self.rules, self.count, self.seed = rules, sl["train_problems"], cfg["data"]["seed"]
        self.threshold, self._pools = sl["curriculum_threshold"], {}
        if not 0 < self.threshold <= 1:
            raise ValueError(f"config.sl.curriculum_threshold={self.threshold} is out of range; "
                             "allowed (0, 1].")

    def pool(self, k: int) -> list[problems.Problem]:
        if k not in self._pools:
            pool = problems.generate(self.classes[k], self.count, self.seed, "train")
            self._pools[k] = [p for p in pool if p.canonical not in self.exclude]
            if not self._pools[k]:
                raise ValueError(f"config.sl.curriculum: every training problem of "
                                 f"{self.names[k]!r} is an evaluation problem; use another class.")
        return self._pools[k]

    def batch(self, level: int, size: int, seed: int, it: int):
        """(problems, class index per row): classes uniform over the open ones, then problems."""
        rng = np.random.default_rng([seed, 1, it])
        cls = rng.integers(0, level, size=size)
        probs = [self.pool(c)[int(rng.integers(len(self.pool(c))))] for c in cls]
        return probs, cls


def _tokens(states: game.State, tok_cfg) -> np.ndarray:
    return np.asarray(tokenizer.encode(states, tok_cfg))


def self_play_rows(s: dict, ep: mcts.Episode, seed: int, it: int) -> tuple[dict, dict]:
    """Buffer rows of one self-play batch (module docstring) and counts for the log."""
    cfg, rules, tok_cfg = s["cfg"], s["rules"], s["tok_cfg"]
    ep = jax.device_get(ep)
    sl = cfg["sl"]
    if sl["value_targets"] not in ("outcome", "exact"):
        raise ValueError(f"config.sl.value_targets={sl['value_targets']!r}; allowed 'outcome', "
                         "'exact'.")
    if sl["value_targets"] == "exact":
        parts = [relabel.exact_rows(ep, _tokens(ep.states, tok_cfg), rules, sl["policy_targets"])]
    else:
        parts = [relabel.episode_rows(ep, _tokens(ep.states, tok_cfg), sl["policy_targets"])]
    sols = mcts.solutions(ep, rules)
    counts = {"played": sum(x.played for x in sols), "found": sum(x.found for x in sols)}
    if cfg["sl"]["tree_solutions"]:
        traj = jax.device_get(relabel.solution_trajectories(ep, sols, rules))
        parts.append(relabel.trajectory_rows(traj, _tokens(traj.states, tok_cfg)))
    if cfg["relabel"]["enabled"]:
        max_value = cfg["relabel"]["max_value"] or tok_cfg.max_value
        mask = relabel.hindsight_mask(ep, cfg["relabel"]["ratio"], max_value, seed, 2, it)
        traj = jax.device_get(relabel.hindsight(ep, rules, mask))
        parts.append(relabel.trajectory_rows(traj, _tokens(traj.states, tok_cfg)))
        counts["relabelled"] = int(mask.sum())
    rows = relabel.concat_rows(*parts)
    counts["rows"] = len(rows["value"])
    return rows, counts


def make_buffer(s: dict) -> replay_buffer.ReplayBuffer:
    a = s["rules"].num_actions
    return replay_buffer.ReplayBuffer(s["cfg"]["sl"]["buffer_capacity"], {
        "tokens": ((s["seq_len"],), np.int32), "policy": ((a,), np.float32),
        "legal": ((a,), bool), "value": ((), np.float32)})


def buffer_batch(buf: replay_buffer.ReplayBuffer, batch_size: int, mesh, seed: int, *key: int):
    idx = data_lib.local_slice(buf.indices(batch_size, seed, *key))
    rows = {k: v[idx] for k, v in buf.data.items()}
    rows["weight"] = np.ones((len(idx),), np.float32)
    return data_lib.to_global(rows, batch_size, mesh_lib.batch_sharding(mesh))


class StreamMixer:
    """``sl.stream_share`` of the train steps take a batch of the labelled stream
    (``train.stream_data``, the run's ``data.mixture`` and exclusion) instead of the replay
    buffer, evenly spaced: fresh exact labels on every n keep a warm-started network from
    forgetting what the buffer's few thousand on-policy states do not cover. Stream position
    ``OFFSET + it * m + j`` (m stream steps per iteration) is a function of the iteration, so a
    resumed run draws the same batches; the offset keeps clear of a warm start's positions."""

    OFFSET = 1 << 40

    def __init__(self, s: dict, exclude: frozenset):
        cfg, sl = s["cfg"], s["cfg"]["sl"]
        share, k = sl.get("stream_share", 0.0), sl["train_steps"]
        if not 0 <= share <= 1:
            raise ValueError(f"config.sl.stream_share={share} is out of range; allowed [0, 1].")
        self.per_it, self.k, self.loader = round(share * k), k, None
        if self.per_it:
            if not cfg["data"]["mixture"]:
                raise ValueError(f"config.sl.stream_share={share} needs config.data.mixture "
                                 "(the stream's problem classes).")
            self.loader = stream_data.StreamLoader(
                stream_data.stream_config(cfg, s["rules"], exclude), cfg["train"]["batch_size"],
                s["mesh"], s["tok_cfg"], workers=cfg["data"]["workers"])

    def batch(self, it: int, k: int):
        """The stream batch of step ``k`` of iteration ``it``, or None (take the buffer's)."""
        j0, j1 = k * self.per_it // self.k, (k + 1) * self.per_it // self.k
        if self.loader is None or j0 == j1:
            return None
        return self.loader.batch(self.OFFSET + it * self.per_it + j0)

    def close(self) -> None:
        if self.loader is not None:
            self.loader.close()


_TRAIN_STEPS: dict[str, Any] = {}


def _train_step(s: dict):
    """The jitted supervised train step, cached per (model, tokenizer, train config, mesh)."""
    cfg = s["cfg"]
    key = json.dumps([cfg[k] for k in ("model", "tokenizer", "data", "train", "seed")],
                     sort_keys=True) + repr(s["mesh"])
    if key not in _TRAIN_STEPS:
        loss_cfg = {k: cfg["train"][k] for k in ("policy_weight", "value_weight", "value_loss")}
        _TRAIN_STEPS[key] = (s["tx"], steps.jit_train_step(s["graphdef"], s["tx"], loss_cfg,
                                                            s["shardings"], s["mesh"]))
    s["tx"] = _TRAIN_STEPS[key][0]  # the step closes over its optimizer: keep them paired
    return _TRAIN_STEPS[key][1]


def train_and_evaluate(config, workdir: str, max_iterations: int | None = None) -> dict[str, Any]:
    """Runs (or resumes) search-and-learn in ``workdir``; returns the final solve rates.

    ``max_iterations`` stops after that many iterations in this call (checkpointed, status
    "paused"); calling again resumes. Used by tests and notebooks to interrupt a run.
    """
    with ckpt_lib.PreemptionGuard() as guard:
        return _run(config, workdir, guard, max_iterations)


def _run(config, workdir: str, guard, max_iterations: int | None) -> dict[str, Any]:
    t_start = time.time()
    s = build(config, workdir)
    cfg, rules, mesh, sl = s["cfg"], s["rules"], s["mesh"], s["cfg"]["sl"]
    for key in ("iterations", "train_steps", "selfplay_batch", "eval_every", "train_problems"):
        if sl[key] < 1:
            raise ValueError(f"config.sl.{key}={sl[key]} is out of range; allowed >= 1.")
    excluded = stream_data.exclusion_sets(cfg)  # the eval sets and, with a csv, all ToT puzzles
    keys = stream.exclusion_keys(excluded.values())
    curriculum, mixer = Curriculum(cfg, rules, keys), StreamMixer(s, keys)  # before any write
    sets, sims = eval_sets(cfg, rules), sims_list(cfg)
    ckpt_lib.ensure_writable(workdir)
    supervised.check_resume_config(workdir, cfg)
    supervised.write_config(workdir, cfg)
    if jax.process_index() == 0:
        s["exclusion"] = stream.write_exclusion(workdir, excluded)
    buf = make_buffer(s)
    ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), every=1,
                                 keep=cfg["checkpoint"]["keep"],
                                 async_save=cfg["checkpoint"]["async_save"])
    it0, meta = 0, {"level": 1, "history": [], "baseline": [], "wall_time_s": 0.0, "updates": 0,
                    "selfplay_evals": 0.0}
    abs_full = {"train": s["abs_state"], "buffer": ckpt_lib.abstract_like(buf.state_dict())}
    if (latest := ckpt.latest_step()) is not None:
        full, meta = ckpt.restore(latest, abs_full)
        state, it0 = full["train"], latest
        buf.load_state_dict(full["buffer"])
        logging.info("resumed %s at iteration %d (buffer %d rows)", workdir, it0, len(buf))
    else:
        state = initial_state(s)
    train_step = _train_step(s)
    sp_cfg = mcts.SearchConfig(num_simulations=sl["selfplay_simulations"],
                               max_num_considered_actions=sl["max_considered"],
                               gumbel_scale=sl["gumbel_scale"])
    self_play = cached_runner(s["evaluate"], rules, sp_cfg, mesh)
    model_eval = Evaluator(s["evaluate"], rules, sims, cfg, mesh, "mcts", s["flops_per_eval"])
    if not meta["baseline"]:
        meta["baseline"] = Evaluator(None, rules, sims, cfg, mesh, "uniform_mcts", 0.0,
                                     "uniform")(None, sets)
    writer = metrics_lib.MetricWriter(workdir, sl["iterations"], initial_step=it0)
    timer, seed, bs = metrics_lib.PhaseTimer(), cfg["seed"], cfg["train"]["batch_size"]
    status, last_eval = "completed", []
    if not meta["history"]:  # the curve starts at the untrained network
        last_eval = model_eval(state["params"], sets)
        meta["history"].append({"iteration": 0, "updates": 0, "selfplay_evals": 0.0,
                                "entries": last_eval})
        writer.write(0, eval_metrics(last_eval))
    # Setup = config checks, problem pools, init/restore, the baseline and iteration-0 evals
    # (their compilation included): wall time that belongs to no iteration.
    setup_s = time.time() - t_start
    writer.write(it0, {"time/setup_s": setup_s})
    print(f"[search_and_learn] setup {setup_s:.1f} s (init or restore, uniform-prior baseline and "
          "untrained-network evals, their compilation)", flush=True)
    try:
        for it in range(it0, sl["iterations"]):
            with timer("search"):
                probs, cls_idx = curriculum.batch(meta["level"], sl["selfplay_batch"], seed, it)
                ep = self_play(state["params"], jax.random.fold_in(jax.random.key(seed), it),
                               problems.problems_to_state(probs, rules))
                solved = np.asarray(ep.solved)
                meta["selfplay_evals"] += float(np.asarray(ep.num_evals).sum())
            with timer("relabel"):
                rows, counts = self_play_rows(s, ep, seed, it)
                buf.add(rows)
            with timer("train"):
                acc = None
                for k in range(sl["train_steps"]):
                    batch = mixer.batch(it, k) or buffer_batch(buf, bs, mesh, seed, 3, it, k)
                    state, m = train_step(state, batch)
                    acc = m if acc is None else jax.tree.map(lambda a, b: a + b, acc, m)
                host = {f"train/{k}": float(v) / sl["train_steps"]
                        for k, v in jax.device_get(acc).items()}
                supervised.finite_or_raise(host, it + 1, ckpt)
                meta["updates"] += sl["train_steps"]
            newest = cls_idx == meta["level"] - 1
            rate_new = float(solved[newest].mean())
            host.update({"selfplay/solve_rate": float(solved.mean()),
                         "selfplay/newest_class_solve_rate": rate_new,
                         "selfplay/found_rate": counts["found"] / len(solved),
                         "selfplay/relabelled": counts.get("relabelled", 0),
                         "buffer/rows_added": counts["rows"], "buffer/size": len(buf),
                         "curriculum/level": meta["level"]})
            if rate_new >= curriculum.threshold and meta["level"] < len(curriculum.classes):
                meta["level"] += 1
                print(f"[search_and_learn] curriculum: {curriculum.names[meta['level'] - 1]} "
                      f"opens at iteration {it + 1}", flush=True)
            # The time limit ends the run like its last iteration: evaluated, saved, recorded.
            out_of_time = 0 < sl.get("time_limit_s", 0.0) <= meta["wall_time_s"] + \
                time.time() - t_start
            last = it + 1 == sl["iterations"] or out_of_time
            pause = max_iterations is not None and it + 1 - it0 >= max_iterations and not last
            preempt = guard.requested or ckpt.reached_preemption(it + 1) or pause
            if (it + 1) % sl["eval_every"] == 0 or last:
                with timer("eval"):
                    last_eval = model_eval(state["params"], sets)
                host.update(eval_metrics(last_eval))
                meta["history"].append({"iteration": it + 1, "updates": meta["updates"],
                                        "selfplay_evals": meta["selfplay_evals"],
                                        "entries": last_eval})
            with timer("save"):
                meta["wall_time_s"] += time.time() - t_start
                t_start = time.time()
                if (it + 1) % cfg["checkpoint"]["every"] == 0 or last or preempt:
                    ckpt.save(it + 1, {"train": state, "buffer": buf.state_dict()}, meta)
            phases = timer.pop()
            host.update(phases)
            writer.write(it + 1, host)
            writer.advance(it + 1)
            total = sum(phases.values())
            log_table(f"[search_and_learn] iteration {it + 1}/{sl['iterations']}: self-play "
                      f"solve {host['selfplay/solve_rate']:.3f}, loss {host['train/loss']:.4f}",
                      [(p, f"{phases.get(f'time/{p}_s', 0.0):.2f}",
                        f"{100 * phases.get(f'time/{p}_s', 0.0) / max(total, 1e-9):.0f}%")
                       for p in PHASES], ("phase", "seconds", "share"))
            if preempt:
                status = "paused" if pause else "preempted"
                break
            if out_of_time:
                status = "time_limit"
                print(f"[search_and_learn] time limit {sl['time_limit_s']:.0f} s reached at "
                      f"iteration {it + 1}", flush=True)
                break
    finally:
        mixer.close()
        ckpt.close()
        writer.close()
    meta["wall_time_s"] += time.time() - t_start
    if not last_eval and meta["history"]:
        last_eval = meta["history"][-1]["entries"]
    # A resume keeps the search_evals that --mode=eval / sweep_eval appended meanwhile.
    record(s, workdir, meta, last_eval, status, resumed=it0 > 0)
    _print_summary(last_eval, meta["baseline"])
    return {"status": status, "iteration": meta["history"][-1]["iteration"] if meta["history"]
            else 0, **eval_metrics(last_eval + meta["baseline"])}


def record(s: dict, workdir: str, meta: dict, entries: list[dict], status: str,
           mode: str = "search_and_learn", resumed: bool = False) -> str:
    """``run.json`` (``train.run_record``): the latest eval, the uniform baseline and the history.
    ``resumed``: the file's other ``search_evals`` are kept (``search.eval.merge_entries``; the
    loop's own entries replace those of the same split, method and budget); a fresh run writes
    only its own."""
    cfg, seq_len = s["cfg"], s["seq_len"]
    tokens = meta["updates"] * cfg["train"]["batch_size"] * seq_len
    return run_record.write_run_record(
        workdir, name=cfg["name"], config=cfg,
        param_counts=flops.param_counts(s["model_cfg"], tok_cfg=s["tok_cfg"]),
        flops_per_token=flops.train_flops_per_token(s["model_cfg"], seq_len), tokens=tokens,
        steps=meta["updates"], final_metrics=eval_metrics(entries), wall_time_s=meta["wall_time_s"],
        search_evals=entries + meta["baseline"], merge_search_evals=resumed,
        extra={"mode": mode, "status": status, "seq_len": seq_len,
               "selfplay_search_flops": meta["selfplay_evals"] * s["flops_per_eval"],
               "history": meta["history"], "exclusion": s.get("exclusion", {})})


def _print_summary(entries: list[dict], baseline: list[dict]) -> None:
    base = {(b["split"], b["simulations"]): b["solve_rate"] for b in baseline
            if b["method"] == "uniform_mcts"}
    rows = [(e["split"], e["simulations"], f"{e['solve_rate']:.3f}",
             f"{base.get((e['split'], e['simulations']), float('nan')):.3f}") for e in entries
            if e["method"] == "mcts"]
    log_table("[search_and_learn] played-trajectory solve rate (learned vs uniform-prior MCTS)",
              rows, ("split", "sims", "learned", "uniform"))
