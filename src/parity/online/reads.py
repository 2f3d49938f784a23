"""get_online_features: one read from the online store, shaped per feature with value statuses.

Pure apart from the single `OnlineStore.read`; the clock (for max age) is passed in.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from operator import itemgetter
from typing import Any, Protocol, cast

from parity.aggregation.tiles import read_plan, stale_outputs, window_values
from parity.definitions import FeatureView
from parity.errors import BackendNotInstalled, EntityFrameError
from parity.offline.request import RetrievalRequest
from parity.online.encoding import (
    PENDING,
    Latest,
    OnlineRow,
    decode_payload,
    entity_keys,
    latest_by_view,
)
from parity.online.store import OnlineStore, Prepared, TileStore
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
    refused: Refusals | None = None,
) -> OnlineResponse:
    """`refused`, when given, counts per view the window values answered OUTSIDE_MAX_AGE
    because the stored tiles do not cover the read (see read_windows)."""
    entities = columnar(entity_rows)
    _check_columns(request, entities)
    plain = plain_keys(request, entities)
    windows = read_windows(store, project, request, entities, now_us, refused)
    found = read_latest(store, project, plain)
    return with_on_demand(shape_latest(request, entities, found, now_us, windows), request)


async def read_online_async(
    store: OnlineStore,
    project: str,
    request: RetrievalRequest,
    entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
    now_us: int,
    refused: Refusals | None = None,
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
                read_windows, store, project, request, entities, now_us, refused
            )
        found = await read_async(project, wanted)
    else:
        windows = read_windows(store, project, request, entities, now_us, refused)
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
    plain = plain_keys(request, entities)
    return entities, [(name, key) for name, keys in plain for key in keys]


def plain_keys(
    request: RetrievalRequest, entities: dict[str, list[Any]]
) -> list[tuple[str, list[bytes]]]:
    """Each requested plain (non-aggregated) view with the entity keys of the rows to read, in
    row order. Views keyed alike share one list (the same object): stores read them together."""
    shared: dict[tuple[tuple[str, ...], tuple[str, ...]], list[bytes]] = {}
    plain: list[tuple[str, list[bytes]]] = []
    for view_request in request.views:
        view = view_request.view
        if view.is_aggregated:
            continue
        alike = (tuple(view.join_keys), key_types(view))
        keys = shared.get(alike)
        if keys is None:
            keys = shared[alike] = _view_keys(view, entities)
        plain.append((view.name, keys))
    return plain


class ViewReads(Protocol):
    """A store that reads plain views straight into `Latest` rows (Redis, SQLite): per view of
    `plain`, the row of each key in order (None where there is none)."""

    def read_views(
        self, project: str, plain: Sequence[tuple[str, Sequence[bytes]]]
    ) -> list[list[Latest | None]]: ...


def read_latest(
    store: OnlineStore, project: str, plain: Sequence[tuple[str, Sequence[bytes]]]
) -> list[list[Latest | None]]:
    """Per view of `plain`, its rows (`ViewReads` where the store has it, else `read`)."""
    fast = getattr(store, "read_views", None)  # getattr: a runtime Protocol check costs more
    if fast is not None:
        return cast(ViewReads, store).read_views(project, plain)
    wanted = [(name, key) for name, keys in plain for key in keys]
    return latest_by_view(plain, store.read(project, wanted))


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
    known = _KEY_TYPES.get(id(view))
    if known is not None and known[0] is view:  # views are frozen: the answer stays right
        return known[1]
    types = {key: str(entity.value_type) for entity in view.entities for key in entity.join_keys}
    answer = tuple(types[key] for key in view.join_keys)
    if len(_KEY_TYPES) > 4096:  # registry reloads bring new view objects
        _KEY_TYPES.clear()
    _KEY_TYPES[id(view)] = (view, answer)
    return answer


_KEY_TYPES: dict[int, tuple[FeatureView, tuple[str, ...]]] = {}


# The window value of an entity without any event in the view's longest window: NOT_FOUND.
_UNKNOWN: Any = object()
# The window value the stored tiles cannot give exactly at t: OUTSIDE_MAX_AGE, null.
_REFUSED: Any = object()
log = logging.getLogger(__name__)


def read_windows(
    store: OnlineStore,
    project: str,
    request: RetrievalRequest,
    entities: dict[str, list[Any]],
    now_us: int,
    refused: Refusals | None = None,
) -> dict[str, list[Any]]:
    """Window values of the aggregated views' wanted features at `now_us`, by output name:
    one tile read per aggregated view, merged per entity (parity.aggregation.tiles); `_UNKNOWN`
    for an entity the view has not seen in its longest window; `_REFUSED` for a window the
    stored tiles do not cover at `now_us` (an entity of the view's last materialization read
    past its read slack: see refuse)."""
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
        tiles_store = cast(TileStore, store)
        keys = _view_keys(view, entities)
        plan = read_plan(view, view_request.features, now_us)
        found = tiles_store.read_tiles(project, view.name, keys, plan)
        prepared = tiles_store.materialized(project, view.name)
        stale: frozenset[str] = frozenset()
        longest = False
        if prepared is not None:
            stale, longest = stale_outputs(view, view_request.features, now_us, prepared)
        columns: list[list[Any]] = [[] for _ in view_request.features]
        unknown = [_UNKNOWN] * len(view_request.features)
        count = 0
        for tiles in found:
            decoded = {name: decode_payload(data) for name, data in tiles.items()}
            known = window_values(view, view_request.features, decoded, now_us)
            if stale and PENDING in decoded:  # the entity's tiles are the materialization's
                known = refuse(view_request.features, known, stale, longest)
                count += known.count(_REFUSED)
            for column, value in zip(columns, unknown if known is None else known, strict=True):
                column.append(value)
        if count and refused is not None and prepared is not None:
            refused.add(view.name, count, prepared, now_us)
        values.update(zip(view_request.output_names, columns, strict=True))
    return values


def refuse(
    outputs: Sequence[str], known: list[Any] | None, stale: frozenset[str], longest: bool
) -> list[Any]:
    """An entity's window values with the stale windows' replaced by `_REFUSED`; every one if it
    looks unseen while its longest window is stale (its events may be in tiles not written).

    Only entities with a pending record get here: a materialization writes one for every entity
    with events in its span, so an entity without one has no event up to its END in any window
    read from its SINCE on, and its tiles there (push, stream: every level) are complete."""
    if known is None:
        return [_REFUSED] * len(outputs) if longest else [_UNKNOWN] * len(outputs)
    return [_REFUSED if o in stale else v for o, v in zip(outputs, known, strict=True)]


class Refusals:
    """Per aggregated view, the window values answered OUTSIDE_MAX_AGE because the stored tiles
    do not cover the read; thread-safe (servers read off the event loop). The first of a view
    is logged as a warning."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, view: str, count: int, prepared: Prepared, now_us: int) -> None:
        with self._lock:
            first = view not in self._counts
            self._counts[view] = self._counts.get(view, 0) + count
        if first:
            log.warning(
                "reads of aggregated view %s at %s are past what its materialization at %s "
                "prepared (reads from %s until %s): windows starting before it answer "
                "OUTSIDE_MAX_AGE; run materialize-incremental at least every "
                "materialize.read_slack",
                view, from_micros(now_us), from_micros(prepared.end_us),
                from_micros(prepared.since_us), from_micros(prepared.until_us),
            )  # fmt: skip

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def shape(
    request: RetrievalRequest,
    entities: dict[str, list[Any]],
    found: Sequence[OnlineRow | None],
    now_us: int,
    windows: dict[str, list[Any]] | None = None,
) -> OnlineResponse:
    """shape_latest for `OnlineStore.read`'s answer to plan_read's (view, key) pairs."""
    count = len(next(iter(entities.values()), []))
    plain = [(v.view.name, [b""] * count) for v in request.views if not v.view.is_aggregated]
    return shape_latest(request, entities, latest_by_view(plain, found), now_us, windows)


