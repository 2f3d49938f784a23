"""The report's view-model from a drift run: the window shown, bins counted on the reference's
edges (hand-worked), scores over time merged from the run and the stored history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from parity.errors import ReportError
from parity.monitoring.profile import profile_column
from parity.monitoring.report import Bin, HistoryPoint
from parity.monitoring.report_data import (
    DATASET,
    bins,
    drift_signals,
    drift_view,
    render_drift_report,
)

T0 = datetime(2026, 11, 20, tzinfo=UTC)
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Profile:
    kind: str
    valid: int
    psi_edges: tuple[float, ...] = ()
    psi_counts: tuple[int, ...] = ()
    frequencies: tuple[tuple[Any, int], ...] = ()
    other: int = 0


@dataclass(frozen=True)
class Result:
    column: str
    test: str
    statistic: float | None
    p_value: float | None
    threshold: float | None
    status: str
    drifted: bool | None
    reason: str = ""


@dataclass(frozen=True)
class Window:
    version: int
    start: datetime
    end: datetime
    rows: int
    columns: tuple[Result, ...]
    share: float | None
    drifted: bool | None
    status: str
    values: Any = None


@dataclass(frozen=True)
class Reference:
    dataset: str
    fingerprint: str
    profiles: Mapping[str, Any]


@dataclass(frozen=True)
class Settings:
    drift_share: float = 0.5
    window: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class Report:
    model: str
    target: str
    run_at: datetime
    versions: Sequence[int]
    references: Mapping[int, Reference]
    windows: Sequence[Window]
    settings: Settings = field(default_factory=Settings)


@dataclass(frozen=True)
class Row:
    run_at: datetime
    model: str
    version: int
    window_end: datetime
    column: str
    statistic: float | None
    p_value: float | None
    status: str
    drifted: bool | None


AMOUNT = Profile("numeric", 100, psi_edges=(10.0, 20.0), psi_counts=(25, 50, 25))
CHANNEL = Profile("categorical", 10, frequencies=(("web", 6), ("app", 3)), other=1)


def test_numeric_bins_use_the_reference_edges_with_open_ends() -> None:
    # [<10): 5, 9.99 -> 2 ; [10, 20): 10, 15 -> 2 ; [>=20): 20, 1e9 -> 2 ; NaN/inf/None dropped.
    values = pa.chunked_array(
        [[5.0, 9.99, 10.0, 15.0, 20.0, 1e9, float("nan"), float("inf"), None]]
    )
    assert bins(AMOUNT, values) == [
        Bin("< 10", 0.25, 2 / 6),
        Bin("[10, 20)", 0.5, 2 / 6),
        Bin("≥ 20", 0.25, 2 / 6),
    ]


def test_category_bins_fold_unknown_and_rare_values_into_other() -> None:
    values = pa.chunked_array([["web", "web", "new", None, "app"]])
    assert bins(CHANNEL, values) == [
        Bin("web", 0.6, 0.5),
        Bin("app", 0.3, 0.25),
        Bin("other / new", 0.1, 0.25),
    ]


def test_numeric_columns_with_few_values_are_drawn_per_value() -> None:
    profile = Profile(
        "numeric",
        4,
        psi_edges=(1.0,),
        psi_counts=(1, 3),
        frequencies=((2.0, 2), (1.0, 1), (0.0, 1)),
    )
    values = pa.chunked_array([[0, 2, 2, 2]], pa.int64())
    assert bins(profile, values) == [
        Bin("0.0", 0.25, 0.25),
        Bin("1.0", 0.25, 0.0),
        Bin("2.0", 0.5, 0.75),
    ]


def test_bins_without_current_rows_have_no_current_share() -> None:
    assert [b.current for b in bins(AMOUNT, None)] == [None, None, None]
    assert bins(Profile("numeric", 0), None) == []


def window(i: int, amount: float | None, p: float | None, status: str = "drift") -> Window:
    columns = (
        Result(
            "amount", "psi", amount, None, 0.2, status, None if amount is None else amount >= 0.2
        ),
        Result("channel", "chi_squared", 3.1, p, 0.05, status, None if p is None else p <= 0.05),
    )
    values = pa.table({"amount": [5.0, 15.0], "channel": ["web", "app"]})
    return Window(1, T0 + i * HOUR, T0 + (i + 1) * HOUR, 200, columns, 0.5, True, status, values)


def test_the_view_shows_the_last_judged_window_and_merges_the_history() -> None:
    windows = [
        window(0, 0.1, 0.5, "no_drift"),
        window(1, 0.3, 0.01),
        window(2, None, None, "insufficient_data"),
    ]
    report = Report(
        "fraud",
        "fraud@champion",
        T0 + 5 * HOUR,
        [1],
        {1: Reference("fraud_train_v1", "ab" * 32, {"amount": AMOUNT, "channel": CHANNEL})},
        windows,
    )
    stored = [
        # An earlier run judged window 0 differently; this run's value wins for that window.
        Row(T0, "fraud", 1, T0 + HOUR, "amount", 0.9, None, "drift", True),
        Row(T0, "fraud", 1, T0, "amount", 0.05, None, "no_drift", False),
        Row(T0, "fraud", 1, T0, DATASET, 0.0, None, "no_drift", False),
        Row(T0, "fraud", 2, T0, "amount", 7.0, None, "drift", True),  # another version
        Row(T0, "other", 1, T0, "amount", 7.0, None, "drift", True),  # another model
    ]
    view = drift_view(report, stored)
    assert (view.window_start, view.window_end) == (T0 + HOUR, T0 + 2 * HOUR)
    amount, channel = view.columns
    assert [(p.at, p.score) for p in amount.history] == [
        (T0, 0.05),
        (T0 + HOUR, 0.1),
        (T0 + 2 * HOUR, 0.3),
        (T0 + 3 * HOUR, None),
    ]
    assert (amount.statistic, amount.higher_is_drift, amount.test) == (0.3, True, "psi")
    # A p-value test is shown and plotted by its p-value, drift below the threshold.
    assert (channel.statistic, channel.higher_is_drift, channel.test) == (
        0.01,
        False,
        "chi_squared p-value",
    )
    assert [p.score for p in channel.history] == [0.5, 0.01, None]
    assert [b.current for b in amount.bins] == [0.5, 0.5, 0.0]
    assert view.share_history[0] == HistoryPoint(T0, 0.0, False)
    assert len(view.share_history) == 4
    assert view.share_history[-1] == HistoryPoint(T0 + 3 * HOUR, None, True)  # not judged
    assert view.dataset_drift is True
    page = render_drift_report(report, stored)
    assert "fraud_train_v1" in page and page.count("<svg") == 5


def test_a_version_missing_from_the_run_is_an_error() -> None:
    report = Report("fraud", "fraud", T0, [1], {}, [])
    with pytest.raises(ReportError, match="fraud has no window of version 1"):
        drift_view(report)


def test_drift_signals_per_window_oldest_first() -> None:
    windows = [
        window(1, 0.3, 0.01),
        window(0, 0.1, 0.5, "no_drift"),
        window(2, None, None, "insufficient_data"),
    ]
    report = Report("fraud", "fraud", T0, [1], {}, windows)
    assert drift_signals(report) == [
        (T0 + HOUR, {"drift_share": 0.5, "drift:amount": 0.1, "drift:channel": 0.5}),
        (T0 + 2 * HOUR, {"drift_share": 0.5, "drift:amount": 0.3, "drift:channel": 0.01}),
        (T0 + 3 * HOUR, {"drift_share": None, "drift:amount": None, "drift:channel": None}),
    ]
    assert drift_signals(report, version=2) == []


def test_a_column_that_could_not_be_tested_shows_no_test_and_no_plot() -> None:
    untested = Result("all_null", "None", None, None, None, "no_data", False, "no values")
    base = window(0, 0.1, 0.5, "no_drift")
    current = replace(base, columns=(*base.columns, untested))
    profile = Profile("numeric", 0)
    reference = Reference(
        "d", "f" * 64, {"amount": AMOUNT, "channel": CHANNEL, "all_null": profile}
    )
    report = Report("fraud", "fraud", T0, [1], {1: reference}, [current])
    column = drift_view(report).columns[-1]
    assert (column.test, column.statistic, column.bins) == ("-", None, [])
    assert [p.score for p in column.history] == [None]
    page = render_drift_report(report)
    assert page.count("<svg") == 4  # amount and channel: distribution and history each
    assert "≥ nan" not in page


# --- with the statistics' real profiles (overlay) ---------------------------------------------


def test_categories_are_overlaid_most_frequent_first_with_new_ones_shown() -> None:
    profile = profile_column("channel", pa.array(["web"] * 6 + ["app"] * 3 + ["pos"]))
    current = pa.chunked_array([["web", "web", "new", None, "app"]])
    assert bins(profile, current) == [
        Bin("web", 0.6, 0.5),
        Bin("app", 0.3, 0.25),
        Bin("pos", 0.1, 0.0),
        Bin("new", 0.0, 0.25),
    ]


def test_many_categories_fold_into_other() -> None:
    # c00 once, c01 twice, ..., c19 twenty times: 210 values.
    profile = profile_column("c", pa.array([f"c{i:02d}" for i in range(20) for _ in range(i + 1)]))
    shown = bins(profile, pa.chunked_array([["c19", "c00", "zz"]]))
    assert [b.label for b in shown] == [f"c{i:02d}" for i in range(19, 7, -1)] + ["other / new"]
    assert shown[0] == Bin("c19", 20 / 210, 1 / 3)
    # c00..c07 hold 1 + ... + 8 = 36 reference values; c00 and the new zz are current's rest.
    assert shown[-1] == Bin("other / new", pytest.approx(36 / 210), pytest.approx(2 / 3))


def test_numbers_are_overlaid_on_equal_width_bins() -> None:
    profile = profile_column("n", pa.array(np.arange(1000.0)))
    shown = bins(profile, pa.chunked_array([np.arange(1000.0) + 500]))
    # 30 bins from 0.999 (the reference's 0.1 % quantile, interpolated between 0 and 1) to
    # 1498 (the current's 99.9 % value): 49.9 wide, inner edges 50.899 ... 1448.1.
    assert len(shown) == 30
    assert shown[0].label == "< 50.9" and shown[-1].label == "≥ 1448"
    assert sum(b.reference for b in shown) == pytest.approx(1.0)
    assert sum(b.current for b in shown if b.current is not None) == pytest.approx(1.0)
    # The first bin also holds what lies below it: reference values 0..50.
    assert shown[0].reference == pytest.approx(51 / 1000) and shown[0].current == 0.0
    # The last holds 1448.1 <= x: current values 1449..1499 (51), no reference value.
    assert (shown[-1].reference, shown[-1].current) == (0.0, pytest.approx(51 / 1000))


def test_an_empty_window_shows_the_reference_on_its_deciles() -> None:
    profile = profile_column("n", pa.array(np.arange(1000.0)))
    shown = bins(profile, pa.chunked_array([pa.array([], pa.float64())]))
    assert [b.reference for b in shown] == pytest.approx([0.1] * 10)
    assert {b.current for b in shown} == {None}
