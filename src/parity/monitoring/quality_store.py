"""Where data quality is checked and kept: the `parity_monitor_quality` table in the registry's
database (SQLite, PostgreSQL), the per-run watch a materialization feeds, and the per-process
counters of pushes and stream batches. Imports definitions, registry and monitoring.quality only.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from parity.definitions import FeatureView
from parity.errors import ParityError
from parity.monitoring.quality import (
    Counts,
    FeatureQuality,
    QualityThresholds,
    Reference,
    count_column,
    judge,
)
from parity.registry.sql import connect, create_tables

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)
Source = Literal["materialize", "ingest", "served"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FLUSH_EVERY = timedelta(seconds=60)  # pushes are counted in memory and written this often
_WHAT = "monitoring quality table"

metadata = sa.MetaData()
quality_table = sa.Table(
    "parity_monitor_quality",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("run", sa.String(32), nullable=False),  # rows of one check share it
    sa.Column("source", sa.String(16), nullable=False),  # materialize | ingest | served
    sa.Column("subject", sa.String(255), nullable=False),  # a feature view or a model
    sa.Column("version", sa.Integer),  # the model version (served traffic)
    sa.Column("feature", sa.String(255), nullable=False),
    sa.Column("window_start", sa.String(40), nullable=False),
    sa.Column("window_end", sa.String(40), nullable=False),
    sa.Column("recorded_at", sa.String(40), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("nulls", sa.BigInteger, nullable=False),
    sa.Column("null_rate", sa.Float),  # null when rows = 0
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),  # JSON: counts, checks, limits, examples
    # the newest event time among the rows counted (materialized or pushed): freshness SLOs
    sa.Column("newest_event", sa.String(40)),
    sa.Index("ix_parity_monitor_quality_subject", "project", "subject", "window_end"),
    sa.Index("ix_parity_monitor_quality_source", "project", "source", "subject", "window_end"),
)
_SAME = ("project", "source", "subject", "version", "window_start", "window_end", "feature")


@dataclass(frozen=True)
class QualityRecord:
    """One feature's quality over one window of one source (a run, a flush, a log window)."""

    source: Source
    subject: str
    feature: str
    window_start: datetime
    window_end: datetime
    quality: FeatureQuality
    version: int | None = None
    recorded_at: datetime | None = None
    run: str = field(default_factory=lambda: uuid.uuid4().hex)
    newest_event: datetime | None = None  # the newest event time of the rows counted


class SqlQualityStore:
    """The quality table on the registry's SQLAlchemy engine (shared, never disposed here)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_tables(metadata, engine, _WHAT)
        _add_newest_event(engine)

    def record(
        self,
        project: str,
        records: Sequence[QualityRecord],
        now: datetime,
        *,
        replace: bool = False,
    ) -> None:
        """Insert the records; with `replace`, first delete the rows of the same source,
        subject, version, window and feature (a served window checked again)."""
        if not records:
            return
        rows = [_row(project, r, now) for r in records]
        table = quality_table
        with connect(self.engine, write=True, what=_WHAT) as conn, conn.begin():
            for row in rows if replace else []:
                conn.execute(
                    table.delete().where(
                        *(table.c[k] == row[k] for k in _SAME if row[k] is not None),
                        *(table.c[k].is_(None) for k in _SAME if row[k] is None),
                    )
                )
            conn.execute(table.insert(), rows)

    def read(
        self,
        project: str,
        subject: str,
        since: datetime | None = None,
        source: Source | None = None,
    ) -> list[QualityRecord]:
        """The subject's records with a window ending at or after `since`, oldest first."""
        table = quality_table
        query = sa.select(table).where(table.c.project == project, table.c.subject == subject)
        if since is not None:
            query = query.where(table.c.window_end >= _iso(since))
        if source is not None:
            query = query.where(table.c.source == source)
        query = query.order_by(table.c.window_end, table.c.id)
        with connect(self.engine, what=_WHAT) as conn:
            return [_record(dict(row._mapping)) for row in conn.execute(query)]

    def newest(self, project: str, source: Source, subjects: Iterable[str]) -> dict[str, datetime]:
        """Per subject, the latest window end recorded from `source` (one index seek each)."""
        table = quality_table
        found = {}
        with connect(self.engine, what=_WHAT) as conn:
            for subject in subjects:
                query = sa.select(sa.func.max(table.c.window_end)).where(
                    table.c.project == project,
                    table.c.source == source,
                    table.c.subject == subject,
                )
                if (end := conn.execute(query).scalar()) is not None:
                    found[subject] = datetime.fromisoformat(end)
        return found

    def newest_values(self, project: str, subjects: Iterable[str]) -> dict[str, datetime]:
        """Per subject (a feature view), the newest event time of the rows recorded as written
        online, by materialization or ingestion (one index seek each)."""
        table = quality_table
        found = {}
        with connect(self.engine, what=_WHAT) as conn:
            for subject in subjects:
                query = sa.select(sa.func.max(table.c.newest_event)).where(
                    table.c.project == project,
                    table.c.source.in_(("materialize", "ingest")),
                    table.c.subject == subject,
                )
                if (newest := conn.execute(query).scalar()) is not None:
                    found[subject] = datetime.fromisoformat(newest)
        return found


