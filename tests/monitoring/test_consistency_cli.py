"""`parity monitor consistency`: the report as tables and as JSON, errors as one line."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq

from parity import FeatureStore
from tests.cli.test_cli import run
from tests.conftest import write_repo
from tests.monitoring.test_consistency_replay import REPO, YAML, Clock, T, serve, speeds, stats_rows


def logged_repo(tmp_path: Path) -> Path:
    root = write_repo(tmp_path / "repo", REPO, extra=YAML)
    pq.write_table(stats_rows(), root / "data" / "driver_stats.parquet")
    clock = Clock(T)
    store = FeatureStore(root, clock=clock)
    store.apply()
    store.push("live", speeds(T - timedelta(hours=5), 10.0), to="both")
    store.materialize(T - timedelta(days=3), T)
    store.push("live", speeds(T, 500.0, range(4, 5)), to="online")  # skew online only
    serve(store, clock, [(T + timedelta(minutes=3), [3, 4])])
    store.close()
    return root


def test_cli_prints_counts_and_example_rows_and_json(tmp_path: Path) -> None:
    root = logged_repo(tmp_path)
    args = ["monitor", "consistency", "--service", "driver_all", "--repo", str(root)]
    code, output = run(*args, "--since", "2026-03-01", "--hourly")
    assert code == 0, output
    assert "2 rows replayed, 1 mismatching values" in output
    assert "speed" in output and "50.00%" in output and "2026-03-02 00:00" in output
    assert "{'driver_id': 4}" in output and "504.0" in output and "14.0" in output
    code, output = run(*args, "--since", "2026-03-01", "--json")
    assert code == 0, output
    report = json.loads(output)
    speed = next(f for f in report["features"] if f["feature"] == "speed")
    assert (speed["total"], speed["mismatch"], speed["mismatch_rate"]) == (2, 1, 0.5)
    assert speed["examples"][0]["online"] == 504.0 and speed["examples"][0]["offline"] == 14.0


def test_cli_unknown_service_is_one_error_line(tmp_path: Path) -> None:
    root = logged_repo(tmp_path)
    code, output = run("monitor", "consistency", "--service", "nope", "--repo", str(root))
    assert code == 1
    assert "no feature service 'nope'" in output
