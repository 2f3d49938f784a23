"""Commands that compute a signal step the alert rules on it: `parity monitor freshness` here."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from tests.conftest import DRIVER_REPO, write_repo

MONITOR = """
    from parity import AlertRule, Monitor

    m = Monitor(name="m", model="driver_model", alerts=[
        AlertRule(name="stale", signal="freshness:driver_stats", fire_at=1.0, clear_at=0.5,
                  sustain=1),
    ])
"""


def test_parity_monitor_freshness_fires_a_freshness_rule_once(tmp_path: Path) -> None:
    files = dict(DRIVER_REPO)
    (name, text), *_ = [(n, t) for n, t in files.items() if "ttl=timedelta(days=1)" in t]
    files[name] = text.replace(
        "ttl=timedelta(days=1),", "ttl=timedelta(days=1), freshness_slo=timedelta(hours=1),"
    )
    repo = write_repo(tmp_path / "repo", {**files, "monitors.py": MONITOR})
    with FeatureStore(repo) as store:
        store.apply()
        assert store.monitoring.step_alerts({"freshness:driver_stats": None}) == []
        store.materialize("2025-12-31", "2026-01-02")  # newest write: months before now
    runner = CliRunner()
    first = runner.invoke(app, ["monitor", "freshness", "-r", str(repo)], env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    assert (
        "breached" in first.output and "alert m/stale fired: freshness:driver_stats" in first.output
    )
    again = runner.invoke(app, ["monitor", "freshness", "-r", str(repo)], env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "alert m/stale" not in again.output  # firing already
    with FeatureStore(repo) as store:
        (event,) = store.monitoring.alerts(active_only=True)
        assert (event.monitor, event.rule, event.state) == ("m", "stale", "fired")
        assert event.value > 24 * 300  # age / SLO: over 300 days against one hour
