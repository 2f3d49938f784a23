"""SQL text of the point-in-time join on DuckDB; pure string building (see docs/retrieval.md).

Pass 1 (ASOF JOIN on event time only, keys and times only) finds, per entity row and view, the event
time of the newest row at or before the row's time; pass 2 fetches the rows with that key and event
time and keeps the one with the newest created time, then the last ingested. The ttl cuts pass 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from parity.definitions import DType, FeatureView
from parity.offline.request import RetrievalRequest, ViewRequest
from parity.timeutil import NO_CREATED

if TYPE_CHECKING:
    import pyarrow as pa

    from parity.offline.delta import FileConstant

_DUCK_TYPES = {
    "Int32": "INTEGER",
    "Int64": "BIGINT",
    "Float32": "FLOAT",
    "Float64": "DOUBLE",
    "String": "VARCHAR",
    "Bool": "BOOLEAN",
    "Bytes": "BLOB",
    "UnixTimestamp": "TIMESTAMPTZ",
}


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def duck_type(dtype: DType) -> str:
    if dtype.element is not None:
        return f"{duck_type(dtype.element)}[]"
    return _DUCK_TYPES[dtype.kind]


@dataclass(frozen=True)
class SourceScan:
    """How to read one view's source: its files, and the columns not in them (a Delta table's
    partition values, one per file)."""

    files: tuple[str, ...]
    constants: tuple[FileConstant, ...] = ()
    # Columns some file holds as timestamp[ns] with a zone (pandas' default Parquet): DuckDB
    # reads them as TIMESTAMPTZ_NS, which epoch_us() has no overload for.
    zoned_nanos: frozenset[str] = frozenset()
    # Proven at apply to have no two rows with the same keys and event time (offline/ties.py):
    # the join is then one ASOF join, without the tie-breaking pass.
    untied: bool = False


def scan_sql(scan: SourceScan) -> str:
    files = ", ".join(literal(f) for f in scan.files)
    read = f"read_parquet([{files}], file_row_number = true, filename = true, union_by_name = true"
    if not scan.constants:
        return read + ")"
    read += ", hive_partitioning = false)"  # the log's values, not DuckDB's reading of the paths
    position = f"list_position([{files}], filename)"
    added = ", ".join(
        f"CAST([{', '.join('NULL' if v is None else literal(v) for v in c.values)}][{position}] "
        f"AS {arrow_duck_type(c.type)}) AS {quote(c.name)}"
        for c in scan.constants
    )
    return f"(SELECT *, {added} FROM {read})"


def arrow_duck_type(kind: pa.DataType) -> str:
    """The DuckDB type of a partition column (types offline/delta.py lets through)."""
    import pyarrow.types as t

    if t.is_timestamp(kind):
        return "TIMESTAMPTZ" if kind.tz else "TIMESTAMP"
    if t.is_decimal(kind):
        return f"DECIMAL({kind.precision}, {kind.scale})"
    names = {"int8": "TINYINT", "int16": "SMALLINT", "int32": "INTEGER", "int64": "BIGINT"}
    names |= {"uint8": "UTINYINT", "uint16": "USMALLINT", "uint32": "UINTEGER"}
    names |= {"uint64": "UBIGINT", "float": "FLOAT", "double": "DOUBLE", "bool": "BOOLEAN"}
    names |= {"string": "VARCHAR", "large_string": "VARCHAR", "date32[day]": "DATE"}
    return names[str(kind)]


def epoch_us_sql(column: str, scan: SourceScan) -> str:
    """A source time column as µs since the epoch, UTC. Nanoseconds are truncated (floored) to
    µs, as entity times are (docs/retrieval.md): as UTC wall time a TIMESTAMPTZ_NS is a
    TIMESTAMP_NS, whose epoch_us floors (a cast to TIMESTAMPTZ would round)."""
    if column in scan.zoned_nanos:
        return f"epoch_us(timezone('UTC', {quote(column)}))"
    return f"epoch_us({quote(column)})"


def _value_sql(column: str, dtype: DType, scan: SourceScan) -> str:
    if dtype.kind == "UnixTimestamp" and dtype.element is None and column in scan.zoned_nanos:
        return f"make_timestamp({epoch_us_sql(column, scan)})::TIMESTAMPTZ"
    return f"CAST({quote(column)} AS {duck_type(dtype)})"


def source_sql(view: FeatureView, features: Sequence[str], scan: SourceScan, rows: str = "") -> str:
    """One view's rows: keys, __ts (µs UTC), __created, __ord (ingestion order) and features.
    `rows`, a condition on the scan's `filename` and `file_row_number`, keeps only those rows
    (DuckDB then skips the row groups outside it)."""
    source = view.batch_source
    keys = [f"{quote(source.column_for(k))} AS {quote(k)}" for k in view.join_keys]
    ts = epoch_us_sql(source.timestamp_field, scan)
    created = (
        f"coalesce({epoch_us_sql(source.created_timestamp_column, scan)}, {NO_CREATED})"
        if source.created_timestamp_column
        else str(NO_CREATED)
    )
    if len(scan.files) > 1:
        files = ", ".join(literal(f) for f in scan.files)
        order = f"(list_position([{files}], filename)::BIGINT << 40) + file_row_number"
    else:
        order = "file_row_number"
    values = [
        f"{_value_sql(source.column_for(name), view.input(name).dtype, scan)} AS {quote(name)}"
        for name in features
    ]
    columns = ", ".join(
        [*keys, f"{ts} AS __ts", f"{created} AS __created", f"{order} AS __ord", *values]
    )
    not_null = " AND ".join(f"{quote(source.column_for(k))} IS NOT NULL" for k in view.join_keys)
    return (
        f"SELECT {columns} FROM {scan_sql(scan)} "
        f"WHERE {quote(source.timestamp_field)} IS NOT NULL AND {not_null}"
        + (f" AND ({rows})" if rows else "")
    )


def _view_ctes(index: int, request: ViewRequest, scan: SourceScan, left: str) -> list[str]:
    """CTEs adding one view's features to the rows of `left` (which carry __rid and __ts)."""
    if scan.untied:
        return _untied_ctes(index, request, scan, left)
    view = request.view
    keys = view.join_keys
    key_list = ", ".join(quote(k) for k in keys)
    on = " AND ".join(f"e.{quote(k)} = s.{quote(k)}" for k in keys)
    back = " AND ".join(f"h.{quote(k)} = s.{quote(k)}" for k in keys)
    fresh = ""
    if view.ttl is not None:
        fresh = f" AND h.__hit >= h.__ts - {int(view.ttl.total_seconds() * 1_000_000)}"
    outputs = ", ".join(
        f"s.{quote(f)} AS {quote(o)}"
        for f, o in zip(request.features, request.output_names, strict=True)
    )
    return [
        f"src_{index} AS NOT MATERIALIZED ({source_sql(view, request.features, scan)})",
        # Pass 1: the newest event time <= t per row, from keys and times only.
        f"hit_{index} AS (SELECT e.*, s.__ts AS __hit FROM {left} e ASOF LEFT JOIN "
        f"(SELECT {key_list}, __ts FROM src_{index}) s ON {on} AND e.__ts >= s.__ts)",
        # Pass 2: that time's rows (within the ttl); newest created, then last ingested, wins.
        f"view_{index} AS (SELECT h.* EXCLUDE (__hit), {outputs} FROM hit_{index} h "
        f"LEFT JOIN src_{index} s ON {back} AND s.__ts = h.__hit{fresh} QUALIFY row_number() "
        f"OVER (PARTITION BY h.__rid ORDER BY s.__created DESC, s.__ord DESC) = 1)",
    ]


