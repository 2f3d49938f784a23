"""One-sided confidence bounds for the rollout gates, pure and numpy-only: distribution-free
order-statistic ranks for a quantile (binomial), Wilson's interval for a proportion and
Newcombe's hybrid score interval for a difference of two. No I/O, no parity imports.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np


def _count_above_cdf(n: int, p: float, last: int) -> np.ndarray:
    """P(J <= j) for j = 0..last, J ~ Binomial(n, 1 - p): how many of n values lie above the
    p-quantile. Log-space pmf (log C(n, j) as a running sum), so n in the millions is exact to
    ~1e-9 and takes milliseconds."""
    j = np.arange(last + 1, dtype=np.float64)
    ratios = np.log(n - j[:-1]) - np.log(j[:-1] + 1.0)  # log C(n, j+1) - log C(n, j)
    log_choose = np.concatenate(([0.0], np.cumsum(ratios)))
    above = 1.0 - p
    log_pmf = log_choose + j * math.log(above) + (n - j) * math.log(p)
    return np.cumsum(np.exp(log_pmf))


def _tail_last(n: int, p: float) -> int:
    """A count of values above the p-quantile that Binomial(n, 1 - p) exceeds with negligible
    probability (mean + 12 sd + 10): the CDF is summed only this far."""
    mean = n * (1.0 - p)
    return min(n, math.ceil(mean + 12.0 * math.sqrt(mean * p) + 10.0))


def quantile_ranks(n: int, p: float, confidence: float) -> tuple[int | None, int | None]:
    """1-based ranks (lower, upper) of the sorted n values whose values bound the p-quantile
    one-sidedly at `confidence`, for any distribution: P(X_(lower) <= q) >= confidence and
    P(X_(upper) >= q) >= confidence. None where n values are too few for a finite bound (the
    upper bound of the 0.99 quantile at 95 % needs n >= 299: 0.99 ** 298 > 0.05)."""
    if n < 1:
        return None, None
    alpha = 1.0 - confidence
    cdf = _count_above_cdf(n, p, _tail_last(n, p))
    # lower = X_(n - m), m the fewest values above q with P(J <= m) >= confidence; since
    # P(X_(r) <= q) >= P(Binomial(n, p) >= r) = P(J <= n - r).
    m = int(np.searchsorted(cdf, confidence - 1e-12, side="left"))
    lower = n - m if m < n and m < cdf.size else None
    # upper = X_(n - k + 1), k the most values above q with P(J <= k - 1) <= alpha; since
    # P(X_(s) < q) <= P(Binomial(n, p) >= s) = P(J <= n - s).
    k = int(np.searchsorted(cdf, alpha + 1e-12, side="right"))
    upper = n - k + 1 if k >= 1 else None
    return lower, upper


def wilson(errors: int, n: int, z: float) -> tuple[float, float]:
    """Wilson's score interval (lower, upper) for the proportion errors / n at normal quantile
    z (z = 1.645: each end a one-sided 95 % bound). n must be positive."""
    share = errors / n
    z2 = z * z
    centre = (share + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(share * (1 - share) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_lower(errors_a: int, n_a: int, errors_b: int, n_b: int, confidence: float) -> float:
    """The one-sided lower confidence bound of p_a - p_b, Newcombe's hybrid score interval
    (1998, method 10) from the two Wilson intervals."""
    z = NormalDist().inv_cdf(confidence)
    low_a, _ = wilson(errors_a, n_a, z)
    _, high_b = wilson(errors_b, n_b, z)
    share_a, share_b = errors_a / n_a, errors_b / n_b
    return share_a - share_b - math.hypot(share_a - low_a, high_b - share_b)


def fewest_for_upper(p: float, confidence: float) -> int:
    """The fewest values with a finite upper bound of the p-quantile at `confidence`: the n
    where the maximum first suffices, p ** n <= 1 - confidence (299 for 0.99 at 95 %)."""
    return math.ceil(math.log(1.0 - confidence) / math.log(p) - 1e-12)
