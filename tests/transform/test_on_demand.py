"""On-demand feature views: one function online, offline and over HTTP, run from the repo."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from parity import FeatureStore
from parity.errors import BreakingChange, EntityFrameError, InvalidDefinition, OnDemandError
from parity.serving.app import create_app
from tests.conftest import DRIVER_REPO, write_repo

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
RATIO = """
    from parity import Field, Float64, RequestSource, on_demand_feature_view
    from views import driver_stats

    trip = RequestSource(name="trip", schema=[Field(name="fare", dtype=Float64)])

    def fare_per_trip_frame(frame):
        return {"fare_per_trip": (frame["fare"] / frame["trips"]).tolist()}

    @on_demand_feature_view(
        sources=[driver_stats, trip],
        schema=[Field(name="fare_per_trip", dtype=Float64)],
        vectorized=VECTORIZED,
    )
    def fare_ratio(row):
        if row["fare"] < 0:
            raise ValueError("negative fare")
        trips = row["trips"]
        return {"fare_per_trip": None if not trips else row["fare"] / trips}
"""


def make_store(root: Path, vectorized: bool = False) -> FeatureStore:
    files = {
        **DRIVER_REPO,
        "ratio.py": RATIO.replace("VECTORIZED", "fare_per_trip_frame" if vectorized else "None"),
    }
    store = FeatureStore(write_repo(root, files), clock=lambda: NOW)
    store.apply()
    store.materialize(datetime(2025, 12, 31, tzinfo=UTC), NOW)
    return store


@pytest.mark.parametrize("vectorized", [False, True])
def test_the_same_values_online_offline_and_over_http(tmp_path: Path, vectorized: bool) -> None:
    store = make_store(tmp_path / "repo", vectorized)
    refs = ["fare_ratio:fare_per_trip", "driver_stats:city"]
    rows = [{"driver_id": 1, "fare": 12.0}, {"driver_id": 99, "fare": 5.0}]
    online = store.get_online_features(refs, rows)
    assert online.values["fare_per_trip"] == [4.0, None]  # driver 1 made 3 trips; 99 unknown
    assert list(online.values) == ["city", "fare_per_trip"]  # `trips` was only an input
    frame = pd.DataFrame(rows).assign(event_timestamp=NOW)
    offline = store.get_historical_features(frame, refs).to_pandas()
    assert offline["fare_per_trip"].tolist()[0] == 4.0 and pd.isna(offline["fare_per_trip"][1])
    assert "trips" not in offline.columns
    client = TestClient(create_app(store))
    reply = client.post(
        "/get-online-features",
        json={"features": refs, "entities": {"driver_id": [1], "fare": [12.0]}},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["results"][3]["values"] == [4.0]  # driver_id, fare, city, ratio


def test_failures_are_typed_and_4xx(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo")
    with pytest.raises(OnDemandError, match="negative fare"):
        store.get_online_features(["fare_ratio:fare_per_trip"], [{"driver_id": 1, "fare": -1.0}])
    with pytest.raises(EntityFrameError, match="request field 'fare'"):
        store.get_online_features(["fare_ratio:fare_per_trip"], [{"driver_id": 1}])
    client = TestClient(create_app(store))
    reply = client.post(
        "/get-online-features",
        json={
            "features": ["fare_ratio:fare_per_trip"],
            "entities": {"driver_id": [1], "fare": [-1]},
        },
    )
    assert (reply.status_code, reply.json()["error"]["code"]) == (400, "on_demand_failed")


def test_a_changed_function_must_be_applied_first(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_store(root)
    ratio = root / "ratio.py"
    ratio.write_text(ratio.read_text().replace('row["fare"] / trips', 'row["fare"] * trips'))
    fresh = FeatureStore(root, clock=lambda: NOW)
    with pytest.raises(InvalidDefinition, match="differs from the applied one"):
        fresh.get_online_features(["fare_ratio:fare_per_trip"], [{"driver_id": 1, "fare": 1.0}])
    with pytest.raises(BreakingChange, match="fare_ratio': code_hash"):
        fresh.apply()  # training sets built before hold the old function's values
    fresh.apply(allow_breaking=True)
    changed = fresh.get_online_features(
        ["fare_ratio:fare_per_trip"], [{"driver_id": 1, "fare": 2.0}]
    )
    assert changed.values["fare_per_trip"] == [6.0]
