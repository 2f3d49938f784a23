"""The two samples as the drift tests read them: the current window prepared once (finite values
sorted, or value counts) and the reference distribution rebuilt from its profile (values, value
counts, quantile CDF, bins). Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
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

Binning = Literal["auto", "deciles", "sturges", "values"]


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

OTHER = "\x00other"  # bucket for values outside an incomplete reference top-K


def current_value_counts(cur: Current) -> dict[Scalar, int]:
    if cur.kind != NUMERIC:
        return dict(zip(cur.keys, cur.counts, strict=True))
    s = cur.sorted_values
    if s.size == 0:
        return {}
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    counts = np.diff(np.concatenate((starts, [s.size])))
    return dict(zip(s[starts].tolist(), counts.tolist(), strict=True))


def reference_value_counts(ref: ColumnProfile) -> tuple[dict[Scalar, int], bool]:
    """(value -> count, complete). Incomplete top-K tables carry the rest under OTHER."""
    if ref.values is not None:
        out: dict[Scalar, int] = {}
        for v in ref.values:
            out[v] = out.get(v, 0) + 1
        return out, True
    table = dict(ref.frequencies)
    if ref.frequencies_complete:
        return table, True
    table[OTHER] = ref.other
    return table, False


def aligned_counts(
    reference: ColumnProfile, current: Current
) -> tuple[list[Scalar], np.ndarray, np.ndarray, bool]:
    """Reference and current counts over the union of their values (sorted). When the reference
    keeps only its top-K, current values outside it are counted in one "other" bucket."""
    ref, complete = reference_value_counts(reference)
    cur = current_value_counts(current)
    if not complete:
        folded: dict[Scalar, int] = {}
        for k, n in cur.items():
            key = k if k in ref else OTHER
            folded[key] = folded.get(key, 0) + n
        cur = folded
    keys = sorted(set(ref) | set(cur), key=lambda k: (k == OTHER, k))
    r = np.array([ref.get(k, 0) for k in keys], dtype=np.float64)
    c = np.array([cur.get(k, 0) for k in keys], dtype=np.float64)
    return keys, r, c, complete


def value_binnable(reference: ColumnProfile) -> bool:
    if reference.kind != NUMERIC:
        return True
    return reference.frequencies_complete and reference.distinct <= VALUE_BINNING_LIMIT


# --- the reference distribution from its quantiles -----------------------------------------------


@dataclass(frozen=True)
class ReferenceCdf:
    """The reference CDF through its quantiles (piecewise linear; a repeated quantile is an atom).
    F(edges[k]) = u_last[k]; the left limit F(edges[k]-) = u_first[k]."""

    edges: np.ndarray
    u_first: np.ndarray
    u_last: np.ndarray


def reference_cdf(reference: ColumnProfile) -> ReferenceCdf:
    q = np.asarray(reference.quantiles, dtype=np.float64)
    u = quantile_levels()
    starts = np.flatnonzero(np.concatenate(([True], q[1:] != q[:-1])))
    ends = np.concatenate((starts[1:] - 1, [q.size - 1]))
    return ReferenceCdf(q[starts], u[starts], u[ends])


def cdf_both(rc: ReferenceCdf, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F(x), F(x-)) of the piecewise-linear reference CDF, one search for both."""
    e = rc.edges
    k = np.searchsorted(e, x, side="right") - 1  # largest edge <= x
    kk = np.clip(k, 0, max(e.size - 2, 0))
    if e.size > 1:
        slope = (rc.u_first[kk + 1] - rc.u_last[kk]) / (e[kk + 1] - e[kk])
        inner = rc.u_last[kk] + (x - e[kk]) * slope
    else:
        inner = np.ones_like(x)
    right = np.where(k < 0, 0.0, np.where(k >= e.size - 1, 1.0, inner))
    k0 = np.clip(k, 0, None)
    left = np.where((k >= 0) & (e[k0] == x), rc.u_first[k0], right)
    return right, left


def cdf_left(rc: ReferenceCdf, x: np.ndarray) -> np.ndarray:
    return cdf_both(rc, x)[1]


