"""get_online_features: one read from the online store, shaped per feature with value statuses.

Pure apart from the single `OnlineStore.read`; the clock (for max age) is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from parity.errors import EntityFrameError
from parity.offline.request import RetrievalRequest
from parity.online.encoding import OnlineRow, entity_key
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
    entities = columnar(entity_rows)
    count = len(next(iter(entities.values()), []))
    wanted: list[tuple[str, bytes]] = []
    for view_request in request.views:
        view = view_request.view
        for key in view.join_keys:
            if key not in entities:
                raise EntityFrameError(
                    f"entity rows have no '{key}', needed by feature view '{view.name}'; "
                    f"they have {sorted(entities)}"
                )
        for i in range(count):
            wanted.append(
                (view.name, entity_key(view.join_keys, [entities[k][i] for k in view.join_keys]))
            )
    found = store.read(project, wanted)
    response = OnlineResponse(dict(entities), {}, {}, {})
    for index, view_request in enumerate(request.views):
        rows = found[index * count : (index + 1) * count]
        ttl = view_request.view.ttl
        max_age = None if ttl is None else int(ttl.total_seconds() * 1_000_000)
        for feature, output in zip(view_request.features, view_request.output_names, strict=True):
            _fill(response, output, feature, rows, max_age, now_us)
    return response


def _fill(
    response: OnlineResponse,
    output: str,
    feature: str,
    rows: list[OnlineRow | None],
    max_age: int | None,
    now_us: int,
) -> None:
    values: list[Any] = []
    statuses: list[Status] = []
    stamps: list[datetime | None] = []
    for row in rows:
        if row is None:
            values.append(None)
            statuses.append(Status.NOT_FOUND)
            stamps.append(None)
            continue
        value = row.values.get(feature)
        stale = max_age is not None and row.event_ts < now_us - max_age
        values.append(None if stale else value)
        statuses.append(
            Status.OUTSIDE_MAX_AGE
            if stale
            else Status.NULL_VALUE
            if value is None
            else Status.PRESENT
        )
        stamps.append(from_micros(row.event_ts))
    response.values[output] = values
    response.statuses[output] = statuses
    response.event_timestamps[output] = stamps
