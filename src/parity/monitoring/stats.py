"""Drift statistics of current raw values against a reference `ColumnProfile` (PSI, KS, chi-squared,
Jensen-Shannon, normalised Wasserstein, two-proportion Z), Evidently's size-aware default test
selection, dataset drift and Benjamini-Hochberg. Pure: values in, values out; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from parity.errors import DriftTestError
from parity.monitoring.profile import (
    NUMERIC,
    VALUE_BINNING_LIMIT,
    ColumnProfile,
    Kind,
    Scalar,
    as_arrow,
    discrete_counts,
    numeric_values,
    quantile_levels,
)

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

Status = Literal["drift", "no_drift", "insufficient_data", "no_data"]
Binning = Literal["auto", "deciles", "sturges", "values"]


@dataclass(frozen=True)
class Statistic:
    """One test's outcome. `exact`: computed from the reference's raw values (small references)
    or its complete value counts, rather than from its quantiles or top-K approximation."""

    statistic: float
    p_value: float | None
    exact: bool
    method: str = ""


@dataclass(frozen=True)
class Current:
    """Current window values prepared once for every test: finite values sorted (numeric) or value
    counts (categorical/boolean). Nulls and NaN are dropped, +/-inf nulled; both are counted."""

    kind: Kind
    count: int
    nulls: int
    infinite: int
    sorted_values: np.ndarray = field(default_factory=lambda: np.empty(0))
    keys: tuple[Scalar, ...] = ()
    counts: tuple[int, ...] = ()

    @property
    def valid(self) -> int:
        return self.count - self.nulls - self.infinite


def prepare_current(reference: ColumnProfile, values: Any) -> Current:
    """Read `values` (Arrow, numpy or a sequence) as the reference's kind."""
    if isinstance(values, Current):
        return values
    arr = as_arrow(values)
    try:
        if reference.kind == NUMERIC:
            x, nulls, infinite = numeric_values(arr)
            return Current(NUMERIC, len(arr), nulls, infinite, sorted_values=np.sort(x))
        keys, counts, nulls = discrete_counts(arr, reference.kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise DriftTestError(
            f"column {reference.name!r}: current values of type {arr.type} cannot be read as "
            f"{reference.kind} like the reference ({exc}); log the column with the same type"
        ) from exc
    return Current(reference.kind, len(arr), nulls, 0, keys=tuple(keys), counts=tuple(counts))


# --- value counts (categories, few-valued numbers) -----------------------------------------------

_OTHER = "\x00other"  # bucket for values outside an incomplete reference top-K


def _current_value_counts(cur: Current) -> dict[Scalar, int]:
    if cur.kind != NUMERIC:
        return dict(zip(cur.keys, cur.counts, strict=True))
    s = cur.sorted_values
    if s.size == 0:
        return {}
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    counts = np.diff(np.concatenate((starts, [s.size])))
    return dict(zip(s[starts].tolist(), counts.tolist(), strict=True))


def _reference_value_counts(ref: ColumnProfile) -> tuple[dict[Scalar, int], bool]:
    """(value -> count, complete). Incomplete top-K tables carry the rest under _OTHER."""
    if ref.values is not None:
        out: dict[Scalar, int] = {}
        for v in ref.values:
            out[v] = out.get(v, 0) + 1
        return out, True
    table = dict(ref.frequencies)
    if ref.frequencies_complete:
        return table, True
    table[_OTHER] = ref.other
    return table, False


def aligned_counts(
    reference: ColumnProfile, current: Current
) -> tuple[list[Scalar], np.ndarray, np.ndarray, bool]:
    """Reference and current counts over the union of their values (sorted). When the reference
    keeps only its top-K, current values outside it are counted in one "other" bucket."""
    ref, complete = _reference_value_counts(reference)
    cur = _current_value_counts(current)
    if not complete:
        folded: dict[Scalar, int] = {}
        for k, n in cur.items():
            key = k if k in ref else _OTHER
            folded[key] = folded.get(key, 0) + n
        cur = folded
    keys = sorted(set(ref) | set(cur), key=lambda k: (k == _OTHER, k))
    r = np.array([ref.get(k, 0) for k in keys], dtype=np.float64)
    c = np.array([cur.get(k, 0) for k in keys], dtype=np.float64)
    return keys, r, c, complete


def _value_binnable(reference: ColumnProfile) -> bool:
    if reference.kind != NUMERIC:
        return True
    return reference.frequencies_complete and reference.distinct <= VALUE_BINNING_LIMIT


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
    ref, complete = _reference_value_counts(reference)
    if not complete:
        return max(reference.distinct, len(ref))
    return len(set(ref) | set(_current_value_counts(current)))


# --- default selection ---------------------------------------------------------------------------


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


# --- the reference distribution from its quantiles -----------------------------------------------


@dataclass(frozen=True)
class _RefCdf:
    """The reference CDF through its quantiles (piecewise linear; a repeated quantile is an atom).
    F(edges[k]) = u_last[k]; the left limit F(edges[k]-) = u_first[k]."""

    edges: np.ndarray
    u_first: np.ndarray
    u_last: np.ndarray


def _ref_cdf(reference: ColumnProfile) -> _RefCdf:
    q = np.asarray(reference.quantiles, dtype=np.float64)
    u = quantile_levels()
    starts = np.flatnonzero(np.concatenate(([True], q[1:] != q[:-1])))
    ends = np.concatenate((starts[1:] - 1, [q.size - 1]))
    return _RefCdf(q[starts], u[starts], u[ends])


def _cdf(rc: _RefCdf, x: np.ndarray, *, left: bool) -> np.ndarray:
    """F(x) (or F(x-) with left=True) of the piecewise-linear reference CDF."""
    e = rc.edges
    k = np.searchsorted(e, x, side="right") - 1  # largest edge <= x
    kk = np.clip(k, 0, max(e.size - 2, 0))
    if e.size > 1:
        span = e[kk + 1] - e[kk]
        inner = rc.u_last[kk] + (x - e[kk]) / span * (rc.u_first[kk + 1] - rc.u_last[kk])
    else:
        inner = np.ones_like(x)
    f = np.where(k < 0, 0.0, np.where(k >= e.size - 1, 1.0, inner))
    if left:
        hit = (k >= 0) & (e[np.clip(k, 0, None)] == x)
        f = np.where(hit, rc.u_first[np.clip(k, 0, None)], f)
    return f


def _ref_quantile_at(reference: ColumnProfile, u: np.ndarray) -> np.ndarray:
    q = np.asarray(reference.quantiles, dtype=np.float64)
    pos = u * (q.size - 1)
    j = np.clip(np.floor(pos).astype(np.int64), 0, q.size - 2)
    out: np.ndarray = q[j] + (pos - j) * (q[j + 1] - q[j])
    return out


# --- numeric tests -------------------------------------------------------------------------------


def _numeric(reference: ColumnProfile, current: Any, test: str) -> tuple[Current, np.ndarray]:
    if reference.kind != NUMERIC:
        raise DriftTestError(
            f"column {reference.name!r}: {test} needs a numeric column, it is {reference.kind}; "
            "use chi_squared, jensen_shannon, psi or z_test"
        )
    cur = prepare_current(reference, current)
    _require_values(reference, cur, test)
    return cur, cur.sorted_values


def _require_values(reference: ColumnProfile, cur: Current, test: str) -> None:
    if reference.valid == 0 or cur.valid == 0:
        raise DriftTestError(
            f"column {reference.name!r}: {test} needs values on both sides (reference "
            f"{reference.valid}, current {cur.valid} non-null); column_drift reports it as no_data"
        )


def ks(reference: ColumnProfile, current: Any) -> Statistic:
    """Two-sample Kolmogorov-Smirnov. Exact (scipy's ks_2samp) when the profile keeps its values;
    otherwise D is the exact sup distance to the piecewise-linear CDF through the 1,001 reference
    quantiles and p comes from scipy's asymptotic distribution (kstwo with n*m/(n+m))."""
    from scipy import stats

    _, xs = _numeric(reference, current, KS)
    if reference.values is not None:
        res = stats.ks_2samp(np.asarray(reference.values, dtype=np.float64), xs)
        return Statistic(float(res.statistic), float(res.pvalue), True, "ks_2samp")
    rc, n = _ref_cdf(reference), xs.size
    i = np.arange(n, dtype=np.float64)
    d_up = np.max((i + 1) / n - _cdf(rc, xs, left=False))
    d_down = np.max(_cdf(rc, xs, left=True) - i / n)
    g_at = np.searchsorted(xs, rc.edges, side="right") / n
    g_before = np.searchsorted(xs, rc.edges, side="left") / n
    d_edges = max(np.max(np.abs(rc.u_last - g_at)), np.max(np.abs(rc.u_first - g_before)))
    d = float(min(max(d_up, d_down, d_edges), 1.0))
    m = float(reference.valid)
    en = round(m * n / (m + n))
    return Statistic(d, float(stats.kstwo.sf(d, en)), False, "quantile CDF, asymptotic p")


def wasserstein_normalized(reference: ColumnProfile, current: Any) -> Statistic:
    """First Wasserstein distance / max(reference std, 0.001). Exact (scipy) when the profile keeps
    its values; otherwise the integral of |Q_ref(u) - Q_cur(u)| with Q_ref linear between the 1,001
    reference quantiles, integrated exactly over each current value's step."""
    from scipy import stats

    _, xs = _numeric(reference, current, WASSERSTEIN)
    norm = max(float(reference.std or 0.0), STD_FLOOR)
    if reference.values is not None:
        w = stats.wasserstein_distance(np.asarray(reference.values, dtype=np.float64), xs)
        return Statistic(float(w) / norm, None, True, "wasserstein_distance")
    n = xs.size
    q = _ref_quantile_at(reference, np.arange(n + 1, dtype=np.float64) / n)
    d1, d2 = q[:-1] - xs, q[1:] - xs
    same = d1 * d2 >= 0
    a1, a2 = np.abs(d1), np.abs(d2)
    with np.errstate(invalid="ignore", divide="ignore"):
        crossing = (d1 * d1 + d2 * d2) / (2 * (a1 + a2))
    area = np.where(same, np.abs(d1 + d2) / 2, crossing)
    w = float(np.sum(area)) / n
    return Statistic(w / norm, None, False, "quantile function, 1,001 levels")


# --- binned tests (PSI, Jensen-Shannon) ----------------------------------------------------------


def binned_shares(
    reference: ColumnProfile, current: Any, binning: Binning = "auto", *, auto: Binning = "deciles"
) -> tuple[np.ndarray, np.ndarray, bool, str]:
    """(reference shares, current shares, exact, binning used) over common bins.
    values: one bin per value (categories; numbers with <= 20 distinct reference values);
    deciles: the reference deciles stored in the profile, out-of-range mass in the edge bins;
    sturges: Evidently's equal-width bins over the range of both samples, sqrt-free Sturges count,
    the reference's share per bin read from its quantile CDF unless the profile keeps its values."""
    cur = prepare_current(reference, current)
    _require_values(reference, cur, "binning")
    if binning == AUTO:
        binning = "values" if _value_binnable(reference) else auto
    if binning == "values" or reference.kind != NUMERIC:
        _, r, c, complete = aligned_counts(reference, cur)
        return r / r.sum(), c / c.sum(), complete, "values"
    xs = cur.sorted_values
    if binning == "deciles":
        if not reference.psi_edges:  # few distinct values: no decile edges were stored
            return binned_shares(reference, cur, "values")
        edges = np.asarray(reference.psi_edges)
        r = np.asarray(reference.psi_counts, dtype=np.float64)
        return r / r.sum(), _counts_in(xs, edges) / xs.size, True, "deciles"
    if binning == "sturges":
        return _sturges_shares(reference, xs)
    raise DriftTestError(
        f"column {reference.name!r}: unknown binning {binning!r}; "
        "use auto, deciles, sturges or values"
    )


def _counts_in(sorted_x: np.ndarray, interior_edges: np.ndarray) -> np.ndarray:
    """Counts per bin [e[i-1], e[i]) with open end bins, from sorted values."""
    below = np.searchsorted(sorted_x, interior_edges, side="left")
    return np.diff(np.concatenate(([0], below, [sorted_x.size]))).astype(np.float64)


def sturges_edges(lo: float, hi: float, n: int) -> np.ndarray:
    """The edges np.histogram_bin_edges(bins="sturges") gives for n values spanning [lo, hi]."""
    if hi <= lo:
        return np.array([lo - 0.5, hi + 0.5])
    width = (hi - lo) / (math.log2(n) + 1.0)
    return np.linspace(lo, hi, math.ceil((hi - lo) / width) + 1)


def _sturges_shares(ref: ColumnProfile, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, str]:
    lo = min(float(ref.min or 0.0), float(xs[0]))
    hi = max(float(ref.max or 0.0), float(xs[-1]))
    edges = sturges_edges(lo, hi, ref.valid + xs.size)
    inner = edges[1:-1]
    cur = _counts_in(xs, inner) / xs.size
    if ref.values is not None:
        r = _counts_in(np.asarray(ref.values, dtype=np.float64), inner)
        return r / r.sum(), cur, True, "sturges"
    below = _cdf(_ref_cdf(ref), inner, left=True)
    r = np.diff(np.concatenate(([0.0], below, [1.0])))
    return np.clip(r, 0.0, None), cur, False, "sturges"


def psi_from_shares(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """sum((c - r) * ln(c / r)) with every share floored at PSI_FLOOR (never infinite)."""
    r = np.maximum(reference_shares, PSI_FLOOR)
    c = np.maximum(current_shares, PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def psi(reference: ColumnProfile, current: Any, *, binning: Binning = "auto") -> Statistic:
    """Population stability index. Default bins: the reference deciles (values for categories and
    numbers with <= 20 distinct reference values); empty bins floored at 0.0001."""
    r, c, exact, used = binned_shares(reference, current, binning, auto="deciles")
    return Statistic(psi_from_shares(r, c), None, exact, used)


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
    _require_values(reference, cur, CHI_SQUARED)
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
    _require_values(reference, cur, Z_TEST)
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
        status, reason = empty
        return replace(base, status=status, reason=reason)
    if name == AUTO:
        name = select_test(reference, cur)
    if name in NUMERIC_ONLY_TESTS and reference.kind != NUMERIC:
        raise DriftTestError(
            f"column {reference.name!r}: {name} needs a numeric column, it is {reference.kind}; "
            "use chi_squared, jensen_shannon, psi or z_test"
        )
    result = _RUNNERS[name](reference, cur)
    limit = DEFAULT_THRESHOLDS[name] if threshold is None else threshold
    if name in P_VALUE_TESTS:
        score = 1.0 if result.p_value is None else result.p_value
        drifted, sign = score <= limit, ("<=", ">")
    else:
        score = result.statistic
        drifted, sign = score >= limit, (">=", "<")
    return replace(
        base,
        test=name,
        statistic=result.statistic,
        p_value=result.p_value,
        threshold=limit,
        drifted=bool(drifted),
        status="drift" if drifted else "no_drift",
        exact=result.exact,
        reason=_verdict_reason(name, score, limit, sign[0] if drifted else sign[1], cur, result),
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


def _verdict_reason(
    name: str, score: float, limit: float, op: str, cur: Current, result: Statistic
) -> str:
    label = f"{name} p=" if name in P_VALUE_TESTS else f"{name} "
    dropped = ""
    if cur.nulls or cur.infinite:
        dropped = f" ({cur.nulls} null and {cur.infinite} infinite dropped)"
    how = "exact" if result.exact else f"from the reference profile: {result.method}"
    verdict = "drift" if op in ("<=", ">=") else "no drift"
    return f"{label}{score:.4g} {op} {limit:g} on {cur.valid} values{dropped}, {how}: {verdict}"


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
