"""Materialize an aggregated view: fold its events into tiles and write them to the online store.

Tiles are rebuilt whole and written with replace semantics, so a run killed part-way and run
again converges, as row materialization does: the run starts at `start` floored to the view's
largest tile, so every tile it writes holds all of its events up to `end`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime

import msgpack

from parity.aggregation.tiles import build_tiles, levels
from parity.definitions import FeatureView
from parity.errors import BackendNotInstalled
from parity.materialize.batch import MaterializeResult
from parity.offline.engine import OfflineEngine
from parity.online.encoding import entity_keys
from parity.online.store import OnlineStore, TileStore
from parity.registry.materializations import MaterializationLog, MaterializationRecord
from parity.timeutil import from_micros, to_micros

log = logging.getLogger(__name__)


def aligned_start(view: FeatureView, start: datetime) -> datetime:
    """`start` floored to the view's largest tile, so that rebuilt tiles are complete."""
    largest = levels(view)[-1]
    moment = to_micros(start)
    return from_micros(moment - moment % largest)


def longest_window_us(view: FeatureView) -> int:
    return max(a.window_us for a in view.aggregations)


def materialize_tiles(
    engine: OfflineEngine,
    online: OnlineStore,
    history: MaterializationLog,
    project: str,
    view: FeatureView,
    start: datetime,
    end: datetime,
    *,
    now: Callable[[], datetime],
) -> MaterializeResult:
    if not isinstance(online, TileStore):
        raise BackendNotInstalled(
            f"the online store {type(online).__name__} keeps no tiles, so it cannot serve the "
            f"aggregated view '{view.name}'"
        )
    begin = aligned_start(view, start)
    tiles = build_tiles(view, _events(engine, view, begin, end))
    encoded = {
        (key, tile.name): bytes(msgpack.packb(partials, use_bin_type=True))
        for (key, tile), partials in tiles.items()
    }
    online.write_tiles(project, view.name, encoded, to_micros(now()), longest_window_us(view))
    history.record_materialization(
        MaterializationRecord(project, view.name, begin, end, len(encoded), now())
    )
    log.info("materialized %d tiles of %s for [%s, %s]", len(encoded), view.name, begin, end)
    return MaterializeResult(view.name, begin, end, len(encoded))


def _events(
    engine: OfflineEngine, view: FeatureView, start: datetime, end: datetime
) -> Iterator[tuple[bytes, int, int, dict[str, object]]]:
    inputs = [f.name for f in view.inputs]
    for batch in engine.events(view, start, end):
        columns = batch.to_pydict()
        keys = entity_keys(view.join_keys, [columns[k] for k in view.join_keys])
        values = zip(*(columns[name] for name in inputs), strict=True)
        for key, moment, order, row in zip(
            keys, columns["__ts"], columns["__ord"], values, strict=True
        ):
            yield key, moment, order, dict(zip(inputs, row, strict=True))
