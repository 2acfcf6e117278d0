r"""A held-out budget: predict its compute-optimal N and loss from the other budgets, before it is
trained, then score the prediction against what its runs reach.

    python -m scaling.holdout --plan=runs/sweep_cpu/sweep.json --runs='runs/sweep_cpu/C*' \
        --budget=3 --out=runs/sweep_cpu/prediction.json

writes ``prediction.json`` from the finished runs of every OTHER budget of the plan: approach 2
(IsoFLOP vertices; N_opt(C) and L_opt(C) power laws, bootstrap intervals) and approach 3
(L(N, D) = E + A/N^alpha + B/D^beta at its optimum on C = k N D, k the runs' own C / (N D)).
It refuses to run once any run of the held-out budget has a ``run.json`` (the prediction must be
made before the outcome exists) and never overwrites an earlier prediction, so the file's
``created`` time and contents are what was predicted. ``scaling.main --prediction=...`` then fits
the held-out runs' own parabola (`outcome`) and reports prediction against outcome (`compare`).
Collapsed runs (``train.probe``: a constant value) are left out of every fit, as in the report.
"""

from __future__ import annotations

import datetime
import json
import os
import sys

import numpy as np

from scaling import fit, records


def collapsed(rec: dict) -> bool:
    """The run's value head was flagged collapsed (constant across inputs) by ``train.probe``."""
    m = rec.get("final_metrics", {})
    return any(float(m.get(k, 0.0)) > 0 for k in ("probe/walk/collapsed", "probe/start/collapsed"))


def usable(recs: list[dict]) -> list[dict]:
    return [r for r in recs if not collapsed(r)]


def flops_per_param_token(recs: list[dict]) -> float:
    """The runs' own C / (N D): 6 for C = 6ND; here attention and the heads move it."""
    return float(np.median([r["train_flops"] / (r["params"] * r["tokens"]) for r in recs]))


