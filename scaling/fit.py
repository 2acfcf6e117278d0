"""Chinchilla-style training scaling-law fits: approach 2 (IsoFLOP parabolas), approach 3 (L(N, D)).

Conventions (Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models"):
- N is the parameter count (the run records use non-embedding N), D the training tokens, C the
  training FLOPs, L the final evaluation loss (natural-log cross-entropy, any positive loss works).
- Approach 2: runs are grouped by compute budget C; per budget a parabola of L vs log10 N gives the
  vertex N_opt(C); then D_opt = C / (k N_opt) with k = ``flops_per_param_token`` (6 for C = 6ND),
  or, given the runs' recorded tokens, D read off the budget's own N -> D line; power laws
  N_opt = k_N C^a, D_opt = k_D C^b are fitted by least squares in log10 space.
  ``fit_isoflops(..., method="lowest")`` takes the lowest-loss run per budget instead; it is biased
  (quantised to the sampled sizes, pulled towards the grid centre) and labelled as such everywhere.
- Approach 3: L(N, D) = E + A / N^alpha + B / D^beta fitted as in Hoffmann et al. / Epoch AI (2024):
  log L_pred = logsumexp(e, a - alpha log N, b - beta log D), E = exp(e), A = exp(a), B = exp(b);
  objective = SUM of Huber(delta) of (log L_pred - log L); L-BFGS from Epoch's 4500-point grid of
  initialisations, all starts batched (`scaling.lbfgs`): screened in float32, the starts near the
  best refined in float64, the best start kept.
- Uncertainty: percentile bootstrap. Approach 2 resamples runs within each budget; approach 3
  resamples data points (as multinomial weights, so all replicates run as one batch).
Ground floor: numpy/scipy only, imports nothing of ours except its siblings `scaling.lbfgs` and
`scaling.laws` (the power laws, re-exported here).
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings

import numpy as np

from scaling import lbfgs
from scaling.laws import (  # noqa: F401  (re-exported: fit's public API)
    PowerLaw,
    SaturatingLaw,
    _line_log10,
    as_positive,
    fit_power_law,
    fit_saturating_law,
    percentile_ci,
)

PARAM_NAMES = ("E", "A", "B", "alpha", "beta")


def group_budgets(flops, rtol: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Cluster nominal compute budgets: runs whose FLOPs agree within ``rtol`` share a budget.

    Returns (budget_of_run [M] (the cluster's median FLOPs), budgets [K] sorted ascending). Real
    runs miss their nominal budget slightly (integer steps, attention FLOPs), hence the tolerance.
    """
    c = as_positive("compute budget", flops)
    order = np.argsort(c)
    labels = np.zeros(c.size, dtype=np.int64)
    k = 0
    for prev, cur in itertools.pairwise(order):
        if np.log(c[cur] / c[prev]) > np.log1p(rtol):
            k += 1
        labels[cur] = k
    budgets = np.array([np.median(c[labels == j]) for j in range(k + 1)])
    return budgets[labels], budgets


# ----------------------------------------------------------------------------- approach 2
@dataclasses.dataclass(frozen=True)
class IsoFlopFit:
    """Approach-2 result. ``method`` is "parabola" or "lowest (biased)".

    budgets [K]; n_opt, d_opt, loss_opt [K] per budget; parabolas [K, 3] (p2, p1, p0) of loss vs
    log10 N (NaN rows for "lowest"); n_law / d_law / loss_law: power laws of N_opt, D_opt and the
    loss at the optimum vs C; num_bootstrap used replicates.
    """

    method: str
    budgets: np.ndarray
    n_opt: np.ndarray
    d_opt: np.ndarray
    loss_opt: np.ndarray
    parabolas: np.ndarray
    n_law: PowerLaw
    d_law: PowerLaw
    num_bootstrap: int
    loss_law: SaturatingLaw | None = None

    def predict(self, flops: float, level: float = 0.95) -> dict:
        """Compute-optimal N and D at ``flops`` with bootstrap percentile intervals."""
        c = as_positive("flops", flops)
        return {
            "flops": float(c[0]),
            "n_opt": float(self.n_law(c)[0]),
            "n_opt_ci": self.n_law.interval(c, level)[0].tolist(),
            "d_opt": float(self.d_law(c)[0]),
            "d_opt_ci": self.d_law.interval(c, level)[0].tolist(),
            **({} if self.loss_law is None else {
                "loss": float(self.loss_law(c)[0]),
                "loss_ci": self.loss_law.interval(c, level)[0].tolist()}),
        }


