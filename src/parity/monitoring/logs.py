"""Reads the Parquet prediction log with DuckDB, out of core: one model's rows in [since, until),
bucketed into windows, JSON `features` / `entities` / `prediction` parsed into typed columns.

Reads complete `*.parquet` files only; lists the `.inprogress` segments for readers of the newest
rows (rollout gates decode them with inference.predlog_live). Must not import inference.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from parity.errors import InvalidWindow, PredictionLogNotFound, PredictionLogUnreadable

if TYPE_CHECKING:
    import pyarrow as pa

FEATURES, ENTITIES, PREDICTION = "features", "entities", "prediction"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LogColumn:
    """One column to read: `key` in the JSON object of `source` ('features', 'entities' or
    'prediction'), as `sql_type` (DOUBLE, BOOLEAN or VARCHAR); for 'prediction', key None is
    the prediction itself (a one-output model)."""

    name: str
    source: str
    sql_type: str
    key: str | None = None


@dataclass(frozen=True)
class Windows:
    """Windows aligned to multiples of `width` from the Unix epoch (hours on the hour, days at
    00:00 UTC), clipped to [since, until): the first and last may be partial. The same complete
    window is the same interval in every run, so alert rules never count overlapping data twice.
    `origin` is the aligned start of the first window (`since` when alignment is impossible)."""

    since: datetime
    until: datetime
    width: timedelta
    origin: datetime | None = None

    @property
    def start(self) -> datetime:
        return self.since if self.origin is None else self.origin

    @property
    def count(self) -> int:
        return math.ceil((self.until - self.start) / self.width)

    def bounds(self, index: int) -> tuple[datetime, datetime]:
        start = self.start + index * self.width
        end = start + self.width if self.until - start > self.width else self.until
        return max(start, self.since), end


def aligned_start(since: datetime, width: timedelta) -> datetime | None:
    """The start of the epoch-aligned window of `width` holding `since`; None when it would fall
    outside what a datetime holds."""
    try:
        return _EPOCH + ((since - _EPOCH) // width) * width
    except OverflowError:
        return None


def range_start(until: datetime, width: timedelta, windows: int) -> datetime:
    """`windows` widths before `until`, or the earliest time a datetime holds when that is
    further back (a huge --window without --since reads everything before `until`)."""
    try:
        return until - windows * width
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def make_windows(since: datetime, until: datetime, width: timedelta) -> Windows:
    """Checked windows: positive width, since before until, both UTC."""
    if width <= timedelta(0):
        raise InvalidWindow(f"window {width} must be positive, e.g. 1h or 1d")
    since, until = _utc(since), _utc(until)
    if since >= until:
        raise InvalidWindow(
            f"since {since.isoformat()} is not before until {until.isoformat()}; pass an "
            "earlier --since or a later --until"
        )
    if (until - since) / width > 100_000:
        raise InvalidWindow(
            f"{(until - since) / width:.0f} windows of {width} between {since.isoformat()} "
            f"and {until.isoformat()}: use a wider --window or a shorter range (at most 100,000)"
        )
    if width >= until - since:  # a window wider than the range is the range: keeps since +
        return Windows(since, until, until - since)  # width inside what datetime holds
    return Windows(since, until, width, aligned_start(since, width))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _micros(moment: datetime) -> int:
    return (_utc(moment) - _EPOCH) // timedelta(microseconds=1)


def _timestamp(moment: datetime) -> str:
    return f"TIMESTAMPTZ '{_utc(moment).isoformat(timespec='microseconds')}'"


def log_files(directory: Path, since: datetime, until: datetime) -> list[str]:
    """The complete Parquet files of the days that overlap [since, until), by their
    `date=YYYY-MM-DD` folder (hidden `.inprogress` segments do not end in `.parquet`)."""
    if not directory.is_dir():
        raise PredictionLogNotFound(
            f"the prediction log folder {directory} does not exist; the model server writes it "
            "(models.serving.prediction_log in parity.yaml) once it has served predictions"
        )
    files = []
    for folder in day_folders(directory, since, until):
        files += sorted(str(p) for p in folder.glob("*.parquet") if not p.name.startswith("."))
    return files


def log_segments(directory: Path, since: datetime, until: datetime) -> list[Path]:
    """The in-progress segments (`.NAME.parquet.inprogress`, rows not yet in Parquet) of the days
    that overlap [since, until); none when the folder does not exist (yet)."""
    if not directory.is_dir():
        return []
    return [
        path
        for folder in day_folders(directory, since, until)
        for path in sorted(folder.glob(".*.parquet.inprogress"))
    ]


def day_folders(directory: Path, since: datetime, until: datetime) -> list[Path]:
    """The `date=YYYY-MM-DD` folders of the days that overlap [since, until), in date order."""
    first, last = _utc(since).date(), (_utc(until) - timedelta(microseconds=1)).date()
    found = []
    for folder in sorted(directory.glob("date=*")):
        try:
            day = date.fromisoformat(folder.name.removeprefix("date="))
        except ValueError:
            continue
        if first <= day <= last:
            found.append(folder)
    return found


def _struct(columns: Sequence[LogColumn]) -> str:
    return json.dumps({c.key or c.name: c.sql_type for c in columns})


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def window_sql(
    files: Sequence[str],
    model: str,
    versions: Sequence[int] | None,
    windows: Windows,
    columns: Sequence[LogColumn],
) -> str:
    """The query (pure text): version, window index, then each column, in the files' order
    (sorting here would move every column; `LogRead.groups` sorts the keys). Each JSON column is
    parsed once per row into a struct (`json_transform`); a value of another JSON type than the
    column's (text for a number) reads as NULL, never an error."""
    width, since = windows.width // timedelta(microseconds=1), _micros(windows.start)
    parsed, select = [], []
    for source in (FEATURES, ENTITIES, PREDICTION):
        chosen = [c for c in columns if c.source == source]
        keyed = [c for c in chosen if c.key is not None]
        if keyed:
            parsed.append(f"json_transform({source}, {_literal(_struct(keyed))}) AS _{source}")
            select += [f"_{source}.{_quote(c.key or '')} AS {_quote(c.name)}" for c in keyed]
        for column in (c for c in chosen if c.key is None):
            parsed.append(f"TRY_CAST({source} AS {column.sql_type}) AS _{source}_value")
            select.append(f"_{source}_value AS {_quote(column.name)}")
    where = [
        f"model = {_literal(model)}",
        f"event_timestamp >= {_timestamp(windows.since)}",
        f"event_timestamp < {_timestamp(windows.until)}",
        "status = 'ok'",
    ]
    if versions is not None:
        where.append(f"version IN ({', '.join(str(int(v)) for v in versions)})")
    sources = ", ".join(_literal(f) for f in files)
    inner = ", ".join(["version", "event_timestamp", *parsed])
    outer = ", ".join(
        [
            "version",
            f"(epoch_us(event_timestamp) - {since}) // {width} AS _window",
            *select,
        ]
    )
    return (
        f"SELECT {outer} FROM (SELECT {inner} FROM "
        f"read_parquet([{sources}], union_by_name = true) "
        f"WHERE {' AND '.join(where)})"
    )


