"""Scaling-law fits on public reference data (Epoch AI, CS336) and on synthetic known-truth data."""
import csv
import json
import warnings

import numpy as np
import pytest
from scipy import optimize

from scaling import fit, fit_inference, lbfgs

# Hoffmann et al. (2022) approach-3 values, used as synthetic ground truth.
TRUTH = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def _law(n, d, p=TRUTH):
    return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


@pytest.fixture(scope="module")
def epoch_points():
    from tests.conftest import SHARED_BENCH

    path = SHARED_BENCH / "epoch_chinchilla_svg_extracted_data.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    n = np.array([float(r["Model Size"]) for r in rows])
    c = np.array([float(r["Training FLOP"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    keep = np.argsort(loss)[:-5]  # Epoch drops the 5 highest-loss points
    return n[keep], c[keep] / (6 * n[keep]), loss[keep]


@pytest.fixture(scope="module")
def epoch_fit(epoch_points):
    return fit.fit_parametric(*epoch_points, bootstrap=40)


def test_approach3_reproduces_epoch(epoch_fit, epoch_points):
    p = epoch_fit.params
    assert p["E"] == pytest.approx(1.82, abs=0.03)
    assert p["A"] == pytest.approx(482, rel=0.05)
    assert p["B"] == pytest.approx(2085, rel=0.06)
    assert p["alpha"] == pytest.approx(0.348, abs=0.004)
    assert p["beta"] == pytest.approx(0.366, abs=0.004)
    assert epoch_fit.converged and epoch_fit.num_starts == 4500
    assert epoch_fit.num_at_best >= 100  # many grid starts land in the same optimum
    for name, (lo, hi) in epoch_fit.ci.items():
        assert lo < p[name] < hi, name
    # residuals are log L - log L_pred of the fitted law
    n, d, loss = epoch_points
    np.testing.assert_allclose(epoch_fit.residuals, np.log(loss / epoch_fit.predict(n, d)))
    opt = epoch_fit.optimum(5.76e23)  # Chinchilla's budget: Epoch's fit implies a ~70B model
    assert 4e10 < opt["n_opt"] < 1.2e11
    assert opt["n_opt_ci"][0] < opt["n_opt"] < opt["n_opt_ci"][1]
    assert opt["n_opt"] * opt["d_opt"] * 6 == pytest.approx(5.76e23)


def test_batched_lbfgs_matches_scipy_on_epoch_objective(epoch_points):
    n, d, loss = epoch_points
    fun = fit.huber_logsumexp_objective(np.log(n), np.log(d), np.log(loss))
    starts = fit.epoch_init_grid()[[0, 777, 2222, 3001, 4499]]
    # analytic gradient against central differences
    x = np.array([[0.5, 6.0, 7.5, 0.35, 0.37]])
    _, g = fun(x, np.zeros(1, int))
    num = [(fun(x + h, [0])[0] - fun(x - h, [0])[0])[0] / 2e-7 for h in np.eye(5) * 1e-7]
    np.testing.assert_allclose(g[0], num, rtol=1e-4, atol=1e-9)
    res = lbfgs.minimize(fun, starts, ftol=1e-10, gtol=1e-9, f_scale=1e-6, max_iter=2000)
    for i, s in enumerate(starts):
        ref = optimize.minimize(lambda t: tuple(v[0] for v in fun(t[None], [0])), s, jac=True,
                                method="L-BFGS-B", options={"ftol": 1e-12, "gtol": 1e-10})
        assert res.fun[i] <= ref.fun * (1 + 1e-4) + 1e-9, i


def test_batched_lbfgs_rosenbrock_with_row_weights():
    scale = np.array([1.0, 2.0, 5.0])  # per-row data, reached through `rows`

    def fun(x, rows):
        a = scale[rows]
        f = (a - x[:, 0]) ** 2 + 100 * (x[:, 1] - x[:, 0] ** 2) ** 2
        g = np.stack([-2 * (a - x[:, 0]) - 400 * x[:, 0] * (x[:, 1] - x[:, 0] ** 2),
                      200 * (x[:, 1] - x[:, 0] ** 2)], 1)
        return f, g

    res = lbfgs.minimize(fun, np.array([[-1.2, 1.0], [0.0, 0.0], [3.0, 30.0]]), gtol=1e-8)
    np.testing.assert_allclose(res.x, np.stack([scale, scale**2], 1), rtol=1e-5)
    assert res.converged.all()
    with pytest.raises(ValueError, match="2-D"):
        lbfgs.minimize(fun, np.zeros(2))


def _synthetic_isoflop(seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    budgets = np.array([1e18, 1e19, 1e20, 1e21, 1e22])
    n, c = [], []
    for b in budgets:
        centre = np.log10(0.6 * (b / 6) ** 0.5)  # near the optimum of TRUTH
        for v in np.linspace(centre - 1, centre + 1, 8):
            n.append(10**v)
            c.append(b)
    n, c = np.array(n), np.array(c)
    d = c / (6 * n)
    loss = _law(n, d) * np.exp(rng.normal(0, noise, n.size))
    return n, c, d, loss


def test_approach3_recovers_synthetic_truth_within_its_ci():
    n, _, d, loss = _synthetic_isoflop()
    res = fit.fit_parametric(n, d, loss, bootstrap=60, seed=1)
    assert res.converged
    for name, truth in TRUTH.items():
        lo, hi = res.ci[name]
        assert lo <= truth <= hi, (name, truth, res.ci[name], res.params[name])


def test_approach2_recovers_synthetic_exponents():
    n, c, _, loss = _synthetic_isoflop(noise=0.002)
    res = fit.fit_isoflops(n, c, loss, bootstrap=100)
    # recorded tokens (here C = 7ND, as if attention cost 1/6 more) override D_opt = C / 6N
    with_d = fit.fit_isoflops(n, c, loss, tokens=c / (7 * n), bootstrap=0)
    np.testing.assert_allclose(with_d.d_opt, res.budgets / (7 * res.n_opt), rtol=1e-9)
    np.testing.assert_allclose(res.d_opt, res.budgets / (6 * res.n_opt), rtol=1e-9)
    a_true = TRUTH["beta"] / (TRUTH["alpha"] + TRUTH["beta"])  # Hoffmann eq. 4
    lo, hi = res.n_law.exponent_ci
    assert lo <= a_true <= hi and hi - lo < 0.1
    assert res.n_law.exponent + res.d_law.exponent == pytest.approx(1.0)  # D = C / 6N
    assert res.method == "parabola"


def test_approach2_on_cs336_isoflops():
    from tests.conftest import SHARED_BENCH

    path = SHARED_BENCH / "isoflops_curves.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    runs = json.loads(path.read_text())
    n = np.array([r["parameters"] for r in runs], float)
    c = np.array([r["compute_budget"] for r in runs])
    loss = np.array([r["final_loss"] for r in runs])
    res = fit.fit_isoflops(n, c, loss, bootstrap=100)
    assert res.budgets.size == 9 and np.isfinite(res.n_opt).all()
    assert 0.45 < res.n_law.exponent < 0.55 and 0.45 < res.d_law.exponent < 0.55
    lo, hi = res.n_law.exponent_ci
    assert lo < res.n_law.exponent < hi
    # each vertex lies inside its budget's sampled sizes and beats every run of the budget
    for b, n_opt, l_opt in zip(res.budgets, res.n_opt, res.loss_opt, strict=True):
        m = c == b
        assert n[m].min() < n_opt < n[m].max() and l_opt <= loss[m].min() + 1e-9
    pred = res.predict(1e24)
    assert pred["n_opt_ci"][0] < pred["n_opt"] < pred["n_opt_ci"][1]
    biased = fit.fit_isoflops(n, c, loss, method="lowest", bootstrap=20)
    assert biased.method == "lowest (biased)"
    # quantised to the sampled sizes
    assert all(np.isclose(n, v, rtol=1e-9).any() for v in biased.n_opt)


@pytest.mark.parametrize("bad, match", [
    ({"loss": np.nan}, r"loss\[3\]=nan"),
    ({"flops": 0.0}, r"flops\[3\]=0.0"),
    ({"params": -1.0}, r"params\[3\]=-1.0"),
])
def test_bad_input_names_field(bad, match):
    n, c, d, loss = _synthetic_isoflop()
    arrays = {"params": n.copy(), "flops": c.copy(), "loss": loss.copy()}
    for k, v in bad.items():
        arrays[k][3] = v
    with pytest.raises(ValueError, match=match):
        fit.fit_isoflops(arrays["params"], arrays["flops"], arrays["loss"], bootstrap=0)


def test_too_few_points_and_degenerate_budgets():
    n, c, d, loss = _synthetic_isoflop()
    with pytest.raises(ValueError, match="5 points for 5 parameters"):
        fit.fit_parametric(n[:5], d[:5] * np.arange(1, 6), loss[:5], bootstrap=0)
    with pytest.raises(ValueError, match="distinct"):
        fit.fit_parametric(np.full(8, 1e8), d[:8], loss[:8], bootstrap=0)
    # one run at a sixth budget: warned by name and dropped, the rest still fits
    n2, c2, l2 = np.append(n, 3e9), np.append(c, 5e23), np.append(loss, 2.0)
    with pytest.warns(UserWarning, match=r"budget C=5e\+23 has 1 distinct"):
        res = fit.fit_isoflops(n2, c2, l2, bootstrap=0)
    assert np.isnan(res.n_opt[-1]) and np.isfinite(res.n_opt[:-1]).all()
    with pytest.raises(ValueError, match="only 1 budget"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit.fit_isoflops(n2[c2 >= 1e22], c2[c2 >= 1e22], l2[c2 >= 1e22], bootstrap=0)
    concave = np.array([3.0, 3.5, 3.0, 2.0])  # a maximum, not a minimum
    with pytest.warns(UserWarning, match=r"budget C=1e\+20: loss vs log N is not convex"):
        with pytest.raises(ValueError):
            fit.fit_isoflops([1e8, 2e8, 4e8, 8e8], [1e20] * 4, concave, bootstrap=0)


def test_group_budgets_tolerates_small_misses():
    per_run, budgets = fit.group_budgets([1e18, 1.01e18, 0.99e18, 1e19, 1.02e19])
    assert budgets.size == 2 and per_run[1] == budgets[0] and per_run[4] == budgets[1]


# ----------------------------------------------------------------------------- inference laws
def test_solve_rate_logistic_recovers_truth():
    compute = np.logspace(8, 12, 9)
    truth = fit_inference.SolveRateFit(slope=1.5, mid=10.2, ceiling=1.0, residuals=None)
    rng = np.random.default_rng(0)
    rate = rng.binomial(2000, truth(compute)) / 2000
    res = fit_inference.fit_solve_rate(compute, rate, 2000, bootstrap=60)
    assert res.ci["slope"][0] <= 1.5 <= res.ci["slope"][1]
    assert res.ci["mid"][0] <= 10.2 <= res.ci["mid"][1]
    assert res.compute_for(0.5) == pytest.approx(10**res.mid)
    assert res.compute_for(1.0) == float("inf")
    capped = fit_inference.fit_solve_rate(compute, 0.6 * truth(compute), 2000, fit_ceiling=True,
                                          bootstrap=0)
    assert capped.ceiling == pytest.approx(0.6, abs=0.01)
    with pytest.raises(ValueError, match=r"solve_rate\[0\]=1.5"):
        fit_inference.fit_solve_rate(compute[:2], [1.5, 0.2], 10)
    with pytest.raises(ValueError, match="1 distinct compute"):
        fit_inference.fit_solve_rate([1e9, 1e9], [0.1, 0.2], 10)


def test_pass_at_k_power_law():
    k = np.array([1, 2, 4, 8, 16, 32, 64])
    cov = np.exp(-2.0 * k**-0.4)
    res = fit_inference.fit_pass_at_k(k, cov)
    assert res.a == pytest.approx(2.0) and res.b == pytest.approx(0.4)
    np.testing.assert_allclose(res(k), cov)
    with pytest.warns(UserWarning, match="drops 1 point"):
        fit_inference.fit_pass_at_k(np.append(k, 128), np.append(cov, 1.0))


def _jones_curves(m=-1.2, k=3.0, c=24.0):
    """Solve-rate curves whose least search compute for tau is 10^(m log10 T + k tau + c)."""
    train = np.array([1e15, 1e16, 1e17, 1e18])
    search = np.logspace(0, 12, 25)
    curves = []
    for t in train:
        rate = np.clip((np.log10(search) - m * np.log10(t) - c) / k, 0, 1)
        curves.append((search, rate))
    return train, curves


def test_frontier_recovers_tradeoff_slope():
    train, curves = _jones_curves()
    res = fit_inference.fit_frontier(train, curves, [0.3, 0.5, 0.7], bootstrap=50)
    assert res.m == pytest.approx(-1.2, abs=1e-6) and res.k == pytest.approx(3.0, abs=1e-6)
    assert res.test_compute(1e19, 0.5) == pytest.approx(10 ** (-1.2 * 19 + 1.5 + 24), rel=1e-6)
    assert len(res.points) == 12
    # a run that needs more search at more training compute is off the frontier
    worse = curves + [(curves[0][0], np.clip(curves[0][1] - 0.2, 0, 1))]
    pts = fit_inference.frontier_points(np.append(train, 1e19), worse, [0.5])
    assert [p["train_flops"] for p in pts] == list(train)


def test_frontier_groups_runs_of_one_budget_before_picking_pareto_points():
    train, curves = _jones_curves()
    # a second size of the 1e16 budget, 2% more train FLOPs, needing 2x less search: without the
    # grouping both runs of that budget would be frontier points (the cheaper-first one too)
    better = (curves[1][0] / 2, curves[1][1])
    pts = fit_inference.frontier_points(np.append(train, 1.02e16), curves + [better], [0.5])
    assert [p["train_flops"] for p in pts] == [1e15, pytest.approx(1.01e16), 1e17, 1e18]
    assert pts[1]["run"] == "4"  # the better run represents its budget
    ungrouped = fit_inference.frontier_points(np.append(train, 1.02e16), curves + [better], [0.5],
                                              budget_rtol=0.0)
    assert len(ungrouped) == 5


def test_compute_to_reach_statuses():
    assert fit_inference.compute_to_reach([1, 10, 100], [0.2, 0.4, 0.3], 0.3) == (
        pytest.approx(10**0.5), "ok")
    assert fit_inference.compute_to_reach([1, 10], [0.5, 0.6], 0.4)[1] == "censored"
    assert fit_inference.compute_to_reach([1, 10], [0.1, 0.2], 0.4)[1] == "unreached"
    with pytest.raises(ValueError, match="at least 4|needs >= 4"):
        fit_inference.fit_frontier([1e15, 1e16], [([1, 10], [0.1, 0.9])] * 2, [0.5])
