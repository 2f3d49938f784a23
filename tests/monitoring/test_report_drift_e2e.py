"""The HTML report of a real drift run (prediction log -> drift -> history -> page), through
`store.monitoring.drift_report_html` and `parity monitor report`; alerts from the same run."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from parity.inference.predlog import PredictionRecord
from tests.monitoring.test_drift_runs import (  # the drift suite's repo, model and log writers
    HOUR,
    T0,
    log_window,
    register,
    repo,  # noqa: F401 (fixture)
    store,  # noqa: F401 (fixture)
    write_log,
)


class Counter(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag

    def count(self, tag: str, cls: str | None = None) -> int:
        return sum(1 for t, a in self.tags if t == tag and (cls is None or a.get("class") == cls))


def shifted_log(opened: FeatureStore) -> None:
    register(opened)
    rng = np.random.default_rng(5)
    records: list[PredictionRecord] = []
    log_window(records, rng, T0, 1000)
    log_window(records, rng, T0 + HOUR, 1000)
    log_window(records, rng, T0 + 2 * HOUR, 1000, shifted=True)
    log_window(records, rng, T0 + 3 * HOUR, 30)  # the hour still filling: too few rows
    write_log(opened, records)


def test_a_real_run_renders_its_last_judged_window_with_history(store: FeatureStore) -> None:  # noqa: F811
    shifted_log(store)
    # An earlier run of the first two windows is in the history; then the whole range.
    store.monitoring.drift("scorer@champion", since=T0, until=T0 + 2 * HOUR)
    report = store.monitoring.drift("scorer@champion", since=T0, until=T0 + 4 * HOUR)
    page = store.monitoring.drift_report_html(report)
    parsed = Counter()
    parsed.feed(page)
    # Five columns (conv_rate, trips, city, bonus, output): distribution + history each, and
    # the share of drifted columns over time.
    assert parsed.count("svg") == 2 * 5 + 1
    # Four windows per column history: three judged, the small one a gap.
    assert parsed.count("circle") == 3 * 5 + 3
    assert "2026-03-02 02:00 to 2026-03-02 03:00" in page  # the shifted window, not the last
    assert "4 of 5 tested columns drifted (share 80%)" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    # city: its three categories, reference and current bars.
    assert parsed.count("rect", "bar ref") >= 3 and parsed.count("rect", "bar cur") >= 3


def test_the_cli_writes_the_report_and_a_monitor_alerts_on_the_run(
    store: FeatureStore,  # noqa: F811
    tmp_path: Path,
) -> None:
    (store.repo_path / "monitors.py").write_text(
        "from parity import AlertRule, Monitor\n"
        "m = Monitor(name='scorer_monitor', model='scorer', alerts=[\n"
        "    AlertRule(name='drifting', signal='drift_share', fire_at=0.5, clear_at=0.3, sustain=1),\n"
        "    AlertRule(name='conv', signal='drift:conv_rate', fire_at=0.2, clear_at=0.1, sustain=2),\n"
        "])\n"
    )
    store.apply()
    shifted_log(store)
    out = tmp_path / "drift.html"
    result = CliRunner().invoke(
        app,
        [
            "monitor",
            "report",
            "--repo",
            str(store.repo_path),
            "--model",
            "scorer@champion",
            "--since",
            T0.isoformat(),
            "--until",
            (T0 + 4 * HOUR).isoformat(),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and out.read_text().startswith("<!DOCTYPE html>")
    # A recorded drift run steps the monitor's rules itself, window by window.
    report = store.monitoring.drift("scorer@champion", since=T0, until=T0 + 4 * HOUR)
    events = store.monitoring.alerts()
    # drift_share 0.8 in the shifted window fires at its end (sustain 1); conv_rate drifts in
    # one window only (sustain 2), the small window after it is no evidence: it does not fire.
    assert [(e.rule, e.state, e.at) for e in events] == [("drifting", "fired", T0 + 3 * HOUR)]
    # Stepping the same run again counts nothing twice.
    assert store.monitoring.evaluate_drift_alerts(report) == []
    assert len(store.monitoring.alerts()) == 1
