"""SQL of materialization's newest row per entity on DuckDB, in two passes; pure string building.

Pass 1 reads only the keys, times and row positions, and finds each entity's newest row (the
retrieval tie rule: newest event time, then created time, then the last ingested): one __ord per
entity. Pass 2 reads the features of those rows only, skipping the row groups that hold none.
`latest_sql` (duckdb_sql.py) is the same answer in one query; the tests keep it as the oracle.
"""

from __future__ import annotations

import numpy as np

from parity.definitions import FeatureView
from parity.offline.duckdb_sql import SourceScan, literal, quote, source_sql

WINNERS = "__winners"
"""The name under which the engine registers pass 1's answer (one column, __ord) for pass 2."""
ROW_BITS = 40
"""__ord of a scan of several files is (file position << ROW_BITS) + row (duckdb_sql.py)."""
MAX_FILE_RANGES = 256
"""Above this many files holding newest rows, pass 2 names no per-file row ranges (the SQL would
grow long) and scans every row group, keeping the rows by the join alone."""


def winners_sql(view: FeatureView, scan: SourceScan, start_us: int, end_us: int) -> str:
    """Pass 1: per entity, the __ord of its newest row with event time in [start, end].

    The largest (event, created, __ord) as one struct: DuckDB orders structs field by field, and
    none of the three is null (null created times are coalesced to the lowest)."""
    keys = ", ".join(quote(k) for k in view.join_keys)
    newest = "max(struct_pack(t := __ts, c := __created, o := __ord)).o"
    return (
        f"SELECT {newest} AS __ord FROM ({source_sql(view, (), scan)}) "
        f"WHERE __ts BETWEEN {start_us} AND {end_us} GROUP BY {keys}"
    )


def rows_filter(scan: SourceScan, ords: np.ndarray) -> str:
    """A condition on the scan's rows that holds for every row in `ords` (int64): per file, the
    span of row numbers between its first and last wanted row. DuckDB skips the row groups (and
    files) outside it. '' when there is nothing short to say."""
    if len(ords) == 0:
        return "false"
    if len(scan.files) == 1:
        return f"file_row_number BETWEEN {ords.min()} AND {ords.max()}"
    positions, rows = ords >> ROW_BITS, ords & ((1 << ROW_BITS) - 1)
    order = np.argsort(positions, kind="stable")
    positions, rows = positions[order], rows[order]
    firsts = np.flatnonzero(np.diff(positions, prepend=-1))
    if len(firsts) > MAX_FILE_RANGES:
        return ""
    lows, highs = np.minimum.reduceat(rows, firsts), np.maximum.reduceat(rows, firsts)
    return " OR ".join(
        f"(filename = {literal(scan.files[int(positions[first]) - 1])} "
        f"AND file_row_number BETWEEN {low} AND {high})"
        for first, low, high in zip(firsts, lows, highs, strict=True)
    )


def newest_rows_sql(view: FeatureView, scan: SourceScan, rows: str) -> str:
    """Pass 2: the rows pass 1 chose (registered as WINNERS), with `rows` (rows_filter) narrowing
    the scan: join keys, __ts, __created and the features, UnixTimestamp features as µs integers
    (as latest_sql answers)."""
    stamps = [f.name for f in view.features if f.dtype.kind == "UnixTimestamp"]
    replace = ", ".join(f"epoch_us({quote(n)}) AS {quote(n)}" for n in stamps)
    head = f"s.* EXCLUDE (__ord) REPLACE ({replace})" if stamps else "s.* EXCLUDE (__ord)"
    source = source_sql(view, view.feature_names, scan, rows)
    return f"SELECT {head} FROM ({source}) s SEMI JOIN {WINNERS} w ON s.__ord = w.__ord"