def _budget_vertex(log_n, loss, budget: float, warn: bool) -> tuple[np.ndarray, float, float]:
    """Parabola through (log10 N, loss) of one budget -> (coeffs, log10 N_opt, loss_opt)."""
    coeffs = np.polyfit(log_n, loss, 2)
    if not coeffs[0] > 0:
        if warn:
            warnings.warn(f"budget C={budget:.3g}: loss vs log N is not convex (curvature "
                          f"{coeffs[0]:.3g}); no minimum, budget dropped.", stacklevel=3)
        return coeffs, np.nan, np.nan
    v = -coeffs[1] / (2 * coeffs[0])
    if warn and not log_n.min() <= v <= log_n.max():
        warnings.warn(f"budget C={budget:.3g}: parabola vertex N={10**v:.3g} lies outside the "
                      f"sampled sizes [{10**log_n.min():.3g}, {10**log_n.max():.3g}] "
                      "(extrapolated; add sizes on that side).", stacklevel=3)
    return coeffs, v, float(np.polyval(coeffs, v))


def _isoflop_points(log_n, loss, groups, budgets, method: str, warn: bool):
    """Per-budget optimum (log10 N_opt, loss_opt, coeffs) -> arrays [K], [K], [K, 3]."""
    v = np.full(len(budgets), np.nan)
    lo = np.full(len(budgets), np.nan)
    coeffs = np.full((len(budgets), 3), np.nan)
    for k, idx in enumerate(groups):
        if np.unique(log_n[idx]).size < 3:  # same rule for both methods: comparable budgets
            if warn:
                warnings.warn(f"budget C={budgets[k]:.3g} has {np.unique(log_n[idx]).size} "
                              "distinct model size(s); an optimum needs >= 3, budget dropped.",
                              stacklevel=3)
        elif method == "lowest":
            j = idx[np.argmin(loss[idx])]
            v[k], lo[k] = log_n[j], loss[j]
        else:
            coeffs[k], v[k], lo[k] = _budget_vertex(log_n[idx], loss[idx], budgets[k], warn)
    return v, lo, coeffs


