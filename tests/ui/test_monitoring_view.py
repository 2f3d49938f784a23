"""The monitoring pages' shaping functions on hand-made values: a window judged twice shows the
later run, NaN and infinities become null, the newest window is the latest end's newest
version, windows that cannot be asked for are named."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from parity.monitoring.alert_store import AlertStatus
from parity.monitoring.drift_history import DATASET, DriftRow
from parity.ui import monitoring_view as view

T = datetime(2026, 3, 2, tzinfo=UTC)
WEEK = timedelta(days=7)


def row(
    column: str, week: int, statistic: float, *, run: int = 0, version: int = 1, kind: str = ""
) -> DriftRow:
    start = T + week * WEEK
    threshold = 0.5 if column == DATASET else 0.1
    return DriftRow(
        run_id=f"run{run}",
        run_at=start + WEEK + timedelta(hours=run),
        project="p",
        model="m",
        version=version,
        window_start=start,
        window_end=start + WEEK,
        column=column,
        kind=kind or ("dataset" if column == DATASET else "feature"),
        test="drift_share" if column == DATASET else "wasserstein",
        statistic=statistic,
        p_value=None,
        threshold=threshold,
        status="drift" if statistic >= threshold else "no_drift",
        drifted=statistic >= threshold,
        rows=100 + week,
    )


def test_a_window_judged_twice_shows_the_later_run_and_nan_is_null() -> None:
    rows = [
        row("a", 0, 0.05, run=0),
        row("a", 1, 0.30, run=0),
        row("a", 1, 0.02, run=1),  # the same window judged again later
        row("b", 0, math.nan, run=0, kind="output"),
        row(DATASET, 0, 0.5, run=0),
    ]
    shaped = view.drift_columns(rows)
    a, b = shaped["columns"]
    assert [p["statistic"] for p in a["series"]] == [0.05, 0.02]
    assert [p["drifted"] for p in a["series"]] == [False, False]
    assert [p["run_at"] for p in a["series"]][1] == (T + 2 * WEEK + timedelta(hours=1)).isoformat()
    assert (b["role"], b["series"][0]["statistic"]) == ("output", None)
    assert shaped["drift_share"]["threshold"] == 0.5
    assert [p["statistic"] for p in shaped["drift_share"]["series"]] == [0.5]


def test_the_summary_takes_the_latest_end_and_its_newest_version() -> None:
    latest = [
        row("a", 3, 0.3, version=1),
        row("b", 3, 0.01, version=1),
        row("a", 3, 0.01, version=2),
        row("b", 3, 0.2, version=2),
        row("c", 3, 0.2, version=2),
        row(DATASET, 3, 2 / 3, version=2),
        row("a", 2, 0.9, version=3),  # an older window of a newer version
    ]
    status = AlertStatus("mon", "r", "drift_share", True, 0, 0.7, T, T)
    quiet = AlertStatus("other", "r", "drift_share", True, 0, 0.7, T, T)
    shaped = view.model_summary("m", None, latest, [status, quiet])
    assert shaped["latest_window"] == {
        "window_start": (T + 3 * WEEK).isoformat(),
        "window_end": (T + 4 * WEEK).isoformat(),
        "version": 2,
        "drift_share": 2 / 3,
        "drifted": True,
    }
    assert (shaped["columns"], shaped["drifted_columns"]) == (3, 2)  # b and c of version 2
    assert shaped["firing_alerts"] == 0  # no monitor: none of these rules are its
    assert view.model_summary("none", None, latest, [])["latest_window"] is None


def test_performance_series_one_per_metric_in_window_order() -> None:
    def window(week: int, version: int, status: str, auc: float | None) -> dict[str, object]:
        return {
            "window_start": T + week * WEEK,
            "window_end": T + (week + 1) * WEEK,
            "version": version,
            "as_of": T + 10 * WEEK,
            "status": status,
            "predictions": 10,
            "labelled": 4,
            "coverage": 0.4,
            "metrics": {"auc": auc, "recall": math.inf},
            "reasons": {"auc": "why"} if auc is None else {},
        }

    shaped = view.performance_series(
        [window(1, 1, "provisional", None), window(0, 1, "final", 0.8)]
    )
    assert [s["metric"] for s in shaped] == ["auc", "recall"]
    auc = shaped[0]["points"]
    assert [(p["value"], p["final"], p["reason"]) for p in auc] == [
        (0.8, True, None),
        (None, False, "why"),
    ]
    assert shaped[1]["points"][0]["value"] is None  # infinity is not JSON


@pytest.mark.parametrize(
    ("since", "until", "field"),
    [
        (T, T, "since"),
        (T + WEEK, T, "since"),
        (datetime(1969, 12, 31, tzinfo=UTC), None, "since"),
        (None, datetime(9001, 1, 1, tzinfo=UTC), "until"),
    ],
)
def test_windows_a_page_may_not_ask_for_name_the_field(
    since: datetime | None, until: datetime | None, field: str
) -> None:
    found = view.check_window(since, until)
    assert found is not None and found[0] == field


def test_evidence_becomes_json() -> None:
    evidence = {"a": math.nan, "b": (1, T), "c": WEEK, "d": {"e": object}}
    shaped = view.jsonable(evidence)
    assert shaped["a"] is None and shaped["b"] == [1, T.isoformat()]
    assert shaped["c"] == WEEK.total_seconds() and isinstance(shaped["d"]["e"], str)


def test_performance_keeps_the_newest_windows_of_every_version() -> None:
    def window(week: int, version: int) -> dict[str, object]:
        start = T + week * WEEK
        return {
            "window_start": start,
            "window_end": start + WEEK,
            "version": version,
            "as_of": T,
            "status": "final",
            "predictions": 1,
            "labelled": 1,
            "coverage": 1.0,
            "metrics": {"auc": week / 10},
        }

    found = [window(w, 1) for w in range(5)] + [window(3, 2), window(4, 2)]
    [auc] = view.performance_series(found, keep=2)
    assert [(p["value"], p["version"]) for p in auc["points"]] == [
        (0.3, 1),
        (0.3, 2),
        (0.4, 1),
        (0.4, 2),
    ]
    assert view.performance_series([], keep=2) == []
