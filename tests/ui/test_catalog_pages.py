"""Entity, view, service and feature pages of the fraud example: definitions from the template,
freshness from the raw Parquet against the materialization watermark, the profile recomputed from
the training set's Parquet with pandas, and where each feature is used."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import pytest
from starlette.testclient import TestClient

from parity.ui.app import create_ui_app
from tests.ui.world import World

API = "/ui/api"


@pytest.fixture(scope="module")
def client(fraud_world: World) -> TestClient:
    return TestClient(create_ui_app(fraud_world.store))


def _get(client: TestClient, path: str) -> dict[str, Any]:
    response = client.get(f"{API}{path}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_entity_page(client: TestClient) -> None:
    body = _get(client, "/entities/account")
    assert body["join_keys"] == ["account_id"]
    assert body["value_type"] == "Int64"
    assert body["description"] == "A customer account that owns cards and makes transactions."
    assert body["owner"] == "risk-team@example.com"
    assert {"account_profile", "account_txn_stats", "account_velocity"} <= set(body["views"])
    assert "device_profile" not in body["views"]
    assert body["url"] == "#/entity/account"


def test_batch_view_page_with_freshness_against_its_slo(
    client: TestClient, fraud_world: World
) -> None:
    body = _get(client, "/views/account_txn_stats")
    assert body["kind"] == "batch"
    assert body["entities"] == ["account"]
    assert body["source"] == {
        "kind": "file",
        "name": "data/account_txn_stats.parquet",
        "path": "data/account_txn_stats.parquet",
        "timestamp_field": "event_timestamp",
    }
    assert body["ttl_seconds"] == 2 * 86400
    assert [f["name"] for f in body["features"]] == [
        "txn_count_1d",
        "txn_amount_1d",
        "txn_count_7d",
        "avg_amount_7d",
        "distinct_devices_7d",
    ]
    assert {"fraud_model_v1", "fraud_model_v2"} <= set(body["services"])
    # the newest value online: the newest event time in the raw file before the watermark
    watermark = fraud_world.store.monitoring.freshness()["account_txn_stats"]
    assert watermark is not None
    raw = pd.read_parquet(fraud_world.root / "data" / "account_txn_stats.parquet")
    newest = raw.loc[raw["event_timestamp"] < pd.Timestamp(watermark), "event_timestamp"].max()
    freshness = body["freshness"]
    assert _time(freshness["newest_value_at"]) == newest.to_pydatetime()
    age = (fraud_world.store.now() - newest.to_pydatetime()).total_seconds()
    assert freshness["age_seconds"] == pytest.approx(age)
    assert freshness["slo_seconds"] == 26 * 3600
    assert freshness["status"] == ("late" if age > 26 * 3600 else "ok")


def test_stream_and_on_demand_views(client: TestClient) -> None:
    velocity = _get(client, "/views/account_velocity")
    assert velocity["kind"] == "aggregated"
    assert velocity["source"]["kind"] == "stream"
    assert velocity["source"]["name"] == "transactions"
    assert velocity["source"]["path"] == "data/transactions*.parquet"
    assert velocity["ttl_seconds"] is None
    assert velocity["freshness"]["status"] == "no_slo"
    ratio = _get(client, "/views/amount_vs_history")
    assert ratio["kind"] == "on_demand"
    assert ratio["source"]["kind"] == "on_demand"
    assert ratio["source"]["name"] == "account_velocity, transaction"
    assert ratio["entities"] == ["account"]
    assert [f["name"] for f in ratio["features"]] == ["amount_to_mean_30d"]
    assert ratio["services"] == ["fraud_model_v2"]


def test_service_page(client: TestClient, fraud_world: World) -> None:
    body = _get(client, "/services/fraud_model_v1")
    assert body["owner"] == "risk-team@example.com"
    assert [(f["view"], f["name"], f["dtype"]) for f in body["features"]] == [
        ("account_txn_stats", "txn_count_1d", "Int64"),
        ("account_txn_stats", "txn_amount_1d", "Float64"),
        ("account_txn_stats", "txn_count_7d", "Int64"),
        ("account_txn_stats", "avg_amount_7d", "Float64"),
        ("account_txn_stats", "distinct_devices_7d", "Int64"),
        ("account_profile", "credit_limit", "Float64"),
        ("account_profile", "account_age_days", "Int64"),
        ("account_profile", "kyc_level", "Int32"),
        ("device_profile", "device_risk_score", "Float64"),
        ("device_profile", "is_emulator", "Bool"),
    ]
    datasets = {d["name"]: d for d in body["datasets"]}
    training = pd.read_parquet(fraud_world.root / "training" / "v1.parquet")
    assert datasets["fraud_train_v1"]["rows"] == len(training)
    versions = {(v["model"], v["version"]): v["aliases"] for v in body["model_versions"]}
    candidate = fraud_world.result.candidate
    assert candidate is not None
    assert versions[("fraud", fraud_world.rolled_back)] == ["champion"]
    assert ("fraud", candidate.version) in versions
    assert _get(client, "/services/fraud_model_v2")["datasets"] == []


def _newest_profiled_dataset(world: World, ref: str) -> tuple[str, str]:
    """The newest training set (by creation) holding `ref` with a stored feature profile."""
    profiled = {
        p.fingerprint for p in world.store.monitoring.profiles() if p.subject == "features" and p.ok
    }
    holders = [
        d
        for d in world.store.datasets.list()
        if ref in d.feature_refs and d.fingerprint in profiled
    ]
    newest = max(holders, key=lambda d: d.created_at)
    return newest.name, newest.path


def test_numeric_feature_profile_matches_the_training_set(
    client: TestClient, fraud_world: World
) -> None:
    body = _get(client, "/features/account_txn_stats/txn_count_7d")
    dataset, path = _newest_profiled_dataset(fraud_world, "account_txn_stats:txn_count_7d")
    column = pd.read_parquet(path)["txn_count_7d"]
    profile = body["profile"]
    assert profile["dataset"] == dataset
    assert profile["kind"] == "numeric"
    assert profile["rows"] == len(column)
    assert profile["null_share"] == pytest.approx(column.isna().mean())
    valid = column.dropna().astype(float)
    for level in ("0.05", "0.5", "0.95"):
        low = valid.quantile(float(level), interpolation="lower")
        high = valid.quantile(float(level), interpolation="higher")
        assert low <= profile["quantiles"][level] <= high
    assert sum(b["share"] for b in profile["bins"]) == pytest.approx(1.0)
    assert profile["bins"][0]["low"] == valid.min()
    assert profile["bins"][-1]["high"] == valid.max()
    shares = valid.value_counts(normalize=True)
    for top in profile["top"]:
        assert top["share"] == pytest.approx(shares[top["value"]])
    assert [t["share"] for t in profile["top"]] == sorted(shares.values, reverse=True)[:10]


def test_boolean_feature_profile_is_categorical(client: TestClient, fraud_world: World) -> None:
    body = _get(client, "/features/device_profile/is_emulator")
    _, path = _newest_profiled_dataset(fraud_world, "device_profile:is_emulator")
    shares = pd.read_parquet(path)["is_emulator"].value_counts(normalize=True)
    profile = body["profile"]
    assert profile["kind"] == "categorical"
    assert profile["bins"] == [] and profile["quantiles"] == {}
    assert {t["value"]: t["share"] for t in profile["top"]} == pytest.approx(
        {bool(k): float(v) for k, v in shares.items()}
    )


def test_feature_page_definition_freshness_quality_and_use(
    client: TestClient, fraud_world: World
) -> None:
    body = _get(client, "/features/account_profile/kyc_level")
    assert body["dtype"] == "Int32"
    assert body["description"] == "1 = email only ... 3 = full KYC"
    assert body["entities"] == ["account"]
    assert body["source"]["path"] == "data/accounts.parquet"
    assert body["ttl_seconds"] is None
    assert body["freshness"]["status"] == "no_slo"
    assert body["freshness"]["newest_value_at"] is not None
    quality = body["quality"]
    assert quality is not None and quality["rows"] > 0
    raw = pd.read_parquet(fraud_world.root / "data" / "accounts.parquet")
    assert quality["null_rate"] == 0.0 == float(raw["kyc_level"].isna().mean())
    assert quality["inf_rate"] == 0.0
    used = body["used_by"]
    assert {"fraud_model_v1", "fraud_model_v2"} <= set(used["services"])
    assert {"fraud_train_v1"} <= set(used["datasets"])
    candidate = fraud_world.result.candidate
    assert candidate is not None
    versions = {(v["model"], v["version"]): v["aliases"] for v in used["model_versions"]}
    assert versions[("fraud", fraud_world.rolled_back)] == ["champion"]
    assert ("fraud", candidate.version) in versions
    rollouts = {(r["model"], r["status"]) for r in used["rollouts"]}
    assert ("fraud", "promoted") in rollouts
    assert all(r["url"] == "#/rollout/fraud" for r in used["rollouts"])


def test_on_demand_feature_has_no_stored_profile_or_quality(client: TestClient) -> None:
    body = _get(client, "/features/amount_vs_history/amount_to_mean_30d")
    assert body["profile"] is None and body["quality"] is None
    assert body["freshness"]["status"] == "no_slo"
    assert body["used_by"]["services"] == ["fraud_model_v2"]
    assert body["used_by"]["model_versions"] == []


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/entities/nobody", "nobody"),
        ("/views/no_such_view", "no_such_view"),
        ("/services/no_such_service", "no_such_service"),
        ("/features/no_such_view/x", "no_such_view"),
        ("/features/account_profile/no_such_feature", "no_such_feature"),
        ("/views/%C3%BC%20x", "ü x"),
        ("/views/a.b;c", "a.b;c"),
    ],
)
def test_unknown_objects_are_404_naming_them(client: TestClient, path: str, named: str) -> None:
    response = client.get(f"{API}{path}")
    assert response.status_code == 404, response.text
    assert named in response.json()["error"]["message"]


def test_overlong_names_are_422(client: TestClient) -> None:
    response = client.get(f"{API}/views/{'v' * 300}")
    assert response.status_code == 422
    assert "path.name" in response.json()["error"]["message"]
