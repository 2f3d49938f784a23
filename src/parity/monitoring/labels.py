"""Label sources (a Parquet file or a DuckDB query) joined to the Parquet prediction log with
DuckDB, per window of prediction time (`join`) or for several arms in one pass (`join_arms`), as
known at an evaluation time `as_of`. I/O only: the
metrics live in monitoring.performance. Must not import the registry or the model server.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity.errors import (
    InvalidLabelValue,
    LabelColumnNotFound,
    LabelSourceError,
    PredictionLogUnreadable,
)
from parity.monitoring.logs import check_log_files
from parity.offline.duckdb_sql import literal, quote

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pyarrow as pa

    from parity.definitions.monitor import LabelSource
    from parity.monitoring.performance import Window

REQUEST_ID = "request_id"  # the one join key read from the log's own column, not its entities
PREDICTION_COLUMNS = ("request_id", "prediction_timestamp", "score", "entities")
ENTITIES = "entities"
TIES_IN_PYTHON = 1_000  # rows sharing an arm and a time ordered by request id in Python
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


def join_arms(
    connection: duckdb.DuckDBPyConnection,
    scopes: Sequence[LogScope],
    source: LabelSource,
    sql: str,
    window: Window,
    as_of: datetime,
    *,
    columns: bool = True,
) -> list[Joined]:
    """`join` for several scopes of one log folder and model (a rollout's arms) over one window,
    in one scan of the log and one build of the labels: the same `Joined` per scope (a row in
    two scopes counts in the first). Without `columns`, rows hold only `__window`, `__label` and
    `__score` (what built-in metrics read)."""
    if not scopes or len({(s.log_dir, s.model) for s in scopes}) != 1:
        raise ValueError("join_arms needs scopes of one log folder and one model")
    names = check_columns(connection, source, sql)
    files = log_files(scopes[0].log_dir, window.start.date(), window.end.date())
    _labels_table(connection, source, sql, as_of, slim=not columns)
    extra = [c for c in PREDICTION_COLUMNS if c not in names] if columns else []
    preds = _arms_sql(scopes, files, source, entities=ENTITIES in extra)
    picked = "".join(f", p.{quote(c)}" for c in extra)
    theirs = f", l.* EXCLUDE ({_internal(source)})" if columns else ""
    params = {"files": files, "model": scopes[0].model, "start": window.start}
    params.update({"end": window.end, "as_of": as_of})
    label_rows = int(connection.execute("SELECT count(*) FROM __labels").fetchall()[0][0])
    query = f"""SELECT p.__arm, l.__lk0 IS NOT NULL AS __known, l.{quote(source.label)} AS __label,
                       p.score AS __score, p.prediction_timestamp AS __at, p.request_id AS __rid
                       {picked}{theirs}
                FROM ({preds}) AS p LEFT JOIN __labels l ON {_join_condition(source)}"""
    if not files:
        table = connection.sql(query).to_arrow_table()
    else:  # the labels' hash table costs at most one entry per row the scan reads
        table = _run(connection, query, params, labels_build=label_rows <= _rows(connection, files))
    kept = ["__label", "__score", *extra, *(names if columns else [])]
    return _split_arms(table, len(scopes), kept, label_rows, files)


def _rows(connection: duckdb.DuckDBPyConnection, files: list[str]) -> int:
    """Rows in the log files, from their Parquet footers."""
    found = connection.execute(
        "SELECT sum(num_rows) FROM parquet_file_metadata($files)", {"files": files}
    ).fetchall()
    return int(found[0][0] or 0)


def _run(
    connection: duckdb.DuckDBPyConnection, query: str, params: dict[str, Any], *, labels_build: bool
) -> pa.Table:
    """The join's rows. With `labels_build` the hash join builds on the labels, its right side as
    written: DuckDB cannot estimate a filtered Parquet scan and would build on the predictions,
    twice the rows here (both arms), when it guesses them fewer. A DuckDB without that optimizer
    (before 1.1) keeps its own plan."""
    import duckdb

    if labels_build:
        try:
            connection.execute("SET disabled_optimizers = 'build_side_probe_side'")
        except duckdb.Error:
            labels_build = False
    try:
        return connection.sql(query, params=params).to_arrow_table()
    finally:
        if labels_build:
            connection.execute("RESET disabled_optimizers")


def _arms_sql(
    scopes: Sequence[LogScope], files: list[str], source: LabelSource, *, entities: bool
) -> str:
    """Each scope's predictions (pure text; $files, $model, $start, $end, $as_of parameters):
    `__arm` (the scope's index), request id, time, score, join keys as text; filtered in the
    scan, JSON parsed only for the score path and the entity join keys."""
    keys = "".join(f", {_key_sql(k)} AS __pk{i}" for i, k in enumerate(source.join_keys))
    if not files:
        empty = "".join(f", ''::VARCHAR AS __pk{i}" for i in range(len(source.join_keys)))
        return (
            "SELECT 0 AS __arm, ''::VARCHAR AS request_id, now() AS prediction_timestamp, "
            f"0.0::DOUBLE AS score, ''::VARCHAR AS entities{empty} WHERE false"
        )
    arms = [f"version = {int(s.version)}{_roles_sql(s)}" for s in scopes]
    arm = " ".join(f"WHEN {a} THEN {i}" for i, a in enumerate(arms))
    scores = [_score_sql(s) for s in scopes]
    score = " ".join(f"WHEN {i} THEN {s}" for i, s in enumerate(scores))
    score = scores[0] if len(set(scores)) == 1 else f"CASE __arm {score} END"
    parsed = entities or any(k != REQUEST_ID for k in source.join_keys)
    versions = ", ".join(sorted({str(int(s.version)) for s in scopes}))
    return f"""SELECT __arm, request_id, event_timestamp AS prediction_timestamp,
                      {score} AS score{", entities" if parsed else ""}{keys}
               FROM (SELECT CASE {arm} END AS __arm, request_id, event_timestamp, prediction
                            {", entities" if parsed else ""}
                     FROM read_parquet($files, union_by_name = true)
                     WHERE model = $model AND status = 'ok' AND version IN ({versions})
                       AND event_timestamp >= $start AND event_timestamp < $end
                       AND event_timestamp <= $as_of AND ({" OR ".join(f"({a})" for a in arms)}))"""


def _split_arms(
    table: pa.Table, arms: int, kept: list[str], label_rows: int, files: list[str]
) -> list[Joined]:
    """Per arm: the counts of `join`, and its labelled rows with a finite score in the order
    `join` gives them (time, then request id), sorted here rather than by DuckDB."""
    import numpy as np
    import pyarrow as pa

    arm = np.asarray(table.column("__arm").to_numpy(zero_copy_only=False), dtype=np.int64)
    known = np.asarray(table.column("__known").to_numpy(zero_copy_only=False), dtype=np.bool_)
    score = np.asarray(table.column("__score").to_numpy(zero_copy_only=False), dtype=np.float64)
    good = known & np.isfinite(score)
    made = np.bincount(arm, minlength=arms)
    labelled = np.bincount(arm[known], minlength=arms)
    dropped = np.bincount(arm[known & ~good], minlength=arms)
    order = _time_order(table, np.flatnonzero(good), arm)
    rows = table.select(kept).take(pa.array(order))
    bounds = np.r_[0, np.cumsum(np.bincount(arm[good], minlength=arms))]
    found = []
    for index in range(arms):
        part = rows.slice(int(bounds[index]), int(bounds[index + 1] - bounds[index]))
        window = pa.array(np.zeros(part.num_rows, dtype=np.int64))
        found.append(
            Joined(
                predictions=[int(made[index])],
                labelled=[int(labelled[index])],
                dropped_scores=[int(dropped[index])],
                rows=part.add_column(0, "__window", window),
                label_rows=label_rows,
                log_files=len(files),
            )
        )
    return found


def _time_order(table: pa.Table, chosen: np.ndarray[Any, Any], arm: np.ndarray[Any, Any]) -> Any:
    """`chosen` (row indices) ordered by arm, `__at`, then `__rid` (nulls last): numpy splits by
    arm and sorts by time; request ids are read only for rows sharing an arm and a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    at = table.column("__at").cast(pa.int64()).to_numpy()
    parts = [chosen[arm[chosen] == index] for index in range(int(arm.max(initial=0)) + 1)]
    # timsort: the join emits runs in time order when the log is, as one writer's files are
    order = np.concatenate([part[np.argsort(at[part], kind="stable")] for part in parts])
    same = np.flatnonzero((np.diff(arm[order]) == 0) & (np.diff(at[order]) == 0))
    if same.size == 0:
        return order
    tied = np.unique(np.r_[same, same + 1])  # positions in `order` of rows sharing a key
    if tied.size <= TIES_IN_PYTHON:  # a few ties: no copy of the request id column
        ids, rows = table.column("__rid"), order[tied].tolist()
        key = [(arm[i], at[i], ids[i].as_py()) for i in rows]
        inner = sorted(range(tied.size), key=lambda j: (*key[j][:2], key[j][2] is None, key[j][2]))
    else:
        keys = table.select(["__arm", "__at", "__rid"]).take(pa.array(order[tied]))
        inner = pc.sort_indices(keys, [(c, "ascending") for c in keys.column_names]).to_numpy()
    order[tied] = order[tied][np.asarray(inner, dtype=np.int64)]  # each group keeps its place
    return order


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
    with _unreadable_log(scope.log_dir):
        check_log_files(connection, files)
        _create_predictions(connection, scope, files, keys, start, end, as_of, width_us)


@contextmanager
def _unreadable_log(log_dir: Path) -> Iterator[None]:
    """A truncated or non-Parquet file in the log folder: PredictionLogUnreadable naming the
    folder and the fix, as the drift path says it (not DuckDB's own exception)."""
    import duckdb

    try:
        yield
    except (duckdb.IOException, duckdb.InvalidInputException) as error:
        raise PredictionLogUnreadable(
            f"the prediction log under {log_dir} could not be read: "
            f"{' '.join(str(error).split())}; move the damaged file out of the log folder "
            "(only complete *.parquet files are read)"
        ) from error


def _create_predictions(
    connection: duckdb.DuckDBPyConnection,
    scope: LogScope,
    files: list[str],
    keys: str,
    start: datetime,
    end: datetime,
    as_of: datetime,
    width_us: int,
) -> None:
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
    connection: duckdb.DuckDBPyConnection,
    source: LabelSource,
    sql: str,
    as_of: datetime,
    *,
    slim: bool = False,
) -> None:
    """Temp table __labels: per key, the label known at `as_of` (the latest; of labels known at
    the same time, the greatest), with every source column, or with `slim` the label only."""
    label = quote(source.label)
    keys = [f"CAST({quote(k)} AS VARCHAR) AS __lk{i}" for i, k in enumerate(source.join_keys)]
    partition = [f"__lk{i}" for i in range(len(source.join_keys))]
    if _uses_time(source):
        keys.append(f"CAST({quote(source.timestamp_field or '')} AS TIMESTAMPTZ) AS __lt")
        partition.append("__lt")
    where = f"{label} IS NOT NULL"
    order = f"{label} DESC"
    if source.label_timestamp_field is not None:
        known = f"CAST({quote(source.label_timestamp_field)} AS TIMESTAMPTZ)"
        where += f" AND {known} <= $as_of"
        order = f"{known} DESC, {order}"
    if slim and source.label_timestamp_field is None:  # the first by `label DESC` is the max
        body = f"""SELECT {", ".join(partition)}, max({label}) AS {label}
                   FROM (SELECT {label}, {", ".join(keys)} FROM ({sql}) AS __source
                         WHERE {where}) GROUP BY ALL"""
    else:
        body = f"""SELECT {label if slim else "*"}, {", ".join(keys)} FROM ({sql}) AS __source
                   WHERE {where} QUALIFY row_number() OVER (PARTITION BY {", ".join(partition)}
                   ORDER BY {order}) = 1"""
    connection.execute(
        f"CREATE OR REPLACE TEMP TABLE __labels AS {body}",
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
