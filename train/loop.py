"""The iteration loop that search-and-learn and GRPO share: evaluation sets and the evaluator,
the run's progress (``LoopRun``), the eval-and-save phase and ``run.json``.

An iteration of either mode searches (self-play or policy rollouts), trains, then calls
``maybe_eval_and_save``: the played-trajectory solve rate on every ``eval.sets`` split at
every ``eval.simulations`` budget every ``sl.eval_every`` iterations and at the last one, next
to the uniform-prior MCTS baseline at the same budgets (computed once), and a checkpoint when
the mode keeps them. ``meta`` (curriculum level, updates, self-play evaluations, wall time, eval
history, baseline) is saved with every checkpoint, so a resumed run continues the same curve.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from scaling import flops
from search import game, problems, sweep
from train import metrics as metrics_lib
from train import run_record
from train.configs import common
from train.selfplay import Curriculum, StreamMixer
from train.setup import RunSetup


@dataclasses.dataclass
class EvalSet:
    name: str  # the split spec, as search.eval names it ("g24:test:100", "tot100")
    problems: list[problems.Problem]
    state: game.State


def eval_problems(cfg: dict, rules: game.Rules) -> list[tuple[str, list[problems.Problem]]]:
    """``eval.sets`` as (name, problems), each checked against the run's rules: ``search.sweep``
    split specs (``class[:split[:count]]``, or ``tot100``-style ToT splits read from
    ``eval.csv``). ``train.check`` runs it before any compute; ``eval_sets`` adds the states."""
    out = []
    for spec in cfg["eval"]["sets"]:
        name, probs, set_rules = sweep.load_split(spec, cfg["eval"]["csv"] or None,
                                                        rules.n_max)
        if set_rules != rules:
            raise ValueError(f"config.eval.sets: {spec!r} has rules {set_rules}, different from "
                             f"the run's {rules}; evaluate classes of one rule variant.")
        out.append((name, list(probs)))
    return out


def eval_sets(cfg: dict, rules: game.Rules) -> list[EvalSet]:
    """``eval_problems`` with their initial states, played with the run's rules."""
    return [EvalSet(name, probs, problems.problems_to_state(probs, rules))
            for name, probs in eval_problems(cfg, rules)]


def sims_list(cfg: dict) -> list[int]:
    return list(cfg["eval"]["simulations"])


class Evaluator:
    """Played-trajectory solve rates of one network on every eval set and budget, computed by
    ``search.sweep.run_sweep`` (entries in its format): method ``mcts`` (deterministic
    Gumbel search with the network) or ``uniform_mcts`` (uniform prior, zero value, no FLOPs),
    each with ``<method>_tree`` (a verified solution anywhere in a search tree).
    ``search.sweep`` caches its runners on ``make_evaluate``, so this object keeps one."""

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


def log_iteration(title: str, phases: Mapping[str, float], first: bool) -> str:
    """The console line of one iteration: its phase seconds; the first iteration of a start
    prints them as a table with shares (where the time goes), the later ones on one line."""
    if first:
        total = max(sum(phases.values()), 1e-9)
        return log_table(title, [(p, f"{v:.2f}", f"{100 * v / total:.0f}%")
                                 for p, v in phases.items()], ("phase", "seconds", "share"))
    text = f"{title} ({', '.join(f'{p} {v:.1f} s' for p, v in phases.items())})"
    print(text, flush=True)
    return text


