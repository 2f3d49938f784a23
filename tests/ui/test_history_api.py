"""Registry history pages: the fraud world's first version, then a second apply made in a copy
(a ttl and tags changed, a description changed), its hand-worked diff, who applied it, and bad
version numbers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from parity import FeatureStore
from parity.ui.app import create_ui_app
from tests.ui.world import World

API = "/ui/api"
OLD_DESCRIPTION = "Device fingerprinting results, re-scored from time to time."
NEW_DESCRIPTION = "Device fingerprints, re-scored nightly."


@pytest.fixture(scope="module")
def client(fraud_world: World) -> TestClient:
    return TestClient(create_ui_app(fraud_world.store))


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _second_apply(world: World) -> FeatureStore:
    """Edit the copy's definitions and apply them as 'alice'."""
    path = world.root / "features.py"
    text = path.read_text()
    text = text.replace(
        "    ttl=timedelta(days=2),\n    freshness_slo=timedelta(hours=26),",
        "    ttl=timedelta(days=3),\n    freshness_slo=timedelta(hours=26),\n"
        '    tags={"team": "risk", "tier": "gold"},',
    )
    text = text.replace(OLD_DESCRIPTION, NEW_DESCRIPTION)
    path.write_text(text)
    store = world.store
    result = store.apply(message="second", author="alice", allow_breaking=True)
    assert result.version is not None and result.version.version == 2
    return store


def test_first_version_lists_everything_added(client: TestClient, fraud_world: World) -> None:
    listing = client.get(f"{API}/registry/versions").json()["versions"]
    info = fraud_world.store.registry.history()[-1]
    applied = fraud_world.store.access.audit.query(action="registry.apply")
    assert [v["version"] for v in listing] == [1]
    row = listing[0]
    assert row["actor"] == applied[0].actor.name
    assert row["message"] == "first"
    assert _time(row["created_at"]) == info.committed_at
    assert row["fingerprint"] == fraud_world.store.registry.catalog.fingerprint()
    catalog = fraud_world.store.registry.catalog
    objects = (
        len(catalog.entities)
        + len(catalog.feature_views)
        + len(catalog.on_demand_feature_views)
        + len(catalog.feature_services)
        + len(catalog.monitors)
        + len(catalog.rollouts)
        + len(catalog.training_jobs)
        + len(catalog.retrain_policies)
    )
    assert (row["added"], row["changed"], row["removed"]) == (objects, 0, 0)
    page = client.get(f"{API}/registry/versions/1").json()
    assert page["previous"] is None
    assert len(page["changes"]) == objects
    assert {c["action"] for c in page["changes"]} == {"added"}
    kinds = {(c["kind"], c["name"]) for c in page["changes"]}
    assert {
        ("entity", "account"),
        ("view", "account_txn_stats"),
        ("view", "amount_vs_history"),
        ("service", "fraud_model_v1"),
        ("monitor", "fraud_monitor"),
        ("rollout", "fraud_retrain_rollout"),
    } <= kinds


def test_second_apply_shows_its_hand_worked_diff(fresh_world: World) -> None:
    store = _second_apply(fresh_world)
    client = TestClient(create_ui_app(store))
    listing = client.get(f"{API}/registry/versions").json()["versions"]
    assert [v["version"] for v in listing] == [2, 1]
    newest = listing[0]
    assert newest["actor"] == "alice" and newest["message"] == "second"
    assert (newest["added"], newest["changed"], newest["removed"]) == (0, 2, 0)
    page = client.get(f"{API}/registry/versions/2").json()
    assert page["previous"] == 1 and page["actor"] == "alice"
    assert page["changes"] == [
        {
            "kind": "view",
            "name": "account_txn_stats",
            "action": "changed",
            "breaking": True,
            "fields": [
                {"field": "tags", "old": {}, "new": {"team": "risk", "tier": "gold"}},
                {"field": "ttl", "old": "P2D", "new": "P3D"},
            ],
        },
        {
            "kind": "view",
            "name": "device_profile",
            "action": "changed",
            "breaking": False,
            "fields": [{"field": "description", "old": OLD_DESCRIPTION, "new": NEW_DESCRIPTION}],
        },
    ]
    # the catalog pages follow the new version
    view = client.get(f"{API}/views/account_txn_stats").json()
    assert view["ttl_seconds"] == 3 * 86400 and view["tags"] == {"team": "risk", "tier": "gold"}
    tagged = client.get(f"{API}/search", params={"q": "tag:team=risk", "limit": 500}).json()
    expected = {("view", "account_txn_stats")} | {
        ("feature", f)
        for f in (
            "txn_count_1d",
            "txn_amount_1d",
            "txn_count_7d",
            "avg_amount_7d",
            "distinct_devices_7d",
        )
    }
    assert {(r["kind"], r["name"]) for r in tagged["results"]} == expected
    assert all("tag" in r["matched"] for r in tagged["results"])
    assert client.get(f"{API}/search", params={"q": "tag:TIER"}).json()["total"] == 6
    assert client.get(f"{API}/search", params={"q": "tag:team=blue"}).json()["total"] == 0
    assert client.get(f"{API}/search", params={"q": "gold"}).json()["total"] == 6


@pytest.mark.parametrize("version", ["0", "-1", "2", "99999999999999999999999999"])
def test_unknown_version_is_404(client: TestClient, version: str) -> None:
    response = client.get(f"{API}/registry/versions/{version}")
    assert response.status_code == 404
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "registry_version_not_found"
    assert f"version {version}" in error["message"]


@pytest.mark.parametrize("version", ["x", "1.5", "one", "%20"])
def test_non_integer_version_is_422(client: TestClient, version: str) -> None:
    response = client.get(f"{API}/registry/versions/{version}")
    assert response.status_code == 422
    assert "path.version" in response.json()["error"]["message"]
