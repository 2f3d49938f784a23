"""Join keys of the wrong type are refused, naming the key and its type, on every online path:
get_online_features in Python, the feature server over HTTP and /v1 predict of the model server
over HTTP (issue 12, item 1). Before, `"1"` for an Int64 key read as NOT_FOUND, and /v1 predicted
from all-null features."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from parity import FeatureStore
from parity.errors import EntityFrameError
from parity.inference.app import create_model_app
from parity.serving.app import create_app
from tests.conftest import DRIVER_REPO, write_parquet, write_repo
from tests.inference.serving_helpers import TripsModel, running

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)

CITY_REPO = {
    **DRIVER_REPO,
    "cities.py": """
        from parity import Entity, FeatureView, Field, FileSource, Int64, String
        city = Entity(name="city", join_keys=["city_code"], value_type=String)
        city_stats = FeatureView(
            name="city_stats",
            entities=[city],
            schema=[Field(name="population", dtype=Int64)],
            source=FileSource(path="data/cities.parquet"),
        )
    """,
}


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    root = write_repo(tmp_path / "repo", CITY_REPO, extra="models:\n  trusted: true\n")
    write_parquet(
        root / "data" / "cities.parquet",
        {
            "city_code": pa.array(["1", "ams"], pa.string()),
            "event_timestamp": pa.array([NOW, NOW], pa.timestamp("us", tz="UTC")),
            "population": pa.array([10, 20], pa.int64()),
        },
    )
    feature_store = FeatureStore(root, clock=lambda: NOW)
    feature_store.apply()
    feature_store.materialize(datetime(2025, 12, 31, tzinfo=UTC), NOW)
    return feature_store


WRONG_INT_KEYS = ["1", 1.0, 1.5, True, None, float("nan"), b"1", np.float64(1.0), np.bool_(True)]


@pytest.mark.parametrize("value", WRONG_INT_KEYS, ids=repr)
def test_an_int64_key_of_another_type_is_refused_in_python(store: FeatureStore, value: Any) -> None:
    with pytest.raises(EntityFrameError) as failure:
        store.get_online_features(["driver_stats:trips"], {"driver_id": [1, value]})
    message = str(failure.value)
    assert "'driver_id'" in message and "Int64" in message and "row 1" in message


@pytest.mark.parametrize("value", [1, True, 1.0, None, b"ams"], ids=repr)
def test_a_string_key_of_another_type_is_refused_in_python(store: FeatureStore, value: Any) -> None:
    with pytest.raises(EntityFrameError) as failure:
        store.get_online_features(["city_stats:population"], [{"city_code": value}])
    assert "'city_code'" in str(failure.value) and "String" in str(failure.value)


def test_numpy_and_pandas_integers_are_int64_keys(store: FeatureStore) -> None:
    # A pandas column iterates as numpy integers: they are integers, and find the same rows.
    keys = pd.Series([1, 2, 99], dtype="int64")
    numpy = store.get_online_features(["driver_stats:trips"], {"driver_id": list(keys)})
    assert numpy.values["trips"] == [3, 3, None]
    assert numpy.statuses["trips"] == ["PRESENT", "PRESENT", "NOT_FOUND"]
    plain = store.get_online_features(["driver_stats:trips"], {"driver_id": [1, 2, 99]})
    assert plain.values == numpy.values
    small = store.get_online_features(["driver_stats:trips"], {"driver_id": [np.int8(1)]})
    assert small.values["trips"] == [3]


def test_a_string_key_that_looks_like_a_number_stays_a_string(store: FeatureStore) -> None:
    found = store.get_online_features(["city_stats:population"], {"city_code": ["1", "ams"]})
    assert found.values["population"] == [10, 20]


def test_the_feature_server_answers_400_naming_the_key_and_type(store: FeatureStore) -> None:
    with running(create_app(store)) as url:
        wrong = httpx.post(
            f"http://{url}/get-online-features",
            json={"features": ["driver_stats:trips"], "entities": {"driver_id": ["1"]}},
        )
        city = httpx.post(
            f"http://{url}/get-online-features",
            json={"features": ["city_stats:population"], "entities": {"city_code": [1]}},
        )
        right = httpx.post(
            f"http://{url}/get-online-features",
            json={"features": ["driver_stats:trips"], "entities": {"driver_id": [1]}},
        )
    assert wrong.status_code == 400, wrong.text
    error = wrong.json()["error"]
    assert error["code"] == "invalid_entity_key"
    assert "'driver_id'" in error["message"] and "Int64" in error["message"]
    assert city.status_code == 400, city.text
    assert "'city_code'" in city.json()["error"]["message"]
    assert "String" in city.json()["error"]["message"]
    assert right.status_code == 200 and right.json()["results"][1]["values"] == [3]


def test_v1_predict_refuses_a_wrong_typed_key_instead_of_predicting(store: FeatureStore) -> None:
    sample = pd.DataFrame({"trips": [1.0, 2.0], "bonus": [0.0, 1.0]})
    store.models.register_model(
        "trips",
        TripsModel(),
        flavor="pyfunc",
        feature_service="driver_service",
        sample_input=sample,
        alias="champion",
    )
    app = create_model_app(store, preload=["trips@champion"])
    with running(app) as url:
        wrong = httpx.post(
            f"http://{url}/v1/models/trips/predict",
            json={"entities": {"driver_id": ["1"], "bonus": [0.0]}},
        )
        right = httpx.post(
            f"http://{url}/v1/models/trips/predict",
            json={"entities": {"driver_id": [1], "bonus": [0.0]}},
        )
    assert wrong.status_code == 400, wrong.text
    error = wrong.json()  # the model server's error shape (Open Inference Protocol's)
    assert error["code"] == "invalid_entity_key"
    assert "'driver_id'" in error["error"] and "Int64" in error["error"]
    assert right.status_code == 200 and right.json()["predictions"] == [30.0]
