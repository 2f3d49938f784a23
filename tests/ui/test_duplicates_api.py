"""/ui/api/duplicates on the fraud world: the scan runs in the background with progress, finds
exactly the duplicate planted in the example (the growth team's account_spend_daily), and refuses
bad bodies naming the field."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from starlette.testclient import TestClient

from parity import FeatureStore
from parity.ui.app import create_ui_app
from parity.ui.duplicates import scan
from tests.ui.world import World

URL = "/ui/api/duplicates"
PLANTED = {
    ("account_spend_daily:purchases_1d", "account_txn_stats:txn_count_1d", "equal"),
    ("account_txn_stats:txn_amount_1d", "account_spend_daily:spend_cents_1d", "linear"),
}


def _finish(client: TestClient, timeout: float = 300.0) -> tuple[dict[str, Any], list[tuple]]:
    """Poll until the scan is over; returns its last answer and the progress seen on the way."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.get(URL)
        assert answer.status_code == 200
        body = answer.json()
        seen.append((body["phase"], body["done"], body["total"]))
        if body["state"] != "running":
            return body, seen
        time.sleep(0.05)
    raise AssertionError(f"the scan did not finish in {timeout} s: {seen[-3:]}")


@pytest.fixture(scope="module")
def scanned(fraud_world: World) -> tuple[dict[str, Any], list[tuple], dict[str, Any], dict]:
    client = TestClient(create_ui_app(fraud_world.store))
    before = client.get(URL).json()
    started = client.post(URL, json={"sample_rows": 4000})
    again = client.post(URL, json={"sample_rows": 100, "min_correlation": 0.5})
    body, seen = _finish(client)
    return body, seen, {"before": before, "started": started, "again": again}, {}


def test_before_any_scan_the_state_is_none(scanned: Any) -> None:
    before = scanned[2]["before"]
    assert before["state"] == "none" and before["pairs"] == [] and before["id"] is None


def test_post_starts_and_a_second_post_answers_the_running_scan(scanned: Any) -> None:
    started, again = scanned[2]["started"], scanned[2]["again"]
    assert started.status_code == 202 and again.status_code == 202
    assert started.json()["state"] == "running"
    assert again.json()["id"] == started.json()["id"]
    assert scanned[0]["id"] == started.json()["id"]  # the first settings ran, not the second


def test_progress_moves_through_the_views_to_done(scanned: Any) -> None:
    body, seen, *_ = scanned
    assert body["state"] == "done", body["error"]
    assert seen[0][0] != "done"  # the first poll found it running
    done = [d for _, d, _ in seen]
    assert done == sorted(done)
    assert (body["phase"], body["done"]) == ("done", body["total"])
    assert body["total"] == 4  # the four views keyed by account_id (device_profile is alone)
    assert body["started_at"] <= body["finished_at"]


def test_the_scan_finds_exactly_the_planted_pairs(scanned: Any, fraud_world: World) -> None:
    body = scanned[0]
    found = {(p["a"], p["b"], p["relation"]) for p in body["pairs"]}
    assert found == PLANTED
    _, version = fraud_world.store.registry.current()
    assert body["registry_version"] == version
    # account_profile 4 + account_spend_daily 3 + account_txn_stats 5 + account_velocity 4
    assert body["features"] == 16
    assert body["skipped"] == ["device_profile: the only view keyed by device_id"]


def test_each_pair_carries_its_evidence(scanned: Any) -> None:
    pairs = {p["relation"]: p for p in scanned[0]["pairs"]}
    equal, linear = pairs["equal"], pairs["linear"]
    assert equal["equal_share"] == 1.0 and equal["correlation"] == pytest.approx(1.0)
    assert equal["entity"] == "account_id" and equal["rows"] >= 1000
    assert equal["a_url"] == "#/feature/account_spend_daily/purchases_1d"
    assert equal["b_url"] == "#/feature/account_txn_stats/txn_count_1d"
    assert all(a == b for a, b in equal["sample"]) and len(equal["sample"]) == 50
    assert linear["slope"] == pytest.approx(100.0) and linear["intercept"] == pytest.approx(
        0, abs=1e-6
    )
    assert all(b == pytest.approx(100 * a, abs=0.5) for a, b in linear["sample"])
    assert linear["evidence"].startswith(
        "account_spend_daily:spend_cents_1d = 100 x account_txn_stats:txn_amount_1d on "
    )


