"""Batched L-BFGS in plain numpy: many independent small problems minimised in lock-step.

The approach-3 scaling-law fit restarts L-BFGS from a grid of 4500 initialisations of 5 parameters.
A Python loop of ``scipy.optimize.minimize`` calls pays interpreter and finite-difference overhead
per start (minutes on 2 cores); here every start is one row of an ``[S, P]`` array, the objective
and its analytic gradient are evaluated for all rows in one vectorised call, and rows that have
converged drop out of the active set, so the cost is a few hundred numpy passes over ``[S, M]``.

The algorithm per row is textbook L-BFGS (Nocedal & Wright, Alg. 7.4 two-loop recursion) with a
backtracking Armijo line search; curvature pairs with ``s.y <= 0`` are skipped (Armijo alone does
not guarantee positive curvature). Stopping rules mirror scipy's L-BFGS-B: relative decrease
``(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, f_scale) <= ftol`` on ``patience`` consecutive
iterations (flat stretches stall single steps), or ``max|g| <= gtol``.
Ground floor: numpy only, imports nothing of ours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

# fun(x_SxP, rows) -> (f_S, g_SxP): objective and gradient for the given rows of the batch (rows
# indexes per-row data such as bootstrap weights; x_SxP holds those rows' parameters).
BatchedFun = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

STATUS_CONVERGED_F = 0  # relative decrease below ftol
STATUS_CONVERGED_G = 1  # gradient below gtol
STATUS_MAX_ITER = 2
STATUS_LINE_SEARCH = 3  # no Armijo step found (often: already at a kink-level minimum)
STATUS_NONFINITE = 4


@dataclasses.dataclass(frozen=True)
class BatchedResult:
    """Per-row outcome of `minimize`.

    x: [S, P] final parameters. fun: [S] final objective. grad: [S, P] final gradient.
    status: [S] one of the STATUS_* codes. n_iter: [S] iterations used.
    converged: [S] True for STATUS_CONVERGED_F / STATUS_CONVERGED_G.
    n_evals: total row-evaluations of the objective (sum over rows).
    """

    x: np.ndarray
    fun: np.ndarray
    grad: np.ndarray
    status: np.ndarray
    n_iter: np.ndarray
    n_evals: int

    @property
    def converged(self) -> np.ndarray:
        return self.status <= STATUS_CONVERGED_G


def _two_loop(g_SxP: np.ndarray, s_MxSxP: np.ndarray, y_MxSxP: np.ndarray, rho_MxS: np.ndarray):
    """Return -H g for each row; history slot 0 is the newest pair, rho == 0 marks an empty slot."""
    q = g_SxP.copy()
    m = s_MxSxP.shape[0]
    alpha_MxS = np.zeros_like(rho_MxS)
    for i in range(m):
        alpha_MxS[i] = rho_MxS[i] * np.einsum("sp,sp->s", s_MxSxP[i], q)
        q -= alpha_MxS[i][:, None] * y_MxSxP[i]
    yy = np.einsum("sp,sp->s", y_MxSxP[0], y_MxSxP[0])
    has = (rho_MxS[0] > 0) & (yy > 0)
    # Initial Hessian scale gamma = s.y / y.y (N&W eq. 7.20); without history a unit-length step.
    gamma = np.divide(1.0, rho_MxS[0] * yy, out=np.zeros_like(yy), where=has)
    gnorm = np.sqrt(np.einsum("sp,sp->s", g_SxP, g_SxP))
    gamma = np.where(has, gamma, 1.0 / np.maximum(gnorm, 1e-300))
    r = gamma[:, None] * q
    for i in reversed(range(m)):
        beta = rho_MxS[i] * np.einsum("sp,sp->s", y_MxSxP[i], r)
        r += s_MxSxP[i] * (alpha_MxS[i] - beta)[:, None]
    return -r


def minimize(
    fun: BatchedFun,
    x0_SxP: np.ndarray,
    *,
    max_iter: int = 1000,
    history: int = 10,
    ftol: float = 2.2e-9,
    gtol: float = 1e-5,
    f_scale: float = 1.0,
    max_line_search: int = 40,
    c1: float = 1e-4,
    patience: int = 3,
) -> BatchedResult:
    """Minimise S independent problems from the rows of ``x0_SxP`` with batched L-BFGS.

    ``f_scale`` is the floor of the denominator in the relative-decrease test (scipy uses 1.0);
    pass a smaller value when the objective itself is tiny (a Huber sum with delta 1e-3 is ~1e-3).
    """
    x = np.array(x0_SxP, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x0_SxP must be 2-D [starts, params]; got shape {x.shape}.")
    if history < 1 or max_iter < 1:
        raise ValueError(f"history={history} and max_iter={max_iter} must both be >= 1.")
    s_count = x.shape[0]
    rows_all = np.arange(s_count)
    with np.errstate(all="ignore"):
        f, g = fun(x, rows_all)
    n_evals = s_count
    status = np.full(s_count, STATUS_MAX_ITER)
    active = np.isfinite(f) & np.all(np.isfinite(g), axis=1)
    status[~active] = STATUS_NONFINITE

    with np.errstate(all="ignore"):  # far-off starts overflow; non-finite steps are rejected
        return _loop(fun, x, f, g, active, status, max_iter, history, ftol, gtol, f_scale,
                     max_line_search, c1, patience, n_evals)


def _loop(fun, x, f, g, active, status, max_iter, history, ftol, gtol, f_scale, max_line_search,
          c1, patience, n_evals) -> BatchedResult:
    s_count, p = x.shape
    s_hist = np.zeros((history, s_count, p))
    y_hist = np.zeros((history, s_count, p))
    rho = np.zeros((history, s_count))
    n_iter = np.zeros(s_count, dtype=np.int64)
    stall = np.zeros(s_count, dtype=np.int64)
    for _ in range(max_iter):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        xr, fr, gr = x[rows], f[rows], g[rows]
        d = _two_loop(gr, s_hist[:, rows], y_hist[:, rows], rho[:, rows])
        gd = np.einsum("sp,sp->s", gr, d)
        uphill = ~(gd < 0)
        if uphill.any():  # stale curvature: restart from steepest descent
            norm = np.maximum(np.linalg.norm(gr[uphill], axis=1), 1e-300)
            d[uphill] = -gr[uphill] / norm[:, None]
            gd[uphill] = np.einsum("sp,sp->s", gr[uphill], d[uphill])
            rho[:, rows[uphill]] = 0.0
        t = np.ones(rows.size)
        f_new, g_new = fun(xr + d, rows)
        n_evals += rows.size
        ok = np.isfinite(f_new) & (f_new <= fr + c1 * t * gd)
        for _ls in range(max_line_search):
            bad = np.flatnonzero(~ok)
            if bad.size == 0:
                break
            t[bad] *= 0.5
            fb, gb = fun(xr[bad] + t[bad, None] * d[bad], rows[bad])
            n_evals += bad.size
            f_new[bad], g_new[bad] = fb, gb
            ok[bad] = np.isfinite(fb) & (fb <= fr[bad] + c1 * t[bad] * gd[bad])
        n_iter[rows] += 1
        failed = rows[~ok]
        status[failed] = STATUS_LINE_SEARCH
        active[failed] = False
        keep = np.flatnonzero(ok)
        rk = rows[keep]
        s = t[keep, None] * d[keep]
        y = g_new[keep] - gr[keep]
        sy = np.einsum("sp,sp->s", s, y)
        x[rk] = xr[keep] + s
        f_prev = fr[keep]
        f[rk], g[rk] = f_new[keep], g_new[keep]
        upd = sy > 1e-12 * np.linalg.norm(s, axis=1) * np.linalg.norm(y, axis=1)
        ru = rk[upd]
        s_hist[1:, ru], y_hist[1:, ru], rho[1:, ru] = s_hist[:-1, ru], y_hist[:-1, ru], rho[:-1, ru]
        s_hist[0, ru], y_hist[0, ru], rho[0, ru] = s[upd], y[upd], 1.0 / sy[upd]
        denom = np.maximum(np.maximum(np.abs(f_prev), np.abs(f[rk])), f_scale)
        # A flat stretch (a far-off start where one term is ~0) can stall one step; the decrease
        # test must hold `patience` times in a row before a row stops.
        small = (f_prev - f[rk]) <= ftol * denom
        stall[rk] = np.where(small, stall[rk] + 1, 0)
        conv_f = stall[rk] >= patience
        conv_g = np.max(np.abs(g[rk]), axis=1) <= gtol
        status[rk[conv_g]] = STATUS_CONVERGED_G
        status[rk[conv_f & ~conv_g]] = STATUS_CONVERGED_F
        active[rk[conv_f | conv_g]] = False
    return BatchedResult(x=x, fun=f, grad=g, status=status, n_iter=n_iter, n_evals=n_evals)
