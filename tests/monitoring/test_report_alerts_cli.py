"""Alerts through `store.monitoring` and `parity monitor alerts`, on a SQLite repo with two
applied monitors; the store's clock is injected."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from parity.errors import MonitorNotFound
from tests.conftest import DRIVER_REPO, write_repo

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
MONITORS = """
    from parity import AlertRule, Monitor

    driver_monitor = Monitor(
        name="driver_monitor",
        model="driver_model",
        alerts=[
            AlertRule(name="drifting", signal="drift_share", fire_at=0.5, clear_at=0.3, sustain=2),
            AlertRule(name="trips_psi", signal="drift:trips", fire_at=0.2, clear_at=0.1, sustain=1),
        ],
    )
    other_monitor = Monitor(
        name="other_monitor",
        model="other_model",
        alerts=[AlertRule(name="auc_low", signal="metric:auc", fire_at=0.7, clear_at=0.75,
                          direction="below", sustain=1)],
    )
"""
runner = CliRunner()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = write_repo(tmp_path / "repo", {**DRIVER_REPO, "monitors.py": MONITORS})
    with FeatureStore(root) as store:
        store.apply()
    return root


def test_evaluate_alerts_uses_the_monitors_rules_and_survives_a_new_store(repo: Path) -> None:
    with FeatureStore(repo, clock=lambda: T0) as store:
        signals = {"drift_share": 0.6, "drift:trips": 0.25}
        events = store.monitoring.evaluate_alerts(signals, monitor="driver_monitor")
        assert [(e.rule, e.state, e.at) for e in events] == [("trips_psi", "fired", T0)]
    with FeatureStore(repo, clock=lambda: T0 + HOUR) as store:
        events = store.monitoring.evaluate_alerts(
            {"drift_share": 0.7, "drift:trips": None}, monitor="driver_monitor"
        )
        assert [(e.rule, e.state, e.at) for e in events] == [("drifting", "fired", T0 + HOUR)]
        # The other monitor's rule is not touched by driver_monitor's signals.
        assert {s.rule for s in store.monitoring.alert_statuses()} == {"drifting", "trips_psi"}
        active = store.monitoring.alerts(active_only=True)
        assert sorted(e.rule for e in active) == ["drifting", "trips_psi"]


def test_the_monitor_must_be_named_when_there_are_several(repo: Path) -> None:
    with FeatureStore(repo) as store:
        with pytest.raises(MonitorNotFound, match="driver_monitor, other_monitor"):
            store.monitoring.evaluate_alerts({"drift_share": 1.0}, at=T0)
        with pytest.raises(MonitorNotFound, match="no monitor named 'nope'"):
            store.monitoring.evaluate_alerts({"drift_share": 1.0}, monitor="nope", at=T0)
        with pytest.raises(MonitorNotFound, match="nope"):
            store.monitoring.alerts(monitor="nope")


def test_cli_lists_firing_alerts_and_events(repo: Path) -> None:
    with FeatureStore(repo) as store:
        monitoring = store.monitoring
        monitoring.evaluate_alerts({"metric:auc": 0.6}, monitor="other_monitor", at=T0)
        monitoring.evaluate_alerts({"metric:auc": 0.8}, monitor="other_monitor", at=T0 + HOUR)
        monitoring.evaluate_alerts({"drift:trips": 0.3}, monitor="driver_monitor", at=T0 + HOUR)
    result = runner.invoke(app, ["monitor", "alerts", "--repo", str(repo), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert [(e["monitor"], e["rule"]) for e in shown["firing"]] == [("driver_monitor", "trips_psi")]
    assert [(e["rule"], e["state"], e["value"]) for e in shown["events"]] == [
        ("trips_psi", "fired", 0.3),  # same time as the clear, recorded later
        ("auc_low", "cleared", 0.8),
        ("auc_low", "fired", 0.6),
    ]
    result = runner.invoke(app, ["monitor", "alerts", "--repo", str(repo)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "firing now" in result.output and "trips_psi" in result.output
    assert "auc_low" in result.output and "cleared" in result.output
    result = runner.invoke(
        app, ["monitor", "alerts", "--repo", str(repo), "--monitor", "other_monitor", "--active"]
    )
    assert result.exit_code == 0, result.output
    assert "no alert is firing" in result.output


def test_cli_names_an_unknown_monitor(repo: Path) -> None:
    result = runner.invoke(app, ["monitor", "alerts", "--repo", str(repo), "--monitor", "nope"])
    assert result.exit_code != 0
    assert "no monitor named 'nope'" in result.output


def test_alert_gauges_for_a_server_registry(repo: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    with FeatureStore(repo) as store:
        store.monitoring.evaluate_alerts({"metric:auc": 0.6}, monitor="other_monitor", at=T0)
        gauges = store.monitoring.alert_gauges()
        gauges.refresh()  # what a server does at start-up; later scrapes refresh in background
        registry = CollectorRegistry()
        registry.register(gauges)
        text = generate_latest(registry).decode()
    assert 'parity_alert_firing{monitor="other_monitor",rule="auc_low"} 1.0' in text


def test_a_drift_run_evaluates_its_monitors_rules_window_by_window(repo: Path) -> None:
    from tests.monitoring.test_report_data import T0 as START
    from tests.monitoring.test_report_data import Report, window

    windows = [window(i, 0.1, 0.5, "drift") for i in range(3)]
    shares = [0.6, 0.7, 0.2]
    windows = [replace(w, share=s) for w, s in zip(windows, shares, strict=True)]
    report = Report("driver_model", "driver_model", START + 3 * HOUR, [1], {}, windows)
    with FeatureStore(repo) as store:
        events = store.monitoring.evaluate_drift_alerts(report)
        # drift_share 0.6, 0.7 -> fired at the second window's end (sustain 2); 0.2 clears once.
        assert [(e.rule, e.state, e.at) for e in events] == [
            ("drifting", "fired", START + 2 * HOUR)
        ]
        # The same run again changes nothing; a model without a monitor gives no events.
        assert store.monitoring.evaluate_drift_alerts(report) == []
        assert store.monitoring.evaluate_drift_alerts(replace(report, model="nope")) == []


def test_partial_and_unfinished_windows_are_shown_but_never_step_a_rule(repo: Path) -> None:
    """The range's partial windows and a window still filling at the run would be counted again
    by the next run: only whole windows that have ended step the rules."""
    from tests.monitoring.test_report_data import T0 as START
    from tests.monitoring.test_report_data import Report, window

    whole = [replace(window(i, 0.1, 0.5, "drift"), share=0.9) for i in range(2)]
    partial = replace(whole[1], start=START + HOUR + 30 * MINUTE)
    with FeatureStore(repo) as store:
        # run at START + 1.5 h: the second window has not ended yet
        early = Report("driver_model", "driver_model", START + 90 * MINUTE, [1], {}, whole)
        assert store.monitoring.evaluate_drift_alerts(early) == []  # one whole window: sustain 2
        # a later run whose second window is only half a window (the range started mid-way)
        later = Report(
            "driver_model", "driver_model", START + 3 * HOUR, [1], {}, [whole[0], partial]
        )
        assert store.monitoring.evaluate_drift_alerts(later) == []
        # the whole second window, ended: now the rule has two whole windows in a row
        done = Report("driver_model", "driver_model", START + 3 * HOUR, [1], {}, whole)
        events = store.monitoring.evaluate_drift_alerts(done)
        assert [(e.rule, e.state, e.at) for e in events] == [
            ("drifting", "fired", START + 2 * HOUR)
        ]
