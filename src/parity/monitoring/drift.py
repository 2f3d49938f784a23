"""Drift runs, pure: each window of logged rows (per model version) against the version's
reference profiles, column by column, plus dataset drift; the report and its history rows.

Statistics come from parity.monitoring.stats; reads and writes are drift_runner's. No I/O here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from parity.errors import UnknownMonitorColumn
from parity.monitoring.drift_history import DATASET, DriftRow
from parity.monitoring.logs import (
    ENTITIES,
    FEATURES,
    PREDICTION,
    LogColumn,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from parity.monitoring.profile import ColumnProfile
    from parity.monitoring.stats import ColumnDrift

DEFAULT_WINDOW = timedelta(hours=1)  # hourly: enough rows at modest traffic, drift seen same day
DEFAULT_MIN_SAMPLES = 100  # below this a test has too little power: "insufficient data"
DEFAULT_DRIFT_SHARE = 0.5  # Evidently's dataset-drift rule: half the columns drifted
DEFAULT_RANGE_WINDOWS = 24  # without --since: the last 24 windows (a day of hourly windows)
PARALLEL_ROWS = 50_000  # windows this large test their columns on a thread each (CPU-bound sorts)


@dataclass(frozen=True)
class DriftSettings:
    """How a model is tested: its applied Monitor's settings, else the defaults."""

    window: timedelta = DEFAULT_WINDOW
    min_samples: int = DEFAULT_MIN_SAMPLES
    drift_share: float = DEFAULT_DRIFT_SHARE
    correction: str | None = None
    tests: Mapping[str, str] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    columns: tuple[str, ...] | None = None
    monitor: str | None = None  # the Monitor they came from

    @classmethod
    def from_monitor(cls, monitor: Any | None) -> DriftSettings:
        if monitor is None:
            return cls()
        columns = getattr(monitor, "columns", None)
        return cls(
            window=getattr(monitor, "window", None) or DEFAULT_WINDOW,
            min_samples=int(getattr(monitor, "min_samples", DEFAULT_MIN_SAMPLES)),
            drift_share=float(getattr(monitor, "drift_share", DEFAULT_DRIFT_SHARE)),
            correction=getattr(monitor, "correction", None),
            tests=dict(getattr(monitor, "tests", None) or {}),
            thresholds=dict(getattr(monitor, "thresholds", None) or {}),
            columns=None if columns is None else tuple(columns),
            monitor=str(monitor.name),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_seconds": self.window.total_seconds(),
            "min_samples": self.min_samples,
            "drift_share": self.drift_share,
            "correction": self.correction,
            "tests": dict(self.tests),
            "thresholds": dict(self.thresholds),
            "columns": None if self.columns is None else list(self.columns),
            "monitor": self.monitor,
        }


@dataclass(frozen=True)
class Reference:
    """A version's reference: per column, its kind ('feature', 'input', 'output') and profile."""

    version: int
    dataset: str
    fingerprint: str
    kinds: Mapping[str, str]
    profiles: Mapping[str, ColumnProfile]

    def log_columns(self, names: Sequence[str]) -> list[LogColumn]:
        outputs = [n for n in self.kinds if self.kinds[n] == "output"]
        single = len(outputs) == 1
        columns = []
        for name in names:
            kind, sql_type = self.kinds[name], sql_type_of(self.profiles[name])
            if kind == "feature":
                columns.append(LogColumn(name, FEATURES, sql_type, name))
            elif kind == "input":
                columns.append(LogColumn(name, ENTITIES, sql_type, name))
            else:
                columns.append(LogColumn(name, PREDICTION, sql_type, None if single else name))
        return columns


@dataclass(frozen=True)
class ColumnResult:
    """One column's verdict in one window (status: 'drift', 'no_drift', 'insufficient_data', or
    what the statistics report for a column they cannot test)."""

    column: str
    kind: str
    test: str
    statistic: float | None
    p_value: float | None
    threshold: float | None
    status: str
    drifted: bool | None
    reason: str
    count: int = 0  # rows of the window
    nulls: int = 0  # of them null, NaN or infinite (dropped before the test)

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind,
            "test": self.test,
            "statistic": _finite(self.statistic),
            "p_value": _finite(self.p_value),
            "threshold": _finite(self.threshold),
            "status": self.status,
            "drifted": self.drifted,
            "reason": self.reason,
            "count": self.count,
            "nulls": self.nulls,
        }


