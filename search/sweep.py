r"""Solve rate vs search compute: the method registry and the sweep of methods x budgets x splits.

    from search import sweep
    from train.run_model import load_network
    sweep.evaluate_run("runs/eval", load_network("uniform"), ["g24:test:100"],
                       methods=["uniform_mcts", "exhaustive_dfs"], budgets=[1, 4, 16, 64])

The command line is ``python -m search.eval`` (``train/eval_main.py``). Search code never builds
a network: it takes a ``search.types.Network`` (a ``MakeEvaluate`` and its parameters);
``train.run_model.load_network`` makes one from a spec, ``BASELINES`` are the network-free ones.

Splits: ``tot100 | tsllm362 | all1362 | tsllm_train1000 | xot137 | xot1225`` (from ``--csv``), a
generated class ``name[:split[:count]]`` (``search.problems``; default split test, 100 problems),
or ``file:<path>`` = ``--problems=<path>``: your own CSV/TSV with ``numbers`` (space-separated)
and ``target`` columns (``problems.load_problems_file``), played under the Game-of-24 rules.
Methods and what ``budget`` B means (every entry records the evaluations actually used):
  mcts / mcts_muzero / uniform_mcts: B simulations per move (Gumbel with gumbel_scale 0 /
    PUCT with greedy acting, no noise / Gumbel with uniform prior and zero value); each also
    reports ``<name>_tree``: a verified solution anywhere in a search tree.
  beam: BFS-V with beam width B;  dfs: DFS-V with (B+1)*(n-1) evaluations;
  sample: B policy rollouts -> ``sample_pass`` (pass@B) and ``sample_majority``;
  exhaustive_dfs / exhaustive_bfs: (B+1)*(n-1) generated states, no network.
Evaluations cost ``flops_per_eval`` FLOPs for network methods and none for network-free ones.
Outputs in ``<workdir>/search_eval``: results.json, results.md, per_problem.jsonl,
solve_rate_<split>.png; the entries (``search.types.SearchEval``) are merged into
``<workdir>/run.json`` if present (``scaling.run_json.merge_entries``: a new entry replaces the
one of the same measurement).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np
from tqdm import tqdm

from scaling import run_json
from scaling.run_json import write_json, write_text
from search import baselines, game, mcts, problems
from search import play as play_lib
from search.stats import clopper_pearson_ci, wilson_ci
from search.types import Network, Play

CSV_SPLITS = tuple(problems.CSV_SPLITS) + tuple(problems.XOT_SPLITS)
NETWORK_METHODS = ("mcts", "mcts_muzero", "beam", "dfs", "sample")
FREE_METHODS = ("uniform_mcts", "exhaustive_dfs", "exhaustive_bfs")
METHODS = NETWORK_METHODS + FREE_METHODS
TREE_METHODS = ("mcts", "mcts_muzero", "uniform_mcts")  # each also reports <method>_tree
DEFAULT_BUDGETS = tuple(2**k for k in range(9))  # 1 .. 256
# Network-free evaluators, searchable without a model (``train.run_model.load_network`` specs).
BASELINES = {"uniform": Network("uniform", baselines.uniform_evaluate),
             "oracle": Network("oracle", baselines.oracle_evaluate)}


# ----------------------------------------------------------------------------- splits


def load_split(spec: str, csv_path: str | None = None, n_max: int | None = None,
               play: Play | None = None):
    """(name, problems, rules) for a split spec (module docstring), with the slots that
    ``play`` (a network's playing conditions; None for network-free baselines) and an explicit
    ``n_max`` resolve to (``search.play.slot_count``)."""
    if spec.startswith("file:"):  # --problems=FILE: Game-of-24 rules, as many slots as needed
        path = spec[len("file:"):]
        probs, spec = problems.load_problems_file(path), f"file:{os.path.basename(path)}"
        rules = dataclasses.replace(problems.get_class("g24").rules,
                                    n_max=max(len(p.numbers) for p in probs))
    elif spec in CSV_SPLITS:
        if not csv_path:
            raise ValueError(f"split {spec!r} needs the ToT 24.csv (or XoT csv): pass "
                             "--csv=/path/to/24.csv (download it from the Tree-of-Thoughts repo, "
                             "src/tot/data/24/24.csv).")
        probs, rules = problems.load_24csv(csv_path, spec), problems.get_class("g24").rules
    else:
        name, split, count = (spec.split(":") + ["test", "100"])[:3]
        if name not in problems.class_names():
            raise ValueError(f"split {spec!r} is unknown; allowed {', '.join(CSV_SPLITS)} or a "
                             f"class[:split[:count]] with class in {problems.class_names()}.")
        if split not in problems.SPLITS:
            raise ValueError(f"split {spec!r}: {split!r} is not a split; allowed "
                             f"{', '.join(problems.SPLITS)} (class[:split[:count]]).")
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"split {spec!r}: count={count!r} is out of range; allowed an "
                             "integer >= 1 (problems to evaluate).")
        cls = problems.get_class(name)
        probs, rules = problems.generate(cls, int(count), seed=0, split=split), cls.rules
    needed = max((len(p.numbers) for p in probs), default=2)
    slots = play_lib.slot_count(play, spec, needed, rules.n_max, n_max)
    return spec, probs, dataclasses.replace(rules, n_max=slots)


# ----------------------------------------------------------------------------- methods


@dataclasses.dataclass(frozen=True)
class SweepOptions:
    """Method knobs that are not the budget."""

    batch_size: int = 128  # problems per jitted call (the last batch is padded)
    max_num_considered_actions: int = 16
    beam_expand: int = 8
    dfs_expand: int = 8
    dfs_threshold: float = 0.05
    sample_temperature: float = 1.0
    seed: int = 0

    @classmethod
    def played(cls, play: Play | None, **explicit) -> SweepOptions:
        """The options a network is played with: its own search settings (``Play.search``),
        overridden by ``explicit`` ones (flags the user gave)."""
        names = {f.name for f in dataclasses.fields(cls)}
        own = {k: v for k, v in (play.search if play else {}).items() if k in names}
        return cls(**{**own, **explicit})

    def __post_init__(self):
        for name in ("batch_size", "max_num_considered_actions", "beam_expand", "dfs_expand"):
            if getattr(self, name) < 1:
                raise ValueError(f"SweepOptions.{name}={getattr(self, name)} is out of range; "
                                 "allowed >= 1.")
        if self.sample_temperature < 0:
            raise ValueError(f"SweepOptions.sample_temperature={self.sample_temperature} is out "
                             "of range; allowed >= 0 (0 = greedy).")


@functools.lru_cache(maxsize=64)
def _batched_fn(method: str, budget: int, make_evaluate: Callable, rules: game.Rules,
                o: SweepOptions, mesh):
    """A jitted ``f(params, rng, state)`` for a network-driven method at one budget (cached:
    repeated ``run_method`` calls, e.g. once per training iteration, compile once)."""
    ev = baselines.uniform_evaluate(rules) if method == "uniform_mcts" else make_evaluate(rules)
    if method in TREE_METHODS:
        cfg = (mcts.SearchConfig("muzero", budget, dirichlet_fraction=0.0, temperature=0.0)
               if method == "mcts_muzero" else mcts.SearchConfig(
                   "gumbel", budget, max_num_considered_actions=o.max_num_considered_actions,
                   gumbel_scale=0.0))
        return mcts.make_episode_runner(ev, rules, cfg, mesh)
    fn = {"beam": lambda p, k, s: baselines.value_beam(p, k, s, ev, rules, budget, o.beam_expand),
          "dfs": lambda p, k, s: baselines.value_dfs(
              p, k, s, ev, rules, o.dfs_expand, o.dfs_threshold, (budget + 1) * (rules.n_max - 1)),
          "sample": lambda p, k, s: baselines.sample(p, k, s, ev, rules, budget,
                                                     o.sample_temperature)}[method]
    return mcts.make_batched(fn, rules, mesh)


def variants(method: str) -> tuple[str, ...]:
    """The entry ``method`` names that searching ``method`` yields (module docstring)."""
    if method in TREE_METHODS:
        return method, f"{method}_tree"
    return ("sample_pass", "sample_majority") if method == "sample" else (method,)


def _outcomes(method: str, out, state, rules) -> dict[str, list[tuple[bool, str | None, int]]]:
    """Per variant: (solved, verified expression, evaluations) of each problem of a batch."""
    names = variants(method)
    if isinstance(out, mcts.Episode):
        sols, evals = mcts.solutions(out, rules), np.asarray(out.num_evals)
        return {names[0]: [(s.played, s.expression if s.played else None, int(e))
                           for s, e in zip(sols, evals, strict=True)],
                names[1]: [(s.found, s.expression, int(e))
                           for s, e in zip(sols, evals, strict=True)]}
    out = jax.device_get(out)
    exprs = [mcts.verify(nums, t, a, rules) if ok else None for (nums, t), a, ok in
             zip(mcts.initial_problems(state), out.actions, out.solved, strict=True)]
    rows = lambda flags: [(e is not None and bool(f), e if f else None, int(v))
                          for e, f, v in zip(exprs, flags, out.evals, strict=True)]
    if method == "sample":
        return dict(zip(names, (rows(out.solved), rows(out.majority)), strict=True))
    return {method: rows(out.solved)}


def run_method(method: str, budget: int, probs: Sequence[problems.Problem], rules: game.Rules,
               net: Network, opts: SweepOptions = SweepOptions(), mesh=None,
               progress: bool = True) -> tuple[dict[str, list], float]:
    """Outcomes per variant for every problem, and the wall time (compile included)."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is unknown; allowed {METHODS}.")
    if budget < 1:
        raise ValueError(f"budget (simulations)={budget} is out of range; allowed >= 1.")
    t0 = time.perf_counter()
    if method.startswith("exhaustive_"):
        res = [baselines.exhaustive(p.numbers, p.target, rules, (budget + 1) * (len(p.numbers) - 1),
                                    method.split("_")[1]) for p in probs]
        exprs = [mcts.verify(p.numbers, p.target, a, rules) if ok else None
                 for p, (ok, a, _) in zip(probs, res, strict=True)]
        return ({method: [(e is not None, e, n) for e, (_, _, n) in zip(exprs, res, strict=True)]},
                time.perf_counter() - t0)
    fn = _batched_fn(method, budget, net.make_evaluate, rules, opts, mesh)
    bs, out = max(1, min(opts.batch_size, len(probs))), {}
    batches = range(0, len(probs), bs)
    for start in tqdm(batches, desc=f"{method}@{budget}", disable=not progress, leave=False):
        chunk = list(probs[start:start + bs])
        padded = chunk + [chunk[-1]] * (bs - len(chunk))  # one compiled shape for every batch
        state = problems.problems_to_state(padded, rules)
        res = fn(net.params, jax.random.PRNGKey(opts.seed + start), state)
        for k, v in _outcomes(method, res, state, rules).items():
            out.setdefault(k, []).extend(v[:len(chunk)])
    return out, time.perf_counter() - t0


