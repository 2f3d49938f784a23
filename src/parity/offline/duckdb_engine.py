"""The DuckDB offline engine (embedded default): point-in-time retrieval over Parquet sources.

Runs the SQL of duckdb_sql.py; memory is bounded by `offline.memory_limit` and spills to
`offline.temp_directory`. Imports duckdb, so only load this module when it is used.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.types as pat

from parity.definitions import FeatureView
from parity.errors import EntityFrameError, SourceSchemaError
from parity.offline import entity_frame, ties
from parity.offline.duckdb_sql import (
    SourceScan,
    literal,
    quote,
    retrieval_sql,
    source_sql,
)
from parity.offline.entity_frame import EntityFrame
from parity.offline.request import RetrievalRequest, ViewRequest, interval_keys
from parity.offline.sources import source_layout, zoned_nanosecond_columns
from parity.repo.config import OfflineConfig
from parity.timeutil import to_micros

log = logging.getLogger(__name__)


class DuckDBJob:
    """A retrieval as SQL on its own DuckDB connection; nothing runs until a method is called."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, sql: str) -> None:
        self._connection = connection
        self.sql = sql
        self._lock = threading.Lock()

    def to_arrow(self) -> pa.Table:
        with self._lock:
            return self._run(lambda: self._connection.sql(self.sql).to_arrow_table())

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas()

    def to_parquet(self, path: str | Path, progress: Callable[[float], None] | None = None) -> int:
        """COPY the result to one Parquet file inside DuckDB (spilling, never via pandas).

        `progress` is called with DuckDB's estimate of the share done, 0.0 to 1.0, while it runs.
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        copy = f"COPY ({self.sql}) TO {literal(str(target))} (FORMAT parquet, COMPRESSION zstd)"
        with self._lock:
            if progress is None:
                result = self._run(lambda: self._connection.execute(copy).fetchone())
            else:
                result = self._run(lambda: _with_progress(self._connection, copy, progress))
        return int(result[0]) if result else 0

    def to_batches(self, batch_size: int = 131_072) -> Iterator[pa.RecordBatch]:
        with self._lock:
            reader = self._run(lambda: self._connection.sql(self.sql).to_arrow_reader(batch_size))
            yield from reader

    def _run(self, action: Any) -> Any:
        try:
            return action()
        except duckdb.ConversionException as error:
            first = str(error).splitlines()[0]  # DuckDB adds the SQL and a caret on more lines
            if _EPOCH_TEXT.search(first):
                first += "; epoch numbers are not guessed: give timestamps or ISO 8601 text"
            raise EntityFrameError(
                f"a timestamp or key value could not be converted: {first}"
            ) from None
        except duckdb.IOException as error:
            raise SourceSchemaError(f"a source could not be read: {error}") from None
        except duckdb.InvalidInputException as error:
            text = str(error).splitlines()[0].removeprefix("Invalid Input Error: ")
            if text.startswith("entity frame column "):  # raised by _refusing_nulls' SQL
                raise EntityFrameError(text) from None
            raise


_EPOCH_TEXT = re.compile(r'"-?\d+(\.\d+)?" when casting')


def _with_progress(
    connection: duckdb.DuckDBPyConnection, sql: str, progress: Callable[[float], None]
) -> Any:
    """Run `sql` in a thread and report `query_progress()` until it is done (DuckDB tracks
    progress only with its progress bar on; its printing stays off)."""
    connection.execute("SET enable_progress_bar = true")
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["rows"] = connection.execute(sql).fetchone()
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=run, name="parity-duckdb-copy", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.2)
        done = connection.query_progress()
        if done >= 0:
            progress(min(done / 100.0, 1.0))
    progress(1.0)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("rows")


class DuckDBEngine:
    """OfflineEngine on an in-process DuckDB; one connection per job."""

    def __init__(self, repo_root: Path, config: OfflineConfig | None = None) -> None:
        self.repo_root = repo_root
        self.config = config or OfflineConfig()

    def connect(self) -> duckdb.DuckDBPyConnection:
        connection = duckdb.connect()
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute("SET enable_progress_bar_print = false")  # only the CLI prints
        connection.execute(f"SET file_search_path = {literal(str(self.repo_root))}")
        if self.config.memory_limit:
            connection.execute(f"SET memory_limit = {literal(self.config.memory_limit)}")
        if self.config.temp_directory:
            temp = Path(self.config.temp_directory)
            temp = temp if temp.is_absolute() else self.repo_root / temp
            connection.execute(f"SET temp_directory = {literal(str(temp))}")
        return connection

    def _scans(self, request: RetrievalRequest) -> dict[str, SourceScan]:
        scans = {}
        for view_request in request.views:
            source = view_request.view.batch_source
            files, constants = source_layout(source, self.repo_root)
            if not files:
                raise SourceSchemaError(
                    f"feature view '{view_request.view.name}': source path '{source.path}' matches "
                    "no Parquet files; generate the data or fix the path"
                )
            names = tuple(str(f) for f in files)
            untied = not view_request.view.is_aggregated and ties.is_proven(
                self.repo_root, view_request.view, names
            )
            scans[view_request.view.name] = SourceScan(
                names, constants, zoned_nanosecond_columns(files), untied
            )
        return scans

    def prove_untied(self, view: FeatureView) -> bool:
        """Check that no two rows of the view's source share join keys and event time, and keep
        the proof for these files (offline/ties.py). False, and nothing kept, when some do or
        the source cannot be read (retrieval then breaks ties as always)."""
        request = RetrievalRequest((ViewRequest(view, (), ()),), False)
        try:
            scan = self._scans(request)[view.name]
        except SourceSchemaError:  # no files yet
            return False
        key = ties.fingerprint(view, scan.files)
        if key is None or scan.untied:
            return scan.untied
        keys = [quote(k) for k in view.join_keys]
        sql = ties.no_ties_sql(source_sql(view, (), scan), keys)
        try:
            with self.connect() as connection:
                row = connection.execute(sql).fetchone()
        except duckdb.Error as error:
            log.warning("feature view %s: no-ties check failed: %s", view.name, error)
            return False
        untied = bool(row and row[0])
        if untied:
            ties.record(self.repo_root, key)
        return untied

    def latest(
        self, view: FeatureView, start: datetime, end: datetime, batch_size: int = 50_000
    ) -> Iterator[pa.RecordBatch]:
        """Per entity, the newest row of `view` with event time in [start, end], streamed."""
        request = RetrievalRequest(
            (ViewRequest(view, view.feature_names, view.feature_names),), False
        )
        from parity.arrays import numpy_of
        from parity.offline.duckdb_latest import WINNERS, newest_rows_sql, rows_filter

        scan = self._scans(request)[view.name]
        connection = self.connect()
        try:
            winners = _winners(connection, view, scan, to_micros(start), to_micros(end))
            if winners.num_rows == 0:
                return
            connection.register(WINNERS, winners)
            rows = rows_filter(scan, numpy_of(winners.column(0).combine_chunks()))
            yield from connection.sql(newest_rows_sql(view, scan, rows)).to_arrow_reader(batch_size)
        finally:
            connection.close()

    def events(
        self, view: FeatureView, start: datetime, end: datetime, batch_size: int = 50_000
    ) -> Iterator[pa.RecordBatch]:
        request = RetrievalRequest((ViewRequest(view, (), ()),), False)
        inputs = [f.name for f in view.inputs]
        source = source_sql(view, inputs, self._scans(request)[view.name])
        sql = (
            f"SELECT * EXCLUDE (__created) FROM ({source}) "
            f"WHERE __ts BETWEEN {to_micros(start)} AND {to_micros(end)} ORDER BY __ord"
        )
        connection = self.connect()
        try:
            yield from connection.sql(sql).to_arrow_reader(batch_size)
        finally:
            connection.close()

    def describe(self, text: str, *, sql: bool) -> pa.Schema:
        relation = text if sql else f"SELECT * FROM read_parquet({literal(text)})"
        with self.connect() as connection:
            try:
                return connection.sql(f"SELECT * FROM ({relation}) LIMIT 0").to_arrow_table().schema
            except duckdb.Error as error:
                what = "SQL entity query" if sql else f"entity Parquet path '{text}'"
                raise EntityFrameError(f"{what} cannot be read: {error}") from None

    def historical(
        self, request: RetrievalRequest, entity: EntityFrame, timestamp_column: str
    ) -> DuckDBJob:
        connection = self.connect()
        ts = _epoch_us(entity.schema, timestamp_column)
        if entity.table is not None:
            # Row numbers made here keep DuckDB from numbering rows on one thread.
            rows = pa.array(np.arange(entity.table.num_rows, dtype=np.int64))
            connection.register("__parity_entity_input", entity.table.append_column("__rid", rows))
            entity_sql = f"SELECT *, {ts} AS __ts FROM __parity_entity_input"
        else:
            base = f"read_parquet({literal(entity.path)})" if entity.path else f"({entity.sql})"
            entity_sql = _refusing_nulls(
                f"SELECT *, (row_number() OVER ()) - 1 AS __rid, {ts} AS __ts FROM {base}",
                timestamp_column,
                request,
            )
        outputs = _nullable_outputs(entity.schema.names, timestamp_column, entity.schema)
        scans = _exact_keys(self._scans(request), request, entity.schema)
        sql = retrieval_sql(request, entity_sql, scans, outputs)
        log.debug("retrieval SQL: %s", sql)
        return DuckDBJob(connection, sql)

    def interval(
        self, request: RetrievalRequest, start: datetime, end: datetime, timestamp_column: str
    ) -> DuckDBJob:
        keys = interval_keys(request)
        scans = self._scans(request)
        lo, hi = to_micros(start), to_micros(end)
        rows = " UNION ".join(
            f"SELECT {', '.join(quote(k) for k in keys)}, __ts FROM "
            f"({source_sql(v.view, (), scans[v.view.name])}) WHERE __ts BETWEEN {lo} AND {hi}"
            for v in request.views
        )
        key_list = ", ".join(quote(k) for k in keys)
        entity_sql = (
            f"SELECT {key_list}, make_timestamp(__ts)::TIMESTAMPTZ AS {quote(timestamp_column)}, "
            f"(row_number() OVER (ORDER BY __ts, {key_list})) - 1 AS __rid, __ts "
            f"FROM (SELECT DISTINCT * FROM ({rows}))"
        )
        stamp = pa.schema([pa.field(timestamp_column, pa.timestamp("us", tz="UTC"))])
        outputs = _nullable_outputs([*keys, timestamp_column], timestamp_column, stamp)
        connection = self.connect()
        return DuckDBJob(connection, retrieval_sql(request, entity_sql, scans, outputs))


def _exact_keys(
    scans: dict[str, SourceScan], request: RetrievalRequest, entity: pa.Schema
) -> dict[str, SourceScan]:
    """The scans, with the one-ASOF join kept only where the join compares keys as the proof
    did: an entity key that is not text, against a source key that is text, makes DuckDB cast
    the source's text ('1', '01', ' 1' all become 1): ties the proof on the text never saw."""
    import pyarrow.parquet as pq

    def text(kind: pa.DataType) -> bool:
        kind = kind.value_type if pat.is_dictionary(kind) else kind  # pandas' category
        checks = (pat.is_string, pat.is_large_string, pat.is_string_view, pat.is_binary)
        return any(check(kind) for check in (*checks, pat.is_large_binary, pat.is_binary_view))

    found = {}
    for view_request in request.views:
        view, scan = view_request.view, scans[view_request.view.name]
        source = view.batch_source
        cast = [
            source.column_for(k)
            for k in view.join_keys
            if k in entity.names and not text(entity.field(k).type)
        ]
        if scan.untied and cast:
            constant = {c.name: c.type for c in scan.constants}
            try:
                schemas = [pq.read_schema(f) for f in scan.files]
            except (OSError, pa.ArrowException):
                schemas = []  # unknown: the exact two-pass join
            kinds = [
                s.field(c).type if c in s.names else constant.get(c, pa.null())
                for s in schemas
                for c in cast
            ]
            if not schemas or any(text(k) or pat.is_null(k) for k in kinds):
                scan = replace(scan, untied=False)
        found[view.name] = scan
    return found