def _untied_ctes(index: int, request: ViewRequest, scan: SourceScan, left: str) -> list[str]:
    """One ASOF join, for a source proven to have no ties: the newest row at or before t is the
    only row with its time, so no created time or ingestion order can change the answer. The
    ttl nulls the features of a row too old, as the two-pass join's LEFT JOIN does."""
    view = request.view
    on = " AND ".join(f"e.{quote(k)} = s.{quote(k)}" for k in view.join_keys)
    fresh = None
    if view.ttl is not None:
        fresh = f"s.__ts >= e.__ts - {int(view.ttl.total_seconds() * 1_000_000)}"
    outputs = ", ".join(
        f"CASE WHEN {fresh} THEN s.{quote(f)} END AS {quote(o)}"
        if fresh
        else f"s.{quote(f)} AS {quote(o)}"
        for f, o in zip(request.features, request.output_names, strict=True)
    )
    return [
        f"src_{index} AS NOT MATERIALIZED ({source_sql(view, request.features, scan)})",
        f"view_{index} AS (SELECT e.*, {outputs} FROM {left} e ASOF LEFT JOIN src_{index} s "
        f"ON {on} AND e.__ts >= s.__ts)",
    ]


def retrieval_sql(
    request: RetrievalRequest,
    entity_sql: str,
    scans: dict[str, SourceScan],
    replace_sql: str | None = None,
) -> str:
    """The whole retrieval. `entity_sql` must yield the entity columns plus __rid and __ts;
    `replace_sql`, if given, rewrites entity columns in the output (`expr AS name, ...`)."""
    ctes = [f"entity AS MATERIALIZED ({entity_sql})"]
    left = "entity"
    for index, view_request in enumerate(request.views):
        scan = scans[view_request.view.name]
        if view_request.view.is_aggregated:
            from parity.offline.duckdb_windows import window_ctes

            ctes.extend(window_ctes(index, view_request, scan, left))
        else:
            ctes.extend(_view_ctes(index, view_request, scan, left))
        left = f"view_{index}"
    replace = f" REPLACE ({replace_sql})" if replace_sql else ""
    return (
        f"WITH {', '.join(ctes)} SELECT * EXCLUDE (__rid, __ts){replace} FROM {left} ORDER BY __rid"
    )


