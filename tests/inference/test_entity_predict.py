"""Entity-based prediction over HTTP: features fetched from the online store at request time,
request-time inputs, alias moves, and the prediction log written as Parquet on shutdown."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx2 as httpx
import pandas as pd
import pytest

from parity import FeatureStore
from parity.inference.app import create_model_app, prediction_logger
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import TripsModel, running

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
SETTINGS = """
models:
  trusted: true
  serving:
    prediction_log: data/predictions
    alias_refresh_seconds: 0
    batching: {max_batch_size: 16, max_latency_ms: 2}
"""


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    repo = write_repo(tmp_path / "repo", DRIVER_REPO, extra=SETTINGS)
    feature_store = FeatureStore(repo, clock=lambda: NOW)
    feature_store.apply()
    feature_store.materialize(datetime(2025, 12, 31, tzinfo=UTC), NOW)
    sample = pd.DataFrame({"trips": [1.0, 2.0], "bonus": [0.0, 1.0]})
    models = feature_store.models
    models.register_model(
        "trips",
        TripsModel(),
        flavor="pyfunc",
        feature_service="driver_service",
        sample_input=sample,
        alias="champion",
    )
    models.register_model(
        "trips",
        TripsModel(scale=100.0),
        flavor="pyfunc",
        feature_service="driver_service",
        sample_input=sample,
    )
    return feature_store


def test_predict_fetches_features_and_logs_every_row(store: FeatureStore) -> None:
    app = create_model_app(
        store, preload=["trips@champion"], prediction_log=prediction_logger(store)
    )
    body = {
        "entities": {"driver_id": [1, 99], "bonus": [0.5, 1.0]},
        "return_features": True,
        "id": "r1",
    }
    with running(app) as url:
        reply = httpx.post(f"http://{url}/v1/models/trips@champion/predict", json=body)
        rows = httpx.post(
            f"http://{url}/v1/models/trips/versions/2/predict",
            json={"entities": [{"driver_id": 2, "bonus": 0.0}]},
        )
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    # driver 1 has trips = 3 in the online store; driver 99 is unknown (-1 in the model)
    assert answer["predictions"] == [30.5, -9.0]
    assert answer["features"] == {"trips": [3, None]}
    assert (answer["id"], answer["model_version"], answer["alias"]) == ("r1", 1, "champion")
    assert rows.json()["predictions"] == [300.0]
    assert rows.json()["alias"] is None
    logged = duckdb.sql(
        f"SELECT request_id, model, version, alias, entities, features, prediction "
        f"FROM read_parquet('{store.repo_path}/data/predictions/**/*.parquet') "
        "ORDER BY request_id = 'r1' DESC, prediction"
    ).fetchall()
    assert len(logged) == 3
    first, second = logged[0], logged[1]  # r1's rows, by prediction text: "-9.0" < "30.5"
    assert first[:4] == ("r1", "trips", 1, "champion")
    assert json.loads(first[4]) == {"driver_id": 99, "bonus": 1.0}
    assert json.loads(first[5]) == {"trips": None}
    assert json.loads(first[6]) == -9.0
    assert json.loads(second[5]) == {"trips": 3} and json.loads(second[6]) == 30.5
    assert logged[2][2] == 2 and json.loads(logged[2][6]) == 300.0


def test_alias_move_changes_the_entity_prediction(store: FeatureStore) -> None:
    app = create_model_app(store)
    body = {"entities": {"driver_id": [1], "bonus": [0.0]}}
    with running(app) as url:
        before = httpx.post(f"http://{url}/v1/models/trips/predict", json=body).json()
        store.models.set_alias("trips", "champion", 2)
        after = httpx.post(f"http://{url}/v1/models/trips/predict", json=body).json()
        store.models.rollback("trips", "champion")
        rolled = httpx.post(f"http://{url}/v1/models/trips/predict", json=body).json()
    assert (before["model_version"], before["predictions"]) == (1, [30.0])
    assert (after["model_version"], after["predictions"]) == (2, [300.0])
    assert (rolled["model_version"], rolled["predictions"]) == (1, [30.0])


def test_a_missing_request_input_is_a_400_naming_it(store: FeatureStore) -> None:
    app = create_model_app(store)
    with running(app) as url:
        reply = httpx.post(
            f"http://{url}/v1/models/trips/predict", json={"entities": {"driver_id": [1]}}
        )
        unknown_key = httpx.post(
            f"http://{url}/v1/models/trips/predict", json={"entities": {"rider": [1]}}
        )
    assert reply.status_code == 400
    assert "bonus" in reply.json()["error"]
    assert unknown_key.status_code == 400
    assert "driver_id" in unknown_key.json()["error"]


def test_request_context_joins_the_entity_rows(store: FeatureStore) -> None:
    app = create_model_app(store)
    with running(app) as url:
        columns = httpx.post(
            f"http://{url}/v1/models/trips/predict",
            json={"entities": {"driver_id": [1, 2]}, "request_context": {"bonus": [0.5, 2.0]}},
        )
        rows = httpx.post(
            f"http://{url}/v1/models/trips/predict",
            json={"entities": [{"driver_id": 3}], "request_context": {"bonus": [1.0]}},
        )
        clash = httpx.post(
            f"http://{url}/v1/models/trips/predict",
            json={"entities": {"driver_id": [1], "bonus": [1]}, "request_context": {"bonus": [2]}},
        )
        uneven = httpx.post(
            f"http://{url}/v1/models/trips/predict",
            json={"entities": {"driver_id": [1]}, "request_context": {"bonus": [2, 3]}},
        )
    assert columns.json()["predictions"] == [30.5, 32.0]
    assert rows.json()["predictions"] == [31.0]
    assert clash.status_code == 400 and "bonus" in clash.json()["error"]
    assert uneven.status_code == 400 and "same length" in uneven.json()["error"]


def test_with_features_one_process_answers_features_and_predictions(store: FeatureStore) -> None:
    app = create_model_app(store, with_features=True)
    with running(app) as url:
        features = httpx.post(
            f"http://{url}/get-online-features",
            json={"feature_service": "driver_service", "entities": {"driver_id": [1]}},
        )
        prediction = httpx.post(
            f"http://{url}/v1/models/trips/predict",
            json={"entities": {"driver_id": [1], "bonus": [0.0]}},
        )
    assert features.json()["results"][1]["values"] == [3]
    assert prediction.json()["predictions"] == [30.0]
