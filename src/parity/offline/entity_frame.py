"""The entity frame of a retrieval: a DataFrame, Arrow table, Parquet path or SQL, and its checks.

Validates columns and types against the request before any join runs; timestamps become UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity.errors import EntityFrameError
from parity.offline.request import RetrievalRequest

if TYPE_CHECKING:
    import pyarrow as pa

RESERVED_COLUMNS = ("__rid", "__ts")
NO_TIME = "no time; every entity row needs one"
NULL_KEY = "a null join key, which no feature row can match"
_SQL_STARTS = ("select", "with", "from", "values", "(")


@dataclass(frozen=True)
class EntityFrame:
    """Exactly one of `table` (in memory), `path` (Parquet) or `sql` is set."""

    schema: pa.Schema
    table: pa.Table | None = None
    path: str | None = None
    sql: str | None = None


def is_sql(text: str) -> bool:
    return text.lstrip().lower().startswith(_SQL_STARTS)


def from_memory(entity_df: Any, timestamp_column: str) -> EntityFrame:
    """A pandas DataFrame or Arrow table, with its timestamp column normalized to UTC."""
    import pyarrow as pa

    if isinstance(entity_df, pa.Table):
        table = entity_df
    elif type(entity_df).__name__ == "DataFrame" and hasattr(entity_df, "to_dict"):
        table = _from_pandas(entity_df, timestamp_column)
    else:
        raise EntityFrameError(
            f"entity_df must be a pandas DataFrame, a pyarrow Table, a Parquet path or a SQL "
            f"query, not {type(entity_df).__name__}"
        )
    if timestamp_column in table.column_names:
        index = table.column_names.index(timestamp_column)
        table = table.set_column(
            index, timestamp_column, normalize_timestamp(table[timestamp_column], timestamp_column)
        )
    return EntityFrame(table.schema, table=table)


def _from_pandas(frame: Any, timestamp_column: str) -> pa.Table:
    import pyarrow as pa

    frame = frame.reset_index(drop=True)
    if timestamp_column in frame.columns:
        frame = frame.assign(
            **{timestamp_column: _pandas_utc(frame[timestamp_column], timestamp_column)}
        )
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as error:  # ValueError: duplicate names
        raise EntityFrameError(f"entity_df cannot be converted to Arrow: {error}") from None


def _pandas_utc(column: Any, name: str) -> Any:
    import pandas as pd

    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return column.dt.tz_convert("UTC")
    if pd.api.types.is_numeric_dtype(column.dtype) or _numbers(column):
        raise EntityFrameError(
            f"entity frame column '{name}' holds numbers, not times: epoch numbers are not "
            f"guessed (seconds or milliseconds?); convert them, e.g. "
            f"pd.to_datetime(df['{name}'], unit='s', utc=True), or give ISO 8601 text"
        )
    try:
        if pd.api.types.is_datetime64_dtype(column.dtype):
            return column.dt.tz_localize("UTC")
        if _all_aware(column):  # time zones that differ: one instant each, read as UTC
            return pd.to_datetime(column, utc=True, format="ISO8601")
        return pd.to_datetime(column, utc=False, format="ISO8601").pipe(_localize)
    except (ValueError, TypeError) as error:
        # pandas adds lines of format advice after its first sentence
        first = str(error).splitlines()[0].split(". You might")[0].rstrip(". ")
        raise EntityFrameError(
            f"entity frame column '{name}' is not a usable timestamp column ({first}). Give "
            "datetimes of one kind: all timezone-aware, or all naive (read as UTC)"
        ) from None


def _all_aware(column: Any) -> bool:
    """Whether every value of an object column is a time with a zone (a datetime with tzinfo, or
    ISO 8601 text with an offset or Z), so that mixed zones are not mistaken for mixed kinds."""
    from datetime import datetime

    values = column.dropna().tolist()
    for value in values:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                return False
        if not isinstance(value, datetime) or value.tzinfo is None:
            return False
    return bool(values)


def _numbers(column: Any) -> bool:
    """Whether a text or object column's first value is a number (an epoch, most likely)."""
    first = column.dropna().head(1).tolist()
    if not first:
        return False
    value = first[0]
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    return isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit()


def _localize(column: Any) -> Any:
    import pandas as pd

    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return column.dt.tz_convert("UTC")
    if not pd.api.types.is_datetime64_dtype(column.dtype):
        raise TypeError(f"values of mixed time zones or types ({column.dtype})")
    return column.dt.tz_localize("UTC")


