"""Batch predictions: scores equal the model server's `/v1` scores when the features are equal,
features equal get_historical_features' (and a brute-force point-in-time oracle's), the output
file's rows and lineage, and writing the scores to an online view."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import httpx2 as httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity import FeatureStore
from parity.inference.app import create_model_app
from parity.jobs.batch_predict import read_metadata
from tests.inference.serving_helpers import running
from tests.jobs.batch_helpers import (
    DRIVERS,
    T0,
    expected_score,
    make_store,
    point_in_time,
    register_ratio_model,
    stats_table,
)

TTL = timedelta(days=2)
AS_OF = T0 + timedelta(days=5, hours=6)  # day 5's rows are not yet known; day 4's are


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return make_store(tmp_path / "repo", clock=AS_OF)


@pytest.mark.parametrize(
    "moment",
    [
        AS_OF,
        T0 + timedelta(days=2, hours=18),  # driver 3's newest row has a NaN conv_rate
        T0 + timedelta(days=3, hours=18),  # driver 3's newest row has null trips
    ],
)
def test_batch_scores_equal_the_model_servers_v1_scores_at_the_same_time(
    tmp_path: Path, moment: datetime
) -> None:
    """The store's clock is `moment`: materialized up to it, the server reads at it, the batch
    scores as of it."""
    store = make_store(tmp_path / "repo", clock=moment)
    store.materialize(T0, moment, ["driver_stats"])
    drivers = [*range(1, DRIVERS + 1), 99]  # 99 has no features anywhere
    amounts = [12.5, 0.0, 999.25, 3.0, 41.0, 7.75, 5.0]
    body = {"entities": {"driver_id": drivers, "amount": amounts}}
    with running(create_model_app(store)) as url:
        reply = httpx.post(f"http://{url}/v1/models/driver_model@champion/predict", json=body)
    assert reply.status_code == 200, reply.text
    online = reply.json()["predictions"]

    entities = pd.DataFrame({"driver_id": drivers, "amount": amounts})
    out = store.repo_path / "out" / "batch.parquet"
    result = store.jobs.predict_batch("driver_model@champion", entities, out=str(out), as_of=moment)
    scored = pq.read_table(out).to_pydict()
    assert scored["driver_id"] == drivers
    assert scored["score"] == online  # exactly: the same features, the same row building
    # and both are the hand-worked answer on the point-in-time features
    stats = stats_table()
    oracle = [
        expected_score(**point_in_time(stats, d, moment, TTL), amount=a)
        for d, a in zip(drivers, amounts, strict=True)
    ]
    assert scored["score"] == pytest.approx(oracle, abs=1e-12)
    assert set(scored["event_timestamp"]) == {moment}
    assert (result.rows, result.version, result.rows_without_features) == (7, 1, 1)


def test_on_demand_features_from_request_inputs_score_as_v1_does(store: FeatureStore) -> None:
    """An on-demand feature (amount / trips) takes the request's amount from the entities."""
    register_ratio_model(store)
    store.materialize(T0, AS_OF, ["driver_stats"])
    drivers, amounts = [1, 2, 3, 4, 99], [30.0, 12.5, 8.0, 0.0, 5.0]
    body = {"entities": {"driver_id": drivers, "amount": amounts}}
    with running(create_model_app(store)) as url:
        reply = httpx.post(f"http://{url}/v1/models/ratio_model/predict", json=body)
    assert reply.status_code == 200, reply.text
    entities = pd.DataFrame({"driver_id": drivers, "amount": amounts})
    out = store.repo_path / "out" / "ratio.parquet"
    store.jobs.predict_batch("ratio_model@champion", entities, out=str(out), as_of=AS_OF)
    scores = pq.read_table(out).column("output").to_pylist()
    assert scores == reply.json()["predictions"]
    stats = stats_table()
    for driver, amount, score in zip(drivers, amounts, scores, strict=True):
        found = point_in_time(stats, driver, AS_OF, TTL)
        trips, conv = found["trips"], found["conv_rate"]
        ratio = -1.0 if not trips else amount / trips
        assert score == pytest.approx(0.5 * ratio + (conv or 0.0), abs=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batch_features_equal_historical_features_on_random_rows(tmp_path: Path, seed: int) -> None:
    """Random entities (repeats, times between and on feature rows, before any) in small Arrow
    batches: each score is the model on get_historical_features' values for that row, which
    are the brute-force oracle's."""
    store = make_store(tmp_path / "repo")  # its clock is after every feature row
    rng = random.Random(seed)
    rows = 60
    entities = pd.DataFrame(
        {
            "driver_id": [rng.randint(1, DRIVERS + 1) for _ in range(rows)],
            "amount": [round(rng.uniform(0, 500), 2) for _ in range(rows)],
            "event_timestamp": [
                T0 + timedelta(minutes=rng.randint(-600, 7 * 24 * 60)) for _ in range(rows)
            ],
        }
    )
    out = store.repo_path / "out" / f"random_{seed}.parquet"
    store.jobs.predict_batch("driver_model", entities, out=str(out), batch_size=7)
    scored = pq.read_table(out).to_pandas()
    history = store.get_historical_features(entities, "driver_service").to_pandas()
    stats = stats_table()
    for i in range(rows):
        conv, trips = history["conv_rate"][i], history["trips"][i]
        from_history = expected_score(
            None if pd.isna(conv) else float(conv),
            None if pd.isna(trips) else int(trips),
            entities["amount"][i],
        )
        moment = entities["event_timestamp"][i].to_pydatetime()
        oracle = point_in_time(stats, int(entities["driver_id"][i]), moment, TTL)
        assert scored["score"][i] == pytest.approx(from_history, abs=1e-12)
        assert scored["score"][i] == pytest.approx(
            expected_score(**oracle, amount=entities["amount"][i]), abs=1e-12
        )
    assert scored["driver_id"].tolist() == entities["driver_id"].tolist()


def test_parquet_sql_dataframe_and_arrow_entities_give_the_same_file(store: FeatureStore) -> None:
    frame = pd.DataFrame(
        {
            "driver_id": [1, 2, 2, 3],
            "amount": [1.0, 2.0, 2.0, 3.0],
            "event_timestamp": [T0 + timedelta(days=d, hours=13) for d in (1, 2, 2, 3)],
            "label": [0, 1, 0, 1],  # extra columns are ignored
        }
    )
    path = store.repo_path / "entities.parquet"
    frame.to_parquet(path)
    outs = {}
    inputs = {
        "frame": frame,
        "arrow": pa.Table.from_pandas(frame),
        "parquet": str(path),
        "sql": f"SELECT * FROM read_parquet('{path}')",
    }
    for kind, given in inputs.items():
        out = store.repo_path / "out" / f"{kind}.parquet"
        result = store.jobs.predict_batch("driver_model/1", given, out=str(out))
        outs[kind] = pq.read_table(out).to_pydict()
        assert result.rows == 4
    assert outs["frame"] == outs["arrow"] == outs["parquet"] == outs["sql"]
    assert list(outs["frame"]) == ["driver_id", "event_timestamp", "score"]
    # duplicated entity rows are each scored, with the same score
    assert outs["frame"]["score"][1] == outs["frame"]["score"][2]


def test_output_metadata_records_the_models_lineage(store: FeatureStore) -> None:
    out = store.repo_path / "out" / "meta.parquet"
    entities = pd.DataFrame({"driver_id": [1], "amount": [1.0]})
    store.jobs.predict_batch("driver_model@champion", entities, out=str(out), as_of="2026-01-03")
    meta = read_metadata(out)
    version = store.models.get_alias("driver_model", "champion")
    assert meta["model"] == "driver_model" and meta["version"] == version.version
    assert meta["model_ref"] == "driver_model@champion"
    assert meta["artifact_sha256"] == version.artifact
    assert meta["feature_service"] == "driver_service"
    assert meta["registry_version"] == store.registry.current()[1]
    assert meta["as_of"] == "2026-01-03T00:00:00+00:00"
    assert meta["created_at"] == AS_OF.isoformat()
    assert "training_dataset" in meta


def test_a_second_alias_scores_with_its_own_version(store: FeatureStore) -> None:
    """name@alias resolves through the registry: moving champion changes the version used."""
    from tests.jobs.batch_helpers import DriverModel

    sample = pd.DataFrame({"conv_rate": [0.5], "trips": [3.0], "amount": [10.0]})
    store.models.register_model(
        "driver_model",
        DriverModel(),
        flavor="pyfunc",
        feature_service="driver_service",
        sample_input=sample,
        predict_method={"score": "predict"},
    )
    entities = pd.DataFrame({"driver_id": [1], "amount": [1.0]})
    out = str(store.repo_path / "out" / "v.parquet")
    first = store.jobs.predict_batch("driver_model@champion", entities, out=out, as_of=AS_OF)
    store.models.set_alias("driver_model", "champion", 2)
    second = store.jobs.predict_batch("driver_model@champion", entities, out=out, as_of=AS_OF)
    latest = store.jobs.predict_batch("driver_model", entities, out=out, as_of=AS_OF)
    assert (first.version, second.version, latest.version) == (1, 2, 2)
    assert read_metadata(out)["version"] == 2
