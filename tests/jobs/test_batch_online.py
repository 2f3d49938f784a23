"""`--to-online VIEW`: the batch's scores land in the online store as the user's score view, so
get_online_features and the feature server answer them; exactly the batch's rows, newest per
entity, write-if-newer; the same values offline (the view reads the batch's output file)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx2 as httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest

from parity import FeatureStore
from parity.errors import FeatureViewNotFound, ScoreViewMismatch
from parity.serving.app import create_app
from tests.inference.serving_helpers import running
from tests.jobs.batch_helpers import NOW, T0, make_store

MODEL = "driver_model@champion"
VIEW = "driver_scores"  # declared in batch_helpers.REPO: FileSource out/scores.parquet


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return make_store(tmp_path / "repo")


def _out(store: FeatureStore) -> str:
    return str(store.repo_path / "out" / "scores.parquet")


def _entities(drivers: list[int], day: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "driver_id": drivers,
            "amount": [10.0 * d for d in drivers],
            "event_timestamp": [T0 + timedelta(days=day)] * len(drivers),
        }
    )


def test_online_reads_and_the_feature_server_return_the_batch_score(store: FeatureStore) -> None:
    result = store.jobs.predict_batch(
        MODEL, _entities([1, 2, 3, 99], 4), out=_out(store), to_online=VIEW
    )
    batch = pq.read_table(_out(store)).to_pydict()
    online = store.get_online_features([f"{VIEW}:score"], {"driver_id": [1, 2, 3, 99]})
    assert online.to_dict()["score"] == batch["score"]
    assert (result.online_view, result.online_rows) == (VIEW, 4)
    body = {"features": [f"{VIEW}:score"], "entities": {"driver_id": [3, 1]}}
    with running(create_app(store)) as address:
        reply = httpx.post(f"http://{address}/get-online-features", json=body, timeout=10)
    assert reply.status_code == 200, reply.text
    served = reply.json()["results"]
    scores = dict(zip(batch["driver_id"], batch["score"], strict=True))
    assert served[1]["values"] == [scores[3], scores[1]]


def test_the_newest_row_per_entity_is_written_and_an_older_batch_never_replaces_it(
    store: FeatureStore,
) -> None:
    entities = pd.concat([_entities([1, 2], 3), _entities([1], 5), _entities([2], 1)])
    store.jobs.predict_batch(MODEL, entities, out=_out(store), to_online=VIEW)
    rows = pq.read_table(_out(store)).to_pylist()
    newest = {1: rows[2]["score"], 2: rows[1]["score"]}  # driver 1 day 5, driver 2 day 3
    online = store.get_online_features([f"{VIEW}:score"], {"driver_id": [1, 2]})
    assert online.to_dict()["score"] == [newest[1], newest[2]]
    # an older batch (day 2) rewrites the file, but not the newer online scores
    store.jobs.predict_batch(MODEL, _entities([1, 2], 2), out=_out(store), to_online=VIEW)
    again = store.get_online_features([f"{VIEW}:score"], {"driver_id": [1, 2]})
    assert again.to_dict()["score"] == [newest[1], newest[2]]
    # a newer one does replace them
    store.jobs.predict_batch(MODEL, _entities([1], 9), out=_out(store), to_online=VIEW)
    later = pq.read_table(_out(store)).column("score").to_pylist()
    assert (
        store.get_online_features([f"{VIEW}:score"], {"driver_id": [1]}).to_dict()["score"] == later
    )


def test_the_score_views_offline_values_are_the_batch_rows(store: FeatureStore) -> None:
    entities = _entities([1, 2, 4], 4)
    store.jobs.predict_batch(MODEL, entities, out=_out(store), to_online=VIEW)
    batch = pq.read_table(_out(store)).column("score").to_pylist()
    offline = store.get_historical_features(
        entities[["driver_id", "event_timestamp"]], [f"{VIEW}:score"]
    ).to_pandas()
    assert offline["score"].tolist() == batch
    materialized_later = store.get_online_features([f"{VIEW}:score"], {"driver_id": [1, 2, 4]})
    assert materialized_later.to_dict()["score"] == batch


def test_a_view_that_does_not_read_the_output_is_refused_before_scoring(
    store: FeatureStore,
) -> None:
    elsewhere = str(store.repo_path / "out" / "other.parquet")
    with pytest.raises(ScoreViewMismatch, match="does not include --out"):
        store.jobs.predict_batch(MODEL, _entities([1], 4), out=elsewhere, to_online=VIEW)
    assert not Path(elsewhere).exists()
    stats = store.repo_path / "data" / "driver_stats.parquet"
    before = stats.read_bytes()
    with pytest.raises(ScoreViewMismatch, match="feature 'conv_rate' is not an output"):
        store.jobs.predict_batch(MODEL, _entities([1], 4), out=str(stats), to_online="driver_stats")
    assert stats.read_bytes() == before
    with pytest.raises(FeatureViewNotFound):
        store.jobs.predict_batch(MODEL, _entities([1], 4), out=_out(store), to_online="nope")
    assert not Path(_out(store)).exists()


def test_scores_as_of_now_are_read_online_at_the_clock(store: FeatureStore) -> None:
    entities = _entities([5, 6], 0).drop(columns=["event_timestamp"])
    store.jobs.predict_batch(MODEL, entities, out=_out(store), as_of="now", to_online=VIEW)
    table = pq.read_table(_out(store)).to_pydict()
    assert set(table["event_timestamp"]) == {NOW}
    online = store.get_online_features([f"{VIEW}:score"], {"driver_id": [5, 6]})
    assert online.to_dict()["score"] == table["score"]