def _add_newest_event(engine: Engine) -> None:
    """A quality table created before `newest_event` existed gets the column (nullable: its old
    rows fall back to the newest write for freshness)."""
    if _has_newest_event(engine):
        return
    alter = f"ALTER TABLE {quality_table.name} ADD COLUMN newest_event VARCHAR(40)"
    try:
        with connect(engine, write=True, what=_WHAT) as conn, conn.begin():
            conn.execute(sa.text(alter))
    except sa.exc.DBAPIError:  # another process added it first
        if not _has_newest_event(engine):
            raise


def _has_newest_event(engine: Engine) -> bool:
    columns = sa.inspect(engine).get_columns(quality_table.name)
    return "newest_event" in {c["name"] for c in columns}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _row(project: str, record: QualityRecord, now: datetime) -> dict[str, Any]:
    q = record.quality
    detail = {
        "counts": {k: v for k, v in vars(q.counts).items() if k != "examples"},
        "examples": dict(q.counts.examples),
        "checks": dict(q.checks),
        "limits": dict(q.limits),
    }
    return {
        "project": project,
        "run": record.run,
        "source": record.source,
        "subject": record.subject,
        "version": record.version,
        "feature": record.feature,
        "window_start": _iso(record.window_start),
        "window_end": _iso(record.window_end),
        "recorded_at": _iso(record.recorded_at or now),
        "rows": q.counts.rows,
        "nulls": q.counts.nulls,
        "null_rate": q.null_rate,
        "verdict": q.verdict,
        "detail": json.dumps(detail, sort_keys=True),
        "newest_event": None if record.newest_event is None else _iso(record.newest_event),
    }


def _record(row: Mapping[str, Any]) -> QualityRecord:
    detail = json.loads(row["detail"])
    counts = Counts(**detail["counts"], examples=detail["examples"])
    quality = FeatureQuality(row["feature"], counts, detail["checks"], detail["limits"])
    return QualityRecord(
        source=row["source"],
        subject=row["subject"],
        feature=row["feature"],
        window_start=datetime.fromisoformat(row["window_start"]),
        window_end=datetime.fromisoformat(row["window_end"]),
        quality=quality,
        version=row["version"],
        recorded_at=datetime.fromisoformat(row["recorded_at"]),
        run=row["run"],
        newest_event=_moment(row.get("newest_event")),
    )


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class BatchWatch:
    """Counts a subject's features over the batches of one run (a materialization), then
    judges them: `add(batch)` per batch, `records(...)` at the end."""

    def __init__(
        self,
        subject: str,
        features: Iterable[str],
        references: Mapping[str, Reference] | None = None,
        thresholds: QualityThresholds | None = None,
        sink: Callable[[list[QualityRecord]], None] | None = None,
    ) -> None:
        self.subject = subject
        self.sink = sink
        self.references = dict(references or {})
        self.thresholds = thresholds
        self.counts = {name: Counts() for name in features}
        self.newest_event: datetime | None = None

    def add(self, batch: pa.RecordBatch | pa.Table | Mapping[str, Any]) -> None:
        """Count one batch: a record batch or table, or feature name -> values. A materialized
        batch's `__ts` (event time, microseconds) moves `newest_event`."""
        for name in self.counts:
            values = batch[name]
            self.counts[name] += count_column(name, values, self.references.get(name))
        schema = getattr(batch, "schema", None)
        if schema is not None and "__ts" in schema.names:
            import pyarrow.compute as pc

            newest = pc.max(batch["__ts"]).as_py()
            if newest is not None:
                self.saw(_EPOCH + timedelta(microseconds=int(newest)))

    def saw(self, moment: datetime | None) -> None:
        """An event time among the rows counted: the newest is kept (freshness SLOs)."""
        if moment is not None:
            moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
            if self.newest_event is None or moment > self.newest_event:
                self.newest_event = moment

    def done(self, start: datetime, end: datetime) -> None:
        """The run [start, end] ended: hand its records to the sink (the quality table)."""
        if self.sink is not None:
            self.sink(self.records("materialize", start, end))

    def results(self) -> list[FeatureQuality]:
        return [
            judge(name, counts, self.references.get(name), self.thresholds)
            for name, counts in self.counts.items()
        ]

    def records(
        self, source: Source, start: datetime, end: datetime, version: int | None = None
    ) -> list[QualityRecord]:
        run = uuid.uuid4().hex
        return [
            QualityRecord(
                source,
                self.subject,
                q.feature,
                start,
                end,
                q,
                version,
                run=run,
                newest_event=self.newest_event,
            )
            for q in self.results()
        ]


