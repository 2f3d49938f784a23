"""Label sources (a Parquet file or a DuckDB query) joined to the Parquet prediction log with
DuckDB, per window of prediction time, as known at an evaluation time `as_of`. I/O only: the
metrics live in monitoring.performance. Must not import the registry or the model server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity.errors import InvalidLabelValue, LabelColumnNotFound, LabelSourceError
from parity.offline.duckdb_sql import literal, quote

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pyarrow as pa

    from parity.definitions.monitor import LabelSource
    from parity.monitoring.performance import Window

REQUEST_ID = "request_id"  # the one join key read from the log's own column, not its entities
PREDICTION_COLUMNS = ("request_id", "prediction_timestamp", "score", "entities")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LogScope:
    """Which logged predictions: one model version's `status = 'ok'` rows under `log_dir`, the
    score read from the prediction (a number) or its output `score_output` (an object)."""

    log_dir: Path
    model: str
    version: int
    score_output: str | None = None
    roles: tuple[str, ...] | None = None  # only rows logged with one of these roles (rollouts)


@dataclass(frozen=True)
class Joined:
    """Predictions of each window with the labels known at `as_of`.

    `rows` holds the labelled predictions with a finite score, oldest first: `__window` (its
    index in the windows asked for), `__label` (the label's value), `__score`, the label
    source's columns and those of `PREDICTION_COLUMNS` the source does not have itself.
    """

    predictions: list[int]  # per window: logged predictions made by `as_of`
    labelled: list[int]  # per window: those with a known label
    dropped_scores: list[int]  # per window: labelled predictions whose score is null
    rows: pa.Table
    label_rows: int  # label source rows known at `as_of` (non-null label), matched or not
    log_files: int


def connect(repo_root: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection in UTC whose relative paths resolve in the repo root."""
    from parity.monitoring.logs import connect_duckdb

    connection = connect_duckdb()
    connection.execute(f"SET file_search_path = {literal(str(repo_root))}")
    return connection


def describe(source: LabelSource) -> str:
    return f"path '{source.path}'" if source.path is not None else "query"


def source_sql(source: LabelSource, repo_root: Path) -> str:
    """The SELECT that reads the label source: its Parquet file (relative to the repo) or its
    query as written."""
    if source.query is not None:
        return source.query
    path = Path(source.path or "")  # LabelSource validation: exactly one of path / query
    path = path if path.is_absolute() else repo_root / path
    if not any(path.parent.glob(path.name)):
        raise LabelSourceError(
            f"label source path '{source.path}' matches no file under {repo_root}; write the "
            "labels there or fix LabelSource(path=...)"
        )
    return f"SELECT * FROM read_parquet({literal(str(path))})"


def check_columns(
    connection: duckdb.DuckDBPyConnection, source: LabelSource, sql: str
) -> list[str]:
    """The source's columns; LabelColumnNotFound for a label, key or timestamp it lacks."""
    import duckdb

    try:
        columns = [row[0] for row in connection.execute(f"DESCRIBE ({sql})").fetchall()]
    except duckdb.Error as error:
        raise LabelSourceError(
            f"label source {describe(source)} cannot be read: {error}; fix the file or the query"
        ) from None
    wanted = {"label": source.label, "timestamp_field": source.timestamp_field}
    wanted["label_timestamp_field"] = source.label_timestamp_field
    wanted.update({f"join_keys[{i}]": key for i, key in enumerate(source.join_keys)})
    for field, column in wanted.items():
        if column is not None and column not in columns:
            raise LabelColumnNotFound(
                f"label source {describe(source)} has no column '{column}' (LabelSource "
                f"{field}); its columns are {columns}"
            )
    return columns


def log_files(log_dir: Path, first: date, last: date) -> list[str]:
    """Finished log files (`*.parquet`, never the hidden `.*.inprogress` segments) of the days
    from `first` to `last`."""
    if not log_dir.is_dir():
        return []
    found: list[str] = []
    for folder in sorted(log_dir.glob("date=*")):
        try:
            day = date.fromisoformat(folder.name.removeprefix("date="))
        except ValueError:
            continue
        if first <= day <= last:
            found.extend(str(f) for f in sorted(folder.glob("*.parquet")))
    return found


def join(
    connection: duckdb.DuckDBPyConnection,
    scope: LogScope,
    source: LabelSource,
    sql: str,
    windows: Sequence[Window],
    as_of: datetime,
) -> Joined:
    """Each window's predictions left-joined to the labels known at `as_of` (the latest one per
    key when a key was labelled twice); predictions made after `as_of` are not counted."""
    if not windows:
        raise ValueError("no windows to join: until must be after since")
    columns = check_columns(connection, source, sql)
    files = log_files(scope.log_dir, windows[0].start.date(), windows[-1].end.date())
    _predictions_table(connection, scope, files, source, windows, as_of)
    _labels_table(connection, source, sql, as_of)
    on = _join_condition(source)
    counts = connection.execute(
        f"""SELECT p.window_index, count(*), count(l.__lk0),
                   count(l.__lk0) FILTER (WHERE p.score IS NULL OR NOT isfinite(p.score))
            FROM __preds p LEFT JOIN __labels l ON {on} GROUP BY p.window_index"""
    ).fetchall()
    per_window = {int(w): (int(n), int(labelled), int(bad)) for w, n, labelled, bad in counts}
    extra = [c for c in PREDICTION_COLUMNS if c not in columns]
    picked = "".join(f"p.{quote(c)}, " for c in extra)
    rows = connection.sql(
        f"""SELECT p.window_index AS __window, l.{quote(source.label)} AS __label,
                   p.score AS __score, {picked}
                   l.* EXCLUDE ({_internal(source)})
            FROM __preds p JOIN __labels l ON {on}
            WHERE p.score IS NOT NULL AND isfinite(p.score)
            ORDER BY p.prediction_timestamp, p.request_id"""
    ).to_arrow_table()
    label_rows = connection.execute("SELECT count(*) FROM __labels").fetchone()
    return Joined(
        predictions=[per_window.get(i, (0, 0, 0))[0] for i in range(len(windows))],
        labelled=[per_window.get(i, (0, 0, 0))[1] for i in range(len(windows))],
        dropped_scores=[per_window.get(i, (0, 0, 0))[2] for i in range(len(windows))],
        rows=rows,
        label_rows=int(label_rows[0]) if label_rows else 0,
        log_files=len(files),
    )


def _score_sql(scope: LogScope) -> str:
    if scope.score_output is None:
        return "TRY_CAST(prediction AS DOUBLE)"  # a number; null (NaN, inf) stays null
    path = literal(f'$."{scope.score_output}"')
    return f"TRY_CAST(json_extract_string(prediction, {path}) AS DOUBLE)"


def _key_sql(key: str) -> str:
    if key == REQUEST_ID:
        return "request_id"
    path = literal('$."' + key + '"')
    return f"json_extract_string(entities, {path})"


def _predictions_table(
    connection: duckdb.DuckDBPyConnection,
    scope: LogScope,
    files: list[str],
    source: LabelSource,
    windows: Sequence[Window],
    as_of: datetime,
) -> None:
    """Temp table __preds: the scope's predictions in the windows, made by `as_of`, with their
    window index, score and join keys as text."""
    keys = ", ".join(f"{_key_sql(k)} AS __pk{i}" for i, k in enumerate(source.join_keys))
    if not files:
        empty = ", ".join(f"''::VARCHAR AS __pk{i}" for i in range(len(source.join_keys)))
        connection.execute(
            "CREATE OR REPLACE TEMP TABLE __preds AS SELECT 0::BIGINT AS window_index, "
            "''::VARCHAR AS request_id, now() AS prediction_timestamp, 0.0::DOUBLE AS score, "
            f"''::VARCHAR AS entities, {empty} WHERE false"
        )
        return
    start, end = windows[0].start, windows[-1].end
    width_us = (windows[0].end - start) // timedelta(microseconds=1)
    connection.execute(
        f"""CREATE OR REPLACE TEMP TABLE __preds AS
            SELECT (epoch_us(event_timestamp) - $start_us) // $width_us AS window_index,
                   request_id, event_timestamp AS prediction_timestamp,
                   {_score_sql(scope)} AS score, entities, {keys}
            FROM read_parquet($files, union_by_name = true)
            WHERE model = $model AND version = $version AND status = 'ok'
              AND event_timestamp >= $start AND event_timestamp < $end
              AND event_timestamp <= $as_of{_roles_sql(scope)}""",
        {
            "files": files,
            "model": scope.model,
            "version": scope.version,
            "start": start,
            "end": end,
            "as_of": as_of,
            "start_us": (start - _EPOCH) // timedelta(microseconds=1),
            "width_us": width_us,
        },
    )


def _roles_sql(scope: LogScope) -> str:
    if scope.roles is None:
        return ""
    return f" AND role IN ({', '.join(literal(r) for r in scope.roles) or 'NULL'})"


def _labels_table(
    connection: duckdb.DuckDBPyConnection, source: LabelSource, sql: str, as_of: datetime
) -> None:
    keys = [f"CAST({quote(k)} AS VARCHAR) AS __lk{i}" for i, k in enumerate(source.join_keys)]
    partition = [f"__lk{i}" for i in range(len(source.join_keys))]
    if _uses_time(source):
        keys.append(f"CAST({quote(source.timestamp_field or '')} AS TIMESTAMPTZ) AS __lt")
        partition.append("__lt")
    where = f"{quote(source.label)} IS NOT NULL"
    order = f"{quote(source.label)} DESC"
    if source.label_timestamp_field is not None:
        known = f"CAST({quote(source.label_timestamp_field)} AS TIMESTAMPTZ)"
        where += f" AND {known} <= $as_of"
        order = f"{known} DESC, {order}"
    connection.execute(
        f"""CREATE OR REPLACE TEMP TABLE __labels AS
            SELECT *, {", ".join(keys)} FROM ({sql}) AS __source WHERE {where}
            QUALIFY row_number() OVER (PARTITION BY {", ".join(partition)} ORDER BY {order}) = 1""",
        {"as_of": as_of} if source.label_timestamp_field is not None else None,
    )


def _uses_time(source: LabelSource) -> bool:
    """Entity-key joins match the prediction's event time too; request-id joins do not."""
    return source.timestamp_field is not None and REQUEST_ID not in source.join_keys


def _join_condition(source: LabelSource) -> str:
    parts = [f"p.__pk{i} = l.__lk{i}" for i in range(len(source.join_keys))]
    if _uses_time(source):
        parts.append("p.prediction_timestamp = l.__lt")
    return " AND ".join(parts)


def _internal(source: LabelSource) -> str:
    names = [f"__lk{i}" for i in range(len(source.join_keys))]
    return ", ".join(names + (["__lt"] if _uses_time(source) else []))


def label_array(values: pa.ChunkedArray | pa.Array, column: str) -> np.ndarray[Any, Any]:
    """The label column as booleans; InvalidLabelValue naming it for anything but 0/1/true/false."""
    import numpy as np
    import pyarrow as pa

    if pa.types.is_boolean(values.type):
        return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.bool_)
    try:
        numbers = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    except (ValueError, TypeError):
        numbers = np.array([np.nan])
    bad = ~((numbers == 0.0) | (numbers == 1.0))
    if bad.any():
        shown = values.to_pylist()[int(np.flatnonzero(bad)[0])] if len(values) else None
        raise InvalidLabelValue(
            f"label column '{column}' holds {shown!r}; labels must be 0/1 or true/false "
            "(null for not yet known)"
        )
    flags: np.ndarray[Any, Any] = numbers == 1.0
    return flags