def reference_quantile_at(reference: ColumnProfile, u: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.interp(u, quantile_levels(), np.asarray(reference.quantiles))
    return out


def reference_atoms(reference: ColumnProfile) -> tuple[np.ndarray, np.ndarray] | None:
    """(sorted distinct values, counts) of a numeric reference when the profile knows them all:
    its values (<= 1,000) or a complete frequency table (<= 1,000 distinct values); else None."""
    if reference.kind != NUMERIC or reference.valid == 0:
        return None
    if reference.values is not None:
        keys, counts = np.unique(np.asarray(reference.values, dtype=np.float64), return_counts=True)
        return keys, counts.astype(np.float64)
    if not reference.frequencies_complete:
        return None
    pairs = sorted((float(v), c) for v, c in reference.frequencies)
    return np.array([v for v, _ in pairs]), np.array([c for _, c in pairs], dtype=np.float64)


def require_values(reference: ColumnProfile, cur: Current, test: str) -> None:
    if reference.valid == 0 or cur.valid == 0:
        raise DriftTestError(
            f"column {reference.name!r}: {test} needs values on both sides (reference "
            f"{reference.valid}, current {cur.valid} non-null); column_drift reports it as no_data"
        )


# --- bins (PSI, Jensen-Shannon) ------------------------------------------------------------------


def binned_shares(
    reference: ColumnProfile, current: Any, binning: Binning = "auto", *, auto: Binning = "deciles"
) -> tuple[np.ndarray, np.ndarray, bool, str]:
    """(reference shares, current shares, exact, binning used) over common bins.
    values: one bin per value (categories; numbers with <= 20 distinct reference values);
    deciles: the reference deciles stored in the profile, out-of-range mass in the edge bins;
    sturges: Evidently's equal-width bins over the range of both samples, ceil(log2(n) + 1) of them,
    the reference's share per bin read from its quantile CDF unless the profile keeps its values."""
    cur = prepare_current(reference, current)
    require_values(reference, cur, "binning")
    if binning == "auto":
        binning = "values" if value_binnable(reference) else auto
    if binning == "values" or reference.kind != NUMERIC:
        _, r, c, complete = aligned_counts(reference, cur)
        return r / r.sum(), c / c.sum(), complete, "values"
    xs = cur.sorted_values
    if binning == "deciles":
        if not reference.psi_edges:  # few distinct values: no decile edges were stored
            return binned_shares(reference, cur, "values")
        edges = np.asarray(reference.psi_edges)
        r = np.asarray(reference.psi_counts, dtype=np.float64)
        return r / r.sum(), counts_in(xs, edges) / xs.size, True, "deciles"
    if binning == "sturges":
        return sturges_shares(reference, xs)
    raise DriftTestError(
        f"column {reference.name!r}: unknown binning {binning!r}; "
        "use auto, deciles, sturges or values"
    )


def counts_in(sorted_x: np.ndarray, interior_edges: np.ndarray) -> np.ndarray:
    """Counts per bin [e[i-1], e[i]) with open end bins, from sorted values."""
    below = np.searchsorted(sorted_x, interior_edges, side="left")
    return np.diff(np.concatenate(([0], below, [sorted_x.size]))).astype(np.float64)


def sturges_edges(lo: float, hi: float, n: int) -> np.ndarray:
    """The edges np.histogram_bin_edges(bins="sturges") gives for n values spanning [lo, hi]."""
    if hi <= lo:
        return np.array([lo - 0.5, hi + 0.5])
    span = hi - lo
    if not math.isfinite(span):  # the values span more than a float can hold: edges at half scale
        bins = math.ceil(math.log2(max(n, 1)) + 1.0)
        return _spaced(lo / 2, hi / 2 - lo / 2, bins) * 2
    width = span / (math.log2(max(n, 1)) + 1.0)
    return _spaced(lo, span, math.ceil(span / width))


def _spaced(lo: float, span: float, bins: int) -> np.ndarray:
    """`bins + 1` evenly spaced edges from lo to lo + span, computed as lo + t * span with t in
    [0, 1] so no intermediate exceeds the largest float (np.linspace's can, near it)."""
    edges = lo + np.linspace(0.0, 1.0, bins + 1) * span
    edges[-1] = lo + span
    return edges


def sturges_shares(ref: ColumnProfile, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, str]:
    lo = min(float(ref.min or 0.0), float(xs[0]))
    hi = max(float(ref.max or 0.0), float(xs[-1]))
    edges = sturges_edges(lo, hi, ref.valid + xs.size)
    inner = edges[1:-1]
    cur = counts_in(xs, inner) / xs.size
    atoms = reference_atoms(ref)  # every reference value known (values or a complete table)
    if atoms is not None:
        keys, counts = atoms
        r = np.bincount(np.searchsorted(inner, keys, side="right"), counts, inner.size + 1)
        return r / r.sum(), cur, True, "sturges"
    below = cdf_left(reference_cdf(ref), inner)
    r = np.diff(np.concatenate(([0.0], below, [1.0])))
    return np.clip(r, 0.0, None), cur, False, "sturges"


# --- for plots ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overlay:
    """Reference and current shares over common bins, for drawing the two distributions overlaid:
    `labels` (one per value) for categories and few-valued numbers, else `edges` (len(shares) + 1;
    mass beyond the outer edges is drawn in the outer bins)."""

    labels: tuple[Scalar, ...]
    edges: tuple[float, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]


def overlay(reference: ColumnProfile, current: Any, bins: int = 30) -> Overlay:
    """Bins for a plot: values as in the tests, else `bins` equal-width bins between the 0.1 % and
    99.9 % quantiles of both samples (so one outlier does not flatten the picture)."""
    cur = prepare_current(reference, current)
    require_values(reference, cur, "overlay")
    if value_binnable(reference):
        keys, r, c, _ = aligned_counts(reference, cur)
        labels = tuple("other" if k == OTHER else k for k in keys)
        return Overlay(labels, (), _shares(r), _shares(c))
    xs = cur.sorted_values
    ref_q = reference_quantile_at(reference, np.array([0.001, 0.999]))
    cur_q = xs[[int(0.001 * (xs.size - 1)), int(0.999 * (xs.size - 1))]]
    lo, hi = float(min(ref_q[0], cur_q[0])), float(max(ref_q[1], cur_q[1]))
    edges = np.linspace(lo, hi, bins + 1) if hi > lo else np.array([lo - 0.5, lo + 0.5])
    inner = edges[1:-1]
    c = counts_in(xs, inner)
    if reference.values is not None:
        r = counts_in(np.asarray(reference.values, dtype=np.float64), inner)
    else:
        r = np.diff(np.concatenate(([0.0], cdf_left(reference_cdf(reference), inner), [1.0])))
    return Overlay((), tuple(edges.tolist()), _shares(r), _shares(c))


def _shares(counts: np.ndarray) -> tuple[float, ...]:
    total = float(np.sum(counts))
    return tuple((np.clip(counts, 0.0, None) / total).tolist()) if total > 0 else ()