def normalize_timestamp(column: Any, name: str) -> Any:
    """An Arrow timestamp column as timestamp[us, UTC]; naive values are read as UTC."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as t

    kind = column.type
    if t.is_timestamp(kind):
        if kind.tz is None:
            column = pc.assume_timezone(column, "UTC")
        if kind.unit == "ns":  # truncated to µs (docs/retrieval.md), earlier in time as DuckDB does
            column = pc.floor_temporal(column, unit="microsecond")
        return column.cast(pa.timestamp("us", tz="UTC"))
    if t.is_date(kind):
        return column.cast(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
    if t.is_string(kind) or t.is_large_string(kind):
        import pandas as pd

        parsed = _pandas_utc(pd.Series(column.to_pandas()), name)
        return pa.array(parsed, pa.timestamp("us", tz="UTC"))
    raise EntityFrameError(
        f"entity frame column '{name}' is {kind}, not a timestamp; convert it to datetimes"
    )


def from_path_or_sql(text: str | Path, schema: pa.Schema, *, sql: bool) -> EntityFrame:
    if sql:
        return EntityFrame(schema, sql=str(text))
    return EntityFrame(schema, path=str(text))


def check(frame: EntityFrame, request: RetrievalRequest, timestamp_column: str) -> None:
    """Raise EntityFrameError if a join key or the timestamp is missing or of the wrong type."""
    columns = {f.name: f.type for f in frame.schema}
    reserved = sorted(set(RESERVED_COLUMNS) & set(columns))
    if reserved:
        raise EntityFrameError(
            f"entity frame columns {reserved} are reserved by parity; rename them"
        )
    if timestamp_column not in columns:
        raise EntityFrameError(
            f"entity frame has no timestamp column '{timestamp_column}' (it has "
            f"{sorted(columns)}); add it or pass event_timestamp_column=..."
        )
    for view_request in request.views:
        for entity in view_request.view.entities:
            for key in entity.join_keys:
                if key not in columns:
                    raise EntityFrameError(
                        f"entity frame has no join key column '{key}', needed by feature view "
                        f"'{view_request.view.name}' (entity '{entity.name}'); "
                        f"it has {sorted(columns)}"
                    )
                if not entity.value_type.accepts_arrow(columns[key]):
                    raise EntityFrameError(
                        f"entity frame column '{key}' is {columns[key]} but entity '{entity.name}' "
                        f"keys are {entity.value_type}; convert the column"
                    )
    _check_request_fields(columns, request)
    if frame.table is not None:
        _refuse_nulls(frame.table, timestamp_column, NO_TIME)
        for key in join_keys(request):
            _refuse_nulls(frame.table, key, NULL_KEY)
    clash = sorted(set(request.output_names) & set(columns))
    if clash:
        raise EntityFrameError(
            f"entity frame columns {clash} have the names of requested features; rename them "
            "or pass full_feature_names=True"
        )


def _refuse_nulls(table: pa.Table, column: str, what: str) -> None:
    """An entity row without a time or a key is refused naming the row (as push refuses it),
    instead of answering all-null features for it."""
    import pyarrow.compute as pc

    values = table[column]
    if values.null_count:
        row = pc.index(values.is_null(), True).as_py()
        raise EntityFrameError(null_message(column, str(row), what))


def join_keys(request: RetrievalRequest) -> list[str]:
    """Every join key of the request's views, once each, in order."""
    return list(dict.fromkeys(k for v in request.views for k in v.view.join_keys))


def null_message(column: str, row: str, what: str) -> str:
    return f"entity frame column '{column}' row {row} has {what}: drop the row or fill it in"


def _check_request_fields(columns: dict[str, pa.DataType], request: RetrievalRequest) -> None:
    """On-demand views' request fields are entity frame columns of their declared types (an
    all-null column is accepted: its values are missing)."""
    import pyarrow.types as t

    for demand in request.on_demand:
        for given in (i for i in demand.inputs if i.request):
            found = columns.get(given.column)
            if found is None:
                raise EntityFrameError(
                    f"on-demand feature view '{demand.view.name}' needs request field "
                    f"'{given.name}'; add it as a column of the entity frame"
                )
            if not (t.is_null(found) or given.dtype.accepts_arrow(found)):
                raise EntityFrameError(
                    f"request field '{given.name}' of on-demand feature view "
                    f"'{demand.view.name}' is {given.dtype}, but the entity frame column is "
                    f"{found}; convert the column"
                )