def shape_latest(
    request: RetrievalRequest,
    entities: dict[str, list[Any]],
    found: Sequence[Sequence[Latest | None]],
    now_us: int,
    windows: dict[str, list[Any]] | None = None,
) -> OnlineResponse:
    """The response from each plain view's rows (`found`, in request order) and the aggregated
    views' window values (read_windows)."""
    count = len(next(iter(entities.values()), []))
    response = OnlineResponse(dict(entities), {}, {}, {})
    plain = iter(found)
    for view_request in request.views:
        if view_request.view.is_aggregated:
            _shape_windows(view_request.output_names, (windows or {}), count, response)
        else:
            _shape_plain(view_request, next(plain), now_us, response)
    return response


def _shape_windows(
    outputs: Sequence[str], windows: dict[str, list[Any]], count: int, response: OnlineResponse
) -> None:
    for output in outputs:
        values = windows[output]
        response.statuses[output] = [
            Status.NOT_FOUND
            if v is _UNKNOWN
            else Status.NULL_VALUE
            if v is None
            else Status.OUTSIDE_MAX_AGE
            if v is _REFUSED
            else Status.PRESENT
            for v in values
        ]
        response.values[output] = [None if v is _UNKNOWN or v is _REFUSED else v for v in values]
        response.event_timestamps[output] = [None] * count


