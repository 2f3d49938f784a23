"""Drift run history in the registry database (table `parity_monitor_drift`, SQLite and
PostgreSQL): one row per run x window x version x column, for the UI, gauges and rollout gates.

Rows only: must not import the statistics, DuckDB or the model registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from parity.monitoring.profile_store import iso
from parity.registry.sql import connect, create_tables

_WHAT = "monitoring drift history"
DATASET = "__dataset__"  # the column name of a window's dataset-level row

metadata = sa.MetaData()
drift_table = sa.Table(
    "parity_monitor_drift",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("run_at", sa.String(40), nullable=False),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("window_start", sa.String(40), nullable=False),
    sa.Column("window_end", sa.String(40), nullable=False),
    sa.Column("column_name", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # feature | input | output | dataset
    sa.Column("test", sa.String(32), nullable=False),
    sa.Column("statistic", sa.Float),
    sa.Column("p_value", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("drifted", sa.Boolean),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Index("ix_parity_monitor_drift_model", "project", "model", "version", "column_name"),
    sa.Index("ix_parity_monitor_drift_run", "project", "run_id"),
)


@dataclass(frozen=True)
class DriftRow:
    """One column of one window of one run (`column == DATASET`: the window's dataset drift,
    statistic = share of drifted columns, threshold = the drift share that flags it)."""

    run_id: str
    run_at: datetime
    project: str
    model: str
    version: int
    window_start: datetime
    window_end: datetime
    column: str
    kind: str
    test: str
    statistic: float | None
    p_value: float | None
    threshold: float | None
    status: str
    drifted: bool | None
    rows: int
    reason: str = ""


_TIMES = ("run_at", "window_start", "window_end")


class DriftHistory:
    """Append-only history of drift runs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_tables(metadata, engine, _WHAT)

    def _connect(self, *, write: bool = False) -> Connection:
        return connect(self.engine, write=write, what=_WHAT)

    def record(self, rows: Sequence[DriftRow]) -> None:
        """Store one run's rows in one transaction (all or none)."""
        if not rows:
            return
        with self._connect(write=True) as conn, conn.begin():
            conn.execute(drift_table.insert(), [_row(r) for r in rows])

    def history(
        self,
        project: str,
        model: str,
        *,
        version: int | None = None,
        column: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[DriftRow]:
        """Stored rows of a model, oldest run first (windows and columns in stored order);
        `since`/`until` select windows starting in [since, until); `limit` keeps the newest."""
        table = drift_table.c
        query = sa.select(drift_table).where(table.project == project, table.model == model)
        if version is not None:
            query = query.where(table.version == version)
        if column is not None:
            query = query.where(table.column_name == column)
        if since is not None:
            query = query.where(table.window_start >= iso(since))
        if until is not None:
            query = query.where(table.window_start < iso(until))
        query = query.order_by(table.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._connect() as conn:
            found = [_drift_row(row._mapping) for row in conn.execute(query)]
        return found[::-1]

    def latest(self, project: str) -> list[DriftRow]:
        """Per (model, version, column), the row of the newest window (by its end; the latest
        run's where two judged it): what the model server's gauges show. A backfill of an older
        range recorded later does not replace it."""
        table = drift_table.c
        ranked = (
            sa.select(
                table.id,
                sa.func.row_number()
                .over(
                    partition_by=(table.model, table.version, table.column_name),
                    order_by=(table.window_end.desc(), table.id.desc()),  # ISO text: time order
                )
                .label("rank"),
            )
            .where(table.project == project)
            .subquery()
        )
        newest = sa.select(ranked.c.id).where(ranked.c.rank == 1)
        query = sa.select(drift_table).where(table.id.in_(newest)).order_by(table.id)
        with self._connect() as conn:
            return [_drift_row(row._mapping) for row in conn.execute(query)]


def _row(record: DriftRow) -> dict[str, object]:
    row: dict[str, object] = {f.name: getattr(record, f.name) for f in fields(DriftRow)}
    row["column_name"] = row.pop("column")
    for name in _TIMES:
        row[name] = iso(getattr(record, name))
    return row


def _drift_row(row: object) -> DriftRow:
    mapping = dict(row)  # type: ignore[call-overload]
    mapping["column"] = mapping.pop("column_name")
    mapping.pop("id")
    for name in _TIMES:
        mapping[name] = datetime.fromisoformat(str(mapping[name]))
    mapping["drifted"] = None if mapping["drifted"] is None else bool(mapping["drifted"])
    return DriftRow(**mapping)
