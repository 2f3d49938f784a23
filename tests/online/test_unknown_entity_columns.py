"""An entity column that is neither a join key of a requested view nor a request field of a
requested on-demand view is refused, naming it and the expected keys, in Python and over HTTP
(QA finding 9 after issue 12). Before, `{"bogus": [1]}` came back as a PRESENT column with 200."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from parity import FeatureStore
from parity.errors import EntityFrameError
from parity.serving.app import create_app
from tests.conftest import DRIVER_REPO, write_repo
from tests.transform.test_on_demand import RATIO

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    files = {**DRIVER_REPO, "ratio.py": RATIO.replace("VECTORIZED", "None")}
    feature_store = FeatureStore(write_repo(tmp_path / "repo", files), clock=lambda: NOW)
    feature_store.apply()
    feature_store.materialize(datetime(2025, 12, 31, tzinfo=UTC), NOW)
    return feature_store


def test_an_unknown_entity_column_is_refused_in_python(store: FeatureStore) -> None:
    with pytest.raises(EntityFrameError) as failure:
        store.get_online_features(["driver_stats:trips"], {"driver_id": [1], "bogus": [1]})
    message = str(failure.value)
    assert "'bogus'" in message and "['driver_id']" in message
    with pytest.raises(EntityFrameError, match="'bogus'"):
        store.get_online_features(["driver_stats:trips"], [{"driver_id": 1, "bogus": 1}])


def test_an_unknown_entity_column_is_refused_over_http_naming_it_and_the_keys(
    store: FeatureStore,
) -> None:
    client = TestClient(create_app(store))
    body = {"features": ["driver_stats:trips"], "entities": {"driver_id": [1], "bogus": [1]}}
    reply = client.post("/get-online-features", json=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_entity_frame"
    assert "'bogus'" in error["message"] and "['driver_id']" in error["message"]


def test_a_request_field_of_a_requested_on_demand_view_is_still_taken(
    store: FeatureStore,
) -> None:
    refs = ["fare_ratio:fare_per_trip"]
    online = store.get_online_features(refs, {"driver_id": [1], "fare": [12.0]})
    assert online.entities == {"driver_id": [1], "fare": [12.0]}
    assert online.values["fare_per_trip"] == [4.0]  # driver 1 made 3 trips
    client = TestClient(create_app(store))
    reply = client.post(
        "/get-online-features", json={"features": refs, "entities": {"driver_id": [1], "fare": [6]}}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["results"][2]["values"] == [2.0]


def test_a_request_field_of_a_view_not_requested_is_refused(store: FeatureStore) -> None:
    """`fare` is an input of fare_ratio only: a read of driver_stats alone has no use for it,
    and the message names the request fields only when a requested view takes some."""
    with pytest.raises(EntityFrameError) as failure:
        store.get_online_features(["driver_stats:trips"], {"driver_id": [1], "fare": [1.0]})
    assert "'fare'" in str(failure.value) and "request field" not in str(failure.value)
    with pytest.raises(EntityFrameError) as failure:
        store.get_online_features(
            ["fare_ratio:fare_per_trip"], {"driver_id": [1], "fare": [1.0], "tip": [1.0]}
        )
    assert "'tip'" in str(failure.value) and "['fare']" in str(failure.value)
