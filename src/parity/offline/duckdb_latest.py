"""SQL of materialization's newest row per entity on DuckDB, in two passes; pure string building.

Pass 1 reads only the keys, times and row positions, and finds each entity's newest row (the
retrieval tie rule: newest event time, then created time, then the last ingested): one __ord per
entity. Pass 2 reads the features of those rows only, skipping the row groups that hold none.
`latest_sql` (duckdb_sql.py) is the same answer in one query; the tests keep it as the oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from parity.definitions import FeatureView
from parity.offline.duckdb_sql import SourceScan, literal, quote, source_sql
from parity.timeutil import NO_CREATED

WINNERS = "__winners"
"""The name under which the engine registers pass 1's answer (one column, __ord) for pass 2."""
ROW_BITS = 40
"""__ord of a scan of several files is (file position << ROW_BITS) + row (duckdb_sql.py)."""
MAX_FILE_RANGES = 256
"""Above this many files holding newest rows, pass 2 names no per-file row ranges (the SQL would
grow long) and scans every row group, keeping the rows by the join alone."""


@dataclass(frozen=True)
class Packing:
    """How pass 1 packs (event, created, __ord) into one signed 128-bit integer whose order is
    their order, most significant first: the event time less the interval's start, then the
    created time less the event time (offset; 0 for none, below any other), then the file
    position and the row number. Rows whose fields do not fit are counted, not packed."""

    start_us: int
    created_bits: int
    position_bits: int

    @property
    def fits(self) -> str:
        """The condition a row meets when its fields fit their bits."""
        half = 1 << (self.created_bits - 1)
        apart = f"__created::HUGEINT - __ts BETWEEN {1 - half} AND {half - 1}"  # no overflow
        return (
            f"({_ROW} < {1 << PACKED_ROW_BITS} AND "
            f"CASE WHEN __created = {NO_CREATED} THEN true ELSE {apart} END)"
        )

    @property
    def packed(self) -> str:
        low = self.position_bits + PACKED_ROW_BITS
        created = (
            f"CASE WHEN __created = {NO_CREATED} THEN 0 "
            f"ELSE __created - __ts + {1 << (self.created_bits - 1)} END"
        )
        parts = [
            f"((__ts - {self.start_us})::HUGEINT << {self.created_bits + low})",
            f"(({created})::HUGEINT << {low})",
            f"{_ROW}::HUGEINT",
        ]
        if self.position_bits:
            parts.insert(2, f"((__ord >> {ROW_BITS})::HUGEINT << {PACKED_ROW_BITS})")
        return " | ".join(parts)

    def unpacked(self, column: str) -> str:
        """__ord back from a packed value."""
        row = f"({column} & {(1 << PACKED_ROW_BITS) - 1})::BIGINT"
        if not self.position_bits:
            return row
        mask = (1 << self.position_bits) - 1
        return f"((({column} >> {PACKED_ROW_BITS}) & {mask})::BIGINT << {ROW_BITS}) | {row}"


_ROW = f"(__ord & {(1 << ROW_BITS) - 1})"  # the row number within its file
PACKED_ROW_BITS = 32
"""Row numbers up to 2**32 - 1 per file pack; a larger one falls back to the struct."""
MIN_CREATED_BITS = 40
"""Fewer bits left for created - event (±6 days; a long interval over many files): no packing.
Entities with a row that does not fit are aggregated again as structs (a second scan: up to
about 2.5x pass 1 when most do), so packing is tried only when a few days' distance fits."""


def packing(scan: SourceScan, start_us: int, end_us: int) -> Packing | None:
    """The packing for an interval and a scan, None when too few bits are left for created
    times (see Packing)."""
    event_bits = max(end_us - start_us, 0).bit_length()
    position_bits = len(scan.files).bit_length() if len(scan.files) > 1 else 0
    created_bits = 127 - event_bits - position_bits - PACKED_ROW_BITS
    if created_bits < MIN_CREATED_BITS or event_bits > 62:  # __ts - start stays a BIGINT
        return None
    return Packing(start_us, created_bits, position_bits)


def winners_sql(
    view: FeatureView,
    scan: SourceScan,
    start_us: int,
    end_us: int,
    how: Packing | None,
    unfit: str | None = None,
) -> str:
    """Pass 1: per entity, its join keys and the __ord of its newest row with event time in
    [start, end].

    With a Packing, the largest packed integer (a cheap hash aggregate), and __fits, false where
    some row of the entity did not fit. Without, the largest (event, created, __ord) as one
    struct, which DuckDB orders field by field (none of the three is null: null created times are
    coalesced to the lowest), at about 1.5x the cost; `unfit` then names a registered answer of
    the packed query, and only its entities with __fits false are aggregated again."""
    keys = ", ".join(f"s.{quote(k)}" for k in view.join_keys)
    rows = f"({source_sql(view, (), scan)}) s "
    if unfit is not None:
        same = " AND ".join(f"s.{quote(k)} = u.{quote(k)}" for k in view.join_keys)
        rows += f"SEMI JOIN (SELECT * FROM {unfit} WHERE NOT __fits) u ON {same} "
    where = f"WHERE __ts BETWEEN {start_us} AND {end_us} GROUP BY {keys}"
    if how is None:
        newest = "max(struct_pack(t := __ts, c := __created, o := __ord)).o"
        return f"SELECT {keys}, {newest} AS __ord, true AS __fits FROM {rows}{where}"
    largest = f"max(CASE WHEN {how.fits} THEN {how.packed} END)"
    return (
        f"SELECT {keys}, {how.unpacked(largest)} AS __ord, bool_and({how.fits}) AS __fits "
        f"FROM {rows}{where}"
    )


UNFIT = "__unfit"
"""The name under which the engine registers a packed pass 1 whose rows did not all fit."""


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
