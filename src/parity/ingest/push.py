"""store.push: validate rows against every view reading a push source, append them durably to the
offline batch folder (before returning), and write them to the online store (if newer).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq

from parity.definitions import FeatureView, PushSource, StreamSource
from parity.durable import fsync_dir
from parity.errors import BackendNotInstalled, FutureEventError, PushError, PushSourceNotFound
from parity.ingest.values import fit_column
from parity.offline.entity_frame import normalize_timestamp
from parity.offline.sources import resolve_path
from parity.online.encoding import OnlineRow, rows_from_columns
from parity.online.store import OnlineStore, TileStore
from parity.registry.catalog import Catalog
from parity.timeutil import NO_CREATED, from_micros, to_micros

PushTarget = Literal["online", "offline", "both"]


def views_of(catalog: Catalog, name: str) -> list[FeatureView]:
    views = [
        v
        for v in catalog.feature_views.values()
        if isinstance(v.source, PushSource | StreamSource) and v.source.name == name
    ]
    if not views:
        raise PushSourceNotFound(
            f"no feature view reads push source '{name}' in project '{catalog.project}'"
        )
    return views


def as_table(rows: Any) -> pa.Table:
    """Rows as an Arrow table: a DataFrame, an Arrow table, a dict of columns or a list of dicts."""
    try:
        if isinstance(rows, pa.Table):
            return rows
        if isinstance(rows, Mapping):
            return pa.table({str(k): _column(str(k), list(v)) for k, v in rows.items()})
        if isinstance(rows, Sequence) and not isinstance(rows, str | bytes):
            return pa.Table.from_pylist(list(rows))
        if type(rows).__name__ == "DataFrame":
            return pa.Table.from_pandas(rows, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as error:
        _refuse_out_of_range(rows)
        raise PushError(f"pushed rows cannot be read as a table: {error}") from None
    raise PushError(
        f"push rows must be a DataFrame, an Arrow table, a dict of columns or a list of dicts, "
        f"not {type(rows).__name__}"
    )


_INT64 = range(-(2**63), 2**63)


def _column(name: str, values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as error:
        _refuse_out_of_range({name: values})
        raise PushError(f"pushed column '{name}' cannot be read: {error}") from None


def _refuse_out_of_range(rows: Any) -> None:
    """Raise a PushError naming the first integer beyond Int64 (column and row), if any."""
    if isinstance(rows, Mapping):
        cells = (
            (k, i, v)
            for k, column in rows.items()
            if isinstance(column, list | tuple)
            for i, v in enumerate(column)
        )
    elif isinstance(rows, Sequence) and not isinstance(rows, str | bytes):
        cells = (
            (k, i, v)
            for i, row in enumerate(rows)
            if isinstance(row, Mapping)
            for k, v in row.items()
        )
    else:
        return
    for name, row, value in cells:
        if isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
            shown = str(value) if value.bit_length() <= 96 else f"of {value.bit_length()} bits"
            raise PushError(
                f"pushed column '{name}' row {row}: the integer {shown} is outside the 64-bit "
                "range that Parity stores (timestamps are ISO 8601 text)"
            )


def refuse_unread(views: list[FeatureView], table: pa.Table) -> None:
    """A pushed column that no view of the push source reads (and that is no timestamp column)
    is refused, as /v1 refuses unknown fields: it would be stored offline and never read."""
    source = views[0].batch_source
    known = {
        source.column_for(name)
        for view in views
        for name in [*view.join_keys, *(f.name for f in view.inputs)]
    }
    known |= {name for name in (source.timestamp_field, source.created_timestamp_column) if name}
    unread = [name for name in table.column_names if name not in known]
    if unread:
        readers = ", ".join(f"'{view.name}'" for view in views)
        raise PushError(
            f"pushed column {', '.join(repr(n) for n in unread)}: no feature view reads it "
            f"(push source '{views[0].source.name}' is read by {readers}, which read "
            f"{sorted(known)}); drop the column or add a Field for it"
        )


def validate(
    views: list[FeatureView], table: pa.Table, *, bytes_as_base64: bool = False
) -> pa.Table:
    """Check columns and types for every view; return the table with each column as its view
    declares it (safe casts, NaN as null) and UTC microsecond times. With `bytes_as_base64`,
    text in a Bytes column is base64 (how JSON carries bytes). A table of no rows is checked
    for its column names only."""
    source = views[0].batch_source
    columns = set(table.column_names)
    for view in views:
        for name in [*view.join_keys, *(f.name for f in view.inputs)]:
            column = source.column_for(name)
            if column not in columns:
                raise PushError(
                    f"pushed rows lack column '{column}' of feature view '{view.name}'; "
                    f"they have {sorted(columns)}"
                )
            keyed = [e.value_type for e in view.entities if name in e.join_keys]
            if keyed:
                _refuse_nulls(table[column], column, "a null join key")
            dtype = keyed[0] if keyed else view.input(name).dtype
            index = table.column_names.index(column)
            fitted = fit_column(table[column], column, dtype, view.name, bytes_as_base64)
            table = table.set_column(index, column, fitted)
    stamps = [name for name in (source.timestamp_field, source.created_timestamp_column) if name]
    for name in stamps:
        if name not in columns:
            raise PushError(f"pushed rows lack the timestamp column '{name}'")
    if table.num_rows == 0:
        return table
    for name in stamps:
        index = table.column_names.index(name)
        table = table.set_column(index, name, normalize_timestamp(table[name], name))
        _refuse_unrepresentable(table[name], name)
    _refuse_nulls(table[source.timestamp_field], source.timestamp_field, "no time")
    return table


def _refuse_nulls(column: pa.ChunkedArray, name: str, what: str) -> None:
    """A row no read could ever find (no key) or place in time (no event time) is refused."""
    if column.null_count:
        row = pa.compute.index(column.is_null(), True).as_py()
        raise PushError(f"pushed column '{name}' row {row} has {what}; every row needs one")


# Years 1 to 9999: the times Python (and so every online read) can represent.
_FIRST_US, _LAST_US = -62_135_596_800_000_000, 253_402_300_799_999_999


def _refuse_unrepresentable(column: pa.ChunkedArray, name: str) -> None:
    micros = column.cast(pa.int64())
    outside = pa.compute.or_(
        pa.compute.less(micros, _FIRST_US), pa.compute.greater(micros, _LAST_US)
    )
    if pa.compute.any(outside).as_py():
        row = pa.compute.index(outside, True).as_py()
        raise PushError(
            f"pushed column '{name}' row {row}: the time is before year 1 or after year 9999; "
            "send an ISO 8601 time in that range"
        )


def check_future(
    views: list[FeatureView], table: pa.Table, now: datetime, max_skew: timedelta
) -> None:
    """Refuse the push if an event is stamped more than `max_skew` after `now` (the
    `ingest.max_future_skew` policy), naming the first such row; nothing is written."""
    column = table[views[0].batch_source.timestamp_field]
    limit = to_micros(now) + int(max_skew.total_seconds() * 1_000_000)
    unit = pa.timestamp("us", tz=getattr(column.type, "tz", None))
    for row, moment in enumerate(column.cast(unit).cast(pa.int64()).to_pylist()):
        if moment is not None and moment > limit:
            raise FutureEventError(
                f"pushed row {row} has event time {from_micros(moment).isoformat()}, more than "
                f"max_future_skew ({max_skew}) after the store's clock {now.isoformat()}; fix "
                "the producer's timestamps (or raise ingest.max_future_skew in parity.yaml)"
            )


def append_offline(
    view: FeatureView,
    table: pa.Table,
    repo_root: Path,
    now: datetime,
    file_name: str | None = None,
) -> Path:
    """Write one Parquet file into the batch folder, durable (fsync) before it returns: a new
    time-ordered name, or `file_name` (replaced atomically if it exists)."""
    source = view.source
    if not isinstance(source, PushSource | StreamSource):
        raise PushError(f"feature view '{view.name}' does not read a push or stream source")
    target = Path(resolve_path(source.batch_source, repo_root))
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    stem = file_name or f"push-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
    if any(ch in target.name for ch in "*?["):
        # A glob like data/transactions*.parquet: new files must match it, so the name is the
        # pattern with its one '*' standing for `_<stem>` (sorting after the original files).
        if (
            target.name.count("*") != 1
            or any(ch in target.name for ch in "?[")
            or any(ch in str(target.parent) for ch in "*?[")
        ):
            raise PushError(
                f"source '{source.name}' has batch source '{source.batch_source.path}'; appends "
                "need a folder or a glob with one '*' in the file name"
            )
        folder = target.parent
        final = folder / target.name.replace("*", "_" + stem.removesuffix(".parquet"))
    elif target.suffix == ".parquet":
        raise PushError(
            f"source '{source.name}' has batch source '{source.batch_source.path}', a single "
            "file; pushes and streams append files, so use a folder (e.g. 'data/pushed/')"
        )
    else:
        folder = target
        final = folder / stem
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f".{final.name}.tmp"
    pq.write_table(table, temp)
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, final)
    fsync_dir(folder)
    return final


def online_rows(view: FeatureView, table: pa.Table) -> list[OnlineRow]:
    """The pushed rows (with an event time) as the view's online rows."""
    source = view.batch_source
    data = table.to_pydict()
    times = data[source.timestamp_field]
    created = data.get(source.created_timestamp_column or "", [None] * len(times))
    keep = [i for i, moment in enumerate(times) if moment is not None]
    columns: dict[str, list[Any]] = {
        name: [_plain(data[source.column_for(name)][i]) for i in keep]
        for name in [*view.join_keys, *view.feature_names]
    }
    columns["__ts"] = [to_micros(times[i]) for i in keep]
    columns["__created"] = [
        NO_CREATED if created[i] is None else to_micros(created[i]) for i in keep
    ]
    return rows_from_columns(view, columns)


def _plain(value: Any) -> Any:
    return to_micros(value) if isinstance(value, datetime) else value


def merge_online(
    store: OnlineStore, project: str, view: FeatureView, table: pa.Table, now: datetime
) -> None:
    """Fold pushed rows into an aggregated view's tiles (ingestion order: the push time)."""
    from parity.ingest.stream import tile_merges

    if not isinstance(store, TileStore):
        raise BackendNotInstalled(f"the online store {type(store).__name__} keeps no tiles")
    source = view.batch_source
    table = table.filter(pa.compute.is_valid(table[source.timestamp_field]))
    base = (to_micros(now) // 1000) << 20
    orders = [base + i for i in range(table.num_rows)]
    store.merge_tiles(project, tile_merges(view, table, orders, to_micros(now)))
