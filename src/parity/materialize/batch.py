"""Materialize one view: stream the offline engine's newest rows per entity into an OnlineStore.

Idempotent and resumable: the store writes if newer, so a run killed part-way and run again
converges to the same online state. Records the finished interval (the view's watermark).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from parity.definitions import FeatureView
from parity.offline.engine import OfflineEngine
from parity.online.encoding import OnlineRow, rows_from_columns
from parity.online.store import OnlineStore
from parity.registry.materializations import MaterializationLog, MaterializationRecord
from parity.timeutil import EPOCH

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaterializeResult:
    view: str
    start: datetime
    end: datetime
    rows: int


def materialize_view(
    engine: OfflineEngine,
    online: OnlineStore,
    history: MaterializationLog,
    project: str,
    view: FeatureView,
    start: datetime,
    end: datetime,
    *,
    now: Callable[[], datetime],
    on_rows: Callable[[int], None] | None = None,
) -> MaterializeResult:
    written = 0
    for rows in _batches(engine, view, start, end):
        online.write(project, rows)
        written += len(rows)
        if on_rows is not None:
            on_rows(len(rows))
    history.record_materialization(
        MaterializationRecord(project, view.name, start, end, written, now())
    )
    log.info("materialized %d rows of %s for [%s, %s]", written, view.name, start, end)
    return MaterializeResult(view.name, start, end, written)


def _batches(
    engine: OfflineEngine, view: FeatureView, start: datetime, end: datetime
) -> Iterator[list[OnlineRow]]:
    for batch in engine.latest(view, start, end):
        if batch.num_rows:
            yield rows_from_columns(view, batch.to_pydict())


def incremental_start(view: FeatureView, watermark: datetime | None, end: datetime) -> datetime:
    """Where an incremental run starts: the watermark, else `end - ttl` (for an aggregated view,
    `end -` its longest window), else the epoch."""
    if watermark is not None:
        return watermark
    if view.ttl is not None:
        return end - view.ttl
    if view.is_aggregated:
        return end - max(a.window for a in view.aggregations)
    return EPOCH
