"""Reference profiles: per-column summaries (counts, exact or KLL quantiles, PSI histogram, top-K
frequencies) computed from Arrow/numpy values, mergeable and lossless through JSON.
Pure: no I/O, no registry or store imports; datasketches is imported only where a sketch is made.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parity.errors import ProfileError

Kind = Literal["numeric", "categorical", "boolean"]
Scalar = float | str | bool

NUMERIC: Kind = "numeric"
CATEGORICAL: Kind = "categorical"
BOOLEAN: Kind = "boolean"

QUANTILE_STEP = 0.001
"""Quantiles at 0, 0.001, ..., 1 (a 0.1 % rank grid) ..."""
TAIL_LEVELS = tuple(m * 10.0**-e for e in (4, 5, 6) for m in range(1, 10))
"""... plus 1e-6..9e-4 and 1 minus those: heavy tails (amounts, prices) would otherwise be drawn
as a straight line from the 99.9 % quantile to the maximum, which overstates Wasserstein."""
EXACT_QUANTILE_LIMIT = 10_000_000
"""Up to this many finite values the quantiles are exact (one sort); above, they come from the KLL
sketch (rank error `KLL_K` below)."""
KLL_K = 400
"""KLL accuracy parameter: normalised rank error ~0.7 % (single quantile) at ~10 KB per column."""
VALUES_LIMIT = 1_000
"""Columns with at most this many non-null values keep the values themselves, so the small-
reference tests (KS, chi-squared, Z) are exact, as on raw data (Evidently's <= 1,000 rule)."""
TOP_K = 100
NUMERIC_TABLE_LIMIT = 1_000  # a number keeps its complete table up to this many distinct values
"""Frequencies kept per column (the rest is one "other" count); numeric columns keep them only
when they have at most this many distinct values (then the table is complete)."""
PSI_BINS = 10
"""PSI bins: reference deciles (the usual credit-scoring convention)."""
VALUE_BINNING_LIMIT = 20
"""Numeric columns with at most this many distinct reference values are binned by value (PSI,
JS), as Evidently does."""
PROFILE_FORMAT = 1


@dataclass(frozen=True)
class ColumnProfile:
    """Summary of one column. `count` includes nulls; `nulls` counts null and NaN, `infinite` +/-inf
    (both are dropped before any test); `valid` = count - nulls - infinite."""

    name: str
    kind: Kind
    count: int
    nulls: int
    infinite: int
    distinct: int
    distinct_exact: bool = True
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None  # population std (ddof=0), as Evidently normalises Wasserstein
    quantiles: tuple[float, ...] = ()  # at quantile_levels(): 0..1 by 0.001 plus tail levels
    quantiles_exact: bool = True
    sketch: str | None = None  # base64 of a serialized KLL doubles sketch (numeric columns)
    values: tuple[Scalar, ...] | None = None  # sorted valid values when valid <= VALUES_LIMIT
    psi_edges: tuple[float, ...] = ()  # interior edges: bin i is [edges[i-1], edges[i])
    psi_counts: tuple[int, ...] = ()  # len(psi_edges) + 1 counts of reference values
    frequencies: tuple[tuple[Scalar, int], ...] = ()  # top-K (value, count), count desc
    other: int = 0  # valid values not in `frequencies`

    @property
    def valid(self) -> int:
        return self.count - self.nulls - self.infinite

    @property
    def frequencies_complete(self) -> bool:
        """True when `frequencies` lists every distinct valid value (nothing in "other")."""
        return self.other == 0 and (self.valid == 0 or bool(self.frequencies))


@dataclass(frozen=True)
class Profile:
    """Profiles of a table's columns, tied to the data they came from (dataset, fingerprint)."""

    rows: int
    columns: Mapping[str, ColumnProfile]
    dataset: str | None = None
    fingerprint: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> str:
        """Lossless JSON (floats are written with repr, so they read back bit for bit)."""
        body = {
            "format": PROFILE_FORMAT,
            "rows": self.rows,
            "dataset": self.dataset,
            "fingerprint": self.fingerprint,
            "created_at": self.created_at.isoformat(),
            "columns": [asdict(c) for c in self.columns.values()],
        }
        return json.dumps(body, allow_nan=False, separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> Profile:
        try:
            body = json.loads(text)
            columns = [_column_from_dict(c) for c in body["columns"]]
            return Profile(
                rows=int(body["rows"]),
                columns={c.name: c for c in columns},
                dataset=body.get("dataset"),
                fingerprint=body.get("fingerprint"),
                created_at=datetime.fromisoformat(body["created_at"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(
                f"not a Parity profile JSON ({type(exc).__name__}: {exc}); "
                "recompute the profile with profile_table"
            ) from exc


def _column_from_dict(d: dict[str, Any]) -> ColumnProfile:
    values = d.get("values")
    return ColumnProfile(
        name=d["name"],
        kind=d["kind"],
        count=d["count"],
        nulls=d["nulls"],
        infinite=d["infinite"],
        distinct=d["distinct"],
        distinct_exact=d["distinct_exact"],
        min=d["min"],
        max=d["max"],
        mean=d["mean"],
        std=d["std"],
        quantiles=tuple(d["quantiles"]),
        quantiles_exact=d["quantiles_exact"],
        sketch=d["sketch"],
        values=None if values is None else tuple(values),
        psi_edges=tuple(d["psi_edges"]),
        psi_counts=tuple(d["psi_counts"]),
        frequencies=tuple((v, c) for v, c in d["frequencies"]),
        other=d["other"],
    )


def quantile_levels() -> np.ndarray:
    """The fixed levels of `ColumnProfile.quantiles`: 0, 0.001, ..., 1 and the tail levels
    (1e-6 ... 9e-4 and one minus those), sorted; 1,055 levels."""
    grid = np.arange(1001) / 1000.0
    tails = np.asarray(TAIL_LEVELS)
    levels: np.ndarray = np.unique(np.concatenate((grid, tails, 1.0 - tails)))
    return levels


def _decile_positions() -> np.ndarray:
    """Indices of the interior deciles 0.1 .. 0.9 in quantile_levels()."""
    levels = quantile_levels()
    targets = np.arange(1, PSI_BINS) / PSI_BINS
    idx: np.ndarray = np.searchsorted(levels, targets - 1e-12)
    return idx


# --- computing ----------------------------------------------------------------------------------


def profile_table(
    table: pa.Table,
    columns: Sequence[str] | None = None,
    *,
    dataset: str | None = None,
    fingerprint: str | None = None,
    created_at: datetime | None = None,
) -> Profile:
    """Profile `columns` (default: all) of an Arrow table."""
    names = list(table.column_names if columns is None else columns)
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise ProfileError(
            f"column(s) {missing} not in the table (it has {table.column_names}); "
            "pass names of existing columns"
        )
    return Profile(
        rows=table.num_rows,
        columns={n: profile_column(n, table.column(n)) for n in names},
        dataset=dataset,
        fingerprint=fingerprint,
        created_at=created_at or datetime.now(UTC),
    )


def profile_column(name: str, values: Any, *, kind: Kind | None = None) -> ColumnProfile:
    """Profile one column: a pyarrow Array/ChunkedArray, numpy array or Python sequence.
    `kind` is inferred from the type (numbers: numeric, bool: boolean, anything else:
    categorical)."""
    arr = as_arrow(values)
    kind = kind or infer_kind(arr.type)
    if kind == NUMERIC:
        return _profile_numeric(name, arr)
    return _profile_discrete(name, arr, kind)


def as_arrow(values: Any) -> pa.Array:
    """Any column-like input as one Arrow array; Python ints beyond int64/uint64 become floats."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if isinstance(values, pa.Array):
        return values
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
        items = list(values)
        try:
            return pa.array([None if v is None else float(v) for v in items], pa.float64())
        except (TypeError, ValueError, OverflowError):
            return pa.array([None if v is None else str(v) for v in items], pa.string())


def infer_kind(dtype: pa.DataType) -> Kind:
    if pa.types.is_boolean(dtype):
        return BOOLEAN
    if pa.types.is_dictionary(dtype):
        return infer_kind(dtype.value_type)
    if (
        pa.types.is_integer(dtype)
        or pa.types.is_floating(dtype)
        or pa.types.is_decimal(dtype)
        or pa.types.is_null(dtype)
    ):
        return NUMERIC
    return CATEGORICAL


def numeric_values(arr: pa.Array) -> tuple[np.ndarray, int, int]:
    """(finite float64 values, nulls incl. NaN, infinities) of a numeric Arrow array."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not pa.types.is_floating(arr.type) or arr.type != pa.float64():
        arr = pc.cast(arr, pa.float64(), safe=False)
    x = arr.to_numpy(zero_copy_only=False)
    finite = np.isfinite(x)
    n_finite = int(np.count_nonzero(finite))
    infinite = int(np.count_nonzero(np.isinf(x)))
    nulls = len(x) - n_finite - infinite
    return (x if n_finite == len(x) else x[finite]), nulls, infinite


def _profile_numeric(name: str, arr: pa.Array) -> ColumnProfile:
    try:
        x, nulls, infinite = numeric_values(arr)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ProfileError(
            f"column {name!r}: cannot read its {arr.type} values as numbers ({exc}); "
            "pass kind='categorical' or cast the column"
        ) from exc
    base = ColumnProfile(name, NUMERIC, len(arr), nulls, infinite, distinct=0)
    if x.size == 0:
        return base
    sketch = _kll_from_values(x)
    exact = x.size <= EXACT_QUANTILE_LIMIT
    if exact:
        s = np.sort(x)
        distinct = 1 + int(np.count_nonzero(s[1:] != s[:-1]))
        quantiles = sorted_quantiles(s, quantile_levels())
    else:
        s = x
        distinct = int(pc.count_distinct(pa.array(x)).as_py())
        quantiles = _kll_quantiles(sketch)
    mean, std = _mean_std(x)
    edges, counts = _psi_histogram(s, exact, quantiles, distinct)
    return replace(
        base,
        distinct=distinct,
        min=float(quantiles[0]),
        max=float(quantiles[-1]),
        mean=mean,
        std=std,
        quantiles=tuple(quantiles.tolist()),
        quantiles_exact=exact,
        sketch=base64.b64encode(sketch.serialize()).decode("ascii"),
        values=tuple(s.tolist()) if x.size <= VALUES_LIMIT else None,
        psi_edges=edges,
        psi_counts=counts,
        frequencies=_numeric_frequencies(s, exact) if distinct <= NUMERIC_TABLE_LIMIT else (),
        other=0 if distinct <= NUMERIC_TABLE_LIMIT else int(x.size),
    )


def sorted_quantiles(s: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Linear-interpolation quantiles (numpy's default method) of an already sorted array."""
    pos = levels * (s.size - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, s.size - 1)
    frac = pos - lo
    # weighted form: no overflow between values of opposite sign near the float limit
    out: np.ndarray = np.clip(s[lo] * (1.0 - frac) + s[hi] * frac, s[0], s[-1])
    return out  # rounding never leaves [min, max]


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    """Mean and population std, scaled first so values near the float limit do not overflow."""
    scale = float(np.max(np.abs(x)))
    if scale == 0.0:
        return 0.0, 0.0
    y = x / scale if scale > 1e150 or scale < 1e-150 else x
    factor = scale if y is not x else 1.0
    return float(np.mean(y)) * factor, float(np.std(y)) * factor


def _psi_histogram(
    s: np.ndarray, exact: bool, quantiles: np.ndarray, distinct: int
) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Reference decile edges and the reference counts per bin ([e[i-1], e[i]), open ends)."""
    if distinct <= VALUE_BINNING_LIMIT:
        return (), ()  # binned by value, from `frequencies`
    edges = np.unique(quantiles[_decile_positions()])
    if exact:
        below = np.searchsorted(s, edges, side="left")
        counts = np.diff(np.concatenate(([0], below, [s.size])))
    else:
        counts = np.bincount(np.searchsorted(edges, s, side="right"), minlength=edges.size + 1)
    return tuple(edges.tolist()), tuple(int(c) for c in counts)


def _numeric_frequencies(s: np.ndarray, is_sorted: bool) -> tuple[tuple[Scalar, int], ...]:
    if is_sorted:
        starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
        uniq, counts = s[starts], np.diff(np.concatenate((starts, [s.size])))
    else:
        uniq, counts = np.unique(s, return_counts=True)
    return _top_k(zip(uniq.tolist(), counts.tolist(), strict=True), NUMERIC_TABLE_LIMIT)


def _sort_key(v: Scalar) -> tuple[str, Scalar]:
    return (type(v).__name__, v)


def _top_k(pairs: Iterable[tuple[Scalar, int]], k: int) -> tuple[tuple[Scalar, int], ...]:
    ordered = sorted(pairs, key=lambda p: (-p[1], p[0]))
    return tuple((v, int(c)) for v, c in ordered[:k])


def discrete_counts(arr: pa.Array, kind: Kind) -> tuple[list[Scalar], list[int], int]:
    """(values, counts, nulls) of a categorical or boolean Arrow array, values cast to the kind."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    target = pa.bool_() if kind == BOOLEAN else pa.string()
    if arr.type != target:
        arr = pc.cast(arr, target)
    vc = pc.value_counts(arr)
    keys = vc.field("values").to_pylist()
    counts = vc.field("counts").to_pylist()
    pairs = [(k, c) for k, c in zip(keys, counts, strict=True) if k is not None]
    return [k for k, _ in pairs], [c for _, c in pairs], arr.null_count


def _profile_discrete(name: str, arr: pa.Array, kind: Kind) -> ColumnProfile:
    try:
        keys, counts, nulls = discrete_counts(arr, kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ProfileError(
            f"column {name!r}: cannot read its {arr.type} values as {kind} ({exc}); "
            "pass kind= explicitly or cast the column"
        ) from exc
    valid = sum(counts)
    top = _top_k(zip(keys, counts, strict=True), TOP_K)
    values: tuple[Scalar, ...] | None = None
    if valid <= VALUES_LIMIT:
        values = tuple(v for k, c in sorted(zip(keys, counts, strict=True)) for v in [k] * c)
    return ColumnProfile(
        name=name,
        kind=kind,
        count=len(arr),
        nulls=nulls,
        infinite=0,
        distinct=len(keys),
        values=values,
        frequencies=top,
        other=valid - sum(c for _, c in top),
    )


# --- sketches -----------------------------------------------------------------------------------


def _kll_from_values(x: np.ndarray) -> Any:
    from datasketches import kll_doubles_sketch

    sketch = kll_doubles_sketch(KLL_K)
    x = np.ascontiguousarray(x, dtype=np.float64)
    sketch.update(x if x.flags.writeable else x.copy())  # the binding refuses read-only arrays
    return sketch


def load_sketch(column: ColumnProfile) -> Any:
    """The column's KLL doubles sketch (datasketches object), or None for non-numeric/empty."""
    if column.sketch is None:
        return None
    from datasketches import kll_doubles_sketch

    return kll_doubles_sketch.deserialize(base64.b64decode(column.sketch))


def _kll_quantiles(sketch: Any) -> np.ndarray:
    q = np.asarray(sketch.get_quantiles(quantile_levels().tolist()), dtype=np.float64)
    q[0], q[-1] = sketch.get_min_value(), sketch.get_max_value()
    return np.maximum.accumulate(q)


# --- merging ------------------------------------------------------------------------------------


def merge_profiles(a: Profile, b: Profile, *, created_at: datetime | None = None) -> Profile:
    """Profile of the union of two tables' rows (e.g. two days of a dataset), column by column.
    Columns present in one profile only are kept as they are."""
    names = list(a.columns) + [n for n in b.columns if n not in a.columns]
    merged = {
        n: merge(a.columns[n], b.columns[n])
        if n in a.columns and n in b.columns
        else (a.columns.get(n) or b.columns[n])
        for n in names
    }
    return Profile(
        rows=a.rows + b.rows,
        columns=merged,
        dataset=a.dataset if a.dataset == b.dataset else None,
        fingerprint=None,
        created_at=created_at or datetime.now(UTC),
    )


def merge(a: ColumnProfile, b: ColumnProfile) -> ColumnProfile:
    """Merge two profiles of the same column. Exact: counts, min/max, mean/std, values (while the
    union has <= VALUES_LIMIT), frequencies and distinct while both tables are complete. From the
    merged KLL sketch: quantiles and PSI counts (`quantiles_exact=False`)."""
    if a.name != b.name or a.kind != b.kind:
        raise ProfileError(
            f"cannot merge profile of {a.name!r} ({a.kind}) with {b.name!r} ({b.kind}); "
            "merge profiles of the same column"
        )
    if b.valid == 0 or a.valid == 0:
        full = a if b.valid == 0 else b
        return replace(
            full,
            count=a.count + b.count,
            nulls=a.nulls + b.nulls,
            infinite=a.infinite + b.infinite,
        )
    freq, other, distinct, distinct_exact = _merge_frequencies(a, b)
    values = None
    if a.values is not None and b.values is not None and a.valid + b.valid <= VALUES_LIMIT:
        values = tuple(sorted([*a.values, *b.values], key=_sort_key))
    merged = replace(
        a,
        count=a.count + b.count,
        nulls=a.nulls + b.nulls,
        infinite=a.infinite + b.infinite,
        distinct=distinct,
        distinct_exact=distinct_exact,
        values=values,
        frequencies=freq,
        other=other,
    )
    if a.kind != NUMERIC:
        return merged
    return _merge_numeric(merged, a, b)


def _merge_frequencies(
    a: ColumnProfile, b: ColumnProfile
) -> tuple[tuple[tuple[Scalar, int], ...], int, int, bool]:
    totals: dict[Scalar, int] = {}
    for v, c in (*a.frequencies, *b.frequencies):
        totals[v] = totals.get(v, 0) + c
    complete = a.frequencies_complete and b.frequencies_complete
    valid = a.valid + b.valid
    if a.kind == NUMERIC and (not complete or len(totals) > NUMERIC_TABLE_LIMIT):
        distinct = len(totals) if complete else max(a.distinct, b.distinct, len(totals))
        return (), valid, distinct, complete
    top = _top_k(totals.items(), NUMERIC_TABLE_LIMIT if a.kind == NUMERIC else TOP_K)
    distinct = len(totals) if complete else max(a.distinct, b.distinct, len(totals))
    return top, valid - sum(c for _, c in top), distinct, complete


def _merge_numeric(merged: ColumnProfile, a: ColumnProfile, b: ColumnProfile) -> ColumnProfile:
    na, nb = a.valid, b.valid
    n = na + nb
    mean, std = _pooled_moments(na, a.mean or 0.0, a.std or 0.0, nb, b.mean or 0.0, b.std or 0.0)
    sketch = load_sketch(a)
    sketch.merge(load_sketch(b))
    if merged.values is not None:
        s = np.asarray(merged.values, dtype=np.float64)
        quantiles, exact = sorted_quantiles(s, quantile_levels()), True
    else:
        quantiles, exact = _kll_quantiles(sketch), False
    edges: tuple[float, ...] = ()
    counts: tuple[int, ...] = ()
    if merged.distinct > VALUE_BINNING_LIMIT:
        if merged.values is not None:
            edges, counts = _psi_histogram(s, True, quantiles, merged.distinct)
        else:
            edges, counts = _psi_from_sketch(sketch, quantiles, n)
    return replace(
        merged,
        min=min(float(a.min or 0.0), float(b.min or 0.0)),
        max=max(float(a.max or 0.0), float(b.max or 0.0)),
        mean=mean,
        std=std,
        quantiles=tuple(quantiles.tolist()),
        quantiles_exact=exact,
        sketch=base64.b64encode(sketch.serialize()).decode("ascii"),
        psi_edges=edges,
        psi_counts=counts,
    )


def _pooled_moments(
    na: int, ma: float, sa: float, nb: int, mb: float, sb: float
) -> tuple[float, float]:
    """Mean and population std of two groups, scaled so values near the float limit fit."""
    scale = max(abs(ma), abs(mb), sa, sb, 1e-300)
    ma, mb, sa, sb = ma / scale, mb / scale, sa / scale, sb / scale
    n = na + nb
    mean = ma * (na / n) + mb * (nb / n)
    var = (na * (sa * sa + (ma - mean) ** 2) + nb * (sb * sb + (mb - mean) ** 2)) / n
    return mean * scale, math.sqrt(max(var, 0.0)) * scale


def _psi_from_sketch(
    sketch: Any, quantiles: np.ndarray, n: int
) -> tuple[tuple[float, ...], tuple[int, ...]]:
    edges = np.unique(quantiles[_decile_positions()])
    below = np.asarray(sketch.get_cdf(edges.tolist(), False)[:-1]) * n  # values < edge
    counts = np.diff(np.concatenate(([0.0], np.round(below), [float(n)])))
    return tuple(edges.tolist()), tuple(int(max(c, 0)) for c in counts)
