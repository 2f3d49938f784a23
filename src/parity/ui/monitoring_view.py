"""The monitoring pages' data, shaped from values the store returned (drift rows, performance
windows, trigger decisions, alert states, a consistency report): pure functions, no store
reads, no HTTP. api_monitoring.py reads the store and hands the values here."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parity.definitions.monitor import Monitor
    from parity.deploy.retrain_state import RetrainDecision
    from parity.monitoring.alert_store import AlertEvent, AlertStatus
    from parity.monitoring.consistency import ConsistencyReport
    from parity.monitoring.drift_history import DriftRow
    from parity.ui.tasks import TaskState

DATASET = "__dataset__"  # drift_history.DATASET: a window's dataset-level row (drift share)
ROLES = ("feature", "input", "output")
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # times a page may ask for (ISO text in SQL)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else _iso(moment)


@lru_cache(maxsize=4096)  # a drift history repeats each window's times once per column
def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: such a value is shown as absent."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def model_url(model: str) -> str:
    return f"#/monitoring/{model}"


# --- the models under monitoring ------------------------------------------------------------


def latest_window(rows: Sequence[DriftRow]) -> list[DriftRow]:
    """Of one model's newest rows (`latest_drift`), those of its newest judged window: the
    latest end, and of the versions judged then, the newest."""
    if not rows:
        return []
    end = max(r.window_end for r in rows)
    version = max(r.version for r in rows if r.window_end == end)
    return [r for r in rows if r.window_end == end and r.version == version]


def model_summary(
    model: str,
    monitor: Monitor | None,
    latest: Sequence[DriftRow],
    statuses: Sequence[AlertStatus],
) -> dict[str, Any]:
    """One row of the monitoring list: the monitor, its newest drift window (start, end,
    version, drift share) with its columns and how many drifted, and its firing alerts."""
    window = latest_window([r for r in latest if r.model == model])
    columns = [r for r in window if r.column != DATASET]
    share = next((r for r in window if r.column == DATASET), None)
    name = None if monitor is None else monitor.name
    return {
        "model": model,
        "monitor": name,
        "window_seconds": None if monitor is None else monitor.window.total_seconds(),
        "latest_window": None
        if not window
        else {
            "window_start": iso(window[0].window_start),
            "window_end": iso(window[0].window_end),
            "version": window[0].version,
            "drift_share": None if share is None else finite(share.statistic),
            "drifted": None if share is None else share.drifted,
        },
        "columns": len(columns),
        "drifted_columns": sum(1 for r in columns if r.drifted),
        "firing_alerts": sum(1 for s in statuses if s.firing and s.monitor == name),
        "url": model_url(model),
    }


# --- drift per column over time -------------------------------------------------------------


def drift_point(row: DriftRow) -> dict[str, Any]:
    return {
        "window_start": iso(row.window_start),
        "window_end": iso(row.window_end),
        "version": row.version,
        "statistic": finite(row.statistic),
        "p_value": finite(row.p_value),
        "drifted": row.drifted,
        "status": row.status,
        "current_rows": row.rows,
        "run_at": iso(row.run_at),
    }


def newest_per_window(rows: Iterable[DriftRow]) -> list[DriftRow]:
    """One row per (window, version): of the runs that judged it, the latest (rows come oldest
    run first), in window then version order."""
    kept: dict[tuple[datetime, int], DriftRow] = {}
    for row in rows:
        kept[(row.window_start, row.version)] = row
    return [kept[key] for key in sorted(kept)]


def drift_columns(rows: Sequence[DriftRow]) -> dict[str, Any]:
    """The stored drift rows of one model as a series per column (its test and threshold from
    its newest row), in first-seen order, and the dataset-level drift share as its own series."""
    by_column: dict[str, list[DriftRow]] = {}
    for row in rows:
        by_column.setdefault(row.column, []).append(row)
    columns = []
    for column, found in by_column.items():
        if column == DATASET:
            continue
        newest = found[-1]
        columns.append(
            {
                "column": column,
                "role": newest.kind if newest.kind in ROLES else "feature",
                "test": newest.test,
                "threshold": finite(newest.threshold),
                "series": [drift_point(r) for r in newest_per_window(found)],
            }
        )
    share = by_column.get(DATASET, [])
    return {
        "columns": columns,
        "drift_share": {
            "threshold": finite(share[-1].threshold) if share else None,
            "series": [drift_point(r) for r in newest_per_window(share)],
        },
    }


# --- delayed-label performance ---------------------------------------------------------------


def newest_windows(ordered: list[dict[str, Any]], keep: int) -> list[dict[str, Any]]:
    """Of windows in start order, those of the newest `keep` window starts."""
    starts = sorted({w["window_start"] for w in ordered})[-keep:]
    return [w for w in ordered if starts and w["window_start"] >= starts[0]]


def performance_series(windows: Sequence[dict[str, Any]], keep: int = 100) -> list[dict[str, Any]]:
    """Stored performance windows (`performance_history`, newest run of each) as one series per
    metric, each point with its window's label coverage and whether it is final (every label
    due has had its delay) or provisional (its value still moves as labels arrive); the
    newest `keep` windows."""
    series: dict[str, list[dict[str, Any]]] = {}
    ordered = sorted(windows, key=lambda w: (w["window_start"], w["version"]))
    for window in newest_windows(ordered, keep):
        for metric, value in sorted(window.get("metrics", {}).items()):
            series.setdefault(metric, []).append(
                {
                    "window_start": iso(window["window_start"]),
                    "window_end": iso(window["window_end"]),
                    "version": window["version"],
                    "value": finite(value),
                    "coverage": finite(window["coverage"]),
                    "labelled": window["labelled"],
                    "predictions": window["predictions"],
                    "final": window["status"] == "final",
                    "as_of": iso(window["as_of"]),
                    "reason": window.get("reasons", {}).get(metric),
                }
            )
    return [{"metric": name, "points": points} for name, points in sorted(series.items())]


# --- retrain trigger decisions ---------------------------------------------------------------


def decision(found: RetrainDecision, job_status: str | None) -> dict[str, Any]:
    return {
        "id": found.id,
        "at": iso(found.at),
        "policy": found.policy,
        "action": found.action,
        "reasons": list(found.reasons),
        "signals": jsonable(found.signals),
        "job": found.job_id,
        "job_status": job_status,
        "url": model_url(found.model),
    }


def jsonable(value: Any) -> Any:
    """A decision's evidence as JSON: NaN and infinities absent, times as ISO text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return finite(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