def latest_sql(view: FeatureView, scan: SourceScan, start_us: int, end_us: int) -> str:
    """The newest row per entity with event time in [start, end] (same tie rule as retrieval);
    UnixTimestamp features come back as µs integers, ready for the online encoding.

    Two passes instead of a window over every row: the first keeps, per entity, the largest
    (event, created) packed into one unsigned 128-bit integer (a cheap hash aggregate over four
    columns); the second keeps the rows that reach it, and among exact ties the last ingested.
    """
    keys = ", ".join(quote(k) for k in view.join_keys)
    same = " AND ".join(f"s.{quote(k)} = w.{quote(k)}" for k in view.join_keys)
    by = ", ".join(f"s.{quote(k)}" for k in view.join_keys)
    stamps = [f.name for f in view.features if f.dtype.kind == "UnixTimestamp"]
    replace = ", ".join(f"epoch_us({quote(n)}) AS {quote(n)}" for n in stamps)
    head = f"s.* EXCLUDE (__ord, __v) REPLACE ({replace})" if stamps else "s.* EXCLUDE (__ord, __v)"
    offset = 1 << 63
    packed = (
        f"((__ts::HUGEINT + {offset})::UHUGEINT << 64) | (__created::HUGEINT + {offset})::UHUGEINT"
    )
    return (
        f"WITH s AS (SELECT *, {packed} AS __v FROM ({source_sql(view, view.feature_names, scan)}) "
        f"WHERE __ts BETWEEN {start_us} AND {end_us}), "
        f"w AS (SELECT {keys}, max(__v) AS __m FROM s GROUP BY {keys}) "
        f"SELECT {head} FROM s SEMI JOIN w ON {same} AND s.__v = w.__m "
        f"QUALIFY row_number() OVER (PARTITION BY {by} ORDER BY __ord DESC) = 1"
    )
