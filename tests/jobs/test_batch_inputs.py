"""Batch predictions refuse what they cannot score right, naming the field: unknown models and
aliases, missing or mistyped columns, null/NaN/inf request-time inputs, future times, a model that
raises; and answer what they can: empty entities, ancient times, NaN features, duplicates."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity import FeatureStore
from parity.errors import (
    AliasNotFound,
    EntityFrameError,
    InvalidModelRef,
    InvalidPredictionInput,
    ModelNotFound,
    ModelVersionNotFound,
    PredictFailed,
)
from tests.jobs.batch_helpers import NOW, T0, expected_score, make_store

MODEL = "driver_model@champion"


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return make_store(tmp_path / "repo")


def _out(store: FeatureStore, name: str = "scores.parquet") -> str:
    return str(store.repo_path / "out" / name)


def _entities(**columns: list[Any] | None) -> pd.DataFrame:
    base: dict[str, list[Any] | None] = {
        "driver_id": [1, 2],
        "amount": [1.0, 2.0],
        "event_timestamp": [T0 + timedelta(days=3), T0 + timedelta(days=4)],
    }
    base.update(columns)
    return pd.DataFrame({k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize(
    ("ref", "error"),
    [
        ("nobody@champion", AliasNotFound),  # the registry answers per alias
        ("driver_model@nope", AliasNotFound),
        ("driver_model/9", ModelVersionNotFound),
        ("nobody", ModelNotFound),
        ("driver model", InvalidModelRef),
    ],
)
def test_unknown_models_and_aliases_are_refused(
    store: FeatureStore, ref: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        store.jobs.predict_batch(ref, _entities(), out=_out(store))
    assert not Path(_out(store)).exists()


@pytest.mark.parametrize("column", ["driver_id", "amount"])
def test_a_missing_key_or_request_input_column_is_named(store: FeatureStore, column: str) -> None:
    entities = _entities(**{column: None})
    with pytest.raises(InvalidPredictionInput, match=f"no column '{column}'"):
        store.jobs.predict_batch(MODEL, entities, out=_out(store))


def test_a_missing_column_of_a_parquet_file_is_named(store: FeatureStore) -> None:
    path = store.repo_path / "ents.parquet"
    _entities().drop(columns=["amount"]).to_parquet(path)
    with pytest.raises(InvalidPredictionInput, match="'amount'"):
        store.jobs.predict_batch(MODEL, str(path), out=_out(store))


def test_a_missing_entity_file_is_refused(store: FeatureStore) -> None:
    with pytest.raises(EntityFrameError, match=r"nowhere\.parquet"):
        store.jobs.predict_batch(MODEL, "nowhere.parquet", out=_out(store))


def test_string_keys_for_an_int_entity_are_refused_as_retrieval_refuses_them(
    store: FeatureStore,
) -> None:
    entities = _entities(driver_id=["1", "2"])
    with pytest.raises(EntityFrameError, match="driver_id") as batch:
        store.jobs.predict_batch(MODEL, entities, out=_out(store))
    with pytest.raises(EntityFrameError) as retrieval:
        store.get_historical_features(entities, "driver_service").to_arrow()
    assert str(batch.value) == str(retrieval.value)


def test_null_keys_are_refused_naming_the_row(store: FeatureStore) -> None:
    table = pa.table(
        {
            "driver_id": pa.array([1, None], pa.int64()),
            "amount": [1.0, 2.0],
            "event_timestamp": pa.array([T0, T0], pa.timestamp("us", tz="UTC")),
        }
    )
    with pytest.raises(EntityFrameError, match="row 1"):
        store.jobs.predict_batch(MODEL, table, out=_out(store))


def test_null_keys_in_a_parquet_file_are_refused_while_it_is_read(store: FeatureStore) -> None:
    path = store.repo_path / "ents.parquet"
    table = pa.table(
        {
            "driver_id": pa.array([1, 2, None], pa.int64()),
            "amount": [1.0, 2.0, 3.0],
            "event_timestamp": pa.array([T0] * 3, pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, path)
    with pytest.raises(EntityFrameError, match="'driver_id' row 2 has a null join key"):
        store.jobs.predict_batch(MODEL, str(path), out=_out(store))
    assert not Path(_out(store)).exists()


def test_a_real_nan_in_an_arrow_request_input_is_refused(store: FeatureStore) -> None:
    table = pa.table(
        {
            "driver_id": pa.array([1, 2], pa.int64()),
            "amount": pa.array([1.0, float("nan")]),  # NaN, not null (pandas would make it null)
            "event_timestamp": pa.array([T0] * 2, pa.timestamp("us", tz="UTC")),
        }
    )
    with pytest.raises(InvalidPredictionInput, match="'amount' is nan at entity row 1"):
        store.jobs.predict_batch(MODEL, table, out=_out(store))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None])
def test_null_nan_and_inf_request_inputs_are_refused_naming_the_row(
    store: FeatureStore, bad: float | None
) -> None:
    entities = _entities(amount=[1.0, bad])
    with pytest.raises(InvalidPredictionInput, match=r"'amount'.*entity row 1"):
        store.jobs.predict_batch(MODEL, entities, out=_out(store), batch_size=1)
    assert not Path(_out(store)).exists()  # nothing half-written


def test_a_text_request_input_for_a_float_is_refused(store: FeatureStore) -> None:
    with pytest.raises(InvalidPredictionInput, match="'amount' is string"):
        store.jobs.predict_batch(MODEL, _entities(amount=["1", "2"]), out=_out(store))


def test_empty_entities_give_an_empty_file_with_the_columns(store: FeatureStore) -> None:
    entities = _entities().iloc[0:0]
    result = store.jobs.predict_batch(MODEL, entities, out=_out(store))
    table = pq.read_table(_out(store))
    assert result.rows == 0 and table.num_rows == 0
    assert table.column_names == ["driver_id", "event_timestamp", "score"]
    path = store.repo_path / "empty.parquet"
    entities.to_parquet(path)
    assert store.jobs.predict_batch(MODEL, str(path), out=_out(store, "b.parquet")).rows == 0


def test_ancient_rows_get_the_models_answer_for_missing_features(store: FeatureStore) -> None:
    entities = _entities(event_timestamp=[T0 - timedelta(days=3650), T0 - timedelta(days=1)])
    result = store.jobs.predict_batch(MODEL, entities, out=_out(store))
    scores = pq.read_table(_out(store)).column("score").to_pylist()
    assert scores == [expected_score(None, None, 1.0), expected_score(None, None, 2.0)]
    assert result.rows_without_features == 2


def test_nan_and_null_features_reach_the_model_as_the_server_sends_them(
    store: FeatureStore,
) -> None:
    # driver 3: conv_rate NaN on day 2, trips null on odd days (see stats_table)
    entities = _entities(
        driver_id=[3, 3],
        event_timestamp=[T0 + timedelta(days=2, hours=13), T0 + timedelta(days=3, hours=13)],
    )
    store.jobs.predict_batch(MODEL, entities, out=_out(store))
    history = store.get_historical_features(entities, "driver_service").to_arrow()
    assert math.isnan(history["conv_rate"][0].as_py()) and history["trips"][1].as_py() is None
    scores = pq.read_table(_out(store)).column("score").to_pylist()
    trips0 = history["trips"][0].as_py()
    conv1 = history["conv_rate"][1].as_py()
    assert scores == [expected_score(None, trips0, 1.0), expected_score(conv1, None, 2.0)]


def test_a_future_as_of_or_row_time_is_refused(store: FeatureStore) -> None:
    entities = _entities(event_timestamp=None)
    with pytest.raises(InvalidPredictionInput, match=r"as_of .* after the store's clock"):
        store.jobs.predict_batch(MODEL, entities, out=_out(store), as_of=NOW + timedelta(hours=1))
    late = _entities(event_timestamp=[T0, NOW + timedelta(days=1)])
    with pytest.raises(InvalidPredictionInput, match=r"entity row 1 .*after the store's clock"):
        store.jobs.predict_batch(MODEL, late, out=_out(store))
    assert not Path(_out(store)).exists()


def test_as_of_and_a_timestamp_column_together_are_refused(store: FeatureStore) -> None:
    with pytest.raises(InvalidPredictionInput, match="not both"):
        store.jobs.predict_batch(MODEL, _entities(), out=_out(store), as_of=NOW)
    with pytest.raises(InvalidPredictionInput, match="no 'event_timestamp' column"):
        store.jobs.predict_batch(MODEL, _entities(event_timestamp=None), out=_out(store))


def test_as_of_scores_every_row_at_that_time_from_a_parquet_file(store: FeatureStore) -> None:
    path = store.repo_path / "ents.parquet"
    _entities(event_timestamp=None).to_parquet(path)
    moment = T0 + timedelta(days=3)
    store.jobs.predict_batch(MODEL, str(path), out=_out(store), as_of=moment.isoformat())
    by_time = _entities(event_timestamp=[moment, moment])
    store.jobs.predict_batch(MODEL, by_time, out=_out(store, "rows.parquet"))
    assert (
        pq.read_table(_out(store)).to_pydict()
        == pq.read_table(_out(store, "rows.parquet")).to_pydict()
    )


class Exploding:
    def predict(self, frame: Any) -> Any:
        if (frame["amount"] > 100).any():
            raise ValueError("amount too large for this model")
        return frame["amount"].to_numpy()


def test_a_model_that_raises_fails_the_job_naming_the_rows_and_keeps_the_old_output(
    store: FeatureStore,
) -> None:
    sample = pd.DataFrame({"conv_rate": [0.5], "trips": [3.0], "amount": [10.0]})
    store.models.register_model(
        "exploding",
        Exploding(),
        flavor="pyfunc",
        feature_service="driver_service",
        sample_input=sample,
    )
    out = Path(_out(store))
    store.jobs.predict_batch("exploding", _entities(), out=str(out))
    before = out.read_bytes()
    entities = _entities(driver_id=[1, 2, 3], amount=[1.0, 2.0, 500.0], event_timestamp=[T0] * 3)
    with pytest.raises(PredictFailed, match="entity rows 2 to 2: ValueError: amount too large"):
        store.jobs.predict_batch("exploding", entities, out=str(out), batch_size=2)
    assert out.read_bytes() == before  # the earlier complete output, untouched
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary left