@dataclass
class _Open:
    """What one view's pushes since the last drain added up to."""

    first: datetime
    last: datetime
    watch: BatchWatch


class IngestCounters:
    """Rows and nulls per view of what this process pushed or ingested, kept in memory and
    written as one record per view and feature every `flush_every` (thread-safe: the feature
    server pushes from several threads). Each process (server worker) counts its own; a
    record's window runs from the first to the last batch it counts."""

    def __init__(self, flush_every: timedelta = FLUSH_EVERY) -> None:
        self.flush_every = flush_every
        self._lock = threading.Lock()
        self._open: dict[str, _Open] = {}
        self._last_flush: datetime | None = None

    def add(self, view: FeatureView, table: pa.Table, now: datetime) -> None:
        """Count one pushed (or ingested) batch of `view`: its input columns (the features of a
        plain view, the aggregated columns of an aggregated one), by field name."""
        source = view.batch_source
        names = [f.name for f in view.inputs]
        present = set(table.column_names)
        # validation requires every input, so a missing column (counted as nulls) never occurs
        batch = {
            name: table[column]
            if (column := source.column_for(name)) in present
            else [None] * len(table)
            for name in names
        }
        newest = _newest_time(table, source.timestamp_field)
        with self._lock:
            entry = self._open.get(view.name)
            if entry is None:
                entry = self._open[view.name] = _Open(now, now, BatchWatch(view.name, names))
            entry.watch.add(batch)
            entry.watch.saw(newest)
            entry.last = max(entry.last, now)
            if self._last_flush is None:
                self._last_flush = now

    def newest_events(self) -> dict[str, datetime]:
        """Per view, the newest event time counted since the last drain (not yet recorded)."""
        with self._lock:
            return {
                view: entry.watch.newest_event
                for view, entry in self._open.items()
                if entry.watch.newest_event is not None
            }

    def due(self, now: datetime) -> bool:
        with self._lock:
            return self._last_flush is not None and now - self._last_flush >= self.flush_every

    def drain(self, now: datetime) -> list[QualityRecord]:
        """The records of everything counted since the last drain."""
        with self._lock:
            opened, self._open = list(self._open.values()), {}
            self._last_flush = now
        return [r for o in opened for r in o.watch.records("ingest", o.first, o.last)]


class QualityRecorder:
    """What the facade calls where data enters: a watch per materialization run (recorded when
    it ends), and the counters of pushes and stream batches (recorded every `flush_every`, and
    before each read). A failure to record is logged, never raised into the data path."""

    def __init__(
        self,
        engine: Engine,
        project: str,
        clock: Callable[[], datetime],
        references: Callable[[FeatureView], Mapping[str, Reference]] | None = None,
        flush_every: timedelta = FLUSH_EVERY,
    ) -> None:
        self.project = project
        self.clock = clock
        self._engine = engine
        self._table: SqlQualityStore | None = None
        self._references = references
        self.counters = IngestCounters(flush_every)

    @property
    def table(self) -> SqlQualityStore:
        if self._table is None:
            self._table = SqlQualityStore(self._engine)
        return self._table

    def watch(self, view: FeatureView) -> BatchWatch | None:
        """A watch for one materialization of `view` (None for an aggregated view: it writes
        tiles, not the rows of its features)."""
        if view.is_aggregated:
            return None
        refs = self._references(view) if self._references is not None else None
        return BatchWatch(view.name, view.feature_names, refs, sink=self._write)

    def ingested(self, view: FeatureView, table: pa.Table) -> None:
        """Count one pushed or ingested batch of `view`; write the counters when due."""
        now = self.clock()
        self.counters.add(view, table, now)
        if self.counters.due(now):
            self.flush()

    def flush(self) -> None:
        records = self.counters.drain(self.clock())
        if records:  # nothing counted: no database write (a store closing after no push)
            self._write(records)

    def _write(self, records: list[QualityRecord]) -> None:
        try:
            self.table.record(self.project, records, self.clock())
        except ParityError as failure:  # the registry is down: the data path goes on
            log.warning("quality records of %d features not written: %s", len(records), failure)


def _newest_time(table: pa.Table, column: str) -> datetime | None:
    """The newest value of a pushed batch's event-time column, as an aware datetime."""
    if column not in table.column_names:
        return None
    import pyarrow.compute as pc

    newest = pc.max(table[column]).as_py()
    return newest if isinstance(newest, datetime) else None
