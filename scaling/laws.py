"""Power laws fitted in log space, with bootstrap intervals: y = k x^a (N_opt, D_opt vs C) and
y = E + k x^a (the loss at the compute optimum, which saturates at the irreducible loss).
Ground floor: numpy only; ``scaling.fit`` re-exports every name.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def as_positive(name: str, values, min_size: int = 1) -> np.ndarray:
    """Return ``values`` as a finite, strictly positive float64 1-D array or raise ValueError."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size < min_size:
        raise ValueError(f"{name} has {arr.size} values; at least {min_size} are needed.")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr <= 0))
    if bad.size:
        i = bad[0]
        raise ValueError(f"{name}[{i}]={float(arr[i])!r} is invalid; allowed: finite and > 0.")
    return arr


def percentile_ci(samples, level: float = 0.95, axis: int = 0) -> np.ndarray:
    """Equal-tailed percentile interval of bootstrap samples -> [..., 2] (lo, hi), NaNs ignored."""
    if not 0 < level < 1:
        raise ValueError(f"ci level={level} is out of range; allowed (0, 1).")
    q = np.nanquantile(np.asarray(samples, dtype=np.float64), [(1 - level) / 2, (1 + level) / 2],
                       axis=axis)
    return np.moveaxis(q, 0, -1)


@dataclasses.dataclass(frozen=True)
class PowerLaw:
    """y = coef * x ** exponent, fitted as a straight line in log10 space; CIs from a bootstrap."""

    coef: float
    exponent: float
    residuals: np.ndarray  # log10 y - log10 y_pred per point
    exponent_ci: tuple[float, float] | None = None
    samples: np.ndarray | None = None  # [B, 2] bootstrap (log10 coef, exponent)

    def __call__(self, x) -> np.ndarray:
        return self.coef * np.asarray(x, dtype=np.float64) ** self.exponent

    def interval(self, x, level: float = 0.95) -> np.ndarray:
        """Bootstrap percentile interval of the prediction at x -> [..., 2]; NaN without samples."""
        x = np.asarray(x, dtype=np.float64)
        if self.samples is None:
            return np.full(x.shape + (2,), np.nan)
        pred = 10 ** (self.samples[:, :1] + self.samples[:, 1:] * np.log10(x.reshape(1, -1)))
        return percentile_ci(pred, level).reshape(x.shape + (2,))


@dataclasses.dataclass(frozen=True)
class SaturatingLaw:
    """y = floor + coef * x ** exponent (exponent < 0): the loss at the compute optimum, which
    tends to the irreducible loss E rather than to 0 (on Chinchilla's L(N, D) it is exact, with
    exponent -alpha beta / (alpha + beta)). samples: [B, 3] bootstrap (floor, log10 coef, exponent).
    """

    floor: float
    coef: float
    exponent: float
    residuals: np.ndarray
    samples: np.ndarray | None = None

    def __call__(self, x) -> np.ndarray:
        return self.floor + self.coef * np.asarray(x, dtype=np.float64) ** self.exponent

    def interval(self, x, level: float = 0.95) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.samples is None or not len(self.samples):
            return np.full(x.shape + (2,), np.nan)
        s = self.samples
        pred = s[:, :1] + 10 ** s[:, 1:2] * x.reshape(1, -1) ** s[:, 2:3]
        return percentile_ci(pred, level).reshape(x.shape + (2,))


def _saturating_params(x, y) -> tuple[float, float, float]:
    """Least squares of y = E + A x^g (0 <= E < min y, g < 0) -> (E, log10 A, g); a grid over E
    with the power law of y - E fitted in log space at each (exact for 3 points)."""
    y_min = float(np.min(y))
    best = None
    for e in np.linspace(0.0, y_min * (1 - 1e-4), 400):
        log_a, g = _line_log10(x, y - e)
        if g >= 0:
            continue
        r = float(np.sum((e + 10**log_a * x**g - y) ** 2))
        if best is None or r < best[0]:
            best = (r, e, log_a, g)
    if best is None:
        log_a, g = _line_log10(x, y)
        return 0.0, log_a, g
    return best[1:]


def fit_saturating_law(x, y, samples_y: np.ndarray | None = None) -> SaturatingLaw:
    """``SaturatingLaw`` through (x, y); ``samples_y`` [B, len(x)] bootstrap replicates of y."""
    x, y = as_positive("x", x, 2), as_positive("y", y, 2)
    e, log_a, g = _saturating_params(x, y)
    samples = None
    if samples_y is not None and len(samples_y):
        samples = np.array([_saturating_params(x, row) for row in samples_y
                            if np.all(np.isfinite(row)) and np.all(row > 0)])
    law = SaturatingLaw(float(e), float(10**log_a), float(g), np.zeros(0), samples)
    return dataclasses.replace(law, residuals=np.log10(y) - np.log10(law(x)))


def _line_log10(x, y) -> tuple[float, float]:
    slope, intercept = np.polyfit(np.log10(x), np.log10(y), 1)
    return float(intercept), float(slope)


def fit_power_law(x, y, samples: np.ndarray | None = None, level: float = 0.95) -> PowerLaw:
    """Least-squares fit of log10 y = log10 coef + exponent log10 x (needs >= 2 distinct x)."""
    x, y = as_positive("x", x, 2), as_positive("y", y, 2)
    if x.size != y.size:
        raise ValueError(f"x and y differ in length: {x.size} vs {y.size}.")
    if np.unique(x).size < 2:
        raise ValueError(f"x has {np.unique(x).size} distinct values; a power law needs >= 2.")
    log_coef, exponent = _line_log10(x, y)
    resid = np.log10(y) - (log_coef + exponent * np.log10(x))
    ci = None if samples is None else tuple(float(v) for v in percentile_ci(samples[:, 1], level))
    return PowerLaw(10**log_coef, exponent, resid, ci, samples)
