"""History of delayed-label performance runs: table `parity_monitor_performance` in the registry
database (SQLite or PostgreSQL), one row per window per run, so the UI and rollout gates can read
how a window's metrics moved as its labels arrived. Must not import DuckDB or the model server.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from parity.monitoring.performance_report import PerformanceReport
from parity.registry.sql import connect, create_tables

_WHAT = "monitoring history"
metadata = sa.MetaData()
performance_table = sa.Table(
    "parity_monitor_performance",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("monitor", sa.String(255), nullable=False),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("window_start", sa.String(40), nullable=False),
    sa.Column("window_end", sa.String(40), nullable=False),
    sa.Column("as_of", sa.String(40), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("predictions", sa.BigInteger, nullable=False),
    sa.Column("labelled", sa.BigInteger, nullable=False),
    sa.Column("coverage", sa.Float),
    sa.Column("metrics", sa.Text, nullable=False),  # JSON: the window's values and reasons
    sa.Index("ix_parity_monitor_performance_window", "project", "model", "version", "window_start"),
)


class PerformanceHistory:
    """Append-only store of performance windows on the registry's engine."""

    def __init__(self, engine: Engine, project: str) -> None:
        self.engine, self.project = engine, project
        create_tables(metadata, engine, _WHAT)

    def record(self, report: PerformanceReport) -> int:
        """Store each window of `report`; returns how many rows were written."""
        rows = [
            {
                "project": self.project,
                "monitor": report.monitor,
                "model": report.model,
                "version": report.version,
                "window_start": _iso(w.start),
                "window_end": _iso(w.end),
                "as_of": _iso(report.as_of),
                "status": w.status,
                "predictions": w.predictions,
                "labelled": w.labelled,
                "coverage": w.coverage,
                "metrics": json.dumps(_details(w.to_dict()), sort_keys=True),
            }
            for w in report.windows
        ]
        if rows:
            with connect(self.engine, write=True, what=_WHAT) as conn, conn.begin():
                conn.execute(performance_table.insert(), rows)
        return len(rows)

    def history(
        self, model: str, version: int | None = None, *, latest: bool = True
    ) -> list[dict[str, Any]]:
        """Stored windows of `model` (one version, or all), oldest window first; with `latest`
        only the newest run (largest as_of, then last written) of each window."""
        t = performance_table
        query = sa.select(t).where(t.c.project == self.project, t.c.model == model)
        if version is not None:
            query = query.where(t.c.version == version)
        query = query.order_by(t.c.version, t.c.window_start, t.c.as_of, t.c.id)
        with connect(self.engine, what=_WHAT) as conn:
            found = [_row(r._mapping) for r in conn.execute(query)]
        if not latest:
            return found
        newest: dict[tuple[int, str], dict[str, Any]] = {}
        for row in found:  # ordered by as_of then id: the last one of each window wins
            newest[(row["version"], row["window_start"].isoformat())] = row
        return list(newest.values())


def _details(window: dict[str, Any]) -> dict[str, Any]:
    keep = ("metrics", "reasons", "reliability", "positives", "dropped_scores", "insufficient", "k")
    return {key: window[key] for key in keep}


def _row(mapping: Any) -> dict[str, Any]:
    row = dict(mapping)
    for key in ("window_start", "window_end", "as_of"):
        row[key] = datetime.fromisoformat(row[key])
    row.update(json.loads(row.pop("metrics")))
    row.pop("id")
    return row


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