def log_table(title: str, rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: " | ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True))
    text = "\n".join([title, fmt(header), "-+-".join("-" * w for w in widths), *map(fmt, rows)])
    print(text, flush=True)  # stdout only: absl would print INFO to stderr a second time
    return text


@dataclasses.dataclass(frozen=True)
class LoopData:
    """A loop mode's inputs (``RunSetup.data``): training problems, eval sets and budgets, the
    stream mixer (search-and-learn) and the exclusion counts ``run.json`` records."""

    curriculum: Curriculum
    sets: list[EvalSet]
    sims: list[int]
    mixer: StreamMixer | None = None
    exclusion: dict = dataclasses.field(default_factory=dict)


def new_meta() -> dict:
    return {"level": 1, "history": [], "baseline": [], "wall_time_s": 0.0, "updates": 0,
            "selfplay_evals": 0.0}


@dataclasses.dataclass
class LoopRun:
    """The mutable progress of one loop run; the ``RunSetup`` it runs on stays frozen."""

    s: RunSetup
    workdir: str
    state: dict
    meta: dict
    it0: int
    t_start: float
    writer: metrics_lib.MetricWriter
    model_eval: Evaluator
    timer: metrics_lib.PhaseTimer = dataclasses.field(default_factory=metrics_lib.PhaseTimer)
    last_eval: list = dataclasses.field(default_factory=list)

    def history(self, iteration: int, entries: list[dict]) -> None:
        self.meta["history"].append({"iteration": iteration, "updates": self.meta["updates"],
                                     "selfplay_evals": self.meta["selfplay_evals"],
                                     "entries": entries})


def start(s: RunSetup, workdir: str, state: dict, meta: dict | None, it0: int, t_start: float,
          iterations: int, log_untrained: bool = True) -> LoopRun:
    """``LoopRun`` at iteration ``it0``: the uniform baseline and the untrained network's eval
    (iteration 0 of the curve; written to the metrics with ``log_untrained``) unless ``meta``
    (a restored checkpoint's) already holds them."""
    d, meta = s.data, meta or new_meta()
    model_eval = Evaluator(s.evaluate, s.rules, d.sims, s.cfg, s.mesh, "mcts", s.flops_per_eval)
    if not meta["baseline"]:
        meta["baseline"] = Evaluator(None, s.rules, d.sims, s.cfg, s.mesh, "uniform_mcts", 0.0,
                                     "uniform")(None, d.sets)
    writer = metrics_lib.MetricWriter(workdir, iterations, initial_step=it0)
    run = LoopRun(s, workdir, state, meta, it0, t_start, writer, model_eval)
    if not meta["history"]:  # the curve starts at the untrained network
        run.last_eval = model_eval(state["params"], d.sets)
        run.history(0, run.last_eval)
        if log_untrained:
            writer.write(0, eval_metrics(run.last_eval))
    return run


def maybe_eval_and_save(run: LoopRun, it: int, last: bool, host: dict, save_tree=None,
                        force_save: bool = False) -> None:
    """After iteration ``it``: evaluates on ``sl.eval_every`` (and the last iteration) into
    ``host`` and the history; with a checkpointer, adds the wall time to ``meta`` and saves
    ``save_tree`` every ``checkpoint.every`` iterations (or when ``force_save``)."""
    s = run.s
    if common.due(it, s.cfg["sl"]["eval_every"]) or last:
        with run.timer("eval"):
            run.last_eval = run.model_eval(run.state["params"], s.data.sets)
        host.update(eval_metrics(run.last_eval))
        run.history(it, run.last_eval)
    if s.ckpt is None:
        return
    with run.timer("save"):
        run.meta["wall_time_s"] += time.time() - run.t_start
        run.t_start = time.time()
        if common.due(it, s.cfg["checkpoint"]["every"]) or last or force_save:
            s.ckpt.save(it, save_tree, run.meta)


def end_iteration(run: LoopRun, it: int, host: dict) -> dict[str, float]:
    """Writes iteration ``it``'s metrics with its phase times; returns the phase times."""
    phases = run.timer.pop()
    host.update(phases)
    run.writer.write(it, host)
    run.writer.advance(it)
    return phases


def record(s: RunSetup, workdir: str, meta: dict, entries: list[dict], status: str,
           mode: str = "search_and_learn", resumed: bool = False) -> str:
    """``run.json`` (``train.run_record``): the latest eval, the uniform baseline and the history.
    ``resumed``: the file's other ``search_evals`` are kept (``scaling.run_json.merge_entries``; the
    loop's own entries replace those of the same split, method and budget); a fresh run writes
    only its own."""
    cfg, seq_len = s.cfg, s.seq_len
    tokens = meta["updates"] * cfg["train"]["batch_size"] * seq_len
    return run_record.write_run_record(
        workdir, name=cfg["name"], config=cfg,
        param_counts=flops.param_counts(s.model_cfg, tok_cfg=s.tok_cfg),
        flops_per_token=flops.train_flops_per_token(s.model_cfg, seq_len), tokens=tokens,
        steps=meta["updates"], final_metrics=eval_metrics(entries), wall_time_s=meta["wall_time_s"],
        search_evals=entries + meta["baseline"], merge_search_evals=resumed,
        extra={"mode": mode, "status": status, "seq_len": seq_len,
               "selfplay_search_flops": meta["selfplay_evals"] * s.flops_per_eval,
               "history": meta["history"], "exclusion": getattr(s.data, "exclusion", {})})