# ----------------------------------------------------------------------------- sweep + outputs


def run_sweep(split: str, probs: Sequence[problems.Problem], rules: game.Rules, net: Network,
              methods: Sequence[str] = METHODS, budgets: Sequence[int] = DEFAULT_BUDGETS,
              opts: SweepOptions = SweepOptions(), mesh=None, progress: bool = True):
    """Every method at every budget on one split: (summary entries, per-problem records)."""
    bad = [b for b in budgets if b < 1]
    if bad:
        raise ValueError(f"budgets {bad} are out of range; simulations must be >= 1.")
    flops = net.flops_per_eval(rules)
    entries, records = [], []
    for method in methods:
        for budget in budgets:
            outcomes, wall = run_method(method, budget, probs, rules, net, opts, mesh, progress)
            for variant, rows in outcomes.items():
                solved = sum(r[0] for r in rows)
                evals = float(np.mean([r[2] for r in rows])) if rows else 0.0
                entries.append(dict(
                    split=split, method=variant, network=net.name, simulations=budget,
                    evals_per_problem=evals,
                    search_flops_per_problem=0.0 if method in FREE_METHODS else evals * flops,
                    solve_rate=solved / max(len(rows), 1),
                    solve_rate_ci=list(wilson_ci(solved, len(rows))),
                    solve_rate_ci_clopper_pearson=list(clopper_pearson_ci(solved, len(rows))),
                    num_problems=len(rows), wall_time_s=wall, slots=rules.n_max))
                records += [dict(split=split, method=variant, simulations=budget,
                                 numbers=list(p.numbers), target=p.target, solved=bool(ok),
                                 solution=expr, evals=ev)
                            for p, (ok, expr, ev) in zip(probs, rows, strict=True)]
    return entries, records


