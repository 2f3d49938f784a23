"""get_online_features: one read from the online store, shaped per feature with value statuses.

Pure apart from the single `OnlineStore.read`; the clock (for max age) is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from parity.errors import EntityFrameError
from parity.offline.request import RetrievalRequest
from parity.online.encoding import OnlineRow, entity_keys
from parity.online.store import OnlineStore
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
    return shape(request, entities, store.read(project, wanted), now_us)


async def read_online_async(
    store: OnlineStore,
    project: str,
    request: RetrievalRequest,
    entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
    now_us: int,
) -> OnlineResponse:
    """As read_online, awaiting the store's `read_async` where it has one (Redis); a store
    without one (SQLite, a local file) is read inline."""
    entities, wanted = plan_read(request, entity_rows)
    read_async = getattr(store, "read_async", None)  # AsyncReads; getattr is the fast check
    if read_async is not None:
        found = await read_async(project, wanted)
    else:
        found = store.read(project, wanted)
    return shape(request, entities, found, now_us)


def plan_read(
    request: RetrievalRequest,
    entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
) -> tuple[dict[str, list[Any]], list[tuple[str, bytes]]]:
    """The entity columns and the (view, entity key) to read, view by view, row by row."""
    entities = columnar(entity_rows)
    wanted: list[tuple[str, bytes]] = []
    encoded: dict[tuple[str, ...], list[bytes]] = {}  # views of one entity share its keys
    for view_request in request.views:
        view = view_request.view
        for key in view.join_keys:
            if key not in entities:
                raise EntityFrameError(
                    f"entity rows have no '{key}', needed by feature view '{view.name}'; "
                    f"they have {sorted(entities)}"
                )
        keys = encoded.get(view.join_keys)
        if keys is None:
            columns = [entities[k] for k in view.join_keys]
            keys = encoded[view.join_keys] = entity_keys(view.join_keys, columns)
        name = view.name
        wanted.extend((name, key) for key in keys)
    return entities, wanted


def shape(
    request: RetrievalRequest,
    entities: dict[str, list[Any]],
    found: Sequence[OnlineRow | None],
    now_us: int,
) -> OnlineResponse:
    count = len(next(iter(entities.values()), []))
    response = OnlineResponse(dict(entities), {}, {}, {})
    for index, view_request in enumerate(request.views):
        rows = found[index * count : (index + 1) * count]
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