def counts_sql(files: Sequence[str], model: str, windows: Windows) -> str:
    """Rows per version of `model` in the range (pure text), to say what the log does hold."""
    sources = ", ".join(_literal(f) for f in files)
    return (
        f"SELECT version, count(*) FROM read_parquet([{sources}], union_by_name = true) "
        f"WHERE model = {_literal(model)} "
        f"AND event_timestamp >= {_timestamp(windows.since)} "
        f"AND event_timestamp < {_timestamp(windows.until)} AND status = 'ok' "
        "GROUP BY version ORDER BY version"
    )


KEY_SAMPLE_ROWS = 1_000  # rows whose JSON keys are listed to name a column the log lacks


def keys_sql(files: Sequence[str], model: str, version: int, windows: Windows, source: str) -> str:
    """The distinct keys of `source`'s JSON objects in the first rows of a version (pure text)."""
    sources = ", ".join(_literal(f) for f in files)
    return (
        f"SELECT DISTINCT unnest(json_keys({source})) FROM (SELECT {source} FROM "
        f"read_parquet([{sources}], union_by_name = true) WHERE model = {_literal(model)} "
        f"AND version = {int(version)} "
        f"AND event_timestamp >= {_timestamp(windows.since)} "
        f"AND event_timestamp < {_timestamp(windows.until)} AND status = 'ok' "
        f"LIMIT {KEY_SAMPLE_ROWS})"
    )


