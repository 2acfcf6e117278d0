"""Report figures (matplotlib, object API on the Agg canvas: no pyplot state, no display needed).

Every function draws one PNG at ``path`` and returns the path. Axes are log-scaled where the fits
are power laws, so a straight line on the page is the fitted law.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from scaling.fit import IsoFlopFit, ParametricFit, group_budgets
from scaling.fit_inference import FrontierFit, SolveRateFit
from scaling.records import RunTable, SearchCurve
from search.stats import wilson_ci


def _save(fig: Figure, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _colors(k: int):
    from matplotlib import colormaps

    return colormaps["viridis"](np.linspace(0.05, 0.9, max(k, 1)))


def isoflop_curves(table: RunTable, fit2: IsoFlopFit | None, path: str,
                   budget_rtol: float = 0.05) -> str:
    """Loss vs N per budget, with each budget's parabola and its vertex.

    ``fit2=None`` (approach 2 was skipped) still draws the measured profiles, joined by lines, so a
    reader can see why no optimum was fitted (e.g. the smallest model wins at every budget).
    """
    per_run, budgets = group_budgets(table.flops, budget_rtol)
    budgets = fit2.budgets if fit2 is not None else budgets
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    for k, (color, b) in enumerate(zip(_colors(len(budgets)), budgets, strict=True)):
        m = per_run == b
        ax.scatter(table.params[m], table.loss[m], color=color, s=18, label=f"C={b:.2g}")
        if fit2 is None:
            order = np.argsort(table.params[m])
            ax.plot(table.params[m][order], table.loss[m][order], color=color, lw=1, ls=":")
            continue
        coeffs, n_opt, l_opt = fit2.parabolas[k], fit2.n_opt[k], fit2.loss_opt[k]
        if np.isfinite(coeffs).all():
            x = np.linspace(np.log10(table.params[m].min()), np.log10(table.params[m].max()), 60)
            ax.plot(10**x, np.polyval(coeffs, x), color=color, lw=1)
        if np.isfinite(n_opt):
            ax.scatter([n_opt], [l_opt], color=color, marker="*", s=90, edgecolor="k", zorder=3)
    title = (f"IsoFLOP profiles ({fit2.method}); * = optimum" if fit2 is not None
             else "IsoFLOP profiles (no parabola fit: see report)")
    ax.set(xscale="log", xlabel="parameters N (non-embedding)", ylabel=table.loss_key, title=title)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def optimal_vs_compute(fits: list[IsoFlopFit], path: str,
                       parametric: ParametricFit | None = None) -> str:
    """N_opt(C) and D_opt(C) per approach, power-law lines with bootstrap bands."""
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    c_all = np.concatenate([f.budgets for f in fits])
    grid = np.logspace(np.log10(c_all.min()) - 0.5, np.log10(c_all.max()) + 0.5, 50)
    for f, color in zip(fits, ("C0", "C1", "C2"), strict=False):
        for ax, pts, law, name in ((axes[0], f.n_opt, f.n_law, "N"), (axes[1], f.d_opt, f.d_law,
                                                                     "D")):
            ax.scatter(f.budgets, pts, color=color, s=20)
            ax.plot(grid, law(grid), color=color,
                    label=f"{f.method}: {name}_opt ∝ C^{law.exponent:.3f}")
            band = law.interval(grid)
            if np.isfinite(band).all():
                ax.fill_between(grid, band[:, 0], band[:, 1], color=color, alpha=0.15)
    if parametric is not None:
        opt = [parametric.optimum(c) for c in grid]
        axes[0].plot(grid, [o["n_opt"] for o in opt], "k--", label="approach 3")
        axes[1].plot(grid, [o["d_opt"] for o in opt], "k--", label="approach 3")
    for ax, name in zip(axes, ("N_opt (params)", "D_opt (tokens)"), strict=True):
        ax.set(xscale="log", yscale="log", xlabel="training compute C (FLOPs)", ylabel=name)
        ax.legend(fontsize=7)
    return _save(fig, path)


def loss_vs_compute(table: RunTable, path: str) -> str:
    """Final loss vs training compute, one line per model size."""
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    sizes = np.unique(table.params)
    for color, n in zip(_colors(len(sizes)), sizes, strict=True):
        m = table.params == n
        order = np.argsort(table.flops[m])
        ax.plot(table.flops[m][order], table.loss[m][order], "o-", color=color, ms=4,
                label=f"N={n:.3g}")
    ax.set(xscale="log", yscale="log", xlabel="training compute C (FLOPs)", ylabel=table.loss_key,
           title="loss vs training compute per model size")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def solve_rate_vs_search(curves: list[SearchCurve], fits: list[SolveRateFit | None],
                         path: str, split: str | None = None) -> str:
    """Measured solve rate (95% Wilson bars) vs search compute per problem, with each run's
    logistic fit."""
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    order = np.argsort([c.train_flops for c in curves], kind="stable")
    for color, i in zip(_colors(len(curves)), order, strict=True):
        cur, f = curves[i], fits[i]
        lo, hi = np.array([wilson_ci(int(round(p * n)), int(n))
                           for p, n in zip(cur.solve_rate, cur.num_problems, strict=True)]).T
        ax.errorbar(cur.compute, cur.solve_rate, yerr=[cur.solve_rate - lo, hi - cur.solve_rate],
                    color=color, fmt="o", ms=3, lw=0.8,
                    label=f"{cur.name} (N={cur.params:.2g}, C={cur.train_flops:.2g})")
        if f is not None:
            x = np.logspace(np.log10(cur.compute.min()) - 0.3,
                            np.log10(cur.compute.max()) + 0.3, 80)
            ax.plot(x, f(x), color=color, lw=1)
    axis = curves[0].compute_axis if curves else "flops"
    ax.set(xscale="log", ylim=(-0.02, 1.02), xlabel=f"search {axis} per problem",
           ylabel="solve rate", title="solve rate vs search compute"
           + (f" ({split})" if split else "") + ", logistic in log compute")
    ax.legend(fontsize=6, ncol=1)
    return _save(fig, path)


def frontier(fit: FrontierFit | None, path: str, axis: str = "flops", points=None,
             split: str | None = None) -> str:
    """Least search compute reaching each threshold vs training compute (the Pareto points, drawn
    even when the fit fails), with the fitted iso-solve-rate lines."""
    points = points if points is not None else fit.points
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    taus = sorted({p["threshold"] for p in points})
    for color, tau in zip(_colors(len(taus)), taus, strict=True):
        pts = [p for p in points if p["threshold"] == tau]
        x = np.array([p["train_flops"] for p in pts])
        ax.scatter(x, [p["test_flops"] for p in pts], color=color, s=20, label=f"solve {tau:.0%}")
        if fit is not None:
            grid = np.logspace(np.log10(x.min()) - 0.2, np.log10(x.max()) + 0.2, 20)
            ax.plot(grid, [fit.test_compute(g, tau) for g in grid], color=color, lw=1)
    title = "train/test trade-off" + (f" ({split})" if split else "")
    title += f": slope m = {fit.m:.2f}" if fit is not None else ": fit failed (points only)"
    ax.set(xscale="log", yscale="log", xlabel="training compute (FLOPs)",
           ylabel=f"search {axis} per problem", title=title)
    ax.legend(fontsize=7)
    return _save(fig, path)