def fit_isoflops(params, flops, loss, *, method: str = "parabola", flops_per_param_token=6.0,
                 tokens=None, budget_rtol: float = 0.05, bootstrap: int = 200,
                 level: float = 0.95, seed: int = 0) -> IsoFlopFit:
    """Chinchilla approach 2 on runs (N, C, L); see the module docstring.

    ``tokens`` (the runs' recorded D), when given, replaces D_opt = C / (k N_opt) by the budget's
    own N -> D relation (a line in log-log through its runs, read at N_opt): recorded C includes
    attention FLOPs, so C / 6N overstates D for small models.

    Bootstrap: within every budget the runs are resampled with replacement (redrawn until a
    replicate has >= 3 distinct sizes, which the parabola needs), the fit is repeated, and
    percentile intervals of the power-law exponents and predictions are reported.
    """
    if method not in ("parabola", "lowest"):
        raise ValueError(f"method={method!r} is invalid; allowed 'parabola' or 'lowest'.")
    n = as_positive("params", params, 3)
    c = as_positive("flops", flops, 3)
    lo = as_positive("loss", loss, 3)
    if not n.size == c.size == lo.size:
        raise ValueError(f"params/flops/loss lengths differ: {n.size}, {c.size}, {lo.size}.")
    run_budget, budgets = group_budgets(c, budget_rtol)
    groups = [np.flatnonzero(run_budget == b) for b in budgets]
    log_n = np.log10(n)
    v, l_opt, coeffs = _isoflop_points(log_n, lo, groups, budgets, method, warn=True)
    ok = np.isfinite(v)
    if ok.sum() < 2:
        raise ValueError(f"only {int(ok.sum())} budget(s) gave an optimum (budgets: "
                         f"{', '.join(f'{b:.3g}' for b in budgets)}); power laws need >= 2.")
    if tokens is None:
        to_d = lambda log_n_opt, keep: budgets[keep] / (flops_per_param_token * 10**log_n_opt)
    else:
        log_d = np.log10(as_positive("tokens", tokens, n.size))
        if log_d.size != n.size:
            raise ValueError(f"tokens has {log_d.size} values for {n.size} runs.")
        lines = np.array([np.polyfit(log_n[i], log_d[i], 1) if np.unique(log_n[i]).size > 1
                          else (np.nan, np.nan) for i in groups])  # [K, 2]
        to_d = lambda log_n_opt, keep: 10 ** (lines[keep, 0] * log_n_opt + lines[keep, 1])
    n_opt = 10**v
    d_opt = np.full(v.shape, np.nan)
    d_opt[ok] = to_d(v[ok], ok)
    rng = np.random.default_rng(seed)
    samples, loss_rows = [], []
    for _ in range(bootstrap):
        boot = []
        for idx in groups:
            draw = rng.choice(idx, idx.size)
            for _redraw in range(20):
                if np.unique(log_n[draw]).size >= min(3, idx.size):
                    break
                draw = rng.choice(idx, idx.size)
            boot.append(draw)
        bv, bl, _ = _isoflop_points(log_n, lo, boot, budgets, method, warn=False)
        keep = np.isfinite(bv) & ok
        if keep.sum() >= 2:
            samples.append(_line_log10(budgets[keep], 10 ** bv[keep])
                           + _line_log10(budgets[keep], to_d(bv[keep], keep)))
            loss_rows.append(np.where(ok, bl, np.nan) if keep.sum() == ok.sum() else None)
    s = np.array(samples).reshape(-1, 4)
    loss_rows = np.array([r[ok] for r in loss_rows if r is not None]).reshape(-1, int(ok.sum()))
    return IsoFlopFit(
        method="parabola" if method == "parabola" else "lowest (biased)",
        budgets=budgets, n_opt=np.where(ok, n_opt, np.nan), d_opt=np.where(ok, d_opt, np.nan),
        loss_opt=l_opt, parabolas=coeffs,
        n_law=fit_power_law(budgets[ok], n_opt[ok], s[:, :2] if len(s) else None, level),
        d_law=fit_power_law(budgets[ok], d_opt[ok], s[:, 2:] if len(s) else None, level),
        num_bootstrap=len(s),
        loss_law=fit_saturating_law(budgets[ok], l_opt[ok], loss_rows))


# ----------------------------------------------------------------------------- approach 3
def epoch_init_grid() -> np.ndarray:
    """Epoch AI's 4500 initialisations as rows (e, a, b, alpha, beta)."""
    alpha = beta = np.arange(0, 2.5, 0.5)
    e = np.arange(-1, 1.5, 0.5)
    a = b = np.arange(0, 30, 5)
    grid = itertools.product(alpha, beta, e, a, b)
    return np.array([(e_, a_, b_, al, be) for al, be, e_, a_, b_ in grid], dtype=np.float64)