@dataclass(frozen=True)
class LogRead:
    """The rows read: `table` has version, _window and the columns."""

    table: pa.Table
    windows: Windows

    def groups(self) -> list[tuple[int, int, pa.Table]]:
        """(version, window index, rows) for each window holding rows, in order (zero-copy
        slices; the rows are put in order first only if the log's files were not)."""
        import numpy as np

        table = self.table
        if table.num_rows == 0:
            return []
        version = table.column("version").to_numpy()
        window = table.column("_window").to_numpy()
        key = (version - version.min()) * (self.windows.count + 1) + window
        if np.any(key[1:] < key[:-1]):  # several writers' files interleave in time
            order = np.argsort(key, kind="stable")
            table, version, window, key = (
                table.take(order),
                version[order],
                window[order],
                key[order],
            )
        starts = np.flatnonzero(np.diff(key)) + 1
        bounds = zip([0, *starts.tolist()], [*starts.tolist(), table.num_rows], strict=True)
        columns = [n for n in table.column_names if n not in ("version", "_window")]
        body = table.select(columns)
        return [(int(version[s]), int(window[s]), body.slice(s, e - s)) for s, e in bounds]


class PredictionLogReader:
    """One DuckDB connection per read (UTC, the repo's memory limit and spill folder)."""

    def __init__(
        self,
        directory: Path,
        *,
        memory_limit: str | None = None,
        temp_directory: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.directory = directory
        self._settings = {
            "memory_limit": memory_limit,
            "temp_directory": temp_directory,
            "threads": threads,
        }

    def read(
        self,
        model: str,
        versions: Sequence[int] | None,
        windows: Windows,
        columns: Sequence[LogColumn],
    ) -> LogRead:
        import pyarrow as pa

        files = log_files(self.directory, windows.since, windows.until)
        if not files:
            return LogRead(pa.table({"version": pa.array([], pa.int64())}), windows)
        sql = window_sql(files, model, versions, windows, columns)
        with self._connect() as connection:
            check_log_files(connection, files)
            return LogRead(connection.sql(sql).to_arrow_table(), windows)

    def versions(self, model: str, windows: Windows) -> dict[int, int]:
        """Rows of each version of `model` in the range (empty: none logged)."""
        files = log_files(self.directory, windows.since, windows.until)
        if not files:
            return {}
        with self._connect() as connection:
            check_log_files(connection, files)
            rows = connection.sql(counts_sql(files, model, windows)).fetchall()
        return {int(version): int(count) for version, count in rows}

    def keys(self, model: str, version: int, windows: Windows, source: str) -> set[str]:
        """The keys logged in `source` ('features' or 'entities') by the first rows of the
        version in the range: enough to tell a column the log never holds from a null one."""
        files = log_files(self.directory, windows.since, windows.until)
        if not files:
            return set()
        with self._connect() as connection:
            check_log_files(connection, files)
            rows = connection.sql(keys_sql(files, model, version, windows, source)).fetchall()
        return {str(key) for (key,) in rows}

    def _connect(self) -> _Connection:
        return _Connection(self._settings, self.directory)


REQUIRED_COLUMNS = ("request_id", "event_timestamp", "model", "version", "prediction")


def check_log_files(connection: _DuckDB, files: Sequence[str]) -> None:
    """PredictionLogUnreadable naming the first file that lacks the log's columns: read by name
    (`union_by_name`, so files from before a new column still read), a foreign Parquet file
    would otherwise read as rows of nulls. Reads the files' footers only."""
    rows = connection.execute(
        "SELECT file_name, list(name) FROM parquet_schema($files) GROUP BY file_name",
        {"files": list(files)},
    ).fetchall()
    for file_name, names in sorted(rows):
        missing = [column for column in REQUIRED_COLUMNS if column not in set(names)]
        if missing:
            raise PredictionLogUnreadable(
                f"the prediction log file {file_name} could not be read: it has no column "
                f"{', '.join(missing)}, so it was not written by the model server; move the "
                "damaged file out of the log folder (only complete *.parquet files are read)"
            )


def connect_duckdb() -> _DuckDB:
    """An in-memory DuckDB connection for reading logs: times in UTC, and no progress bar printed
    to the terminal (a long query would otherwise draw one over the CLI's output)."""
    import duckdb

    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute("SET enable_progress_bar_print = false")
    return connection


class _Connection:
    def __init__(self, settings: Mapping[str, object], directory: Path) -> None:
        self._settings = settings
        self._directory = directory

    def __enter__(self) -> _DuckDB:
        self.connection = connect_duckdb()
        for name, value in self._settings.items():
            if value is not None:
                self.connection.execute(f"SET {name} = {_literal(str(value))}")
        return self.connection

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        import duckdb

        self.connection.close()
        unreadable = duckdb.IOException | duckdb.InvalidInputException | duckdb.BinderException
        if isinstance(error, unreadable):  # truncated, not Parquet, or not the log's columns
            raise PredictionLogUnreadable(
                f"the prediction log under {self._directory} could not be read: "
                f"{' '.join(str(error).split())}; move "
                "the damaged file out of the log folder (only complete *.parquet files are read)"
            ) from error


if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as _DuckDB