def _refusing_nulls(entity_sql: str, timestamp_column: str, request: RetrievalRequest) -> str:
    """The rows of a Parquet or SQL entity frame, failing as they are read (EntityFrameError,
    via DuckDBJob._run) at a row without a time or a join key: what entity_frame.check refuses
    up front for frames in memory."""
    checks = [(timestamp_column, entity_frame.NO_TIME)]
    checks += [(key, entity_frame.NULL_KEY) for key in entity_frame.join_keys(request)]
    cases = []
    for column, what in checks:
        head, tail = entity_frame.null_message(column, "\x00", what).split("\x00")
        message = f"{literal(head)} || __rid::VARCHAR || {literal(tail)}"
        cases.append(f"WHEN {quote(column)} IS NULL THEN error({message})")
    return f"SELECT * REPLACE (CASE {' '.join(cases)} ELSE __ts END AS __ts) FROM ({entity_sql})"


def _nullable_outputs(columns: list[str], timestamp_column: str, schema: pa.Schema) -> str:
    """SQL that rewrites the entity columns for the output: each one nullable, and the timestamp
    as timestamp[us, UTC] (unless `schema` says it already is one: converting a million values
    costs a noticeable share of a retrieval).

    DuckDB writes a column NOT NULL to Parquet when its statistics show no nulls (an entity
    Parquet file's footer, a source filtered on IS NOT NULL); Spark cannot know that, so the
    same rows gave different files and dataset fingerprints. The CASE (a no-op on the values)
    drops that knowledge: every output column is nullable on both engines (docs/retrieval.md).
    """
    parts = []
    for column in columns:
        name = quote(column)
        value = name
        if column == timestamp_column:
            kind = schema.field(column).type
            if not (pat.is_timestamp(kind) and kind.unit == "us" and kind.tz is not None):
                value = "make_timestamp(__ts)::TIMESTAMPTZ"
        parts.append(f"CASE WHEN {value} IS NULL THEN NULL ELSE {value} END AS {name}")
    return ", ".join(parts)


