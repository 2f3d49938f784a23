"""`parity monitor performance`: the table per window and --json."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from parity import FeatureStore
from tests.cli.test_cli import run
from tests.monitoring.test_perf_labels import T0
from tests.monitoring.test_perf_service import fraud_repo, register


def test_monitor_performance_prints_each_window_and_json(tmp_path: Path) -> None:
    repo = fraud_repo(tmp_path / "repo")
    with FeatureStore(repo) as store:
        store.apply()
        register(store)
    since, until = T0.isoformat(), (T0 + timedelta(days=2)).isoformat()
    as_of = (T0 + timedelta(days=31, hours=12)).isoformat()  # label_delay 30 days: day 1 final
    args = ["monitor", "performance", "--model", "fraud@champion", "--window", "1d"]
    args += ["--since", since, "--until", until, "--as-of", as_of, "--repo", str(repo)]
    code, output = run(*args)
    assert code == 0, output
    assert "windows of 1d, label delay 30d, threshold 0.5, k = 100" in output
    lines = [line for line in output.splitlines() if "2026-03-0" in line]
    assert len(lines) == 2, output
    assert "final" in lines[0] and "75.0%" in lines[0] and "dollar_weighted_recall" in output
    assert "provisional (few labels)" in lines[1] and "50.0%" in lines[1]
    code, output = run(*args, "--json", "--no-record")
    assert code == 0, output
    report = json.loads(output)
    assert [w["status"] for w in report["windows"]] == ["final", "provisional"]
    assert [w["labelled"] for w in report["windows"]] == [6, 2]
    assert report["windows"][0]["metrics"]["dollar_weighted_recall"] > 0
    with FeatureStore(repo) as store:
        assert len(store.monitoring.performance_history("fraud", latest=False)) == 2


def test_a_bad_window_is_one_line_naming_the_option(tmp_path: Path) -> None:
    code, output = run(
        "monitor",
        "performance",
        "--model",
        "fraud",
        "--since",
        "2026-03-01",
        "--window",
        "1y",
        "--repo",
        str(tmp_path),
    )
    assert code == 1 and "--window '1y'" in output