@dataclass(frozen=True)
class WindowDrift:
    """One window of one version: every column's verdict and the dataset drift."""

    version: int
    index: int
    start: datetime
    end: datetime
    rows: int
    columns: tuple[ColumnResult, ...]
    share: float | None  # share of drifted columns among those tested (None: none tested)
    drifted: bool | None
    status: str
    values: pa.Table | None = field(default=None, repr=False, compare=False)  # current rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "rows": self.rows,
            "status": self.status,
            "drift_share": _finite(self.share),
            "dataset_drift": self.drifted,
            "columns": [c.to_dict() for c in self.columns],
        }


@dataclass(frozen=True)
class DriftReport:
    """A drift run: what was asked, each version's reference, and every window's verdicts."""

    run_id: str
    run_at: datetime
    project: str
    model: str
    target: str
    versions: tuple[int, ...]
    since: datetime
    until: datetime
    settings: DriftSettings
    references: Mapping[int, Reference]
    windows: tuple[WindowDrift, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "run_at": self.run_at.isoformat(),
            "project": self.project,
            "model": self.model,
            "target": self.target,
            "versions": list(self.versions),
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "settings": self.settings.to_dict(),
            "references": {
                str(v): {
                    "dataset": r.dataset,
                    "fingerprint": r.fingerprint,
                    "columns": dict(r.kinds),
                }
                for v, r in self.references.items()
            },
            "windows": [w.to_dict() for w in self.windows],
        }

    def history_rows(self) -> list[DriftRow]:
        """The rows this run adds to the history: one per window x column, plus the window's
        dataset row (column DATASET: statistic = drift share, threshold = `drift_share`)."""
        rows = []
        for window in self.windows:
            common: dict[str, Any] = {
                "run_id": self.run_id,
                "run_at": self.run_at,
                "project": self.project,
                "model": self.model,
                "version": window.version,
                "window_start": window.start,
                "window_end": window.end,
                "rows": window.rows,
            }
            rows += [_history_row(common, c) for c in window.columns]
            dataset = ColumnResult(
                column=DATASET,
                kind="dataset",
                test="drift_share",
                statistic=window.share,
                p_value=None,
                threshold=self.settings.drift_share,
                status=window.status,
                drifted=window.drifted,
                reason="",
            )
            rows.append(_history_row(common, dataset))
        return rows


def _history_row(common: dict[str, Any], c: ColumnResult) -> DriftRow:
    return DriftRow(
        **common,
        column=c.column,
        kind=c.kind,
        test=c.test,
        statistic=_finite(c.statistic),
        p_value=_finite(c.p_value),
        threshold=_finite(c.threshold),
        status=c.status,
        drifted=c.drifted,
        reason=c.reason,
    )


def _finite(value: float | None) -> float | None:
    """JSON and SQL hold no NaN: a non-finite statistic is reported as null."""
    return None if value is None or not math.isfinite(value) else float(value)


# --- the one place that knows the statistics module's names ----------------------------------


def load_profile_columns(text: str) -> dict[str, ColumnProfile]:
    """Column name -> ColumnProfile of a stored profile's JSON."""
    from parity.monitoring.profile import Profile

    profile = Profile.from_json(text)
    return dict(profile.columns)


_SQL_TYPES = {"numeric": "DOUBLE", "boolean": "BOOLEAN"}


def sql_type_of(profile: ColumnProfile) -> str:
    """How the log's JSON values of a column are read: as the reference's kind (a value of
    another JSON type reads as null and is counted with the nulls)."""
    return _SQL_TYPES.get(profile.kind, "VARCHAR")


def test_column(
    name: str, kind: str, profile: ColumnProfile, values: Any, settings: DriftSettings
) -> tuple[ColumnResult, ColumnDrift]:
    """One column's verdict, and the statistics module's own result (for dataset drift)."""
    from parity.monitoring.stats import column_drift

    result = column_drift(
        profile,
        values,
        test=settings.tests.get(name, "auto"),
        threshold=settings.thresholds.get(name),
        min_samples=settings.min_samples,
    )
    return _column_result(name, kind, result), result


def _column_result(name: str, kind: str, result: ColumnDrift) -> ColumnResult:
    return ColumnResult(
        column=name,
        kind=kind,
        test=result.test or "-",
        statistic=result.statistic,
        p_value=result.p_value,
        threshold=result.threshold,
        status=result.status,
        drifted=result.drifted if result.status in ("drift", "no_drift") else None,
        reason=result.reason,
        count=result.count,
        nulls=result.nulls + result.infinite,
    )


