"""Materialize an aggregated view: fold its events into tiles and write them to the online store.

Tiles are rebuilt whole and written with replace semantics, so a run killed part-way and run
again converges, as row materialization does: the run starts at `start` floored to the view's
largest tile, so every tile it writes holds all of its events up to `end`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import msgpack

from parity.aggregation.tiles import Tiles, fold_events, levels, with_pending
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
    now_us = to_micros(now())
    tiles: Tiles = {}
    for batch in engine.events(view, begin, end):
        columns = batch.to_pydict()
        keys = entity_keys(view.join_keys, [columns[k] for k in view.join_keys])
        fold_events(view, keys, columns["__ts"], columns["__ord"], columns, tiles, now_us)
    with_pending(tiles)  # events after now wait in the pending record, replacing the old one
    encoded = {
        (key, name): bytes(msgpack.packb(partials, use_bin_type=True))
        for key, named in tiles.items()
        for name, partials in named.items()
    }
    online.write_tiles(project, view.name, encoded, to_micros(now()), longest_window_us(view))
    count = len(encoded) - len(tiles)  # tiles, not the one pending record per entity
    history.record_materialization(
        MaterializationRecord(project, view.name, begin, end, count, now())
    )
    log.info("materialized %d tiles of %s for [%s, %s]", count, view.name, begin, end)
    return MaterializeResult(view.name, begin, end, count)
