"""Aggregated views tell an entity never seen (NOT_FOUND online, null offline) from one seen
without events in a window (PRESENT 0 online, 0 offline), the same on both paths (issue 12,
item 3). "Seen" at t: an event in the view's longest window at t."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from parity import FeatureStore
from tests.conftest import write_parquet

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KINDS = ["sqlite", pytest.param("redis", marks=pytest.mark.redis)]

DEFS = """
from datetime import timedelta
from parity import Aggregation, Entity, FeatureView, Field, FileSource, Float64
account = Entity(name="account", join_keys=["account_id"])
velocity = FeatureView(
    name="velocity",
    entities=[account],
    schema=[Field(name="amount", dtype=Float64)],
    source=FileSource(path="data/events.parquet"),
    tile_interval=timedelta(minutes=5),
    aggregations=[
        Aggregation(column="amount", function="count", window=timedelta(minutes=5), name="n5"),
        Aggregation(column="amount", function="sum", window=timedelta(days=1), name="sum1d"),
        Aggregation(column="amount", function="last_n", n=2, window=timedelta(minutes=5),
            name="last2"),
    ],
)
"""


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FeatureStore:
    online = ""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        online = f"online:\n  type: redis\n  connection_string: {url}\n"
    (tmp_path / "parity.yaml").write_text(f"project: u{uuid.uuid4().hex[:10]}\n{online}")
    (tmp_path / "defs.py").write_text(DEFS)
    # account 1: an event 2 hours before t (in the 1-day window, not in 5 minutes);
    # account 2: an event 3 days before t (outside every window); account 3: a null amount
    # a minute before t (an event, with nothing to aggregate); account 4: never.
    write_parquet(
        tmp_path / "data" / "events.parquet",
        {
            "account_id": pa.array([1, 2, 3], pa.int64()),
            "event_timestamp": pa.array(
                [T - timedelta(hours=2), T - timedelta(days=3), T - timedelta(minutes=1)],
                pa.timestamp("us", tz="UTC"),
            ),
            "amount": pa.array([5.0, 7.0, None], pa.float64()),
        },
    )
    feature_store = FeatureStore(tmp_path, clock=lambda: T)
    feature_store.apply()
    feature_store.materialize(T - timedelta(days=5), T)
    request.addfinalizer(
        lambda: feature_store.online_store.delete_view(feature_store.project, "velocity")
    )
    request.addfinalizer(feature_store.close)
    return feature_store


REFS = ["velocity:n5", "velocity:sum1d", "velocity:last2"]


def test_online_statuses_tell_never_seen_from_no_events_in_the_window(
    store: FeatureStore,
) -> None:
    online = store.get_online_features(REFS, {"account_id": [1, 2, 3, 4]})
    assert online.values["n5"] == [0, None, 0, None]
    assert online.statuses["n5"] == ["PRESENT", "NOT_FOUND", "PRESENT", "NOT_FOUND"]
    assert online.values["sum1d"] == [5.0, None, 0, None]
    assert online.statuses["sum1d"] == ["PRESENT", "NOT_FOUND", "PRESENT", "NOT_FOUND"]
    assert online.values["last2"] == [[], None, [], None]
    assert online.statuses["last2"] == ["PRESENT", "NOT_FOUND", "PRESENT", "NOT_FOUND"]


def test_offline_answers_null_for_never_seen_and_zero_for_seen(store: FeatureStore) -> None:
    frame = pd.DataFrame({"account_id": [1, 2, 3, 4], "event_timestamp": [T] * 4})
    offline = store.get_historical_features(frame, REFS).to_pandas()
    n5 = [None if pd.isna(v) else int(v) for v in offline["n5"]]
    assert n5 == [0, None, 0, None]
    sums = [None if pd.isna(v) else float(v) for v in offline["sum1d"]]
    assert sums == [5.0, None, 0.0, None]
    lasts = [
        None if v is None or (isinstance(v, float) and pd.isna(v)) else list(v)
        for v in offline["last2"]
    ]
    assert lasts == [[], None, [], None]


def test_the_feature_server_answers_not_found_for_an_unknown_account(store: FeatureStore) -> None:
    from fastapi.testclient import TestClient

    from parity.serving.app import create_app

    reply = TestClient(create_app(store)).post(
        "/get-online-features",
        json={"features": ["velocity:n5"], "entities": {"account_id": [1, 4]}},
    )
    assert reply.status_code == 200, reply.text
    n5 = reply.json()["results"][1]
    assert n5["values"] == [0, None] and n5["statuses"] == ["PRESENT", "NOT_FOUND"]
