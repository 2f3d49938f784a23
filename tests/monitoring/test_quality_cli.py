"""`parity monitor quality` and `parity monitor freshness` through typer's runner."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from tests.monitoring.test_quality_recorded import Clock, make_store

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


def materialized(tmp_path: Path) -> FeatureStore:
    now = datetime.now(UTC).replace(microsecond=0)
    store = make_store(tmp_path / "repo", Clock(now))
    store.materialize(now - timedelta(days=400), now, ["stats"])
    return store


def test_quality_json_has_the_recorded_rates(tmp_path: Path) -> None:
    store = materialized(tmp_path)
    code, out = invoke("monitor", "quality", "stats", "--repo", str(store.repo_path), "--json")
    assert code == 0, out
    rows = {r["feature"]: r for r in json.loads(out)}
    assert rows["amount"]["null_rate"] == 0.375
    assert rows["amount"]["infinite"] == 1
    assert rows["n"]["null_rate"] == 0.125
    assert {r["source"] for r in rows.values()} == {"materialize"}


def test_quality_table_and_freshness_table(tmp_path: Path) -> None:
    store = materialized(tmp_path)
    code, out = invoke("monitor", "quality", "stats", "--repo", str(store.repo_path))
    assert code == 0, out
    assert "37.50%" in out and "breach" in out
    code, out = invoke("monitor", "freshness", "--repo", str(store.repo_path), "--json")
    assert code == 0, out
    by_view = {r["view"]: r for r in json.loads(out)}
    assert by_view["stats"]["status"] == "no_slo"
    assert by_view["click_stats"]["newest"] is None


def test_bad_input_is_one_line_naming_it(tmp_path: Path) -> None:
    store = materialized(tmp_path)
    repo = str(store.repo_path)
    code, out = invoke("monitor", "quality", "nope", "--repo", repo)
    assert code == 1 and "quality_subject_not_found" in out and "'nope'" in out
    code, out = invoke("monitor", "quality", "stats", "--repo", repo, "--window", "soon")
    assert code == 1 and "--window 'soon'" in out
    code, out = invoke("monitor", "quality", "stats", "--repo", repo, "--since", "yesterday-ish")
    assert code == 1 and "since" in out
