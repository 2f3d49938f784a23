"""QA: window widths past what a datetime holds are a typed InvalidWindow or one window, never an
OverflowError traceback (`parity monitor drift --window 100000d`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from parity import FeatureStore
from parity.errors import InvalidWindow
from parity.inference.predlog import PredictionRecord
from parity.monitoring.drift import parse_window
from parity.monitoring.logs import make_windows
from tests.monitoring.test_drift_runs import T0, log_window, register, repo, store, write_log

__all__ = ["repo", "store"]  # the fixtures


@pytest.mark.parametrize("text", ["99999999999w", "P9999999999D", "1e400d"])
def test_a_window_too_wide_for_a_duration_is_invalid(text: str) -> None:
    with pytest.raises(InvalidWindow, match="window"):
        parse_window(text)


def test_a_window_wider_than_the_range_is_the_whole_range() -> None:
    since, until = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    windows = make_windows(since, until, timedelta.max)
    assert windows.count == 1
    assert windows.bounds(0) == (since, until)


def test_a_huge_window_without_since_reads_everything_before_until(store: FeatureStore) -> None:
    register(store)
    records: list[PredictionRecord] = []
    log_window(records, np.random.default_rng(5), T0, 200)
    write_log(store, records)
    until = T0 + timedelta(hours=1)
    report = store.monitoring.drift("scorer", until=until, window=timedelta(days=100_000))
    assert sum(w.rows for w in report.windows) == 200
    assert report.windows[-1].rows == 200
    assert report.windows[-1].end == until
    with_since = store.monitoring.drift("scorer", since=T0, window=timedelta(days=10**8))
    assert [w.rows for w in with_since.windows] == [200]


def test_the_page_of_a_run_reaching_back_to_year_one_renders(store: FeatureStore) -> None:
    # drift_report_html reads the history of three run-lengths before the run's start, which
    # overflowed datetime for a run starting at datetime.min (a huge --window without --since)
    register(store)
    records: list[PredictionRecord] = []
    log_window(records, np.random.default_rng(5), T0, 200)
    write_log(store, records)
    report = store.monitoring.drift(
        "scorer", until=T0 + timedelta(hours=1), window=timedelta(days=100_000), persist=False
    )
    assert report.since.year == 1
    assert "<svg" in store.monitoring.drift_report_html(report)