def huber_logsumexp_objective(log_n, log_d, log_loss, delta: float = 1e-3, weights=None,
                              dtype=np.float64):
    """Batched objective for `scaling.lbfgs.minimize`: rows (e, a, b, alpha, beta) -> (f, grad).

    f = sum_i w_i Huber_delta(logsumexp(e, a - alpha log N_i, b - beta log D_i) - log L_i);
    ``weights`` is None, [M] or [R, M] (one row of weights per batch row, e.g. bootstrap counts).
    ``dtype=np.float32`` halves the cost for screening (not for the final digits: float32 cannot
    resolve the 1e-10 relative decreases the convergence test looks for).
    """
    log_n, log_d, log_loss = (np.asarray(v, dtype) for v in (log_n, log_d, log_loss))
    w = None if weights is None else np.asarray(weights, dtype)
    half_delta = dtype(0.5)

    def fun(x_SxP: np.ndarray, rows):
        with np.errstate(over="ignore", invalid="ignore"):
            e, a, b, al, be = (x_SxP[:, i:i + 1].astype(dtype) for i in range(5))
            # logsumexp factored around e: log L = e + log(1 + A N^-alpha / E + B D^-beta / E).
            # No max-shift: an overflow means log L > 700, which the line search rejects anyway.
            e1 = np.exp((a - e) - al * log_n)  # [S, M]
            e2 = np.exp((b - e) - be * log_d)
            z = 1 + e1 + e2
            r = e + np.log(z) - log_loss
            psi = np.clip(r, -delta, delta)  # dHuber/dr
            h = psi * (r - half_delta * psi)  # = Huber_delta(r) on both branches
            if w is not None:
                ww = w if w.ndim == 1 else w[rows]
                h, psi = h * ww, psi * ww
            pz = psi / z  # times the softmax weights (1, e1, e2) / z gives d/d(e, a, b)
            q1, q2 = pz * e1, pz * e2
            grad = np.stack([pz.sum(1), q1.sum(1), q2.sum(1), -q1 @ log_n, -q2 @ log_d], 1)
            return h.sum(1, dtype=np.float64), grad.astype(np.float64)

    return fun


@dataclasses.dataclass(frozen=True)
class ParametricFit:
    """Approach-3 result: L(N, D) = E + A / N^alpha + B / D^beta.

    theta: (e, a, b, alpha, beta) of the best start. objective: its summed Huber loss.
    converged: the best start met a stopping rule and >= 2 starts reached the same objective.
    num_starts / num_converged / num_at_best / num_pruned: grid size, starts that met a stopping
    rule, starts within 1e-6 (relative) of the best objective, starts not refined after screening.
    residuals: log L - log L_pred per point.
    samples: [B, 5] bootstrap (E, A, B, alpha, beta); ci: name -> (lo, hi) percentile interval.
    """

    theta: np.ndarray
    objective: float
    converged: bool
    num_starts: int
    num_converged: int
    num_at_best: int
    num_pruned: int
    residuals: np.ndarray
    samples: np.ndarray | None = None
    ci: dict | None = None

    @property
    def params(self) -> dict:
        e, a, b, al, be = self.theta
        return {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)),
                "alpha": float(al), "beta": float(be)}

    def predict(self, params, tokens) -> np.ndarray:
        p = self.params
        n, d = np.asarray(params, np.float64), np.asarray(tokens, np.float64)
        return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]

    def optimum(self, flops: float, flops_per_param_token: float = 6.0, level: float = 0.95):
        """Compute-optimal (N, D, loss) at ``flops`` with C = k N D, bootstrap intervals included.

        Minimising L on C = kND gives N_opt = G (C/k)^(beta/(alpha+beta)),
        G = (alpha A / (beta B))^(1/(alpha+beta)) (Hoffmann et al. eq. 4).
        """
        c = float(as_positive("flops", flops)[0])
        rows = np.array([[self.params[k] for k in PARAM_NAMES]])
        if self.samples is not None:
            rows = np.concatenate([rows, self.samples])
        e_, a_, b_, al, be = rows.T
        g = (al * a_ / (be * b_)) ** (1 / (al + be))
        n = g * (c / flops_per_param_token) ** (be / (al + be))
        d = c / (flops_per_param_token * n)
        loss = e_ + a_ / n**al + b_ / d**be
        out = {"flops": c, "n_opt": float(n[0]), "d_opt": float(d[0]), "loss": float(loss[0])}
        for key, arr in (("n_opt", n), ("d_opt", d), ("loss", loss)):
            out[key + "_ci"] = (percentile_ci(arr[1:], level).tolist() if arr.size > 1
                                else [np.nan, np.nan])
        return out


