"""Catalog search over the fraud example: matches, ranking, qualifiers, kinds and bad input,
against expectations written from the example's template."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from parity.ui.app import create_ui_app
from tests.ui.world import World

API = "/ui/api"


@pytest.fixture(scope="module")
def client(fraud_world: World) -> TestClient:
    return TestClient(create_ui_app(fraud_world.store))


def _search(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get(f"{API}/search", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _keys(body: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return [(r["kind"], r["view"], r["name"]) for r in body["results"]]


def test_empty_query_lists_every_object_in_name_order(
    client: TestClient, fraud_world: World
) -> None:
    store = fraud_world.store
    catalog = store.registry.catalog
    views = {**catalog.feature_views, **catalog.on_demand_feature_views}
    expected = len(catalog.entities) + len(views) + len(catalog.feature_services)
    expected += sum(len(v.feature_names) for v in views.values())
    body = _search(client, q="", limit=500)
    assert body["total"] == expected == len(body["results"])
    names = [r["name"].lower() for r in body["results"]]
    assert names == sorted(names)
    found = set(_keys(body))
    # written from the template: a few of each kind
    assert {
        ("entity", None, "account"),
        ("view", None, "account_txn_stats"),
        ("view", None, "amount_vs_history"),
        ("feature", "account_txn_stats", "txn_count_7d"),
        ("feature", "amount_vs_history", "amount_to_mean_30d"),
        ("service", None, "fraud_model_v1"),
    } <= found


def test_results_carry_the_contract_fields(client: TestClient) -> None:
    body = _search(client, q="kyc_level")
    assert body["query"] == "kyc_level"
    assert body["results"][0] == {
        "kind": "feature",
        "name": "kyc_level",
        "view": "account_profile",
        "description": "1 = email only ... 3 = full KYC",
        "owner": "",
        "tags": {},
        "dtype": "Int32",
        "matched": ["name"],
        "url": "#/feature/account_profile/kyc_level",
    }


def test_exact_name_ranks_before_prefix_before_contains_before_other_fields(
    client: TestClient,
) -> None:
    body = _search(client, q="amount", limit=500)
    results = body["results"]

    def tier(r: dict[str, Any]) -> int:
        name = r["name"].lower()
        if name == "amount":
            return 0
        if name.startswith("amount"):
            return 1
        return 2 if "amount" in name else 3

    tiers = [tier(r) for r in results]
    assert tiers == sorted(tiers)
    assert {1, 2, 3} <= set(tiers)  # amount_to_mean_30d; txn_amount_1d; descriptions
    assert ("feature", "amount_vs_history", "amount_to_mean_30d") in _keys(body)
    assert ("feature", "account_txn_stats", "txn_amount_1d") in _keys(body)
    described = [r for r in results if tier(r) == 3]
    assert all(r["matched"] == ["description"] for r in described)
    assert ("view", None, "account_velocity") in [
        (r["kind"], r["view"], r["name"]) for r in described
    ]


def test_an_exact_name_comes_first(client: TestClient) -> None:
    body = _search(client, q="TXN_COUNT_7D")  # case-insensitive
    assert _keys(body)[0] == ("feature", "account_txn_stats", "txn_count_7d")


def test_words_are_anded(client: TestClient) -> None:
    assert _keys(_search(client, q="txn 7d")) == [("feature", "account_txn_stats", "txn_count_7d")]
    assert _search(client, q="txn nothing_like_this")["total"] == 0


def test_a_view_qualified_name_finds_the_feature(client: TestClient) -> None:
    body = _search(client, q="device_profile:os")
    assert _keys(body) == [("feature", "device_profile", "os")]


def test_owner_qualifier(client: TestClient) -> None:
    body = _search(client, q="owner:risk-team", limit=500)
    found = set(_keys(body))
    assert {
        ("entity", None, "account"),
        ("entity", None, "device"),
        ("service", None, "fraud_model_v1"),
        ("service", None, "fraud_model_v2"),
    } <= found
    assert all("risk-team" in r["owner"] for r in body["results"])
    assert all("owner" in r["matched"] for r in body["results"])
    assert _search(client, q="owner:nobody-here")["total"] == 0
    both = _search(client, q="owner:risk-team fraud")
    assert {k[2] for k in _keys(both)} == {"fraud_model_v1", "fraud_model_v2"}


def test_kind_filters(client: TestClient) -> None:
    services = _search(client, kind="service")
    assert {r["kind"] for r in services["results"]} == {"service"}
    assert {r["name"] for r in services["results"]} >= {"fraud_model_v1", "fraud_model_v2"}
    entities = _search(client, kind="entity")
    assert [r["name"] for r in entities["results"]] == ["account", "device"]


def test_limit_and_offset_page_through_the_same_order(client: TestClient) -> None:
    whole = _keys(_search(client, q="", limit=500))
    pages = []
    for offset in range(0, len(whole), 7):
        page = _search(client, q="", limit=7, offset=offset)
        assert page["total"] == len(whole)
        pages.extend(_keys(page))
    assert pages == whole
    assert _search(client, q="", offset=10_000)["results"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"kind": "model"}, "kind"),
        ({"kind": ""}, "kind"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "nan"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": "inf"}, "offset"),
        ({"q": "x" * 1001}, "q"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(
    client: TestClient, params: dict[str, Any], field: str
) -> None:
    response = client.get(f"{API}/search", params=params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert f"query.{field}" in error["message"]


@pytest.mark.parametrize(
    "q",
    ["%", "'; drop table x; --", "<script>", "ü", "\\", "tag:", "owner:", "a" * 1000, "🙂 txn"],
)
def test_odd_and_long_queries_answer_without_error(client: TestClient, q: str) -> None:
    body = _search(client, q=q)
    assert body["query"] == q
    assert body["total"] == len(body["results"]) or body["total"] > 50


def test_whitespace_only_query_lists_everything(client: TestClient) -> None:
    assert _search(client, q="   ")["total"] == _search(client, q="")["total"]
