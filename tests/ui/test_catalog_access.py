"""The catalog routes with auth on: narrowed tokens see filtered lists, 403 on pages of names
they may not read, lineage counts what it hides; and every catalog route has its rule in
UI_ROUTES with the scope the brief gives it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.testclient import TestClient

from parity import FeatureStore
from parity.ui import api_catalog
from parity.ui.app import create_ui_app
from parity.ui.routes import API, UI_ROUTES
from tests.ui.test_lineage_api import NODES
from tests.ui.world import World

SCOPES = {
    "/search": ("features:read",),
    "/entities/{name}": ("features:read",),
    "/views/{name}": ("features:read",),
    "/services/{name}": ("features:read",),
    "/features/{view}/{feature}": ("features:read",),
    "/lineage": ("features:read", "models:read"),
    "/registry/versions": ("features:read",),
    "/registry/versions/{version}": ("features:read",),
}


def test_every_catalog_route_has_its_rule() -> None:
    routes = [r for r in api_catalog.router.routes if isinstance(r, APIRoute)]
    assert {r.path for r in routes} == set(SCOPES)
    rules = {(rule.method, rule.path): rule for rule in UI_ROUTES}
    for route in routes:
        for method in route.methods:
            rule = rules[(method, f"{API}{route.path}")]
            assert rule.access == "scoped"
            assert rule.scopes == SCOPES[route.path]
            assert route.response_model is not None


@pytest.fixture
def secured(fresh_world: World) -> Iterator[FeatureStore]:
    config = fresh_world.root / "feature_store.yaml"
    if not config.exists():
        config = fresh_world.root / "parity.yaml"
    config.write_text(config.read_text() + "\nauth: {enabled: true}\n")
    store = FeatureStore(fresh_world.root, clock=fresh_world.clock.now)
    assert store.config.auth.enabled
    yield store
    store.close()


def _client(store: FeatureStore, scopes: str) -> TestClient:
    _, text = store.access.tokens.create(f"t{abs(hash(scopes))}", scopes)
    return TestClient(create_ui_app(store), headers={"Authorization": f"Bearer {text}"})


def _get(client: TestClient, path: str, **params: Any) -> Any:
    return client.get(f"{API}{path}", params=params)


def test_narrowed_tokens_see_only_their_names(secured: FeatureStore) -> None:
    client = _client(secured, "features:read:account_txn_stats")
    found = _get(client, "/search", limit=500).json()["results"]
    assert {(r["kind"], r["view"] or r["name"]) for r in found} == {
        ("entity", "account"),
        ("view", "account_txn_stats"),
        ("feature", "account_txn_stats"),
    }
    assert _get(client, "/views/account_txn_stats").status_code == 200
    feature = _get(client, "/features/account_txn_stats/txn_count_7d").json()
    assert feature["used_by"]["services"] == []  # services are other names
    assert feature["used_by"]["model_versions"] == []  # no models:read
    assert _get(client, "/entities/account").json()["views"] == ["account_txn_stats"]
    for path in (
        "/views/device_profile",
        "/features/device_profile/os",
        "/services/fraud_model_v1",
        "/entities/device",
    ):
        response = _get(client, path)
        assert response.status_code == 403, path
        assert "features:read" in response.json()["error"]["message"]
    lineage = _get(client, "/lineage").json()
    shown = {n["id"] for n in lineage["nodes"]}
    assert shown == {
        "view:account_txn_stats",
        "source:data/account_txn_stats.parquet",
        "entity:account",
    }
    assert lineage["hidden"] == len(_all_nodes(secured)) - 3
    assert _get(client, "/lineage", node="view:device_profile").status_code == 403
    assert _get(client, "/lineage", node="view:account_txn_stats", depth=2).json()["hidden"] > 0


def _all_nodes(store: FeatureStore) -> set[str]:
    admin = _client(store, "admin")
    body = _get(admin, "/lineage").json()
    assert body["hidden"] == 0 and {n["id"] for n in body["nodes"]} >= NODES
    return {n["id"] for n in body["nodes"]}


def test_model_readers_see_the_model_side_of_lineage(secured: FeatureStore) -> None:
    client = _client(secured, "models:read:fraud")
    body = _get(client, "/lineage").json()
    kinds = {n["kind"] for n in body["nodes"]}
    assert kinds == {"model_version", "alias", "rollout"}
    assert body["hidden"] == len(_all_nodes(secured)) - len(body["nodes"])
    assert _get(client, "/search").status_code == 403  # no features:read at all
    assert _get(client, "/registry/versions").status_code == 403


def test_without_a_token_every_catalog_route_is_401(secured: FeatureStore) -> None:
    client = TestClient(create_ui_app(secured))
    for path in ("/search", "/views/account_profile", "/lineage", "/registry/versions"):
        assert _get(client, path).status_code == 401, path


def test_the_spec_describes_every_catalog_route(fraud_world: World) -> None:
    spec = TestClient(create_ui_app(fraud_world.store)).get(f"{API}/openapi.json").json()
    for path in SCOPES:
        operation = spec["paths"][f"{API}{path}"]["get"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["$ref"].startswith("#/components/schemas/")
        assert "422" in operation["responses"]
    assert set(spec["components"]["schemas"]["FeaturePage"]["required"]) >= {
        "freshness",
        "quality",
        "profile",
        "used_by",
    }
