"""Training sets of services with on-demand views: the CLI and the Python API compute the
on-demand columns offline from the repo's functions and record the lineage."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from parity.offline.fingerprint import fingerprint_parquet
from parity.offline.request import resolve
from parity.testing import reference_historical_features
from tests.transform.test_on_demand import NOW, make_store

runner = CliRunner()


def test_create_dataset_computes_on_demand_columns_and_records_lineage(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo")
    entities = pd.DataFrame(
        {
            "driver_id": [1, 2, 99],
            "fare": [12.0, 1.5, 5.0],
            "event_timestamp": [NOW, NOW, NOW],
        }
    )
    out = tmp_path / "train.parquet"
    record = store.datasets.create(
        "fares", entities, ["fare_ratio:fare_per_trip", "driver_stats:city"], out
    )
    table = pq.read_table(out)
    # driver 1 and 2 made 3 trips each (tests/conftest.py); driver 99 is unknown.
    assert table.column("fare_per_trip").to_pylist() == [4.0, 0.5, None]
    assert table.column_names == ["driver_id", "fare", "event_timestamp", "city", "fare_per_trip"]
    assert record.feature_refs == ("driver_stats:city", "fare_ratio:fare_per_trip")
    assert (record.row_count, record.fingerprint) == (3, fingerprint_parquet(out))
    assert store.datasets.get("fares") == record


def test_cli_dataset_create_with_the_scaffolds_on_demand_service(tmp_path: Path) -> None:
    repo = tmp_path / "fraud"
    env = {"COLUMNS": "200", "PARITY_USER": "ondemand-test"}
    result = runner.invoke(app, ["init", str(repo), "--accounts", "30", "--days", "5"], env=env)
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["apply", "--repo", str(repo)], env=env).exit_code == 0
    out = tmp_path / "train.parquet"
    query = (
        "SELECT account_id, device_id, amount, event_timestamp "
        "FROM 'data/transactions.parquet' ORDER BY transaction_id LIMIT 200"
    )
    args = ["dataset", "create", "--repo", str(repo), "--entities", query]
    args += ["--features", "fraud_model_v2", "--out", str(out), "--name", "v2_train"]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert len(frame) == 200
    # amount_vs_history is amount / 30-day mean amount (None when the mean is 0 or missing);
    # the mean comes here from parity.testing's plain-loop window reference, not the engine.
    store = FeatureStore(repo)
    raw = pd.read_parquet(repo / "data" / "transactions.parquet")
    entity = raw.sort_values("transaction_id").head(200)[
        ["account_id", "device_id", "amount", "event_timestamp"]
    ]
    request = resolve(store.registry.catalog, ["account_velocity:amount_mean_30d"])
    means = reference_historical_features(entity, request, {"account_velocity": raw})
    for amount, mean, ratio in zip(
        entity["amount"], means["amount_mean_30d"], frame["amount_to_mean_30d"], strict=True
    ):
        if mean is None or pd.isna(mean) or mean == 0:
            assert pd.isna(ratio)
        else:
            assert math.isclose(ratio, amount / mean, rel_tol=1e-9)
    assert frame["amount_to_mean_30d"].notna().sum() > 100
    record = store.datasets.get("v2_train")
    assert record.feature_service == "fraud_model_v2"
    assert "amount_vs_history:amount_to_mean_30d" in record.feature_refs
    assert "account_velocity:amount_mean_30d" in record.feature_refs
    assert set(frame.columns) == {"account_id", "device_id", "amount", "event_timestamp"} | {
        ref.split(":")[1] for ref in record.feature_refs
    }
    assert record.registry_version == 1 and record.row_count == 200
    store.close()


def test_dataset_rows_agree_with_online_reads_of_the_same_moment(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo")
    rows = [{"driver_id": 3, "fare": 7.5}, {"driver_id": 1, "fare": -0.0}]
    online = store.get_online_features(["fare_ratio:fare_per_trip"], rows)
    frame = pd.DataFrame(rows).assign(event_timestamp=datetime(2026, 1, 1, 12, tzinfo=UTC))
    store.datasets.create("same", frame, ["fare_ratio:fare_per_trip"], tmp_path / "same.parquet")
    written = pq.read_table(tmp_path / "same.parquet").column("fare_per_trip").to_pylist()
    assert written == online.values["fare_per_trip"] == [2.5, -0.0]
