"""`parity predict batch` through typer's runner: the same file as the Python API, a JSON summary,
`--as-of`, `--to-online`, and one-line typed errors."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from tests.jobs.batch_helpers import T0, make_store

runner = CliRunner()


def _entities(path: Path, with_time: bool = True) -> Path:
    frame = pd.DataFrame({"driver_id": [1, 2, 3], "amount": [5.0, 6.0, 7.0]})
    if with_time:
        frame["event_timestamp"] = [T0 + timedelta(days=d) for d in (2, 3, 4)]
    frame.to_parquet(path)
    return path


def test_the_cli_writes_what_the_api_writes_and_prints_a_json_summary(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo")
    entities = _entities(tmp_path / "ents.parquet")
    out = tmp_path / "cli.parquet"
    args = ["predict", "batch", "--model", "driver_model@champion", "--entities", str(entities)]
    result = runner.invoke(
        app, [*args, "--out", str(out), "--repo", str(store.repo_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["rows"], summary["model"], summary["version"]) == (3, "driver_model", 1)
    api = tmp_path / "api.parquet"
    store.jobs.predict_batch("driver_model@champion", str(entities), out=str(api))
    assert pq.read_table(out).to_pydict() == pq.read_table(api).to_pydict()


def test_as_of_and_to_online_from_the_cli(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo")
    entities = _entities(tmp_path / "ents.parquet", with_time=False)
    out = store.repo_path / "out" / "scores.parquet"
    args = ["predict", "batch", "--model", "driver_model", "--entities", str(entities)]
    args += ["--out", str(out), "--as-of", "2026-01-05T00:00:00Z", "--to-online"]
    result = runner.invoke(app, [*args, "driver_scores", "--repo", str(store.repo_path)])
    assert result.exit_code == 0, result.output
    assert "Scored 3 rows with driver_model/1 as of 2026-01-05" in result.stdout
    assert "Wrote 3 entities to online view 'driver_scores'" in result.stdout
    fresh = FeatureStore(store.repo_path)
    online = fresh.get_online_features(["driver_scores:score"], {"driver_id": [1, 2, 3]})
    assert online.to_dict()["score"] == pq.read_table(out).column("score").to_pylist()


def test_cli_errors_are_one_typed_line(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo")
    entities = _entities(tmp_path / "ents.parquet")
    args = ["predict", "batch", "--model", "driver_model", "--entities", str(entities)]
    result = runner.invoke(
        app,
        [*args, "--out", str(tmp_path / "x.parquet"), "--as-of", "now", "-r", str(store.repo_path)],
    )
    assert result.exit_code == 1
    assert "[invalid_prediction_input]" in result.stderr and "not both" in result.stderr
    assert not (tmp_path / "x.parquet").exists()
