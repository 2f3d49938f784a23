"""Online features of a micro-batch of stream events, each read at the event's own time (the
score includes the event, as a training row at that time does), in one store read per view and
tile plan.

The online read (online/reads.py) reads every row at one time; here each row has its own. Rows
whose times share a tile plan (the same tiles: events of one tile interval) share one tile read,
and each row's windows are merged at its own time by the same functions
(`aggregation.tiles.window_values`), so the window rule is the one of every other read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from parity.aggregation.tiles import read_plan, stale_outputs, window_values
from parity.offline.request import RetrievalRequest
from parity.online.encoding import PENDING, decode_payload, entity_keys
from parity.online.reads import (
    _UNKNOWN,
    OnlineResponse,
    key_types,
    plan_read,
    refuse,
    shape,
)
from parity.online.store import OnlineStore, TileStore


def read_at(
    store: OnlineStore,
    project: str,
    request: RetrievalRequest,
    entities: Mapping[str, Sequence[Any]],
    times_us: Sequence[int],
) -> OnlineResponse:
    """The features of each entity row at its own time `times_us[row]`, shaped like
    `get_online_features` (statuses included), before on-demand transforms."""
    columns, wanted = plan_read(request, entities)
    count = len(times_us)
    found = store.read(project, wanted) if wanted else []
    windows = _windows_at(store, project, request, columns, times_us)
    plain = sum(1 for v in request.views if not v.view.is_aggregated)
    groups: dict[int, list[int]] = {}
    for row, moment in enumerate(times_us):
        groups.setdefault(moment, []).append(row)
    parts = []
    for moment, rows in groups.items():
        part_entities = {name: [values[r] for r in rows] for name, values in columns.items()}
        part_found = [found[view * count + r] for view in range(plain) for r in rows]
        part_windows = {name: [values[r] for r in rows] for name, values in windows.items()}
        parts.append((rows, shape(request, part_entities, part_found, moment, part_windows)))
    return _scatter(columns, parts, count)


def _windows_at(
    store: OnlineStore,
    project: str,
    request: RetrievalRequest,
    columns: dict[str, list[Any]],
    times_us: Sequence[int],
) -> dict[str, list[Any]]:
    """Each aggregated view's wanted windows, row by row at the row's time (the sentinels of
    online/reads.py for an unknown entity and a window the stored tiles cannot answer)."""
    values: dict[str, list[Any]] = {}
    for view_request in request.views:
        view = view_request.view
        if not view.is_aggregated:
            continue
        tiles_store = cast(TileStore, store)
        features = view_request.features
        keys = entity_keys(view.join_keys, [columns[k] for k in view.join_keys], key_types(view))
        by_tile: dict[int, list[int]] = {}  # a plan depends on t only through t's tile
        for row, moment in enumerate(times_us):
            by_tile.setdefault(moment - moment % view.tile_us, []).append(row)
        plans: dict[tuple[str, ...], list[int]] = {}
        for start, rows in by_tile.items():
            plans.setdefault(tuple(read_plan(view, features, start)), []).extend(rows)
        prepared = tiles_store.materialized(project, view.name)
        out: list[list[Any]] = [[None] * len(times_us) for _ in features]
        for plan, rows in plans.items():
            found = tiles_store.read_tiles(project, view.name, [keys[r] for r in rows], plan)
            for row, tiles in zip(rows, found, strict=True):
                decoded = {name: decode_payload(data) for name, data in tiles.items()}
                moment = times_us[row]
                known = window_values(view, features, decoded, moment)
                if prepared is not None and PENDING in decoded:
                    stale, longest = stale_outputs(view, features, moment, prepared)
                    if stale:
                        known = refuse(features, known, stale, longest)
                row_values = [_UNKNOWN] * len(features) if known is None else known
                for column, value in zip(out, row_values, strict=True):
                    column[row] = value
        values.update(zip(view_request.output_names, out, strict=True))
    return values


def _scatter(
    columns: dict[str, list[Any]],
    parts: list[tuple[list[int], OnlineResponse]],
    count: int,
) -> OnlineResponse:
    """One response of `count` rows from responses of some rows each."""
    first = parts[0][1] if parts else OnlineResponse({}, {}, {}, {})
    values: dict[str, list[Any]] = {name: [None] * count for name in first.values}
    statuses: dict[str, list[Any]] = {name: [None] * count for name in first.statuses}
    stamps: dict[str, list[Any]] = {name: [None] * count for name in first.event_timestamps}
    for rows, part in parts:
        for target, source in (
            (values, part.values),
            (statuses, part.statuses),
            (stamps, part.event_timestamps),
        ):
            for name, items in source.items():
                column = target[name]
                for row, item in zip(rows, items, strict=True):
                    column[row] = item
    entities = {k: list(v) for k, v in columns.items()}
    return OnlineResponse(entities, values, statuses, stamps)
