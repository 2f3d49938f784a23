"""get_online_features: one read from the online store, shaped per feature with value statuses.

Pure apart from the single `OnlineStore.read`; the clock (for max age) is passed in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, cast

from parity.aggregation.tiles import read_plan, window_values
from parity.definitions import FeatureView
from parity.errors import BackendNotInstalled, EntityFrameError
from parity.offline.request import RetrievalRequest
from parity.online.encoding import OnlineRow, decode_payload, entity_keys
from parity.online.store import OnlineStore, TileStore
from parity.timeutil import from_micros


class Status(StrEnum):
    PRESENT = "PRESENT"
    NOT_FOUND = "NOT_FOUND"
    NULL_VALUE = "NULL_VALUE"
    OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"


@dataclass(frozen=True)
class OnlineResponse:
    """Entity columns, then per feature: values, statuses and event timestamps, row by row."""

    entities: dict[str, list[Any]]
    values: dict[str, list[Any]]
    statuses: dict[str, list[Status]]
    event_timestamps: dict[str, list[datetime | None]]

    @property
    def feature_names(self) -> list[str]:
        return list(self.values)

    def to_dict(self) -> dict[str, list[Any]]:
        return {**self.entities, **self.values}

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.to_dict())

    def to_arrow(self) -> Any:
        import pyarrow as pa

        return pa.table(self.to_dict())


def columnar(
    entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
) -> dict[str, list[Any]]:
    """Entity rows as a list of dicts or a dict of columns -> a dict of equal-length columns."""
    if isinstance(entity_rows, Mapping):
        columns = {name: list(values) for name, values in entity_rows.items()}
    else:
        names = list(dict.fromkeys(name for row in entity_rows for name in row))
        columns = {name: [row.get(name) for row in entity_rows] for name in names}
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise EntityFrameError(f"entity columns have different lengths {sorted(lengths)}")
    return columns


def read_online(
    store: OnlineStore,
    project: str,
    request: RetrievalRequest,
    entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
    now_us: int,
) -> OnlineResponse:
    entities, wanted = plan_read(request, entity_rows)
    windows = read_windows(store, project, request, entities, now_us)
    response = shape(request, entities, store.read(project, wanted), now_us, windows)
    return with_on_demand(response, request)


async def read_online_async(
    store: OnlineStore,
    project: str,
    request: RetrievalRequest,
    entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
    now_us: int,
) -> OnlineResponse:
    """As read_online, awaiting the store's `read_async` where it has one (Redis; its tiles are
    read on a thread): the event loop never waits on the network. A store without one (SQLite,
    a local file) is read inline."""
    entities, wanted = plan_read(request, entity_rows)
    read_async = getattr(store, "read_async", None)  # AsyncReads; getattr is the fast check
    if read_async is not None:
        windows = {}
        if any(v.view.is_aggregated for v in request.views):
            windows = await asyncio.to_thread(
                read_windows, store, project, request, entities, now_us
            )
        found = await read_async(project, wanted)
    else:
        windows = read_windows(store, project, request, entities, now_us)
        found = store.read(project, wanted)
    return with_on_demand(shape(request, entities, found, now_us, windows), request)


def with_on_demand(response: OnlineResponse, request: RetrievalRequest) -> OnlineResponse:
    """Add the on-demand views' features (their row functions, per entity row) and drop the
    features read only as their inputs."""
    if not request.on_demand:
        return response
    from parity.transform.run import apply_rows

    columns = {**response.entities, **response.values}
    count = len(next(iter(response.entities.values()), []))
    apply_rows(request, columns, count)
    for name in request.hidden:
        for mapping in (response.values, response.statuses, response.event_timestamps):
            mapping.pop(name, None)
    for demand in request.on_demand:
        for output in demand.output_names:
            values = columns[output]
            response.values[output] = values
            response.statuses[output] = [
                Status.NULL_VALUE if v is None else Status.PRESENT for v in values
            ]
            response.event_timestamps[output] = [None] * count
    return response


def plan_read(
    request: RetrievalRequest,
    entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
) -> tuple[dict[str, list[Any]], list[tuple[str, bytes]]]:
    """The entity columns and the (view, entity key) rows to read, view by view, row by row
    (aggregated views read tiles instead; see read_windows)."""
    entities = columnar(entity_rows)
    _check_columns(request, entities)
    wanted: list[tuple[str, bytes]] = []
    for view_request in request.views:
        if not view_request.view.is_aggregated:
            name = view_request.view.name
            wanted.extend((name, key) for key in _view_keys(view_request.view, entities))
    return entities, wanted


def _check_columns(request: RetrievalRequest, entities: dict[str, list[Any]]) -> None:
    """Refuse a column that is neither a join key of a requested view nor a request field of a
    requested on-demand view: it would come back as if it were a key, and find nothing."""
    keys = request.join_keys
    extra = [name for name in entities if name not in keys]
    if not extra:
        return
    fields = list(dict.fromkeys(i.column for d in request.on_demand for i in d.inputs if i.request))
    unknown = [name for name in extra if name not in fields]
    if unknown:
        what, expected = "a join key of any requested feature view", f"keys {list(keys)}"
        if fields:
            what = "a join key of a requested view nor a request field of one"
            expected += f" and request fields {fields}"
        raise EntityFrameError(
            f"entity column '{unknown[0]}' is not {what}; the request takes {expected}: remove "
            "it, or check its spelling"
        )


def _view_keys(view: FeatureView, entities: dict[str, list[Any]]) -> list[bytes]:
    for key in view.join_keys:
        if key not in entities:
            raise EntityFrameError(
                f"entity rows have no '{key}', needed by feature view '{view.name}'; "
                f"they have {sorted(entities)}"
            )
    return entity_keys(view.join_keys, [entities[k] for k in view.join_keys], key_types(view))


def key_types(view: FeatureView) -> tuple[str, ...]:
    """The declared type of each join key of `view` (its entity's value type), in order: reads
    refuse a key of another type rather than look up a key no row can have."""
    types = {key: str(entity.value_type) for entity in view.entities for key in entity.join_keys}
    return tuple(types[key] for key in view.join_keys)


# The window value of an entity without any event in the view's longest window: NOT_FOUND.
_UNKNOWN: Any = object()


def read_windows(
    store: OnlineStore,
    project: str,
    request: RetrievalRequest,
    entities: dict[str, list[Any]],
    now_us: int,
) -> dict[str, list[Any]]:
    """Window values of the aggregated views' wanted features at `now_us`, by output name:
    one tile read per aggregated view, merged per entity (parity.aggregation.tiles); `_UNKNOWN`
    for an entity the view has not seen in its longest window."""
    values: dict[str, list[Any]] = {}
    for view_request in request.views:
        view = view_request.view
        if not view.is_aggregated:
            continue
        # hasattr, not isinstance: a runtime Protocol check costs more than the tile merge.
        if not hasattr(store, "read_tiles"):
            raise BackendNotInstalled(
                f"the online store {type(store).__name__} keeps no tiles, so it cannot serve the "
                f"aggregated view '{view.name}'"
            )
        keys = _view_keys(view, entities)
        plan = read_plan(view, view_request.features, now_us)
        found = cast(TileStore, store).read_tiles(project, view.name, keys, plan)
        columns: list[list[Any]] = [[] for _ in view_request.features]
        unknown = [_UNKNOWN] * len(view_request.features)
        for tiles in found:
            decoded = {name: decode_payload(data) for name, data in tiles.items()}
            known = window_values(view, view_request.features, decoded, now_us)
            for column, value in zip(columns, unknown if known is None else known, strict=True):
                column.append(value)
        values.update(zip(view_request.output_names, columns, strict=True))
    return values


def shape(
    request: RetrievalRequest,
    entities: dict[str, list[Any]],
    found: Sequence[OnlineRow | None],
    now_us: int,
    windows: dict[str, list[Any]] | None = None,
) -> OnlineResponse:
    count = len(next(iter(entities.values()), []))
    response = OnlineResponse(dict(entities), {}, {}, {})
    index = 0
    for view_request in request.views:
        if view_request.view.is_aggregated:
            for output in view_request.output_names:
                values = (windows or {})[output]
                response.statuses[output] = [
                    Status.NOT_FOUND
                    if v is _UNKNOWN
                    else Status.NULL_VALUE
                    if v is None
                    else Status.PRESENT
                    for v in values
                ]
                response.values[output] = [None if v is _UNKNOWN else v for v in values]
                response.event_timestamps[output] = [None] * count
            continue
        rows = found[index * count : (index + 1) * count]
        index += 1
        ttl = view_request.view.ttl
        cutoff = None if ttl is None else now_us - int(ttl.total_seconds() * 1_000_000)
        # Per row, once per view: the row if it is within max age, and the status it forces.
        live = [
            row if row is not None and (cutoff is None or row.event_ts >= cutoff) else None
            for row in rows
        ]
        forced = [
            Status.NOT_FOUND
            if row is None
            else None
            if kept is not None
            else Status.OUTSIDE_MAX_AGE
            for row, kept in zip(rows, live, strict=True)
        ]
        stamps = [None if row is None else _moment(row.event_ts) for row in rows]
        for feature, output in zip(view_request.features, view_request.output_names, strict=True):
            values = [None if row is None else row.values.get(feature) for row in live]
            response.values[output] = values
            response.statuses[output] = [
                status
                if status is not None
                else Status.NULL_VALUE
                if value is None
                else Status.PRESENT
                for status, value in zip(forced, values, strict=True)
            ]
            response.event_timestamps[output] = stamps.copy()
    return response


_moment = lru_cache(maxsize=65_536)(from_micros)  # rows share a few event times
