"""Duplicate features found by their values: pure statistics over a sample of entity rows (pairwise
equality, Pearson correlation, least-squares fit) and `scan`, the one function that reads (DuckDB
over the views' sources, the store's point-in-time retrieval). Must not import the web framework."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from parity.errors import ParityError

if TYPE_CHECKING:
    import pyarrow as pa

    from parity.definitions import FeatureView
    from parity.feature_store import FeatureStore

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

# Fewer rows than this compared: no verdict. At 50 rows "equal" (>= 99 %) means all 50 agree, and
# a |correlation| >= 0.98 between unrelated columns is then very unlikely even for small counts.
MIN_ROWS = 50
# Equal on at least 99 % of the rows both have: a copy whose job ran at another minute or rounded
# one row differently is still a copy.
EQUAL_SHARE = 0.99
# Numbers this close (relative) are equal: the same value computed in another order.
EQUAL_TOLERANCE = 1e-9
# "linear": 1 - r^2 at most this, i.e. the line explains b to within 0.1 % of its spread: a change
# of unit (cents = 100 x dollars) with rounding, never two distinct measures that merely move
# together.
EXACT_FIT = 1e-6
# A column whose spread over the compared rows is under this share of its magnitude is constant:
# its correlation is undefined, so it is never flagged (two constant columns agree by accident).
CONSTANT = 1e-9
SAMPLE_POINTS = 50  # (a, b) points shown per pair
SEED = 18
NUMERIC = frozenset({"Int32", "Int64", "Float32", "Float64"})
CATEGORICAL = frozenset({"String", "Bool"})

Progress = Callable[[str, int, "int | None"], None]


@dataclass(frozen=True)
class Column:
    """One feature's values at the sampled rows. `kind` "numeric": float64, NaN where null;
    else integer codes (a category's number, -1 where null), comparable only within one kind."""

    name: str  # "view:feature"
    view: str
    kind: str  # "numeric" | "String" | "Bool"
    values: npt.NDArray[Any]
    shown: npt.NDArray[Any] | None = None  # the values themselves, for codes
    integral: bool = False  # an integer feature (its sample points are shown as integers)


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    entity: str
    rows: int
    correlation: float | None
    equal_share: float
    slope: float | None  # b ~ slope * a + intercept (least squares)
    intercept: float | None
    relation: str  # "equal" | "linear" | "correlated"
    evidence: str
    sample: list[list[Any]]


@dataclass(frozen=True)
class ScanResult:
    registry_version: int
    features: int
    pairs: list[Pair]
    skipped: list[str] = field(default_factory=list)  # "view: why" for views not compared


# --- the statistics (values in, values out) ----------------------------------------------------


@dataclass(frozen=True)
class NumericStats:
    """Per ordered pair (i, j) of columns, over the rows where both are finite: `rows`, `equal`
    (rows with equal values), `correlation` (NaN where either is constant there), and the
    least-squares line of column j on column i (`slope`, `intercept`; NaN where i is constant)."""

    rows: Ints
    equal: Ints
    correlation: Floats
    slope: Floats
    intercept: Floats


def numeric_stats(values: Floats) -> NumericStats:
    """All pairs of the columns of `values` (rows x columns; NaN/inf: missing) at once."""
    x = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(x)
    weight = valid.astype(np.float64)
    filled = np.where(valid, x, 0.0)
    count = weight.sum(axis=0)
    centre = np.divide(filled.sum(axis=0), count, out=np.zeros(x.shape[1]), where=count > 0)
    dev = np.where(valid, x - centre, 0.0)  # centred: sums of squares stay accurate
    rows = weight.T @ weight
    sx = dev.T @ weight  # [i, j]: sum of column i's deviations over rows where j is valid too
    sxx = (dev * dev).T @ weight
    sxy = dev.T @ dev
    with np.errstate(divide="ignore", invalid="ignore"):
        var_x = sxx - sx * sx / rows  # n * variance of i over the pair's rows
        var_y = var_x.T
        cov = sxy - sx * sx.T / rows
        scale = np.maximum(np.abs(np.where(valid, x, 0.0)).max(axis=0, initial=0.0), 1e-300)
        tiny = rows * (CONSTANT * scale[:, None]) ** 2
        flat_x = ~(var_x > tiny)
        flat_y = flat_x.T
        correlation = np.clip(cov / np.sqrt(var_x * var_y), -1.0, 1.0)
        correlation[flat_x | flat_y] = np.nan
        slope = cov / var_x
        slope[flat_x] = np.nan
        mean_x = centre[:, None] + sx / rows
        mean_y = centre[None, :] + sx.T / rows
        intercept = mean_y - slope * mean_x
    return NumericStats(
        rows.round().astype(np.int64),
        equal_counts(x, valid),
        correlation,
        slope,
        intercept,
    )


def equal_counts(values: npt.NDArray[Any], valid: Bools) -> Ints:
    """[i, j]: rows where columns i and j are both valid and equal (floats: within
    EQUAL_TOLERANCE, relative). Column by column: rows x columns memory, not rows x columns^2."""
    columns = values.shape[1]
    counts = np.zeros((columns, columns), dtype=np.int64)
    floating = np.issubdtype(values.dtype, np.floating)
    if floating:
        values = np.where(valid, values, 0.0)  # inf - inf: no warning, and masked anyway
    for i in range(columns):
        rest = values[:, i:]
        if floating:
            same = np.abs(rest - values[:, i : i + 1]) <= EQUAL_TOLERANCE * np.maximum(
                np.abs(rest), np.abs(values[:, i : i + 1])
            )
        else:
            same = rest == values[:, i : i + 1]
        same &= valid[:, i:] & valid[:, i : i + 1]
        counts[i, i:] = same.sum(axis=0)
    upper = np.triu(counts)
    result: Ints = upper + np.triu(counts, 1).T
    return result


def categorical_stats(codes: Ints) -> tuple[Ints, Ints, Bools]:
    """Per pair of code columns (-1: missing): rows both have, rows equal, and whether the pair
    is constant on its rows (either column takes one value there: never flagged)."""
    valid = codes >= 0
    weight = valid.astype(np.float64)
    rows = (weight.T @ weight).round().astype(np.int64)
    varying = np.zeros(rows.shape, dtype=bool)
    for i in range(codes.shape[1]):
        for j in range(i + 1, codes.shape[1]):
            both = valid[:, i] & valid[:, j]
            a, b = codes[both, i], codes[both, j]
            varying[i, j] = varying[j, i] = a.size > 0 and bool(
                (a != a[0]).any() and (b != b[0]).any()
            )
    return rows, equal_counts(codes, valid), ~varying


def relation(
    rows: int, equal_share: float, correlation: float, min_correlation: float
) -> str | None:
    """The verdict on one pair, or None. `correlation` NaN: a column is constant (no verdict)."""
    if rows < MIN_ROWS or math.isnan(correlation):
        return None
    if equal_share >= EQUAL_SHARE:
        return "equal"
    if abs(correlation) < min_correlation:
        return None
    return "linear" if 1.0 - correlation * correlation <= EXACT_FIT else "correlated"


def find_pairs(columns: Sequence[Column], entity: str, min_correlation: float) -> list[Pair]:
    """The flagged pairs among `columns` (from different views only), strongest first."""
    pairs: list[Pair] = []
    numeric = [c for c in columns if c.kind == "numeric"]
    if numeric:
        pairs += _numeric_pairs(numeric, entity, min_correlation)
    for kind in sorted(CATEGORICAL):
        group = [c for c in columns if c.kind == kind]
        if len(group) > 1:
            pairs += _categorical_pairs(group, entity)
    order = {"equal": 0, "linear": 1, "correlated": 2}
    pairs.sort(key=lambda p: (order[p.relation], -abs(p.correlation or 1.0), p.a, p.b))
    return pairs


def _numeric_pairs(columns: Sequence[Column], entity: str, min_correlation: float) -> list[Pair]:
    values = np.column_stack([c.values for c in columns]).astype(np.float64)
    stats = numeric_stats(values)
    found = []
    for i, j in _cross_view(columns):
        rows = int(stats.rows[i, j])
        share = float(stats.equal[i, j]) / rows if rows else 0.0
        r = float(stats.correlation[i, j])
        verdict = relation(rows, share, r, min_correlation)
        if verdict is None:
            continue
        slope, intercept = float(stats.slope[i, j]), float(stats.intercept[i, j])
        if verdict == "linear" and abs(slope) < 1.0:  # read it as b = k * a with |k| >= 1
            i, j = j, i
            slope, intercept = float(stats.slope[i, j]), float(stats.intercept[i, j])
        a, b = columns[i], columns[j]
        found.append(
            Pair(
                a.name,
                b.name,
                entity,
                rows,
                r,
                share,
                slope,
                intercept,
                verdict,
                numeric_evidence(verdict, a.name, b.name, rows, share, r, slope, intercept),
                _points(a, b, np.isfinite(a.values) & np.isfinite(b.values)),
            )
        )
    return found


def _categorical_pairs(columns: Sequence[Column], entity: str) -> list[Pair]:
    codes = np.column_stack([c.values for c in columns]).astype(np.int64)
    rows, equal, constant = categorical_stats(codes)
    found = []
    for i, j in _cross_view(columns):
        n = int(rows[i, j])
        share = float(equal[i, j]) / n if n else 0.0
        if n < MIN_ROWS or constant[i, j] or share < EQUAL_SHARE:
            continue
        a, b = columns[i], columns[j]
        evidence = (
            f"{b.name} equals {a.name} on {share:.1%} of {n:,} sampled rows "
            f"({'true/false' if a.kind == 'Bool' else 'text'} values)"
        )
        both = (a.values >= 0) & (b.values >= 0)
        sample = _points(a, b, both)
        found.append(
            Pair(a.name, b.name, entity, n, None, share, None, None, "equal", evidence, sample)
        )
    return found


def _cross_view(columns: Sequence[Column]) -> list[tuple[int, int]]:
    """(i, j), i < j, of columns from different views, in name order."""
    order = sorted(range(len(columns)), key=lambda k: columns[k].name)
    return [
        (i, j)
        for n, i in enumerate(order)
        for j in order[n + 1 :]
        if columns[i].view != columns[j].view
    ]


def numeric_evidence(
    verdict: str,
    a: str,
    b: str,
    rows: int,
    share: float,
    correlation: float,
    slope: float,
    intercept: float,
) -> str:
    """One sentence a reader can check against the sample."""
    if verdict == "equal":
        return f"{b} equals {a} on {share:.1%} of {rows:,} sampled rows"
    line = f"{b} = {_number(slope)} x {a}" + (
        f" {'+' if intercept >= 0 else '-'} {_number(abs(intercept))}"
        if abs(intercept) > 1e-9 * max(1.0, abs(slope))
        else ""
    )
    if verdict == "linear":
        return f"{line} on {rows:,} sampled rows (correlation {correlation:.6f})"
    return (
        f"correlation {correlation:.3f} on {rows:,} sampled rows; best line {line} "
        f"(equal on {share:.1%})"
    )


def _number(value: float) -> str:
    return f"{value:.6g}"


def _points(a: Column, b: Column, both: Bools) -> list[list[Any]]:
    """The first SAMPLE_POINTS rows both have, as JSON-ready (a, b) values."""
    where = np.flatnonzero(both)[:SAMPLE_POINTS]
    return [[_plain(a, k), _plain(b, k)] for k in where]


def _plain(column: Column, row: int) -> Any:
    value = (column.values if column.shown is None else column.shown)[row]
    value = value.item() if isinstance(value, np.generic) else value
    return int(value) if column.integral else value


# --- the scan: the one function doing I/O --------------------------------------------------------


def scan(
    store: FeatureStore,
    *,
    sample_rows: int = 5000,
    min_correlation: float = 0.98,
    progress: Progress | None = None,
) -> ScanResult:
    """Compare every pair of features of views sharing join keys, by their values at a seeded
    sample of entity rows over the time range the views share. On-demand views are left out
    (their values come from other views and the request); Bytes, timestamp and array features
    too."""
    report = progress or (lambda phase, done, total: None)
    _, version = store.registry.current()
    groups, skipped = _groups(store.list_feature_views())
    views_total = sum(len(g) for g in groups.values())
    pairs: list[Pair] = []
    features = 0
    done = 0
    report("sampling", 0, views_total)
    for keys, views in sorted(groups.items()):
        columns, notes = _read_group(store, keys, views, sample_rows, report, done, views_total)
        done += len(views)
        skipped += notes
        features += len(columns)
        report("comparing", done, views_total)
        pairs += find_pairs(columns, ",".join(keys), min_correlation)
    report("done", views_total, views_total)
    return ScanResult(version, features, pairs, skipped)


def _groups(views: Sequence[FeatureView]) -> tuple[dict[tuple[str, ...], list[Any]], list[str]]:
    """Views with comparable features, by their join keys; a view alone on its keys has no
    peer to compare with (said in the notes)."""
    groups: dict[tuple[str, ...], list[Any]] = {}
    skipped = []
    for view in views:
        if not _comparable(view):
            skipped.append(f"{view.name}: no numeric, text or true/false features")
            continue
        groups.setdefault(tuple(sorted(view.join_keys)), []).append(view)
    for keys, alone in groups.items():
        if len(alone) == 1:
            skipped.append(f"{alone[0].name}: the only view keyed by {', '.join(keys)}")
    return {k: v for k, v in groups.items() if len(v) > 1}, skipped


def _comparable(view: FeatureView) -> list[str]:
    return [f.name for f in view.features if str(f.dtype) in NUMERIC | CATEGORICAL]


def _read_group(
    store: FeatureStore,
    keys: tuple[str, ...],
    views: list[FeatureView],
    sample_rows: int,
    report: Progress,
    done: int,
    total: int,
) -> tuple[list[Column], list[str]]:
    """The group's features at its sampled rows (one point-in-time retrieval per view, so the
    page sees progress; each view's join is independent of the others')."""
    import duckdb

    connection = duckdb.connect()
    try:
        ranges, notes = _ranges(connection, store, views)
        live = [v for v in views if v.name in ranges]
        if len(live) < 2:
            return [], notes
        lo = max(r[0] for r in ranges.values())
        hi = min(r[1] for r in ranges.values())
        if lo > hi:
            return [], [*notes, f"{', '.join(v.name for v in live)}: no time range in common"]
        entity = _sample(connection, store, keys, live, lo, hi, sample_rows)
    finally:
        connection.close()
    columns: list[Column] = []
    for n, view in enumerate(live):
        report("reading", done + n, total)
        try:
            columns += _fetch(store, view, entity)
        except (ParityError, duckdb.Error) as failure:  # one unreadable view: the others go on
            first = str(failure).splitlines()[0] if str(failure) else repr(failure)
            notes.append(f"{view.name}: its features cannot be read ({first})")
    return _encode(columns), notes


def _scan_of(store: FeatureStore, view: FeatureView) -> Any:
    from parity.offline.duckdb_sql import SourceScan
    from parity.offline.sources import source_layout, zoned_nanosecond_columns

    files, constants = source_layout(view.batch_source, store.repo_path)
    if not files:
        return None
    return SourceScan(tuple(str(f) for f in files), constants, zoned_nanosecond_columns(files))


def _ranges(
    connection: Any, store: FeatureStore, views: list[FeatureView]
) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Per view, the first and last event time (µs) of its offline rows."""
    import duckdb

    from parity.offline.duckdb_sql import source_sql

    found: dict[str, tuple[int, int]] = {}
    notes = []
    for view in views:
        scan_ = _scan_of(store, view)
        if scan_ is None:
            notes.append(f"{view.name}: no offline data at {view.batch_source.path}")
            continue
        try:
            lo, hi = connection.sql(
                f"SELECT min(__ts), max(__ts) FROM ({source_sql(view, (), scan_)})"
            ).fetchall()[0]
        except duckdb.Error as failure:
            notes.append(f"{view.name}: its source cannot be read ({failure})")
            continue
        if lo is None:
            notes.append(f"{view.name}: no offline rows")
            continue
        found[view.name] = (int(lo), int(hi))
    return found, notes


def _sample(
    connection: Any,
    store: FeatureStore,
    keys: tuple[str, ...],
    views: list[FeatureView],
    lo: int,
    hi: int,
    rows: int,
) -> pa.Table:
    """Up to `rows` (keys, time) rows drawn evenly from the views' rows in [lo, hi]: the same
    rows every run (ordered by a seeded hash, not by chance)."""
    from parity.offline.duckdb_sql import quote, source_sql

    each = -(-rows // len(views))
    key_list = ", ".join(quote(k) for k in keys)
    parts = [
        f"(SELECT {key_list}, __ts FROM ({source_sql(view, (), _scan_of(store, view))}) "
        f"WHERE __ts BETWEEN {lo} AND {hi} "
        f"ORDER BY hash({key_list}, __ts, {SEED}), {key_list}, __ts LIMIT {each})"
        for view in views
    ]
    sql = (
        f"SELECT DISTINCT {key_list}, make_timestamp(__ts)::TIMESTAMPTZ AS event_timestamp "
        f"FROM ({' UNION ALL '.join(parts)}) ORDER BY hash({key_list}, __ts, {SEED}), "
        f"{key_list}, __ts LIMIT {rows}"
    )
    connection.execute("SET TimeZone = 'UTC'")
    table: pa.Table = connection.sql(sql).to_arrow_table()
    return table


def _fetch(store: FeatureStore, view: FeatureView, entity: pa.Table) -> list[Column]:
    names = _comparable(view)
    table = store.get_historical_features(
        entity, [f"{view.name}:{name}" for name in names], full_feature_names=True
    ).to_arrow()
    return [
        Column(
            f"{view.name}:{name}",
            view.name,
            _kind(view, name),
            _raw(table, f"{view.name}__{name}"),
            integral=str(view.feature(name).dtype) in ("Int32", "Int64"),
        )
        for name in names
    ]


def _kind(view: FeatureView, name: str) -> str:
    dtype = str(view.feature(name).dtype)
    return "numeric" if dtype in NUMERIC else dtype


def _raw(table: pa.Table, name: str) -> npt.NDArray[Any]:
    import pyarrow as pa

    column = table.column(name)
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        floats: Floats = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        return floats
    return np.asarray(column.to_pylist(), dtype=object)


def _encode(columns: list[Column]) -> list[Column]:
    """Text and true/false columns as codes over one dictionary per kind (so equal values get
    equal codes across views); numbers as they are."""
    encoded = []
    for kind in sorted({c.kind for c in columns}):
        group = [c for c in columns if c.kind == kind]
        if kind == "numeric":
            encoded += group
            continue
        import pandas as pd

        joined = np.concatenate([c.values for c in group])
        codes, _ = pd.factorize(pd.Series(joined, dtype=object), use_na_sentinel=True)
        for n, column in enumerate(group):
            part = codes[n * len(column.values) : (n + 1) * len(column.values)]
            encoded.append(
                Column(column.name, column.view, kind, part.astype(np.int64), column.values)
            )
    return encoded