def fit_parametric(params, tokens, loss, *, delta: float = 1e-3, init_grid=None,
                   bootstrap: int = 100, level: float = 0.95, seed: int = 0,
                   max_iter: int = 2000, screen_iter: int = 200,
                   prune_factor: float = 2.0) -> ParametricFit:
    """Chinchilla approach 3 (see the module docstring); all grid starts run as one batch.

    Every grid start is screened for up to ``screen_iter`` iterations in float32; those within
    ``prune_factor`` times the best screened objective are refined in float64 to convergence or
    ``max_iter``, the others (``num_pruned``) keep their screening result. Bootstrap replicates
    resample the points (multinomial weights, all replicates one batch) and restart from the
    full-data optimum.
    """
    n = as_positive("params", params, 5)
    d = as_positive("tokens", tokens, 5)
    lo = as_positive("loss", loss, 5)
    if not n.size == d.size == lo.size:
        raise ValueError(f"params/tokens/loss lengths differ: {n.size}, {d.size}, {lo.size}.")
    if np.unique(n).size < 2 or np.unique(d).size < 2:
        raise ValueError(f"params has {np.unique(n).size} and tokens {np.unique(d).size} distinct "
                         "values; L(N, D) needs >= 2 of each (and > 5 points).")
    if n.size <= len(PARAM_NAMES):
        raise ValueError(f"{n.size} points for {len(PARAM_NAMES)} parameters; need more points.")
    grid = epoch_init_grid() if init_grid is None else np.asarray(init_grid, np.float64)
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(lo)
    opts = dict(ftol=1e-10, gtol=1e-9, f_scale=1e-6)
    fun = huber_logsumexp_objective(log_n, log_d, log_l, delta)
    # Screening in float32 (half the cost): every start runs `screen_iter` iterations or until
    # float32 noise stops it. Starts within `prune_factor` x the best screened objective are then
    # refined in float64 to convergence; the others (local optima or starts crawling along a
    # plateau where one term has vanished) keep their screening result.
    fun32 = huber_logsumexp_objective(log_n, log_d, log_l, delta, dtype=np.float32)
    res = lbfgs.minimize(fun32, grid, max_iter=screen_iter, ftol=1e-7, gtol=1e-7, f_scale=1e-6)
    f_now = np.where(np.isfinite(res.fun), res.fun, np.inf)
    cont = np.flatnonzero(f_now <= prune_factor * f_now.min() + 1e-12)
    num_pruned = int(len(grid) - cont.size)
    x, fv, status = res.x.copy(), res.fun.copy(), res.status.copy()
    more = lbfgs.minimize(fun, res.x[cont], max_iter=max_iter, **opts)
    x[cont], fv[cont], status[cont] = more.x, more.fun, more.status
    f = np.where(np.isfinite(fv), fv, np.inf)
    converged_rows = status <= lbfgs.STATUS_CONVERGED_G
    best = int(np.argmin(f))
    at_best = np.abs(f - f[best]) <= 1e-6 * abs(f[best]) + 1e-15
    converged = bool(converged_rows[at_best].any() and at_best.sum() >= 2)
    if not converged:
        warnings.warn(f"approach-3 fit not converged: {int(at_best.sum())} of {len(grid)} starts "
                      f"reach the best objective {f[best]:.4g}, statuses "
                      f"{np.bincount(status[at_best]).tolist()}.", stacklevel=2)
    theta = x[best]
    resid = log_l - np.log(ParametricFit(theta, 0, True, 0, 0, 0, 0, None).predict(n, d))
    samples = ci = None
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n.size, np.full(n.size, 1 / n.size), size=bootstrap)  # [B, M]
        fun_b = huber_logsumexp_objective(log_n, log_d, log_l, delta, counts)
        th = lbfgs.minimize(fun_b, np.tile(theta, (bootstrap, 1)), max_iter=max_iter, **opts).x
        samples = np.column_stack([np.exp(th[:, :3]), th[:, 3:]])
        ci = {k: tuple(float(v) for v in percentile_ci(samples[:, i], level))
              for i, k in enumerate(PARAM_NAMES)}
    return ParametricFit(theta=theta, objective=float(f[best]), converged=converged,
                         num_starts=len(grid), num_converged=int(converged_rows.sum()),
                         num_at_best=int(at_best.sum()), num_pruned=num_pruned,
                         residuals=resid, samples=samples, ci=ci)