# --- alerts ----------------------------------------------------------------------------------


def alert_status(status: AlertStatus) -> dict[str, Any]:
    return {
        "monitor": status.monitor,
        "rule": status.rule,
        "signal": status.signal,
        "firing": status.firing,
        "streak": status.streak,
        "last_value": finite(status.last_value),
        "since": iso(status.since),
        "last_at": iso(status.last_at),
    }


def alert_event(event: AlertEvent) -> dict[str, Any]:
    return {
        "at": iso(event.at),
        "monitor": event.monitor,
        "rule": event.rule,
        "signal": event.signal,
        "kind": event.state,
        "value": finite(event.value),
        "fire_at": finite(event.fire_at),
        "clear_at": finite(event.clear_at),
        "direction": event.direction,
    }


# --- consistency -----------------------------------------------------------------------------


def consistency_result(report: ConsistencyReport) -> dict[str, Any]:
    """Mismatch rates per feature overall and per hour of request time."""
    return {
        "since": iso(report.since),
        "until": iso(report.until),
        "rows": report.rows,
        "message": report.message,
        "features": [
            {
                "feature": f.feature,
                "compared": f.counts.total,
                "mismatches": f.counts.mismatch,
                "stale": f.counts.stale,
                "rate": f.counts.mismatch_rate,
            }
            for f in report.features
        ],
        "hours": [
            {"hour": iso(b.hour), "feature": b.feature, "rate": b.counts.mismatch_rate}
            for b in report.buckets
        ],
    }


def consistency_state(
    task: TaskState | None, window: tuple[datetime, datetime] | None
) -> dict[str, Any]:
    """Where the service's replay stands (state "none" before any), with its result when done.
    `window`: the [since, until) it was asked for (None: none asked)."""
    empty: dict[str, Any] = {"rows": None, "message": None, "features": [], "hours": []}
    since, until = (None, None) if window is None else window
    base: dict[str, Any] = {"since": iso(since), "until": iso(until), **empty}
    if task is None:
        keys = ("id", "phase", "started_at", "finished_at", "error", "total")
        return {"state": "none", "done": 0, **dict.fromkeys(keys), **base}
    found = base if task.result is None else {**base, **consistency_result(task.result)}
    return {
        "state": task.state,
        "id": task.id,
        "phase": task.phase,
        "done": task.done,
        "total": task.total,
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "error": task.error,
        **found,
    }


def check_window(since: datetime | None, until: datetime | None) -> tuple[str, str] | None:
    """Which bound of [since, until) a page may not ask for and why (None: both are fine)."""
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and not EARLIEST <= moment <= LATEST:
            return name, f"{moment.isoformat()} is outside 1970..9000"
    if since is not None and until is not None and since >= until:
        return "since", f"{since.isoformat()} is not before until ({until.isoformat()})"
    return None
