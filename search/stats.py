"""Confidence intervals of a solve rate: k solved of n problems.

Every reported solve rate carries a 95% Wilson score interval (``wilson_ci``: good coverage at the
small n and extreme rates of held-out splits); ``clopper_pearson_ci`` is the exact, conservative
interval, recorded beside it (``solve_rate_ci_clopper_pearson``).
"""

from __future__ import annotations

import math

from scipy import stats as sps


def wilson_ci(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k / n."""
    if n == 0:
        return 0.0, 1.0
    z = sps.norm.ppf(0.5 + conf / 2)
    p, z2 = k / n, z * z
    mid, half = (p + z2 / (2 * n)), z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    lo, hi = (mid - half) / (1 + z2 / n), (mid + half) / (1 + z2 / n)
    return (0.0 if k == 0 else max(0.0, lo)), (1.0 if k == n else min(1.0, hi))


def clopper_pearson_ci(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of k / n."""
    if n == 0:
        return 0.0, 1.0
    a = 1 - conf
    lo = sps.beta.ppf(a / 2, k, n - k + 1) if k > 0 else 0.0
    hi = sps.beta.ppf(1 - a / 2, k + 1, n - k) if k < n else 1.0
    return float(lo), float(hi)
