"""The lineage graph of the fraud world against node and edge sets written out by hand, a node's
neighbourhood both ways, and bad input."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from parity.ui.app import create_ui_app
from tests.ui.world import World

API = "/ui/api"

NODES = {
    "entity:account",
    "entity:device",
    "source:data/accounts.parquet",
    "source:data/devices.parquet",
    "source:data/account_txn_stats.parquet",
    "source:transactions",
    "source:transaction",
    "view:account_profile",
    "view:device_profile",
    "view:account_txn_stats",
    "view:account_velocity",
    "view:amount_vs_history",
    "service:fraud_model_v1",
    "service:fraud_model_v2",
    "dataset:fraud_train_v1",
    "dataset:fraud_training_1",
    "model_version:fraud/1",
    "model_version:fraud/2",
    "alias:fraud@champion",
    "alias:fraud@candidate",
    "rollout:fraud-1",
}
EDGES = {
    ("source:data/account_txn_stats.parquet", "view:account_txn_stats"),
    ("entity:account", "view:account_txn_stats"),
    ("entity:device", "view:device_profile"),
    ("source:transactions", "view:account_velocity"),
    ("view:account_velocity", "view:amount_vs_history"),
    ("source:transaction", "view:amount_vs_history"),
    ("view:amount_vs_history", "service:fraud_model_v2"),
    ("view:account_txn_stats", "service:fraud_model_v1"),
    ("service:fraud_model_v1", "dataset:fraud_train_v1"),
    ("service:fraud_model_v1", "dataset:fraud_training_1"),
    ("dataset:fraud_train_v1", "model_version:fraud/1"),
    ("dataset:fraud_training_1", "model_version:fraud/2"),
    ("model_version:fraud/1", "alias:fraud@champion"),
    ("model_version:fraud/2", "alias:fraud@candidate"),
    ("model_version:fraud/2", "rollout:fraud-1"),
    ("model_version:fraud/1", "rollout:fraud-1"),
}


@pytest.fixture(scope="module")
def client(fraud_world: World) -> TestClient:
    return TestClient(create_ui_app(fraud_world.store))


def _lineage(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get(f"{API}/lineage", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _graph(body: dict[str, Any]) -> tuple[set[str], set[tuple[str, str]]]:
    return {n["id"] for n in body["nodes"]}, {(e["source"], e["target"]) for e in body["edges"]}


def test_the_world_is_what_the_hand_written_graph_expects(fraud_world: World) -> None:
    candidate = fraud_world.result.candidate
    assert candidate is not None and candidate.version == 2 and fraud_world.rolled_back == 1
    assert [r.id for r in fraud_world.store.rollouts.list()] == ["fraud-1"]


def test_whole_graph(client: TestClient) -> None:
    body = _lineage(client)
    nodes, edges = _graph(body)
    assert body["focus"] is None and body["hidden"] == 0
    assert nodes >= NODES
    extra = {n for n in nodes - NODES}  # a view planted in the example later is fine
    assert all(n.split(":")[0] in ("view", "source", "entity", "service") for n in extra)
    assert edges >= EDGES
    assert all(a in nodes and b in nodes for a, b in edges)
    by_id = {n["id"]: n for n in body["nodes"]}
    assert by_id["view:account_txn_stats"]["url"] == "#/view/account_txn_stats"
    assert by_id["model_version:fraud/2"] == {
        "id": "model_version:fraud/2",
        "kind": "model_version",
        "name": "fraud/2",
        "label": "fraud v2",
        "url": "#/model/fraud",
    }
    assert by_id["rollout:fraud-1"]["url"] == "#/rollout/fraud"


def test_neighbourhood_of_an_on_demand_view(client: TestClient) -> None:
    one = _lineage(client, node="view:amount_vs_history", depth=1)
    nodes, edges = _graph(one)
    assert one["focus"] == "view:amount_vs_history"
    assert nodes == {
        "view:amount_vs_history",
        "view:account_velocity",
        "source:transaction",
        "service:fraud_model_v2",
    }
    assert edges == {
        ("view:account_velocity", "view:amount_vs_history"),
        ("source:transaction", "view:amount_vs_history"),
        ("view:amount_vs_history", "service:fraud_model_v2"),
        ("view:account_velocity", "service:fraud_model_v2"),  # both kept: their edge too
    }
    two, _ = _graph(_lineage(client, node="view:amount_vs_history", depth=2))
    assert two == nodes | {"source:transactions", "entity:account"}


def test_neighbourhood_of_a_model_version_both_ways(client: TestClient) -> None:
    nodes, _ = _graph(_lineage(client, node="model_version:fraud/1", depth=1))
    assert nodes == {
        "model_version:fraud/1",
        "dataset:fraud_train_v1",
        "alias:fraud@champion",
        "rollout:fraud-1",
    }
    deeper, _ = _graph(_lineage(client, node="model_version:fraud/1", depth=3))
    assert deeper == nodes | {
        "service:fraud_model_v1",
        "view:account_txn_stats",
        "view:account_profile",
        "view:device_profile",
    }
    assert "model_version:fraud/2" not in deeper  # a sibling, not upstream or downstream


def test_default_depth_is_three(client: TestClient) -> None:
    assert _lineage(client, node="alias:fraud@champion") == _lineage(
        client, node="alias:fraud@champion", depth=3
    )


@pytest.mark.parametrize("depth", ["0", "11", "-1", "x", "1.5", "nan"])
def test_bad_depth_is_422(client: TestClient, depth: str) -> None:
    response = client.get(f"{API}/lineage", params={"node": "view:account_profile", "depth": depth})
    assert response.status_code == 422
    assert "query.depth" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "node", ["view:nope", "nope", "", "view:", "model_version:fraud/99", "view:../../etc", "ü:ü"]
)
def test_unknown_node_is_404_naming_it(client: TestClient, node: str) -> None:
    response = client.get(f"{API}/lineage", params={"node": node})
    assert response.status_code == 404, response.text
    assert f"'{node}'" in response.json()["error"]["message"]


def test_huge_node_is_422(client: TestClient) -> None:
    response = client.get(f"{API}/lineage", params={"node": "view:" + "x" * 1000})
    assert response.status_code == 422
    assert "query.node" in response.json()["error"]["message"]