def predict(recs: list[dict], budget: float, *, loss_key: str = "eval/loss", level: float = 0.95,
            bootstrap: int = 200, seed: int = 0, planned: list[dict] | None = None) -> dict:
    """Approach-2 and approach-3 predictions at ``budget`` from ``recs`` (module docstring).

    ``planned``: the held-out budget's planned runs ({name, params, tokens} from the sweep plan);
    approach 3 also predicts each one's loss L(N, D), with a bootstrap interval."""
    recs = usable(recs)
    t = records.to_table(recs, loss_key)
    common = dict(bootstrap=bootstrap, level=level, seed=seed)
    out: dict = {"budget": float(budget), "loss_key": loss_key, "ci_level": level,
                 "runs": sorted(r["name"] for r in recs),
                 "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    a2 = fit.fit_isoflops(t.params, t.flops, t.loss, tokens=t.tokens, **common)
    out["approach2"] = {"fit_budgets": a2.budgets.tolist(), **a2.predict(budget, level)}
    try:
        a3 = fit.fit_parametric(t.params, t.tokens, t.loss, **common)
        out["approach3"] = a3.optimum(budget, flops_per_param_token(recs), level)
        out["approach3"]["runs"] = [
            {"name": r["name"], "params": r["params"], "tokens": r["tokens"],
             "loss": float(a3.predict(r["params"], r["tokens"])),
             "loss_ci": _param_interval(a3, r["params"], r["tokens"], level)}
            for r in planned or []]
    except ValueError as e:
        out["approach3"] = {"skipped": str(e)}
    return out


def _param_interval(a3: fit.ParametricFit, n: float, d: float, level: float) -> list:
    if a3.samples is None or not len(a3.samples):
        return [None, None]
    e, a, b, al, be = a3.samples.T
    return fit.percentile_ci(e + a / n**al + b / d**be, level).tolist()


def outcome(recs: list[dict], *, loss_key: str = "eval/loss") -> dict:
    """What the held-out budget's runs reached: their parabola's vertex and the lowest run."""
    recs = usable(recs)
    if len(recs) < 3:
        raise ValueError(f"the held-out budget has {len(recs)} usable run(s); its parabola needs "
                         ">= 3.")
    t = records.to_table(recs, loss_key)
    log_n = np.log10(t.params)
    p2, p1, p0 = np.polyfit(log_n, t.loss, 2)
    best = int(np.argmin(t.loss))
    out = {"budget": float(np.median(t.flops)), "runs": [r["name"] for r in recs],
           "lowest_run": recs[best]["name"], "lowest_params": float(t.params[best]),
           "lowest_loss": float(t.loss[best])}
    if p2 > 0:
        v = -p1 / (2 * p2)
        out.update(n_opt=float(10**v), loss_opt=float(np.polyval([p2, p1, p0], v)),
                   interior=bool(log_n.min() <= v <= log_n.max()))
    return out


def compare(prediction: dict, result: dict) -> list[dict]:
    """One row per (method, quantity): predicted [CI], actual, error, inside the interval."""
    rows = []
    for method in ("approach2", "approach3"):
        p = prediction.get(method, {})
        for q, actual in (("n_opt", result.get("n_opt")), ("loss", result.get("loss_opt"))):
            if q not in p or actual is None:
                continue
            lo, hi = p.get(f"{q}_ci", [None, None])
            inside = None if lo is None or hi is None else bool(lo <= actual <= hi)
            err = actual - p[q] if q == "loss" else actual / p[q]
            rows.append({"method": method, "quantity": q, "predicted": p[q], "ci": [lo, hi],
                         "actual": actual, "error": err,
                         "error_kind": "actual - predicted" if q == "loss"
                         else "actual / predicted", "inside_ci": inside})
    return rows


def best_per_budget(recs: list[dict], loss_key: str = "eval/loss") -> list[str]:
    """Run directories of the lowest-loss usable run of every budget (the search-eval models)."""
    recs = usable(recs)
    t = records.to_table(recs, loss_key)
    run_budget, budgets = fit.group_budgets(t.flops)
    out = []
    for b in budgets:
        idx = np.flatnonzero(run_budget == b)
        out.append(os.path.dirname(recs[idx[np.argmin(t.loss[idx])]]["_path"]))
    return out


def run_rows(recs: list[dict], loss_key: str = "eval/loss") -> list[dict]:
    """Per run: N, C, D, loss, tokens per parameter, the value spread and the collapse flag (the
    report's check that every fitted run's value still varies across inputs)."""
    rows = []
    for r in sorted(recs, key=lambda r: (r["train_flops"], r["params"])):
        m = r.get("final_metrics", {})
        spread = [m[k] for k in ("probe/walk/all/value_spread", "probe/start/all/value_spread")
                  if k in m]
        rows.append({"run": r["name"], "params": r["params"], "train_flops": r["train_flops"],
                     "tokens": r["tokens"], "loss": m.get(loss_key),
                     "tokens_per_param": r["tokens"] / r["params"],
                     "value_spread": min(spread) if spread else None,
                     "collapsed": collapsed(r)})
    return rows


def score(prediction: dict, recs: list[dict], loss_key: str = "eval/loss",
          budget_rtol: float = 0.05) -> dict:
    """The prediction against the runs at its budget (those not used to make it)."""
    b = prediction["budget"]
    used = set(prediction.get("runs", []))
    held = [r for r in recs if abs(r["train_flops"] / b - 1) <= budget_rtol
            and r["name"] not in used]
    if not held:
        return {"prediction": prediction, "status": f"no finished run at C={b:.3g} yet"}
    by_name = {r["name"]: r for r in held}
    per_run = []
    for p in prediction.get("approach3", {}).get("runs", []):
        if p["name"] in by_name:
            actual = float(by_name[p["name"]]["final_metrics"][loss_key])
            lo, hi = p["loss_ci"]
            per_run.append({**p, "actual": actual, "error": actual - p["loss"],
                            "inside_ci": None if lo is None else bool(lo <= actual <= hi)})
    try:
        result = outcome(held, loss_key=loss_key)
    except ValueError as e:
        return {"prediction": prediction, "status": str(e), "per_run": per_run, "rows": []}
    return {"prediction": prediction, "outcome": result, "rows": compare(prediction, result),
            "per_run": per_run}


def baseline_rows(results: dict) -> dict:
    """A network-free reference (``search.eval`` results.json) as {split, method, points}."""
    entries = results.get("entries", results.get("results", []))
    if entries:  # one row per method: the played line (e.g. uniform_mcts, not its _tree variant)
        method = min({str(e["method"]) for e in entries}, key=len)
        entries = [e for e in entries if e["method"] == method]
    pts = sorted((int(e["simulations"]), float(e["solve_rate"]), e.get("solve_rate_ci"),
                  str(e["split"]), str(e["method"])) for e in entries)
    return {"network": results.get("network", "uniform"),
            "points": [{"simulations": k, "solve_rate": p, "ci": ci, "split": sp, "method": me}
                       for k, p, ci, sp, me in pts]}


def render_md(report: dict) -> list[str]:
    """Markdown of the runs table (collapse check) and the held-out section of a report."""
    g = lambda x, f=".3g": "n/a" if x is None else format(x, f)
    lines = ["## Runs and the collapse check", "",
             "| run | N | C | D | D/N | loss | value spread | collapsed |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report.get("runs", []):
        lines.append(f"| {r['run']} | {g(r['params'])} | {g(r['train_flops'])} | {g(r['tokens'])} "
                     f"| {g(r['tokens_per_param'])} | {g(r['loss'], '.4f')} "
                     f"| {g(r['value_spread'])} | {'YES: left out' if r['collapsed'] else 'no'} |")
    lines += ["", f"Collapsed runs (value logit spread < 1e-3 or < 10 distinct values at every n, "
              f"`train/probe.py`), left out of every fit: {report.get('collapsed') or 'none'}.", ""]
    h = report.get("holdout")
    if not h:
        return lines
    lines += ["## Held-out budget: prediction vs outcome", ""]
    if "skipped" in h or "prediction" not in h:
        return lines + [f"{h.get('skipped') or h.get('status')}", ""]
    p, o = h["prediction"], h.get("outcome")
    lines += [f"Predicted at {p['created']} from {len(p['runs'])} runs of the other budgets, "
              f"before any run of C = {g(p['budget'])} existed."]
    if o is None:
        lines += [f"Outcome: {h.get('status')}."]
    else:
        where = "inside" if o.get("interior") else "OUTSIDE"
        lines += [f"Outcome: the parabola through its {len(o['runs'])} runs (vertex {where} the "
                  f"sampled sizes; lowest run {o['lowest_run']}, loss "
                  f"{g(o['lowest_loss'], '.4f')}).", "",
                  "| method | quantity | predicted [95% CI] | actual | error | inside CI |",
                  "|---|---|---|---|---|---|"]
    for r in h.get("rows", []):
        ci = "n/a" if r["ci"][0] is None else f"[{g(r['ci'][0], '.4g')}, {g(r['ci'][1], '.4g')}]"
        lines.append(f"| {r['method']} | {r['quantity']} | {g(r['predicted'], '.4g')} {ci} | "
                     f"{g(r['actual'], '.4g')} | {g(r['error'], '.3g')} ({r['error_kind']}) | "
                     f"{r['inside_ci']} |")
    if h.get("per_run"):
        lines += ["", "Every held-out run's loss, predicted by approach 3's L(N, D) before it was "
                  "trained:", "", "| run | N | D | predicted loss [95% CI] | actual | actual - "
                  "predicted | inside CI |", "|---|---|---|---|---|---|---|"]
        for r in h["per_run"]:
            lines.append(f"| {r['name']} | {g(r['params'])} | {g(r['tokens'])} | "
                         f"{g(r['loss'], '.4f')} [{g(r['loss_ci'][0], '.4f')}, "
                         f"{g(r['loss_ci'][1], '.4f')}] | {g(r['actual'], '.4f')} | "
                         f"{g(r['error'], '+.4f')} | {r['inside_ci']} |")
    return lines + [""]


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plan", required=True, help="sweep.json written by launch.sweep")
    p.add_argument("--runs", required=True, help="glob of the sweep's run directories")
    p.add_argument("--budget", type=int, help="held-out budget index (0 = smallest)")
    p.add_argument("--out", help="prediction.json to write (never overwritten)")
    p.add_argument("--best_per_budget", action="store_true",
                   help="instead: print the run directory of the lowest-loss run of every budget")
    p.add_argument("--loss_key", default="eval/loss")
    p.add_argument("--bootstrap", type=int, default=200)
    a = p.parse_args(argv)
    if a.best_per_budget:
        for path in best_per_budget(records.load_records(a.runs), a.loss_key):
            print(path)
        return 0
    if a.budget is None or a.out is None:
        p.error("--budget and --out are required (or --best_per_budget)")
    if os.path.exists(a.out):
        print(f"[holdout] {a.out} exists (predicted earlier); kept unchanged.")
        return 0
    try:
        with open(a.plan, encoding="utf-8") as f:
            plan = json.load(f)["runs"]
        budgets = sorted({r["budget"] for r in plan})
        if not 0 <= a.budget < len(budgets):
            raise ValueError(f"--budget={a.budget} is out of range; allowed 0..{len(budgets) - 1}.")
        planned = [r for r in plan if r["budget"] == budgets[a.budget]]
        held = {r["name"] for r in planned}
        root = os.path.dirname(os.path.abspath(a.plan))
        if done := sorted(n for n in held if os.path.exists(os.path.join(root, n, "run.json"))):
            raise ValueError(f"held-out runs {done} already finished; a prediction must be made "
                             "before its budget is trained.")
        recs = [r for r in records.load_records(a.runs) if r["name"] not in held
                and os.path.basename(os.path.dirname(r["_path"])) not in held]
        pred = predict(recs, budgets[a.budget], loss_key=a.loss_key, bootstrap=a.bootstrap,
                       planned=planned)
        pred["held_out_runs"] = sorted(held)
    except (ValueError, KeyError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    records.write_json(a.out, pred)
    a2 = pred["approach2"]
    print(f"[holdout] C={a2['flops']:.3g}: N_opt {a2['n_opt']:.3g} {a2['n_opt_ci']}, loss "
          f"{a2.get('loss', float('nan')):.4g} {a2.get('loss_ci')} -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