# Module constants: an enum member read from its class costs a lookup per value on the hot path.
_PRESENT, _NULL_VALUE = Status.PRESENT, Status.NULL_VALUE
_NOT_FOUND, _OUTSIDE_MAX_AGE = Status.NOT_FOUND, Status.OUTSIDE_MAX_AGE


def _shape_plain(
    view_request: Any, rows: Sequence[Latest | None], now_us: int, response: OnlineResponse
) -> None:
    """One plain view's features: a row counts if it is within max age and not after the read
    time (a row pushed ahead of the clock replaced one offline still answers at t)."""
    ttl = view_request.view.ttl
    cutoff = None if ttl is None else now_us - int(ttl.total_seconds() * 1_000_000)
    live = [
        row[1]
        if row is not None and row[0] <= now_us and (cutoff is None or row[0] >= cutoff)
        else None
        for row in rows
    ]
    # The status each row forces (None: the value decides), or None when every row is live.
    forced = (
        None
        if None not in live
        else [
            _NOT_FOUND if row is None else None if kept is not None else _OUTSIDE_MAX_AGE
            for row, kept in zip(rows, live, strict=True)
        ]
    )
    stamps = [None if row is None else _moment(row[0]) for row in rows]
    columns = _columns(view_request.features, live)
    for output, values in zip(view_request.output_names, columns, strict=True):
        response.values[output] = values
        if forced is not None:
            response.statuses[output] = [
                status if status is not None else _NULL_VALUE if value is None else _PRESENT
                for status, value in zip(forced, values, strict=True)
            ]
        elif None in values:
            response.statuses[output] = [
                _NULL_VALUE if value is None else _PRESENT for value in values
            ]
        else:
            response.statuses[output] = [_PRESENT] * len(values)
        response.event_timestamps[output] = stamps.copy()


def _columns(features: Sequence[str], rows: Sequence[Mapping[str, Any] | None]) -> list[list[Any]]:
    """Per feature, its value in each row (None for a row that is None or lacks it)."""
    if len(features) < 2:
        if not features:
            return []
        feature = features[0]
        return [[None if row is None else row.get(feature) for row in rows]]
    if not rows:
        return [[] for _ in features]
    empty = (None,) * len(features)
    pick = itemgetter(*features)
    try:
        picked = [empty if row is None else pick(row) for row in rows]
    except KeyError:  # a row written before a feature existed: slower, per value
        picked = [empty if row is None else tuple(row.get(f) for f in features) for row in rows]
    return [list(column) for column in zip(*picked, strict=True)]


_moment = lru_cache(maxsize=65_536)(from_micros)  # rows share a few event times