def test_the_planted_pairs_hold_in_the_raw_parquet_and_no_other_pair_is_close(
    fraud_world: World,
) -> None:
    """The oracle, from the files with pandas: on every (account, night) both teams wrote, the
    planted columns are copies, and no other pair of their columns reaches the thresholds."""
    data = fraud_world.root / "data"
    stats = pq.read_table(data / "account_txn_stats.parquet").to_pandas()
    spend = pq.read_table(data / "account_spend.parquet").to_pandas()
    both = stats.merge(spend, on=["account_id", "event_timestamp"])
    assert len(both) == len(spend) > 10_000
    assert (both["purchases_1d"] == both["txn_count_1d"]).all()
    assert (both["spend_cents_1d"] == np.round(both["txn_amount_1d"] * 100)).all()
    planted = {("purchases_1d", "txn_count_1d"), ("spend_cents_1d", "txn_amount_1d")}
    for ours in ("purchases_1d", "spend_cents_1d", "active_days_7d"):
        for theirs in (
            "txn_count_1d",
            "txn_amount_1d",
            "txn_count_7d",
            "avg_amount_7d",
            "distinct_devices_7d",
        ):
            if (ours, theirs) in planted:
                continue
            r = both[ours].corr(both[theirs])
            assert abs(r) < 0.95, (ours, theirs, r)
            assert (both[ours] == both[theirs]).mean() < 0.9, (ours, theirs)


def test_the_same_store_scans_to_the_same_result(fraud_world: World) -> None:
    first = scan(fraud_world.store, sample_rows=600)
    again = scan(fraud_world.store, sample_rows=600)
    assert first == again
    assert {(p.a, p.b, p.relation) for p in first.pairs} == PLANTED


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sample_rows": 99}, "body.sample_rows"),
        ({"sample_rows": 100_001}, "body.sample_rows"),
        ({"sample_rows": "5000"}, "body.sample_rows"),
        ({"sample_rows": True}, "body.sample_rows"),
        ({"sample_rows": 500.5}, "body.sample_rows"),
        ({"sample_rows": None}, "body.sample_rows"),
        ({"min_correlation": 0.49}, "body.min_correlation"),
        ({"min_correlation": 1.01}, "body.min_correlation"),
        ({"min_correlation": "high"}, "body.min_correlation"),
        ({"min_correlation": [0.9]}, "body.min_correlation"),
        ({"sampel_rows": 500}, "body.sampel_rows"),
        ([500], "body"),
        ("x" * 100_000, "body"),
    ],
)
def test_bad_bodies_are_refused_naming_the_field(fraud_world: World, body: Any, field: str) -> None:
    client = TestClient(create_ui_app(fraud_world.store))
    answer = client.post(URL, json=body)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith(field + ":")
    assert client.get(URL).json()["state"] == "none"  # nothing started


@pytest.mark.parametrize("text", [b'{"min_correlation": NaN}', b'{"min_correlation": Infinity}'])
def test_non_finite_numbers_are_refused(fraud_world: World, text: bytes) -> None:
    client = TestClient(create_ui_app(fraud_world.store))
    answer = client.post(URL, content=text, headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["error"]["message"].startswith("body.min_correlation:")


def test_a_token_narrowed_to_one_view_sees_no_pair_with_a_view_it_cannot_read(
    fresh_world: World,
) -> None:
    fresh_world.store.close()
    config = fresh_world.root / "parity.yaml"
    config.write_text(config.read_text() + "\nauth:\n  enabled: true\n")
    with FeatureStore(fresh_world.root, clock=fresh_world.clock.now) as store:
        _, narrow = store.access.tokens.create("narrow", "features:read:account_txn_stats")
        _, wide = store.access.tokens.create("wide", "features:read")
        _, models = store.access.tokens.create("models", "models:read")
        client = TestClient(create_ui_app(store))
        assert client.post(URL, headers=_bearer(models)).status_code == 403
        assert client.post(URL, headers=_bearer(narrow)).status_code == 202
        assert _finish_as(client, narrow)["pairs"] == []
        assert {(p["a"], p["b"], p["relation"]) for p in _finish_as(client, wide)["pairs"]} == (
            PLANTED
        )


def _bearer(text: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {text}"}


def _finish_as(client: TestClient, token: str) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(URL, headers=_bearer(token)).json()
        if body["state"] != "running":
            assert body["state"] == "done", body
            return body
        time.sleep(0.05)
    raise AssertionError("the scan did not finish")


def test_a_view_without_its_data_is_skipped_with_the_reason(fresh_world: World) -> None:
    (fresh_world.root / "data" / "account_spend.parquet").unlink()
    result = scan(fresh_world.store, sample_rows=1000)
    assert result.pairs == []  # the planted view is gone; the real features stay apart
    assert "account_spend_daily: no offline data at data/account_spend.parquet" in result.skipped
    assert result.features == 13


def test_a_view_whose_source_lost_a_column_is_skipped_and_the_others_compared(
    fresh_world: World,
) -> None:
    path = fresh_world.root / "data" / "account_spend.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["active_days_7d"]), path)
    result = scan(fresh_world.store, sample_rows=1000)
    (note,) = [n for n in result.skipped if n.startswith("account_spend_daily:")]
    assert "active_days_7d" in note
    assert result.features == 13 and result.pairs == []