def _epoch_us(schema: pa.Schema, column: str) -> str:
    """SQL for the entity timestamp as µs since the epoch, UTC (naive values are UTC)."""
    kind = schema.field(column).type
    name = quote(column)
    if pat.is_timestamp(kind) and kind.unit == "ns" and kind.tz is not None:
        # epoch_us has no TIMESTAMPTZ_NS overload (pandas writes nanoseconds); as UTC wall time
        # it is a TIMESTAMP_NS, whose epoch_us truncates to µs (docs/retrieval.md)
        return f"epoch_us(timezone('UTC', {name}))"
    if pat.is_timestamp(kind):
        return f"epoch_us({name})"
    if pat.is_date(kind):
        return f"epoch_us(CAST({name} AS TIMESTAMP))"
    if pat.is_string(kind) or pat.is_large_string(kind):
        return f"epoch_us(CAST({name} AS TIMESTAMPTZ))"
    raise EntityFrameError(
        f"entity frame column '{column}' is {kind}, not a timestamp; convert it to timestamps"
    )


def _winners(
    connection: duckdb.DuckDBPyConnection,
    view: FeatureView,
    scan: SourceScan,
    start_us: int,
    end_us: int,
) -> pa.Table:
    """Pass 1 of `latest` (duckdb_latest.py): packed where every row of an entity fits; the
    entities with a row that does not, again as structs."""
    from parity.offline.duckdb_latest import UNFIT, packing, winners_sql

    how = packing(scan, start_us, end_us)
    winners = connection.sql(winners_sql(view, scan, start_us, end_us, how)).to_arrow_table()
    if how is None or not winners.column("__fits").combine_chunks().false_count:
        return winners.select(["__ord"])
    log.info("%s: created times too far from event times to pack; pass 1 again", view.name)
    connection.register(UNFIT, winners)
    fitting = connection.sql(f"SELECT __ord FROM {UNFIT} WHERE __fits").to_arrow_table()
    again = winners_sql(view, scan, start_us, end_us, None, UNFIT)
    return pa.concat_tables([fitting, connection.sql(again).to_arrow_table().select(["__ord"])])