def dataset_verdict(
    kinds: Sequence[str], results: Sequence[ColumnDrift], settings: DriftSettings
) -> tuple[list[ColumnResult], float | None, bool | None, str]:
    """One window's columns (re-decided by the correction, if any) and its dataset drift:
    (columns, share of drifted columns, dataset drifted, status)."""
    from parity.monitoring.stats import dataset_drift

    verdict = dataset_drift(
        list(results),
        share=settings.drift_share,
        correction=settings.correction,  # type: ignore[arg-type]
    )
    columns = [
        _column_result(r.column, kind, r) for kind, r in zip(kinds, verdict.columns, strict=True)
    ]
    if verdict.tested == 0:
        return columns, None, None, verdict.status
    return columns, verdict.share, verdict.drifted, verdict.status


# --- pure evaluation of one window -----------------------------------------------------------


def evaluate_window(
    reference: Reference,
    columns: Sequence[str],
    values: pa.Table | None,
    settings: DriftSettings,
    *,
    index: int,
    bounds: tuple[datetime, datetime],
) -> WindowDrift:
    """Every column of one window against the reference (no rows: each is insufficient data)."""
    import pyarrow as pa

    rows = 0 if values is None else values.num_rows

    def test(name: str) -> ColumnDrift:
        current = values.column(name) if values is not None else pa.array([], pa.null())
        profile = reference.profiles[name]
        return test_column(name, reference.kinds[name], profile, current, settings)[1]

    if rows < PARALLEL_ROWS or len(columns) < 2:
        raw = [test(name) for name in columns]
    else:  # each test is mostly a numpy sort, which releases the GIL: columns run in parallel
        workers = min(len(columns), os.cpu_count() or 1)
        with ThreadPoolExecutor(workers, thread_name_prefix="parity-drift") as pool:
            raw = list(pool.map(test, columns))
    kinds = [reference.kinds[name] for name in columns]
    results, share, drifted, status = dataset_verdict(kinds, raw, settings)
    return WindowDrift(
        version=reference.version,
        index=index,
        start=bounds[0],
        end=bounds[1],
        rows=rows,
        columns=tuple(results),
        share=share,
        drifted=drifted,
        status=status,
        values=values,
    )


def chosen_columns(reference: Reference, settings: DriftSettings) -> list[str]:
    """The columns to test: the Monitor's `columns` (in its order) or every reference column;
    a name in `columns`, `tests` or `thresholds` the reference lacks is an error naming it."""
    known = list(reference.kinds)
    for what, names in (
        ("columns", settings.columns or ()),
        ("tests", tuple(settings.tests)),
        ("thresholds", tuple(settings.thresholds)),
    ):
        unknown = [n for n in names if n not in reference.kinds]
        if unknown:
            where = f"Monitor '{settings.monitor}'" if settings.monitor else "the drift settings"
            raise UnknownMonitorColumn(
                f"{where} names {unknown} in {what}, which model version {reference.version}'s "
                f"reference (dataset '{reference.dataset}') does not have; its columns are "
                f"{known}"
            )
    return list(settings.columns) if settings.columns is not None else known


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_window(text: str) -> timedelta:
    """A window width: a number and a unit (`90s`, `30m`, `1h`, `7d`, `2w`) or ISO 8601
    (`PT1H`, `P7D`); InvalidWindow otherwise."""
    from pydantic import TypeAdapter, ValidationError

    from parity.errors import InvalidWindow

    value = text.strip().lower()
    number, unit = value[:-1], value[-1:]
    width: timedelta | None = None
    try:
        if unit in _UNITS and number.replace(".", "", 1).isdigit():
            width = timedelta(seconds=float(number) * _UNITS[unit])
        elif value.startswith("p"):
            width = TypeAdapter(timedelta).validate_python(text.strip().upper())
    except (ValidationError, OverflowError):  # past timedelta's 999,999,999 days
        width = None
    if width is None or width <= timedelta(0):
        raise InvalidWindow(
            f"window {text!r} is not a positive duration: write a number and a unit (90s, 30m, "
            "1h, 7d, 2w) or ISO 8601 (PT1H, P7D)"
        )
    return width
