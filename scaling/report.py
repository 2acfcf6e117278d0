"""Fit everything the run records support and write ``report.md``, ``fits.json`` and PNG plots.

Each section (approach 2, its biased "lowest run" variant, approach 3, solve rate vs search compute,
pass@k, the train/test frontier, predictions) runs when the records hold enough data for it; when
they do not, the section says why ("skipped: <the ValueError>") instead of the whole report failing.
Warnings raised by the fits (a budget with one run, an extrapolated vertex, a non-converged fit)
are collected into the report and re-issued.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import warnings

import numpy as np

from scaling import fit, fit_inference, holdout, plots, records


@dataclasses.dataclass(frozen=True)
class ReportOptions:
    """loss_key: final_metrics entry fitted as L. split/method: search evals used (None: the most
    frequent pair). thresholds: solve rates for the frontier. target_flops: training budgets to
    predict at (empty: 10x and 100x the largest run). passk_prefixes: method-name prefixes read
    as pass@k sampling (``search.eval``'s ``sample_pass``), with k = ``simulations``.
    suggest_depths: candidate depths for ``sweep.suggest_hparams`` at each target's predicted
    N_opt (approach 3, else approach 2)."""

    loss_key: str = "eval/loss"
    split: str | None = None
    method: str | None = None
    thresholds: tuple = (0.25, 0.5, 0.75)
    target_flops: tuple = ()
    bootstrap: int = 200
    level: float = 0.95
    budget_rtol: float = 0.05
    flops_per_param_token: float | None = None  # C = k N D in approach 3; None: the runs' own
    passk_prefixes: tuple = ("sample_pass", "pass")
    compute_axis: str = "flops"  # search compute axis: flops | evals | simulations
    suggest_depths: tuple = ()  # non-empty: suggest depth/batch/lr at each target (needs JAX)
    seq_len: int = 32  # tokens per example, for the suggested batch size
    seed: int = 0
    splits: tuple = ()  # more search splits, each with its own curves and frontier
    prediction: dict | None = None  # scaling.holdout prediction.json: scored against its budget
    baselines: tuple = ()  # search.eval results.json dicts of network-free references


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None  # strict JSON has no NaN
    if isinstance(x, np.integer):
        return int(x)
    return x


def _law(p: fit.PowerLaw) -> dict:
    return {"coef": p.coef, "exponent": p.exponent, "exponent_ci": p.exponent_ci,
            "rms_log10_residual": float(np.sqrt(np.mean(p.residuals**2)))}


def _section(out: dict, key: str, fn):
    """Run one fit; a ValueError becomes ``{"skipped": reason}`` in ``out[key]``."""
    try:
        out[key] = fn()
    except ValueError as e:
        out[key] = {"skipped": str(e)}
    return out[key]


def _pick_search(recs: list[dict], opts: ReportOptions) -> tuple[str | None, str | None]:
    if opts.split is not None and opts.method is not None:
        return opts.split, opts.method
    pairs = collections.Counter((e["split"], e["method"]) for r in recs
                                for e in r["search_evals"] if records.usable(e, opts.compute_axis)
                                if (opts.split is None or e["split"] == opts.split)
                                and (opts.method is None or e["method"] == opts.method)
                                and not str(e["method"]).startswith(opts.passk_prefixes))
    if not pairs:
        return opts.split, opts.method
    return pairs.most_common(1)[0][0]


def fit_all(recs: list[dict], opts: ReportOptions = ReportOptions()) -> tuple[dict, dict]:
    """All fits -> (json-ready summary, fit objects for plotting)."""
    out: dict = {"num_runs": len(recs), "loss_key": opts.loss_key, "ci_level": opts.level,
                 "runs": holdout.run_rows(recs, opts.loss_key)}
    out["collapsed"] = [r["name"] for r in recs if holdout.collapsed(r)]
    all_recs, recs = recs, holdout.usable(recs)  # a constant value is no point on a loss curve
    if not recs:
        raise ValueError(f"all {len(all_recs)} runs have a collapsed value head.")
    table = records.to_table(recs, opts.loss_key)
    common = dict(bootstrap=opts.bootstrap, level=opts.level, seed=opts.seed)
    objs: dict = {"table": table}
    targets = list(opts.target_flops) or [10 * table.flops.max(), 100 * table.flops.max()]
    for method, key in (("parabola", "approach2"), ("lowest", "approach2_lowest_biased")):
        def a2(method=method, key=key):
            f = fit.fit_isoflops(table.params, table.flops, table.loss, method=method,
                                 tokens=table.tokens,
                                 budget_rtol=opts.budget_rtol, **common)
            objs[key] = f
            rb, _ = fit.group_budgets(table.flops, opts.budget_rtol)
            sampled = [table.params[np.isclose(rb, b)] for b in f.budgets]
            interior = [None if not np.isfinite(n) else  # 1e-9: the lowest run is sampled
                        bool(ns.min() * (1 - 1e-9) <= n <= ns.max() * (1 + 1e-9))
                        for n, ns in zip(f.n_opt, sampled, strict=True)]
            return {"method": f.method, "budgets": f.budgets, "n_opt": f.n_opt, "d_opt": f.d_opt,
                    "loss_opt": f.loss_opt, "interior": interior,
                    "num_interior": sum(bool(i) for i in interior),
                    "n_law": _law(f.n_law), "d_law": _law(f.d_law),
                    "loss_law": None if f.loss_law is None else {
                        "floor": f.loss_law.floor, "coef": f.loss_law.coef,
                        "exponent": f.loss_law.exponent,
                        "rms_log10_residual": float(np.sqrt(np.mean(f.loss_law.residuals**2)))},
                    "num_bootstrap": f.num_bootstrap,
                    "predictions": [f.predict(c, opts.level) for c in targets]}
        _section(out, key, a2)

    def a3():
        f = fit.fit_parametric(table.params, table.tokens, table.loss, **common)
        objs["approach3"] = f
        k = opts.flops_per_param_token or holdout.flops_per_param_token(recs)
        p = f.params
        implied = {"a": p["beta"] / (p["alpha"] + p["beta"]),
                   "b": p["alpha"] / (p["alpha"] + p["beta"])}
        implied_ci = {}
        if f.samples is not None and len(f.samples):
            al, be = f.samples[:, 3], f.samples[:, 4]
            implied_ci = {"a": fit.percentile_ci(be / (al + be), opts.level).tolist(),
                          "b": fit.percentile_ci(al / (al + be), opts.level).tolist()}
        return {"params": f.params, "ci": f.ci, "objective": f.objective,
                "converged": f.converged, "num_starts": f.num_starts,
                "num_at_best": f.num_at_best, "flops_per_param_token": k,
                "implied": implied, "implied_ci": implied_ci,
                "rms_log_residual": float(np.sqrt(np.mean(f.residuals**2))),
                "predictions": [f.optimum(c, k, opts.level) for c in targets]}
    _section(out, "approach3", a3)

    split, method = _pick_search(recs, opts)
    for i, sp in enumerate(dict.fromkeys((split, *opts.splits))):
        summ, sobj = _search_split(recs, sp, method, opts, targets, common)
        out.setdefault("search_splits", {})[str(sp)] = summ
        objs.setdefault("search_splits", {})[str(sp)] = sobj
        if i == 0:  # the primary split keeps the top-level keys
            out["search"], out["frontier"] = summ["search"], summ["frontier"]
            objs.update(sobj)
    if opts.prediction is not None:
        _section(out, "holdout", lambda: holdout.score(opts.prediction, all_recs, opts.loss_key,
                                                       opts.budget_rtol))
    out["baselines"] = [holdout.baseline_rows(b) for b in opts.baselines]
    out["pass_at_k"] = []
    for cur in records.search_curves(recs, compute_axis="simulations"):
        if cur.method.startswith(opts.passk_prefixes):
            entry = {"run": cur.name, "split": cur.split, "method": cur.method}
            out["pass_at_k"].append(entry)
            def passk(cur=cur):
                f = fit_inference.fit_pass_at_k(cur.simulations, cur.solve_rate)
                return {"a": f.a, "b": f.b, "k": cur.simulations, "coverage": cur.solve_rate}
            _section(entry, "fit", passk)
    out["hparams"] = _suggestions(out, opts) if opts.suggest_depths else []
    return _jsonable(out), objs


def _search_split(recs, split, method, opts: ReportOptions, targets, common) -> tuple[dict, dict]:
    """Solve-rate curves with their logistic fits, and the frontier, on one split."""
    curves = records.search_curves(recs, split, method, opts.compute_axis)
    out = {"search": {"split": split, "method": method, "compute_axis": opts.compute_axis,
                      "curves": []}}
    fits = []
    for cur in curves:
        entry = {"run": cur.name, "params": cur.params, "train_flops": cur.train_flops}
        try:
            f = fit_inference.fit_solve_rate(cur.compute, cur.solve_rate, cur.num_problems,
                                             **common)
            entry.update(slope=f.slope, mid_log10_compute=f.mid, ci=f.ci,
                         compute_for_half=f.compute_for(0.5))
        except ValueError as e:
            f, entry["skipped"] = None, str(e)
        fits.append(f)
        out["search"]["curves"].append(entry)
    objs = {"curves": curves, "solve_fits": fits}

    def frontier():
        if not curves:
            raise ValueError(f"no search_evals for split={split!r} method={method!r}.")
        args = ([c.train_flops for c in curves], [(c.compute, c.solve_rate) for c in curves],
                opts.thresholds, [c.name for c in curves])
        objs["frontier_points"] = fit_inference.frontier_points(*args, opts.budget_rtol)
        f = fit_inference.fit_frontier(*args, budget_rtol=opts.budget_rtol, **common)
        objs["frontier"] = f
        return {"m": f.m, "m_ci": f.m_ci, "k": f.k, "c": f.c, "points": f.points,
                "train_for_10x_less_search": 10 ** (-1 / f.m) if f.m < 0 else None,
                "predictions": [{"train_flops": t, "threshold": tau,
                                 "search_compute": f.test_compute(t, tau)}
                                for t in targets for tau in opts.thresholds]}
    _section(out, "frontier", frontier)
    return out, objs


def _suggestions(out: dict, opts: ReportOptions) -> list[dict]:
    from scaling import sweep  # lazy: model sizes come from nnx_models (JAX)

    preds = [p for key in ("approach3", "approach2") for p in out[key].get("predictions", [])]
    if not preds:
        return []
    params_fn = sweep.model_fns(opts.seq_len)[0]
    first = {}
    for p in preds:  # approach 3 first, so it wins per budget
        first.setdefault(p["flops"], p)
    return [{"flops": c, "n_opt": p["n_opt"], **sweep.suggest_hparams(
        p["n_opt"], c, opts.suggest_depths, params_fn, opts.seq_len)} for c, p in first.items()]


def _plot_all(objs: dict, out_dir: str, opts: ReportOptions) -> list[str]:
    paths, table = [], objs["table"]
    p = lambda name: os.path.join(out_dir, name)
    paths.append(plots.isoflop_curves(table, objs.get("approach2"), p("isoflops.png"),
                                      opts.budget_rtol))
    iso = [objs[k] for k in ("approach2", "approach2_lowest_biased") if k in objs]
    if iso:
        paths.append(plots.optimal_vs_compute(iso, p("optimal_vs_compute.png"),
                                              objs.get("approach3")))
    paths.append(plots.loss_vs_compute(table, p("loss_vs_compute.png")))
    for i, (split, so) in enumerate(objs.get("search_splits", {}).items()):
        tag = "" if i == 0 else "_" + "".join(ch if ch.isalnum() else "_" for ch in split)
        if so["curves"]:
            paths.append(plots.solve_rate_vs_search(so["curves"], so["solve_fits"],
                                                    p(f"solve_rate_vs_search{tag}.png"), split))
        if so.get("frontier_points"):  # raw points even when the fit fails
            paths.append(plots.frontier(so.get("frontier"), p(f"frontier{tag}.png"),
                                        opts.compute_axis, so["frontier_points"], split))
    return paths


def build_report(recs: list[dict], out_dir: str, opts: ReportOptions = ReportOptions()) -> dict:
    """Fit, plot and write ``report.md`` + ``fits.json`` under ``out_dir``; returns the summary."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary, objs = fit_all(recs, opts)  # bad records raise here, before anything is written
    os.makedirs(out_dir, exist_ok=True)
    ours = [w for w in caught if issubclass(w.category, UserWarning)]
    summary["warnings"] = sorted({str(w.message) for w in ours})
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    summary["plots"] = [os.path.basename(x) for x in _plot_all(objs, out_dir, opts)]
    with open(os.path.join(out_dir, "fits.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2, allow_nan=False)
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as fh:
        fh.write(render(summary))
    return summary


# ----------------------------------------------------------------------------- markdown
def _g(x, fmt=".3g") -> str:
    return "n/a" if x is None else format(x, fmt)


def _ci(ci, fmt=".3g") -> str:
    return "n/a" if not ci or ci[0] is None else f"[{_g(ci[0], fmt)}, {_g(ci[1], fmt)}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(r) + " |" for r in rows] + [""])


def _approach2_md(a2: dict, title: str) -> list[str]:
    lines = [f"## {title}", ""]
    if "skipped" in a2:
        return lines + [f"skipped: {a2['skipped']}", ""]
    inner = a2.get("interior") or [None] * len(a2["budgets"])
    rows = [[_g(c), _g(n), _g(d), _g(lo, ".4g"), {True: "yes", False: "NO (extrapolated)",
                                                   None: "n/a"}[i]]
            for c, n, d, lo, i in zip(a2["budgets"], a2["n_opt"], a2["d_opt"], a2["loss_opt"],
                                      inner, strict=True)]
    lines += _table(["budget C (FLOPs)", "N_opt", "D_opt", "loss at optimum",
                     "vertex inside sampled N"], rows)
    if a2.get("loss_law"):
        law = a2["loss_law"]
        lines.append(f"- L_opt = {_g(law['floor'], '.4g')} + {_g(law['coef'])} * "
                     f"C^{_g(law['exponent'], '.4f')} (the loss at the optimum saturates at the "
                     f"irreducible loss), rms log10 residual {_g(law['rms_log10_residual'])}")
    for key, sym in (("n_law", "N_opt"), ("d_law", "D_opt")):
        law = a2[key]
        lines.append(f"- {sym} = {_g(law['coef'])} * C^{_g(law['exponent'], '.4f')}, exponent CI "
                     f"{_ci(law['exponent_ci'], '.4f')} ({a2['num_bootstrap']} bootstrap "
                     f"replicates), rms log10 residual {_g(law['rms_log10_residual'])}")
    return lines + [""]


def _search_md(sr: dict, fr: dict, split: str | None) -> list[str]:
    ax = sr["compute_axis"]
    lines = [f"## Solve rate vs search compute (split `{sr['split']}`, method `{sr['method']}`, "
             f"axis: {ax} per problem)", "",
             f"Form: solve_rate = sigmoid(slope * (log10 {ax} - mid)), binomial likelihood; "
             "intervals: bootstrap.", ""]
    ci = lambda c, k: (c.get("ci") or {}).get(k)
    rows = [[c["run"], _g(c["params"]), _g(c["train_flops"]),
             c.get("skipped", "")[:60] or f"{_g(c['slope'])} {_ci(ci(c, 'slope'))}",
             f"{_g(c.get('mid_log10_compute'), '.3f')} {_ci(ci(c, 'mid'), '.3f')}",
             _g(c.get("compute_for_half"))] for c in sr["curves"]]
    lines += _table(["run", "N", "train C", "slope [CI]", f"mid (log10 {ax}) [CI]",
                     f"{ax} for 50%"], rows) if rows else ["no search evaluations in the records.",
                                                           ""]
    where = f", split `{split}`" if split else ""
    lines += [f"## Train-vs-test compute frontier (Jones 2021){where}", ""]
    if "skipped" in fr:
        return lines + [f"skipped: {fr['skipped']}", ""]
    lines += [f"Iso-solve-rate lines, log10 search {ax} = m log10 train FLOPs + k threshold + c: "
              f"m = {_g(fr['m'], '.3f')} {_ci(fr['m_ci'], '.3f')}, k = {_g(fr['k'], '.3f')}, "
              f"c = {_g(fr['c'], '.3f')} over {len(fr['points'])} frontier points (runs grouped "
              f"by budget first). 10x more training changes the search needed for the same solve "
              f"rate by 10^m = {_g(10 ** fr['m'])}x"]
    if fr.get("train_for_10x_less_search"):
        lines[-1] += (f"; 10x less search costs {_g(fr['train_for_10x_less_search'])}x more "
                      "training. Jones (2021), Hex: 10x more training ~ 15x less search "
                      "(m ~ -1.18).")
    else:
        lines[-1] += "; more training does not save search here (m >= 0)."
    return lines + [""]


def render(s: dict) -> str:
    """The markdown report of a ``fit_all`` summary."""
    lines = ["# Scaling report", "",
             f"{s['num_runs']} runs; loss = `{s['loss_key']}`; intervals are {s['ci_level']:.0%} "
             "percentile bootstrap intervals. N = non-embedding parameters, D = training tokens, "
             "C = training FLOPs, all as recorded in `run.json`.", ""]
    lines += holdout.render_md(s)
    lines += _approach2_md(s["approach2"], "Approach 2: IsoFLOP parabolas (vertex per budget)")
    lines += _approach2_md(s["approach2_lowest_biased"],
                           "Approach 2, lowest run per budget (BIASED: quantised to the sampled "
                           "sizes; for comparison only)")
    a3 = s["approach3"]
    lines += ["## Approach 3: L(N, D) = E + A / N^alpha + B / D^beta", ""]
    if "skipped" in a3:
        lines += [f"skipped: {a3['skipped']}", ""]
    else:
        lines += _table(["parameter", "value", "CI"], [[k, _g(v, ".4g"), _ci(a3["ci"].get(k))
                                                       if a3["ci"] else "n/a"]
                                                      for k, v in a3["params"].items()])
        lines += [f"Huber(1e-3) on log loss, summed; L-BFGS from {a3['num_starts']} starts, "
                  f"{a3['num_at_best']} reach the best objective {_g(a3['objective'], '.4g')}; "
                  f"converged: {a3['converged']}; rms log residual "
                  f"{_g(a3['rms_log_residual'])}.", ""]
        imp, ici = a3.get("implied", {}), a3.get("implied_ci", {})
        if imp:
            lines += [f"Implied compute-optimal exponents (on C = k N D, k = "
                      f"{_g(a3['flops_per_param_token'])} from the runs): N_opt ~ C^a with a = "
                      f"beta/(alpha+beta) = {_g(imp['a'], '.3f')} {_ci(ici.get('a'), '.3f')}, "
                      f"D_opt ~ C^b with b = {_g(imp['b'], '.3f')} {_ci(ici.get('b'), '.3f')} "
                      "(Chinchilla: a ~ b ~ 0.5).", ""]
    lines += ["## Predictions at target training budgets", ""]
    rows = []
    for key, name in (("approach2", "approach 2"), ("approach3", "approach 3")):
        for p in s[key].get("predictions", []):
            rows.append([_g(p["flops"]), name, f"{_g(p['n_opt'])} {_ci(p['n_opt_ci'])}",
                         f"{_g(p['d_opt'])} {_ci(p['d_opt_ci'])}",
                         f"{_g(p['loss'], '.4g')} {_ci(p['loss_ci'], '.4g')}" if "loss" in p
                         else "n/a"])
    lines += _table(["C", "method", "N_opt [CI]", "D_opt [CI]", "loss [CI]"], rows) if rows else [
        "no fit available.", ""]
    for split, sec in (s.get("search_splits") or {None: s}).items():
        lines += _search_md(sec["search"], sec["frontier"], split)
    if s.get("baselines"):
        lines += ["## Network-free reference (uniform prior, zero value)", "",
                  "| split | method | " + " | ".join(f"{p['simulations']} sims" for p in
                                                     s["baselines"][0]["points"]) + " |"]
        for b in s["baselines"]:
            head = f"| {b['points'][0]['split']} | {b['points'][0]['method']} | "
            lines.append(head + " | ".join(_g(p["solve_rate"]) for p in b["points"]) + " |")
        lines.append("")
    if s["pass_at_k"]:
        lines += ["## pass@k: -log coverage = a k^-b", ""]
        lines += _table(["run", "split", "method", "a", "b"], [
            [e["run"], e["split"], e["method"], _g(e["fit"].get("a")),
             _g(e["fit"].get("b")) if "skipped" not in e["fit"] else e["fit"]["skipped"][:60]]
            for e in s["pass_at_k"]])
    if s.get("hparams"):
        lines += ["## Suggested settings at the targets", ""]
        lines += _table(["C", "N_opt", "depth", "d_model", "heads", "params", "batch", "lr"], [
            [_g(h["flops"]), _g(h["n_opt"]), str(h["depth"]), str(h["d_model"]),
             str(h["num_heads"]), _g(h["params"]), str(h["batch_size"]),
             _g(h["learning_rate"])] for h in s["hparams"]])
        lines += [f"({s['hparams'][0]['source']}.)", ""]
    if s.get("warnings"):
        lines += ["## Warnings", ""] + [f"- {w}" for w in s["warnings"]] + [""]
    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in s.get("plots", [])]
    return "\n".join(lines) + "\n"
