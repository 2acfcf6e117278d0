"""Inference-compute laws and the train-vs-test compute frontier (Jones 2021).

Functional forms (stated once, used by the report):
- Solve rate vs search compute c for one model: p(c) = ceiling * sigmoid(slope * (log10 c - mid)),
  fitted by binomial maximum likelihood (successes = solve_rate * num_problems); ``ceiling`` is 1
  unless ``fit_ceiling=True``. ``mid`` is the log10 compute at half the ceiling.
- Pass@k coverage: -log coverage(k) = a * k^(-b) (Brown et al. 2024, "Large Language Monkeys"),
  fitted as a straight line in log10 space.
- Train/test frontier (Jones 2021, "Scaling Scaling Laws with Board Games"): for each solve-rate
  threshold tau and each run, the least search compute whose solve rate reaches tau (log-linear
  interpolation between measured points, after a running max: more search may always stop early);
  only Pareto-optimal runs are kept (no run with <= train compute needs less search), then
  log10 test = m log10 train + k tau + c by least squares. m is the trade-off: a 10x larger
  training budget buys a 10^-m smaller search budget at the same solve rate.
Ground floor: numpy/scipy only.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from scipy import special

from scaling import lbfgs
from scaling.fit import PowerLaw, as_positive, fit_power_law, group_budgets, percentile_ci


def _as_rates(name: str, values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0) | (arr > 1))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}]={float(arr[bad[0]])!r} is invalid; allowed [0, 1].")
    return arr


@dataclasses.dataclass(frozen=True)
class SolveRateFit:
    """p(c) = ceiling * sigmoid(slope * (log10 c - mid)); ``ci`` maps names to (lo, hi)."""

    slope: float
    mid: float
    ceiling: float
    residuals: np.ndarray  # observed - predicted solve rate
    ci: dict | None = None

    def __call__(self, compute) -> np.ndarray:
        x = np.log10(np.asarray(compute, dtype=np.float64))
        return self.ceiling * special.expit(self.slope * (x - self.mid))

    def compute_for(self, rate: float) -> float:
        """Search compute at which the fitted curve reaches ``rate`` (inf above the ceiling)."""
        if not 0 < rate < self.ceiling:
            return float("inf")
        return float(10 ** (self.mid + special.logit(rate / self.ceiling) / self.slope))


def _solve_rate_mle(x, succ_RxM, total_M, fit_ceiling: bool) -> np.ndarray:
    """Binomial MLE for R success vectors at once -> [R, 2 or 3] rows (slope, mid[, ceiling]).

    Parametrised without bounds for the batched L-BFGS: slope = s_max * expit(u) stays in
    (0, s_max) so perfectly separated data (0% then 100%) cannot diverge to a step;
    ceiling = expit(v).
    """
    span = max(float(np.ptp(x)), 1e-3)
    s_max = 50.0 / span

    def fun(th, rows):
        sig_u = special.expit(th[:, :1])
        slope, mid = s_max * sig_u, th[:, 1:2]
        z = slope * (x - mid)  # [R, M]
        s, n = succ_RxM[rows], total_M
        sig = special.expit(z)
        if fit_ceiling:
            c = special.expit(th[:, 2:3])
            q = np.maximum(1 - c * sig, 1e-300)  # 1 - p
            f = -(s * (np.log(c) + special.log_expit(z)) + (n - s) * np.log(q)).sum(1)
            dz = -(s * (1 - sig) - (n - s) * c * sig * (1 - sig) / q)
            dc = -(s / c - (n - s) * sig / q).sum(1, keepdims=True) * c * (1 - c)
        else:
            f = -(s * special.log_expit(z) + (n - s) * special.log_expit(-z)).sum(1)
            dz = n * sig - s
        g = [(dz * (x - mid)).sum(1, keepdims=True) * s_max * sig_u * (1 - sig_u),
             -(dz * slope).sum(1, keepdims=True)]
        return f, np.concatenate(g + ([dc] if fit_ceiling else []), axis=1)

    th0 = [special.logit(0.04), float(np.median(x))] + ([2.0] if fit_ceiling else [])
    res = lbfgs.minimize(fun, np.tile(th0, (len(succ_RxM), 1)), ftol=1e-12, gtol=1e-7,
                         max_iter=500)
    out = np.column_stack([s_max * special.expit(res.x[:, 0]), res.x[:, 1]])
    return np.column_stack([out, special.expit(res.x[:, 2])]) if fit_ceiling else out


def fit_solve_rate(compute, solve_rate, num_problems, *, fit_ceiling: bool = False,
                   bootstrap: int = 100, level: float = 0.95, seed: int = 0) -> SolveRateFit:
    """Logistic solve-rate curve in log10 search compute (parametric binomial bootstrap CIs)."""
    c = as_positive("compute", compute, 2)
    p = _as_rates("solve_rate", solve_rate)
    total = np.broadcast_to(as_positive("num_problems", num_problems), c.shape).astype(np.float64)
    if p.size != c.size:
        raise ValueError(f"compute and solve_rate differ in length: {c.size} vs {p.size}.")
    need = 3 if fit_ceiling else 2
    if np.unique(c).size < need:
        raise ValueError(f"{np.unique(c).size} distinct compute values; the logistic with "
                         f"{need} parameters needs >= {need}.")
    x = np.log10(c)
    theta = _solve_rate_mle(x, np.round(p * total)[None], total, fit_ceiling)[0]
    ceil = float(theta[2]) if fit_ceiling else 1.0
    pred = ceil * special.expit(theta[0] * (x - theta[1]))
    ci = None
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        succ = rng.binomial(total.astype(np.int64), pred, size=(bootstrap, x.size))
        s = _solve_rate_mle(x, succ.astype(np.float64), total, fit_ceiling)
        names = ("slope", "mid", "ceiling")[: s.shape[1]]
        ci = {k: tuple(float(v) for v in percentile_ci(s[:, i], level))
              for i, k in enumerate(names)}
    return SolveRateFit(float(theta[0]), float(theta[1]), ceil, p - pred, ci)


@dataclasses.dataclass(frozen=True)
class PassAtKFit:
    """-log coverage(k) = a * k^(-b)."""

    a: float
    b: float
    law: PowerLaw

    def __call__(self, k) -> np.ndarray:
        return np.exp(-self.law(k))


def fit_pass_at_k(k, coverage) -> PassAtKFit:
    """Fit -log coverage = a k^-b; coverage 0 or 1 carries no slope information and is dropped."""
    kk = as_positive("k", k, 2)
    cov = _as_rates("coverage", coverage)
    if kk.size != cov.size:
        raise ValueError(f"k and coverage differ in length: {kk.size} vs {cov.size}.")
    inside = (cov > 0) & (cov < 1)
    if not inside.all():
        warnings.warn(f"pass@k fit drops {int((~inside).sum())} point(s) with coverage 0 or 1 "
                      f"(k={kk[~inside].tolist()}).", stacklevel=2)
    if np.unique(kk[inside]).size < 2:
        raise ValueError("pass@k fit needs >= 2 distinct k with 0 < coverage < 1; got "
                         f"{np.unique(kk[inside]).size}.")
    law = fit_power_law(kk[inside], -np.log(cov[inside]))
    return PassAtKFit(a=law.coef, b=-law.exponent, law=law)


def compute_to_reach(compute, solve_rate, threshold: float) -> tuple[float, str]:
    """Least compute at which a measured curve reaches ``threshold`` -> (compute, status).

    status: "ok" (interpolated), "censored" (the smallest measured compute already reaches it, so
    the true minimum is unknown) or "unreached" (NaN compute).
    """
    c = as_positive("compute", compute)
    p = _as_rates("solve_rate", solve_rate)
    order = np.argsort(c)
    c, env = c[order], np.maximum.accumulate(p[order])
    hit = np.flatnonzero(env >= threshold)
    if hit.size == 0:
        return float("nan"), "unreached"
    i = hit[0]
    if i == 0:
        return float(c[0]), "censored"
    x0, x1 = np.log10(c[i - 1]), np.log10(c[i])
    frac = (threshold - env[i - 1]) / (env[i] - env[i - 1])
    return float(10 ** (x0 + frac * (x1 - x0))), "ok"


@dataclasses.dataclass(frozen=True)
class FrontierFit:
    """log10 test = m log10 train + k threshold + c over Pareto-frontier points.

    points: list of dicts (threshold, train_flops, test_flops, run) that entered the fit.
    """

    m: float
    k: float
    c: float
    points: list
    residuals: np.ndarray
    m_ci: tuple[float, float] | None = None

    def test_compute(self, train_flops: float, threshold: float) -> float:
        """Predicted least search compute reaching ``threshold`` at ``train_flops``."""
        return float(10 ** (self.m * np.log10(train_flops) + self.k * threshold + self.c))


def frontier_points(train_flops, curves, thresholds, names=None,
                    budget_rtol: float = 0.05) -> list[dict]:
    """Pareto-optimal (train, least test) compute per threshold from per-run (compute, rate).

    Runs whose train FLOPs lie within ``budget_rtol`` of each other are one budget
    (``fit.group_budgets``): each budget contributes its best run at the budget's median FLOPs,
    so two sizes of one IsoFLOP budget cannot both sit on the frontier by a rounding difference.
    """
    t = as_positive("train_flops", train_flops)
    if len(curves) != t.size:
        raise ValueError(f"{len(curves)} curves for {t.size} train_flops values.")
    names = names or [str(i) for i in range(t.size)]
    run_budget, budgets = group_budgets(t, budget_rtol)
    points = []
    for tau in thresholds:
        if not 0 < tau <= 1:
            raise ValueError(f"threshold={tau} is out of range; allowed (0, 1].")
        need = [compute_to_reach(c, p, tau) for c, p in curves]
        best = np.inf
        for b in budgets:  # ascending train compute
            runs = np.flatnonzero(run_budget == b)
            ok = [(need[r][0], r) for r in runs if need[r][1] == "ok"]
            cens = [need[r][0] for r in runs if need[r][1] == "censored"]
            if cens:  # needs <= test: dominates later budgets, position unknown
                best = min(best, min(cens))
            if ok and min(ok)[0] < best:
                best, r = min(ok)
                points.append({"threshold": float(tau), "train_flops": float(b),
                               "test_flops": best, "run": names[r]})
    return points


def fit_frontier(train_flops, curves, thresholds, names=None, *, bootstrap: int = 200,
                 level: float = 0.95, seed: int = 0, budget_rtol: float = 0.05) -> FrontierFit:
    """Jones (2021) train-vs-test compute trade-off; see the module docstring."""
    points = frontier_points(train_flops, curves, thresholds, names, budget_rtol)
    if len(points) < 4 or len({p["train_flops"] for p in points}) < 2:
        raise ValueError(f"the frontier has {len(points)} point(s) over "
                         f"{len({p['train_flops'] for p in points})} train budget(s); the fit "
                         "needs >= 4 points and >= 2 train budgets (more runs or thresholds).")
    x = np.array([[np.log10(p["train_flops"]), p["threshold"], 1.0] for p in points])
    y = np.log10([p["test_flops"] for p in points])
    if len({p["threshold"] for p in points}) == 1:
        x = x[:, [0, 2]]  # one threshold: k is not identifiable
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    m, k, c = (coef[0], coef[1], coef[2]) if x.shape[1] == 3 else (coef[0], 0.0, coef[1])
    m_ci = None
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        ms = []
        for _ in range(bootstrap):
            idx = rng.choice(len(y), len(y))
            if np.unique(x[idx, 0]).size >= 2:
                ms.append(np.linalg.lstsq(x[idx], y[idx], rcond=None)[0][0])
        m_ci = tuple(float(v) for v in percentile_ci(ms, level)) if ms else None
    return FrontierFit(float(m), float(k), float(c), points, y - x @ coef, m_ci)
