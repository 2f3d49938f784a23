"""QA: a Monitor's alert rules are evaluated by the CLI's recorded drift runs (`parity monitor
drift`, `parity monitor report`), so `parity monitor alerts` lists what they fired (found broken
on main before the lead's wiring of recorded runs to the rules; kept as the CLI's regression
test)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from tests.monitoring.test_drift_runs import HOUR, T0, repo, store
from tests.monitoring.test_report_drift_e2e import shifted_log

__all__ = ["repo", "store"]  # the fixtures

MONITOR = (
    "from parity import AlertRule, Monitor\n"
    "m = Monitor(name='scorer_monitor', model='scorer', alerts=[\n"
    "    AlertRule(name='drifting', signal='drift_share', fire_at=0.5, clear_at=0.3, sustain=1),\n"
    "])\n"
)


def _drift(store: FeatureStore, *extra: str) -> str:
    args = ["monitor", "drift", "--repo", str(store.repo_path), "--model", "scorer@champion"]
    args += ["--since", T0.isoformat(), "--until", (T0 + 4 * HOUR).isoformat(), *extra]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_recorded_cli_drift_run_fires_the_monitors_alerts(store: FeatureStore) -> None:
    (store.repo_path / "monitors.py").write_text(MONITOR)
    store.apply()
    shifted_log(store)  # windows 0, 1 calm; 2 shifted (4 of 5 columns drift); 3 too small
    assert "drifting" not in _drift(store, "--no-record")  # a look that leaves no trace
    assert store.monitoring.alerts() == []
    _drift(store)
    events = store.monitoring.alerts()
    assert [(e.rule, e.state, e.at) for e in events] == [("drifting", "fired", T0 + 3 * HOUR)]
    _drift(store)  # the same windows again: each window counts once, nothing new
    assert len(store.monitoring.alerts()) == 1
    listed = CliRunner().invoke(app, ["monitor", "alerts", "--repo", str(store.repo_path)])
    assert "drifting" in listed.output and "fired" in listed.output


def test_the_report_command_evaluates_them_too(store: FeatureStore, tmp_path: Path) -> None:
    (store.repo_path / "monitors.py").write_text(MONITOR)
    store.apply()
    shifted_log(store)
    args = ["monitor", "report", "--repo", str(store.repo_path), "--model", "scorer@champion"]
    args += ["--since", T0.isoformat(), "--until", (T0 + 4 * HOUR).isoformat()]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "d.html")])
    assert result.exit_code == 0, result.output
    assert [e.rule for e in store.monitoring.alerts()] == ["drifting"]
