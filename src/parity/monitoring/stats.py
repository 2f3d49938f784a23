"""Drift statistics of current raw values against a reference `ColumnProfile` (PSI, KS, chi-squared,
Jensen-Shannon, normalised Wasserstein, two-proportion Z), Evidently's size-aware default test
selection, dataset drift and Benjamini-Hochberg. Pure: values in, values out; no I/O.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from parity.errors import DriftTestError
from parity.monitoring.profile import NUMERIC, ColumnProfile
from parity.monitoring.samples import (
    Binning,
    Current,
    ReferenceCdf,
    aligned_counts,
    binned_shares,
    cdf_both,
    current_value_counts,
    prepare_current,
    reference_atoms,
    reference_cdf,
    reference_quantile_at,
    reference_value_counts,
    require_values,
)

__all__ = [
    "ALIASES",
    "ALPHA",
    "AUTO",
    "CHI_SQUARED",
    "DATASET_DRIFT_SHARE",
    "DEFAULT_THRESHOLDS",
    "JENSEN_SHANNON",
    "KS",
    "MIN_SAMPLES",
    "PSI",
    "PSI_FLOOR",
    "TESTS",
    "WASSERSTEIN",
    "Z_TEST",
    "Binning",
    "ColumnDrift",
    "Current",
    "DatasetDrift",
    "Statistic",
    "benjamini_hochberg",
    "benjamini_hochberg_adjusted",
    "binned_shares",
    "chi_squared",
    "column_drift",
    "dataset_drift",
    "jensen_shannon",
    "js_distance",
    "ks",
    "prepare_current",
    "psi",
    "psi_from_shares",
    "resolve_test",
    "select_test",
    "wasserstein_normalized",
    "z_test",
]

PSI = "psi"
KS = "ks"
CHI_SQUARED = "chi_squared"
JENSEN_SHANNON = "jensen_shannon"
WASSERSTEIN = "wasserstein"
Z_TEST = "z_test"
AUTO = "auto"
TESTS = (CHI_SQUARED, JENSEN_SHANNON, KS, PSI, WASSERSTEIN, Z_TEST)
ALIASES = {  # Evidently's names, accepted in Monitor.tests
    "chisquare": CHI_SQUARED,
    "jensenshannon": JENSEN_SHANNON,
    "wasserstein_normalized": WASSERSTEIN,
    "z": Z_TEST,
}
P_VALUE_TESTS = frozenset({KS, CHI_SQUARED, Z_TEST})
NUMERIC_ONLY_TESTS = frozenset({KS, WASSERSTEIN})
DEFAULT_THRESHOLDS: dict[str, float] = {
    KS: 0.05,  # p-value: drift when p <= 0.05 (95 % confidence, Evidently's default)
    CHI_SQUARED: 0.05,
    Z_TEST: 0.05,
    WASSERSTEIN: 0.1,  # distance >= 0.1 reference std (Evidently's default)
    JENSEN_SHANNON: 0.1,  # distance (base 2, in [0, 1]) >= 0.1 (Evidently's default)
    PSI: 0.2,  # >= 0.2 "significant shift" (credit-scoring convention; Evidently uses 0.1)
}
SMALL_REFERENCE = 1_000  # Evidently: <= 1,000 reference values -> p-value tests
FEW_VALUES = 5  # <= 5 distinct values (reference + current): treated as categories
BINARY_VALUES = 2  # <= 2 distinct values: two-proportion Z-test instead of chi-squared
MIN_SAMPLES = 100  # a window with fewer non-null values is "insufficient_data"
PSI_FLOOR = 1e-4  # an empty bin counts as 0.01 % of its sample, so PSI stays finite
STD_FLOOR = 0.001  # Wasserstein is divided by max(reference std, 0.001), as Evidently does
DATASET_DRIFT_SHARE = 0.5  # dataset drift when >= half of the tested columns drifted
ALPHA = 0.05  # Benjamini-Hochberg false discovery rate

EmptyBins = Literal["floor", "evidently"]
Status = Literal["drift", "no_drift", "insufficient_data", "no_data"]


@dataclass(frozen=True)
class Statistic:
    """One test's outcome. `exact`: computed from the reference's raw values (small references)
    or its complete value counts, rather than from its quantiles or top-K approximation."""

    statistic: float
    p_value: float | None
    exact: bool
    method: str = ""


# --- selection -----------------------------------------------------------------------------------


def n_unique(reference: ColumnProfile, current: Current) -> int:
    """Distinct values of reference and current together (Evidently's n_unique). Exact up to
    `FEW_VALUES`, which is all the default selection needs; above, a lower bound."""
    if reference.kind == NUMERIC and not (
        reference.frequencies_complete and reference.distinct <= FEW_VALUES
    ):
        return max(reference.distinct, FEW_VALUES + 1)
    if current.kind == NUMERIC:
        s = current.sorted_values
        if s.size and 1 + int(np.count_nonzero(s[1:] != s[:-1])) > FEW_VALUES:
            return max(reference.distinct, FEW_VALUES + 1)
    ref, complete = reference_value_counts(reference)
    if not complete:
        return max(reference.distinct, len(ref))
    return len(set(ref) | set(current_value_counts(current)))


def select_test(reference: ColumnProfile, current: Current) -> str:
    """Evidently's size-aware rule: with <= 1,000 reference values, KS for numbers with > 5
    distinct values, chi-squared for 3+ values, Z for <= 2; above, Wasserstein for numbers with
    > 5 distinct values and Jensen-Shannon otherwise. Distinct values count both samples."""
    n = n_unique(reference, current)
    numeric_many = reference.kind == NUMERIC and n > FEW_VALUES
    if reference.valid <= SMALL_REFERENCE:
        if numeric_many:
            return KS
        return CHI_SQUARED if n > BINARY_VALUES else Z_TEST
    return WASSERSTEIN if numeric_many else JENSEN_SHANNON


def resolve_test(name: str) -> str:
    """A canonical test name (or "auto"); Evidently's names are accepted as aliases."""
    canonical = ALIASES.get(name, name)
    if canonical != AUTO and canonical not in TESTS:
        raise DriftTestError(
            f"unknown drift test {name!r}; use one of {[AUTO, *TESTS]} "
            f"(or Evidently's names {sorted(ALIASES)})"
        )
    return canonical


# --- numeric tests -------------------------------------------------------------------------------


def _numeric(reference: ColumnProfile, current: Any, test: str) -> tuple[Current, np.ndarray]:
    if reference.kind != NUMERIC:
        raise DriftTestError(
            f"column {reference.name!r}: {test} needs a numeric column, it is {reference.kind}; "
            "use chi_squared, jensen_shannon, psi or z_test"
        )
    cur = prepare_current(reference, current)
    require_values(reference, cur, test)
    return cur, cur.sorted_values


KS_EXACT_LIMIT = 10_000  # scipy's ks_2samp computes exact p-values up to this sample size


def ks(reference: ColumnProfile, current: Any) -> Statistic:
    """Two-sample Kolmogorov-Smirnov, two-sided. Exact (the D and p scipy's ks_2samp gives on the
    raw reference) when the profile knows every value (<= 1,000 values or <= 1,000 distinct ones).
    Otherwise D is the exact sup distance to the piecewise-linear CDF through the reference
    quantiles, and p is scipy's asymptotic one (kstwo at n*m/(n+m))."""
    from scipy import stats

    _, xs = _numeric(reference, current, KS)
    m, n = float(reference.valid), xs.size
    atoms = reference_atoms(reference)
    if atoms is not None and max(m, n) <= KS_EXACT_LIMIT:
        with warnings.catch_warnings():  # scipy falls back to asymp itself when exact fails
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.ks_2samp(np.repeat(atoms[0], atoms[1].astype(np.int64)), xs)
        return Statistic(float(res.statistic), float(res.pvalue), True, "ks_2samp")
    if atoms is not None:
        d, exact, method = _ks_d_atoms(atoms, xs), True, "step CDF, asymptotic p"
    else:
        d, exact, method = _ks_d_quantiles(reference_cdf(reference), xs), False, "quantile CDF"
    p = float(stats.kstwo.sf(d, round(m * n / (m + n))))
    return Statistic(d, p, exact, method)


def _ks_d_atoms(atoms: tuple[np.ndarray, np.ndarray], xs: np.ndarray) -> float:
    """sup |F - G| for a step reference CDF: both are constant between reference values except
    for G's steps, so the extremes sit at the reference values (at and just before each)."""
    keys, counts = atoms
    f_at = np.cumsum(counts) / counts.sum()
    f_before = np.concatenate(([0.0], f_at[:-1]))
    g_at = np.searchsorted(xs, keys, side="right") / xs.size
    g_before = np.searchsorted(xs, keys, side="left") / xs.size
    g_after_gap = np.concatenate((g_before[1:], [1.0]))  # G just before the next reference value
    return float(
        max(
            np.max(np.abs(f_at - g_at)),
            np.max(np.abs(f_before - g_before)),
            np.max(np.abs(f_at - g_after_gap)),
        )
    )


def _ks_d_quantiles(rc: ReferenceCdf, xs: np.ndarray) -> float:
    """sup |F - G| for the piecewise-linear F: just before and at each current step, and at and
    just before each reference atom."""
    n = xs.size
    f_right, f_left = cdf_both(rc, xs)
    i = np.arange(n, dtype=np.float64)
    d_up = np.max((i + 1) / n - f_right)
    d_down = np.max(f_left - i / n)
    g_at = np.searchsorted(xs, rc.edges, side="right") / n
    g_before = np.searchsorted(xs, rc.edges, side="left") / n
    d_edges = max(np.max(np.abs(rc.u_last - g_at)), np.max(np.abs(rc.u_first - g_before)))
    return float(min(max(d_up, d_down, d_edges), 1.0))


def wasserstein_normalized(reference: ColumnProfile, current: Any) -> Statistic:
    """First Wasserstein distance / max(reference std, 0.001) (Evidently's normalisation).
    Exact when the profile knows every value (<= 1,000 values or <= 1,000 distinct ones): the
    integral of |Q_ref(u) - Q_cur(u)| over the merged steps of both quantile functions.
    Otherwise Q_ref is linear between the reference quantiles, integrated exactly against each
    current value's step."""
    _, xs = _numeric(reference, current, WASSERSTEIN)
    norm = max(float(reference.std or 0.0), STD_FLOOR)
    atoms = reference_atoms(reference)
    if atoms is not None:
        return Statistic(_w1_atoms(atoms, xs) / norm, None, True, "step quantile functions")
    n = xs.size
    q = reference_quantile_at(reference, np.arange(n + 1, dtype=np.float64) / n) / norm
    xs = xs / norm  # in reference stds first: values near the float limit would overflow below
    d1, d2 = q[:-1] - xs, q[1:] - xs
    area = np.abs(d1 + d2)  # twice the area of each step where the two do not cross
    cross = np.flatnonzero((d1 < 0) != (d2 < 0))
    c1, c2 = d1[cross], d2[cross]
    with np.errstate(invalid="ignore", divide="ignore"):
        area[cross] = np.nan_to_num((c1 * c1 + c2 * c2) / (np.abs(c1) + np.abs(c2)))
    w = float(np.sum(area)) / (2 * n)
    return Statistic(w, None, False, "quantile function, 1,055 levels")


def _w1_atoms(atoms: tuple[np.ndarray, np.ndarray], xs: np.ndarray) -> float:
    """Integral over u of |Q_ref(u) - Q_cur(u)|, both step functions, on their merged steps."""
    keys, counts = atoms
    n = xs.size
    ref_steps = np.cumsum(counts)[:-1] / counts.sum()  # where Q_ref moves to the next value
    grid = np.arange(n + 1, dtype=np.float64) / n
    u = np.insert(grid, np.searchsorted(grid, ref_steps), ref_steps)
    mid = (u[:-1] + u[1:]) / 2
    q_ref = keys[np.searchsorted(ref_steps, mid, side="right")]
    q_cur = xs[np.minimum((mid * n).astype(np.int64), n - 1)]
    return float(np.sum(np.abs(q_ref - q_cur) * np.diff(u)))


# --- binned tests (PSI, Jensen-Shannon) ----------------------------------------------------------


def psi_from_shares(
    reference_shares: np.ndarray, current_shares: np.ndarray, empty_bins: EmptyBins = "floor"
) -> float:
    """sum((c - r) * ln(c / r)). floor (ours): every share below PSI_FLOOR counts as PSI_FLOOR, the
    same constant whatever the data. evidently: a zero share becomes 0.0001, or the sample's
    smallest non-zero share / 10**6 when that is <= 0.0001 (so the result moves with the data)."""
    if empty_bins == "evidently":
        r, c = _evidently_fill(reference_shares), _evidently_fill(current_shares)
    else:
        r = np.maximum(reference_shares, PSI_FLOOR)
        c = np.maximum(current_shares, PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def _evidently_fill(shares: np.ndarray) -> np.ndarray:
    positive = shares[shares > 0]
    smallest = float(positive.min()) if positive.size else PSI_FLOOR
    fill = smallest / 10**6 if smallest <= PSI_FLOOR else PSI_FLOOR
    return np.where(shares == 0, fill, shares)


def psi(
    reference: ColumnProfile,
    current: Any,
    *,
    binning: Binning = "auto",
    empty_bins: EmptyBins = "floor",
) -> Statistic:
    """Population stability index. Default bins: the reference deciles (values for categories and
    numbers with <= 20 distinct reference values); empty bins floored at 0.0001. For a side-by-side
    with Evidently: binning="sturges", empty_bins="evidently" is its computation (exact when the
    profile keeps the reference values; otherwise the reference shares come from its quantiles)."""
    r, c, exact, used = binned_shares(reference, current, binning, auto="deciles")
    return Statistic(psi_from_shares(r, c, empty_bins), None, exact, used)


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2 (in [0, 1]), of two share vectors."""
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(math.sqrt(max((kl_p + kl_q) / 2, 0.0)))


def jensen_shannon(
    reference: ColumnProfile, current: Any, *, binning: Binning = "auto"
) -> Statistic:
    """Jensen-Shannon distance (base 2). Default bins as Evidently: values for categories and
    numbers with <= 20 distinct reference values, Sturges equal-width bins otherwise."""
    r, c, exact, used = binned_shares(reference, current, binning, auto="sturges")
    return Statistic(js_distance(r, c), None, exact, used)


# --- count tests (chi-squared, Z) ----------------------------------------------------------------


def chi_squared(
    reference: ColumnProfile,
    current: Any,
    *,
    method: Literal["homogeneity", "goodness_of_fit"] = "homogeneity",
) -> Statistic:
    """Chi-squared over value counts. homogeneity (default): the 2 x k contingency test of two
    samples (scipy chi2_contingency, no Yates correction); goodness_of_fit: Evidently's test of
    current counts against reference shares (scipy chisquare), which ignores the reference's
    own sampling noise and is infinite when a new value appears."""
    from scipy import stats

    cur = prepare_current(reference, current)
    require_values(reference, cur, CHI_SQUARED)
    _, r, c, complete = aligned_counts(reference, cur)
    if r.size < 2:
        return Statistic(0.0, 1.0, complete, method)
    if method == "goodness_of_fit":
        expected = r / r.sum() * c.sum()
        if np.any((expected == 0) & (c > 0)):
            return Statistic(math.inf, 0.0, complete, method)
        keep = expected > 0
        stat = float(np.sum((c[keep] - expected[keep]) ** 2 / expected[keep]))
        return Statistic(stat, float(stats.chi2.sf(stat, r.size - 1)), complete, method)
    table = np.vstack((r, c))
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    return Statistic(stat, float(stats.chi2.sf(stat, r.size - 1)), complete, method)


def z_test(reference: ColumnProfile, current: Any) -> Statistic:
    """Two-proportion Z-test (pooled, two-sided) of the share of the first value (in sorted
    order) in each sample; more than two values are split into that value vs the rest."""
    cur = prepare_current(reference, current)
    require_values(reference, cur, Z_TEST)
    _, r, c, complete = aligned_counts(reference, cur)
    if r.size < 2:
        return Statistic(0.0, 1.0, complete, "two-proportion")
    n1, n2 = float(r.sum()), float(c.sum())
    p1, p2 = r[0] / n1, c[0] / n2
    pooled = (r[0] + c[0]) / (n1 + n2)
    z = float((p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2)))
    return Statistic(z, math.erfc(abs(z) / math.sqrt(2)), complete, "two-proportion")


_RUNNERS = {
    PSI: psi,
    KS: ks,
    CHI_SQUARED: chi_squared,
    JENSEN_SHANNON: jensen_shannon,
    WASSERSTEIN: wasserstein_normalized,
    Z_TEST: z_test,
}


# --- one column ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnDrift:
    """The verdict for one column. `count` rows in the window, `nulls` (null/NaN) and `infinite`
    (+/-inf, nulled) dropped before testing; `reference_count`: non-null reference values."""

    column: str
    test: str | None
    statistic: float | None
    p_value: float | None
    threshold: float | None
    drifted: bool
    status: Status
    count: int
    nulls: int
    infinite: int
    reference_count: int
    exact: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (an infinite statistic, possible in goodness_of_fit, becomes None)."""
        out = dict(self.__dict__)
        for key in ("statistic", "p_value"):
            v = out[key]
            if v is not None and not math.isfinite(v):
                out[key] = None
        return out


def column_drift(
    reference: ColumnProfile,
    current: Any,
    *,
    test: str = AUTO,
    threshold: float | None = None,
    min_samples: int = MIN_SAMPLES,
) -> ColumnDrift:
    """Test one column's current window against its reference profile."""
    name = resolve_test(test)
    if name in NUMERIC_ONLY_TESTS and reference.kind != NUMERIC:
        raise DriftTestError(
            f"column {reference.name!r}: {name} needs a numeric column, it is {reference.kind}; "
            "use chi_squared, jensen_shannon, psi or z_test"
        )
    cur = prepare_current(reference, current)
    base = ColumnDrift(
        column=reference.name,
        test=None if name == AUTO else name,
        statistic=None,
        p_value=None,
        threshold=threshold,
        drifted=False,
        status="no_data",
        count=cur.count,
        nulls=cur.nulls,
        infinite=cur.infinite,
        reference_count=reference.valid,
        exact=False,
        reason="",
    )
    empty = _empty_reason(reference, cur, min_samples)
    if empty is not None:
        return replace(base, status=empty[0], reason=empty[1])
    name = select_test(reference, cur) if name == AUTO else name
    result = _RUNNERS[name](reference, cur)
    limit = DEFAULT_THRESHOLDS[name] if threshold is None else threshold
    drifted, reason = _verdict(name, result, limit, cur)
    return replace(
        base,
        test=name,
        statistic=result.statistic,
        p_value=result.p_value,
        threshold=limit,
        drifted=drifted,
        status="drift" if drifted else "no_drift",
        exact=result.exact,
        reason=reason,
    )


def _verdict(name: str, result: Statistic, limit: float, cur: Current) -> tuple[bool, str]:
    """(drifted, one-line reason): p-value tests drift at p <= limit, distances at >= limit."""
    if name in P_VALUE_TESTS:
        score = 1.0 if result.p_value is None else result.p_value
        drifted, label, op = score <= limit, f"{name} p=", ("<=" if score <= limit else ">")
    else:
        score = result.statistic
        drifted, label, op = score >= limit, f"{name} ", (">=" if score >= limit else "<")
    dropped = ""
    if cur.nulls or cur.infinite:
        dropped = f" ({cur.nulls} null and {cur.infinite} infinite dropped)"
    how = "exact" if result.exact else f"from the reference profile: {result.method}"
    return bool(drifted), (
        f"{label}{score:.4g} {op} {limit:g} on {cur.valid} values{dropped}, {how}: "
        + ("drift" if drifted else "no drift")
    )


def _empty_reason(
    reference: ColumnProfile, cur: Current, min_samples: int
) -> tuple[Status, str] | None:
    if reference.valid == 0:
        return "no_data", (
            f"the reference has no non-null values ({reference.count} rows, all null/NaN/inf): "
            "nothing to compare with"
        )
    if cur.valid == 0:
        if cur.count == 0:
            return "no_data", "no rows in the window"
        return "no_data", f"all {cur.count} values in the window are null/NaN/inf"
    if cur.valid < min_samples:
        return "insufficient_data", (
            f"only {cur.valid} non-null values in the window (min_samples {min_samples}): "
            "too few to tell drift from noise"
        )
    return None


# --- dataset --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetDrift:
    """Dataset-level verdict: drift when tested columns that drifted / tested columns >= share.
    Columns without a verdict (insufficient_data, no_data) are listed but not counted."""

    columns: tuple[ColumnDrift, ...]
    tested: int
    drifted_columns: int
    share: float
    share_threshold: float
    drifted: bool
    status: Literal["drift", "no_drift", "insufficient_data"]
    correction: str | None
    alpha: float


def dataset_drift(
    results: Sequence[ColumnDrift],
    share: float = DATASET_DRIFT_SHARE,
    correction: Literal["benjamini_hochberg"] | None = None,
    alpha: float = ALPHA,
) -> DatasetDrift:
    """Combine column verdicts. With correction="benjamini_hochberg", the p-value tests' verdicts
    are re-decided by Benjamini-Hochberg at false discovery rate `alpha` (distance tests keep
    their thresholds)."""
    if correction not in (None, "benjamini_hochberg"):
        raise DriftTestError(f"unknown correction {correction!r}; use None or 'benjamini_hochberg'")
    columns = list(results)
    if correction is not None:
        columns = _apply_bh(columns, alpha)
    tested = [c for c in columns if c.status in ("drift", "no_drift")]
    drifted = sum(1 for c in tested if c.drifted)
    frac = drifted / len(tested) if tested else 0.0
    is_drift = bool(tested) and frac >= share
    status: Literal["drift", "no_drift", "insufficient_data"] = (
        "insufficient_data" if not tested else ("drift" if is_drift else "no_drift")
    )
    return DatasetDrift(
        tuple(columns), len(tested), drifted, frac, share, is_drift, status, correction, alpha
    )


def _apply_bh(columns: list[ColumnDrift], alpha: float) -> list[ColumnDrift]:
    idx = [
        i
        for i, c in enumerate(columns)
        if c.status in ("drift", "no_drift") and c.test in P_VALUE_TESTS and c.p_value is not None
    ]
    rejected = benjamini_hochberg([columns[i].p_value or 0.0 for i in idx], alpha)
    out = list(columns)
    for i, rej in zip(idx, rejected, strict=True):
        c = columns[i]
        out[i] = replace(
            c,
            drifted=rej,
            status="drift" if rej else "no_drift",
            reason=f"{c.reason}; Benjamini-Hochberg over {len(idx)} p-values at FDR {alpha:g}: "
            + ("drift" if rej else "no drift"),
        )
    return out


def benjamini_hochberg(p_values: Sequence[float], alpha: float = ALPHA) -> tuple[bool, ...]:
    """Which hypotheses the Benjamini-Hochberg step-up procedure rejects at false discovery rate
    `alpha`: all p-values up to the largest p_(k) <= k/m * alpha (k-th smallest of m)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return ()
    order = np.argsort(p, kind="stable")
    below = p[order] <= np.arange(1, m + 1) / m * alpha
    k = int(np.max(np.flatnonzero(below))) + 1 if below.any() else 0
    reject = np.zeros(m, dtype=bool)
    reject[order[:k]] = True
    return tuple(bool(r) for r in reject)


def benjamini_hochberg_adjusted(p_values: Sequence[float]) -> tuple[float, ...]:
    """BH-adjusted p-values (q-values): min over j >= i of m/j * p_(j), capped at 1."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return ()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    out = np.empty(m)
    out[order] = adjusted
    return tuple(float(v) for v in out)