def markdown(entries: Sequence[dict]) -> str:
    """A table per split: method x budget -> solve rate [95% CI], evaluations, FLOPs."""
    lines = []
    for split in dict.fromkeys(e["split"] for e in entries):
        slots = {e["slots"] for e in entries if e["split"] == split and "slots" in e}
        where = f" ({', '.join(map(str, sorted(slots)))} slots)" if slots else ""
        lines += [f"### {split}{where}", "", "| method | budget | solve rate | 95% CI (Wilson) | "
                  "evals / problem | search FLOPs / problem | wall s |",
                  "|---|---:|---:|---|---:|---:|---:|"]
        for e in (e for e in entries if e["split"] == split):
            lo, hi = e["solve_rate_ci"]
            lines.append(f"| {e['method']} | {e['simulations']} | {e['solve_rate']:.3f} | "
                         f"[{lo:.3f}, {hi:.3f}] | {e['evals_per_problem']:.1f} | "
                         f"{e['search_flops_per_problem']:.3g} | {e['wall_time_s']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def plot(entries: Sequence[dict], split: str, path: str) -> None:
    """Solve rate vs evaluations (all methods) and vs search FLOPs (network methods)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((axes[0], "evals_per_problem", "evaluations / problem"),
                           (axes[1], "search_flops_per_problem", "search FLOPs / problem")):
        for method in dict.fromkeys(e["method"] for e in entries if e["split"] == split):
            es = [e for e in entries
                  if e["split"] == split and e["method"] == method and e[key] > 0]
            if not es:
                continue
            x, y = [e[key] for e in es], [e["solve_rate"] for e in es]
            err = np.clip([[e["solve_rate"] - e["solve_rate_ci"][0],
                            e["solve_rate_ci"][1] - e["solve_rate"]] for e in es], 0, 1).T
            ax.errorbar(x, y, yerr=err, marker="o", capsize=2, label=method)
        if not ax.lines:
            ax.text(0.5, 0.5, "no method with FLOP costs", ha="center", transform=ax.transAxes)
        ax.set(xscale="log", xlabel=label, ylabel="solve rate", ylim=(-0.02, 1.02), title=split)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(out_dir: str, entries: list[dict], records: list[dict], meta: dict) -> None:
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, "results.json"), {**meta, "entries": entries})
    write_text(os.path.join(out_dir, "per_problem.jsonl"),
               "".join(json.dumps(r) + "\n" for r in records))
    write_text(os.path.join(out_dir, "results.md"), markdown(entries))
    for split in dict.fromkeys(e["split"] for e in entries):
        plot(entries, split, os.path.join(out_dir, f"solve_rate_{split.replace(':', '_')}.png"))


def append_to_run_record(workdir: str, entries: Sequence[dict]) -> bool:
    """Merge ``search_evals`` entries into ``<workdir>/run.json`` if it exists, on process 0
    (``scaling.run_json.merge_search_evals``: the same budgets again replace, never duplicate)."""
    if jax.process_index() != 0:
        return False
    return run_json.merge_search_evals(workdir, entries)


def evaluate_run(workdir: str, net: Network, splits: Sequence[str],
                 methods: Sequence[str] = METHODS, budgets: Sequence[int] = DEFAULT_BUDGETS,
                 csv_path: str | None = None, n_max: int | None = None,
                 opts: SweepOptions = SweepOptions(), mesh=None, progress: bool = True) -> dict:
    """Sweep every split; write ``<workdir>/search_eval/*`` and merge into run.json. Returns
    {"entries": [...], "out_dir": ...}. All inputs are validated before any search runs."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"methods {unknown} are unknown; allowed {METHODS}.")
    if not budgets or min(budgets) < 1:
        raise ValueError(f"budgets={list(budgets)}: simulations must be >= 1.")
    loaded = [load_split(s, csv_path, n_max, net.play) for s in splits]
    play_lib.leak_messages(net, loaded)
    entries, records = [], []
    for name, probs, rules in loaded:
        e, r = run_sweep(name, probs, rules, net, methods, budgets, opts, mesh, progress)
        entries += e
        records += r
    out_dir = os.path.join(workdir, "search_eval")
    meta = dict(network=net.name, options=dataclasses.asdict(opts),
                device_kind=jax.devices()[0].device_kind, device_count=jax.device_count())
    write_outputs(out_dir, entries, records, meta)
    append_to_run_record(workdir, entries)
    return {"entries": entries, "out_dir": out_dir}
