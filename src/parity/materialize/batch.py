"""Materialize one view: stream the offline engine's newest rows per entity into an OnlineStore.

What is written is what reads at `end` need: per entity, the newest row still valid at `end`.
A view without a ttl takes every row up to `end` whatever the start (a start never loses an
entity); a view with a ttl reads from the earlier of the start and `end - ttl`.
Idempotent and resumable: the store writes if newer, so a run killed part-way and run again
converges to the same online state. Records the finished interval (the view's watermark).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from parity.definitions import FeatureView
from parity.errors import EndBeforeWatermark, EndInFuture
from parity.offline.engine import OfflineEngine
from parity.online.encoding import rows_from_columns
from parity.online.store import OnlineStore
from parity.registry.materializations import MaterializationLog, MaterializationRecord
from parity.repo.config import OnlineConfig
from parity.timeutil import EPOCH

if TYPE_CHECKING:
    import pyarrow as pa

    from parity.online.columns import EncodedRows

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]
"""Called as work advances: (what is counted: 'rows', 'events' or 'tiles', done, total or None)."""


@dataclass(frozen=True)
class MaterializeResult:
    view: str
    start: datetime  # the interval actually read (see interval_start)
    end: datetime
    entities: int  # distinct entities written
    tiles: int = 0  # tiles written (aggregated views)

    @property
    def rows(self) -> int:
        """Rows written: one per entity for a plain view, the tiles of an aggregated one."""
        return self.tiles or self.entities


@runtime_checkable
class ParallelMaterialize(Protocol):
    """An engine whose newest rows are a distributed frame (Spark's `latest_frame`): a Redis or
    Redis Cluster store is then written from its executors (materialize/spark_writer.py)
    instead of through this process."""

    def latest_frame(self, view: FeatureView, start: datetime, end: datetime) -> Any: ...


def interval_start(view: FeatureView, start: datetime, end: datetime) -> datetime:
    """Where a run for [start, end] reads from, so that no entity still valid at `end` is lost:
    the epoch for a view without a ttl, else the earlier of `start` and `end - ttl`."""
    if view.ttl is None:
        return EPOCH
    return min(start, end - view.ttl)


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
    progress: Progress | None = None,
    observe: Callable[[pa.RecordBatch], None] | None = None,
    online_settings: OnlineConfig | None = None,
) -> MaterializeResult:
    """`observe(batch)` sees each batch of rows before it is written (data quality counts them:
    monitoring hands it in, so this layer imports none of it). With `online_settings` naming
    Redis or Redis Cluster and an engine that can (ParallelMaterialize), the engine's executors
    write the rows; `observe` then sees them after the write, and progress once at the end."""
    from parity.materialize.spark_writer import EXECUTOR_STORES, write_frame

    if isinstance(engine, ParallelMaterialize) and (
        online_settings is not None and online_settings.type in EXECUTOR_STORES
    ):
        frame = engine.latest_frame(view, start, end)
        # The repo root locates only SQLite files, which executors never open.
        written = write_frame(frame, view, project, online_settings, Path("."), observe=observe)
        if progress is not None:
            progress("rows", written, None)
    else:
        written = _stream(engine, online, project, view, (start, end), progress, observe)
    history.record_materialization(
        MaterializationRecord(project, view.name, start, end, written, now())
    )
    log.info("materialized %d rows of %s for [%s, %s]", written, view.name, start, end)
    return MaterializeResult(view.name, start, end, written)


@runtime_checkable
class EncodedWrites(Protocol):
    """A store that also takes rows encoded column by column (online/columns.py): the same
    write-if-newer as `write`, without an OnlineRow per entity."""

    def write_encoded(self, project: str, rows: EncodedRows) -> int: ...


def _stream(
    engine: OfflineEngine,
    online: OnlineStore,
    project: str,
    view: FeatureView,
    interval: tuple[datetime, datetime],
    progress: Progress | None,
    observe: Callable[[pa.RecordBatch], None] | None,
) -> int:
    """Write the engine's newest rows through this process, batch by batch; the rows written."""
    from parity.online.columns import encode_rows

    written = 0
    for batch in _batches(engine, view, *interval, observe):
        if isinstance(online, EncodedWrites):
            online.write_encoded(project, encode_rows(view, batch))
        else:
            online.write(project, rows_from_columns(view, batch.to_pydict()))
        written += batch.num_rows
        if progress is not None:
            progress("rows", written, None)
    return written


def _batches(
    engine: OfflineEngine,
    view: FeatureView,
    start: datetime,
    end: datetime,
    observe: Callable[[pa.RecordBatch], None] | None,
) -> Iterator[pa.RecordBatch]:
    for batch in engine.latest(view, start, end):
        if batch.num_rows:
            if observe is not None:
                observe(batch)
            yield batch


def check_end(end: datetime, now: datetime, skew: timedelta) -> None:
    """Refuse an END more than `skew` (ingest.max_future_skew) after the store's clock: it would
    record a watermark in the future, and incremental runs would then skip the rows that arrive
    stamped before it. Within the skew, events after the clock wait in pending records."""
    if end > now + skew:
        raise EndInFuture(
            f"end {end.isoformat()} is after the store's clock {now.isoformat()} by more than "
            f"ingest.max_future_skew ({skew}); materialize up to now at the latest (END 'now'), "
            "and again later for later rows"
        )


def incremental_start(
    view: FeatureView, watermark: datetime | None, end: datetime, now: datetime
) -> datetime:
    """Where an incremental run of a plain view starts: the watermark, else `end - ttl`, else
    the epoch. (An aggregated view always rebuilds what reads at `end` use: see tiles.py.)
    An `end` before the watermark is refused: an incremental run cannot go back."""
    if watermark is not None and end < watermark:
        raise EndBeforeWatermark(_behind(view, watermark, end, now))
    if watermark is not None:
        return watermark
    if view.ttl is not None:
        return end - view.ttl
    return EPOCH


def _behind(view: FeatureView, watermark: datetime, end: datetime, now: datetime) -> str:
    why = f", after the store's clock {now.isoformat()}" if watermark > now else ""
    return (
        f"end {end.isoformat()} is before the watermark of view '{view.name}': its last run "
        f"ended at {watermark.isoformat()}{why}; an incremental run cannot go back. Run "
        f"`parity materialize START {end.isoformat()}` (FeatureStore.materialize) over the "
        "interval instead: later incremental runs continue from its END"
    )
