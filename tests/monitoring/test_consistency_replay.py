"""Consistency replay on a real feature server: served rows logged to Parquet, replayed through
get_historical_features on DuckDB, SQLite online store; skew pushed online only is caught."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from parity import FeatureStore
from parity.errors import ConsistencyError, FeatureServiceNotFound
from parity.monitoring.consistency import ConsistencyReport
from parity.serving.app import create_app
from tests.conftest import write_repo

T = datetime(2026, 3, 2, tzinfo=UTC)  # materialized up to here; requests come after
DRIVERS = range(1, 21)
REPO = {
    "defs.py": """
        from datetime import timedelta
        from parity import (
            Entity, FeatureService, FeatureView, Field, FileSource, Float64, Int64, PushSource,
            String,
        )

        driver = Entity(name="driver", join_keys=["driver_id"])
        driver_stats = FeatureView(
            name="driver_stats", entities=[driver],
            schema=[
                Field(name="conv_rate", dtype=Float64),
                Field(name="trips", dtype=Int64),
                Field(name="city", dtype=String),
            ],
            source=FileSource(path="data/driver_stats.parquet"),
            ttl=timedelta(days=1),
        )
        live = PushSource(name="live", batch_source=FileSource(path="data/live/"))
        driver_live = FeatureView(
            name="driver_live", entities=[driver],
            schema=[Field(name="speed", dtype=Float64)], source=live,
        )
        driver_all = FeatureService(name="driver_all", features=[driver_stats, driver_live])
    """
}
YAML = "feature_server:\n  log_sample_percent: 100\n"


def stats_rows() -> pa.Table:
    """Three snapshots per driver (30, 20 and 10 hours before T); driver 5's newest conv_rate
    is NaN and driver 6's newest trips is null."""
    rows: dict[str, list[Any]] = {k: [] for k in ("driver_id", "event_timestamp", "conv_rate")}
    rows |= {"trips": [], "city": []}
    for driver in DRIVERS:
        for age in (30, 20, 10):
            rows["driver_id"].append(driver)
            rows["event_timestamp"].append(T - timedelta(hours=age))
            newest = age == 10
            rows["conv_rate"].append(math.nan if newest and driver == 5 else driver / (age + 3))
            rows["trips"].append(None if newest and driver == 6 else driver * 100 + age)
            rows["city"].append(f"c{(driver + age) % 4}")
    return pa.table(rows).cast(
        pa.schema(
            [
                ("driver_id", pa.int64()),
                ("event_timestamp", pa.timestamp("us", tz="UTC")),
                ("conv_rate", pa.float64()),
                ("trips", pa.int64()),
                ("city", pa.string()),
            ]
        )
    )


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T)


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[FeatureStore]:
    root = write_repo(tmp_path / "repo", REPO, extra=YAML)
    pq.write_table(stats_rows(), root / "data" / "driver_stats.parquet")
    feature_store = FeatureStore(root, clock=clock)
    feature_store.apply()
    feature_store.push("live", speeds(T - timedelta(hours=5), 10.0), to="both")
    feature_store.materialize(T - timedelta(days=3), T)
    yield feature_store
    feature_store.close()


def speeds(at: datetime, base: float, drivers: range = DRIVERS) -> dict[str, list[Any]]:
    return {
        "driver_id": list(drivers),
        "event_timestamp": [at] * len(drivers),
        "speed": [base + d for d in drivers],
    }


def serve(store: FeatureStore, clock: Clock, requests: list[tuple[datetime, list[int]]]) -> None:
    """Lookups of driver_all through the feature server, each at its own store time; the served
    log is written when the server shuts down."""
    with TestClient(create_app(store)) as client:
        for at, drivers in requests:
            clock.now = at
            body = {"feature_service": "driver_all", "entities": {"driver_id": drivers}}
            assert client.post("/get-online-features", json=body).status_code == 200


def check(store: FeatureStore, **window: Any) -> ConsistencyReport:
    window.setdefault("until", T + timedelta(days=1))
    return store.monitoring.consistency("driver_all", **window)


def by_feature(report: ConsistencyReport) -> dict[str, Any]:
    return {f.feature: f for f in report.features}


def test_batch_features_replay_with_zero_mismatches(store: FeatureStore, clock: Clock) -> None:
    requests = [
        (T + timedelta(minutes=10), [1, 2, 3, 99]),  # 99: unknown, null on both sides
        (T + timedelta(minutes=50), list(DRIVERS)),
        (T + timedelta(hours=1, minutes=5), [5, 6, 7]),
    ]
    serve(store, clock, requests)
    report = check(store, since=T, until=T + timedelta(hours=2))
    assert report.rows == 4 + 20 + 3
    assert report.rows_by_source == {"feature_server": 27}
    assert [f.feature for f in report.features] == ["conv_rate", "trips", "city", "speed"]
    for result in report.features:
        assert result.counts.mismatch == 0, result
        assert result.counts.total == 27
        assert result.examples == ()
    features = by_feature(report)
    # driver 99 on every feature; driver 5's NaN conv_rate twice; driver 6's null trips twice
    assert features["conv_rate"].counts.both_null == 1 + 2
    assert features["trips"].counts.both_null == 1 + 2
    assert features["speed"].counts.both_null == 1
    assert features["conv_rate"].counts.smape == 0.0
    hours = [(b.hour, b.counts.total) for b in report.buckets if b.feature == "speed"]
    assert hours == [(T, 24), (T + timedelta(hours=1), 3)]


def test_value_pushed_online_only_is_caught_with_its_example_row(
    store: FeatureStore, clock: Clock
) -> None:
    clock.now = T + timedelta(minutes=1)
    store.push("live", speeds(T, 999.0, range(7, 8)), to="online")  # offline still has 17.0
    serve(store, clock, [(T + timedelta(minutes=20), [6, 7, 8])])
    report = check(store, since=T)
    speed = by_feature(report)["speed"]
    assert (speed.counts.total, speed.counts.mismatch, speed.counts.stale) == (3, 1, 0)
    assert speed.counts.mismatch_rate == pytest.approx(1 / 3)
    # SMAPE over the 3 rows: (0 + |1006 - 17| / ((1006 + 17) / 2) + 0) / 3
    assert speed.counts.smape == pytest.approx((989 / 511.5) / 3)
    (example,) = speed.examples
    assert example.keys == {"driver_id": 7}
    assert example.at == T + timedelta(minutes=20)
    assert (example.online, example.offline, example.outcome) == (1006.0, 17.0, "value")
    assert not example.stale
    assert all(by_feature(report)[f].counts.mismatch == 0 for f in ("conv_rate", "trips", "city"))
    signals = store.monitoring.consistency_signals("driver_all", since=T, until=T + timedelta(1))
    assert signals == {
        "consistency:conv_rate": 0.0,
        "consistency:trips": 0.0,
        "consistency:city": 0.0,
        "consistency:speed": pytest.approx(1 / 3),
    }


def test_online_lagging_behind_offline_is_reported_as_stale(
    store: FeatureStore, clock: Clock
) -> None:
    # A newer row reaches the offline store only (online has not caught up yet).
    store.push("live", speeds(T - timedelta(hours=1), 50.0, range(3, 5)), to="offline")
    serve(store, clock, [(T + timedelta(minutes=5), [2, 3, 4])])
    speed = by_feature(check(store, since=T))["speed"]
    assert (speed.counts.mismatch, speed.counts.stale) == (2, 2)
    assert [(e.keys["driver_id"], e.online, e.offline, e.stale) for e in speed.examples] == [
        (3, 13.0, 53.0, True),
        (4, 14.0, 54.0, True),
    ]
    # Lag is not skew: the alert signal counts only mismatches lag does not explain.
    signals = store.monitoring.consistency_signals("driver_all", since=T, until=T + timedelta(1))
    assert signals["consistency:speed"] == 0.0


def test_online_only_null_and_offline_only_null_are_counted_apart(
    store: FeatureStore, clock: Clock
) -> None:
    # Driver 21 exists offline only (never materialized); driver 22 online only.
    store.push("live", speeds(T - timedelta(hours=2), 0.0, range(21, 22)), to="offline")
    store.push("live", speeds(T - timedelta(hours=2), 0.0, range(22, 23)), to="online")
    serve(store, clock, [(T + timedelta(minutes=5), [21, 22])])
    speed = by_feature(check(store, since=T))["speed"]
    assert speed.counts.mismatch == 2
    assert (speed.counts.online_only_null, speed.counts.offline_only_null) == (1, 1)
    outcomes = {e.keys["driver_id"]: e.outcome for e in speed.examples}
    assert outcomes == {21: "online_only_null", 22: "offline_only_null"}


def test_empty_log_says_no_rows(store: FeatureStore) -> None:
    report = check(store, since=T - timedelta(hours=1))
    assert report.rows == 0 and report.features == ()
    assert store.monitoring.consistency_signals("driver_all", since=T, until=T + timedelta(1)) == {}
    assert "no logged rows for feature service 'driver_all'" in report.message


def test_unknown_service_and_bad_window_are_typed_errors(store: FeatureStore) -> None:
    with pytest.raises(FeatureServiceNotFound, match=r"'driver_nope'.*driver_all"):
        store.monitoring.consistency("driver_nope")
    with pytest.raises(ConsistencyError, match="since"):
        check(store, since=T, until=T - timedelta(hours=1))
    with pytest.raises(ConsistencyError, match="sample_percent"):
        check(store, sample_percent=0)


def test_window_excludes_rows_outside_since_until(store: FeatureStore, clock: Clock) -> None:
    serve(
        store,
        clock,
        [(T + timedelta(minutes=5), [1]), (T + timedelta(hours=3), [1, 2])],
    )
    assert check(store, since=T, until=T + timedelta(hours=1)).rows == 1
    assert check(store, since=T + timedelta(hours=1)).rows == 2


TYPED_REPO = {
    "defs.py": """
        from parity import (
            Array, Bool, Bytes, Entity, FeatureService, FeatureView, Field, FileSource, Float32,
            Int32, String, UnixTimestamp,
        )

        user = Entity(name="user", join_keys=["user_id"], value_type=String)
        typed = FeatureView(
            name="typed", entities=[user],
            schema=[
                Field(name="user_id", dtype=String),
                Field(name="tags", dtype=Array(String)),
                Field(name="embedding", dtype=Array(Float32)),
                Field(name="seen", dtype=UnixTimestamp),
                Field(name="raw", dtype=Bytes),
                Field(name="flag", dtype=Bool),
                Field(name="small", dtype=Int32),
                Field(name="ratio", dtype=Float32),
            ],
            source=FileSource(path="data/typed.parquet"),
        )
        typed_service = FeatureService(name="typed_service", features=[typed])
    """
}


def test_every_dtype_replays_equal_through_the_log(tmp_path: Path, clock: Clock) -> None:
    root = write_repo(tmp_path / "typed", TYPED_REPO, extra=YAML)
    table = pa.table(
        {
            "user_id": ["a", "b", "c"],
            "event_timestamp": pa.array([T - timedelta(hours=1)] * 3, pa.timestamp("us", "UTC")),
            "tags": pa.array([["x", "y"], [], None], pa.list_(pa.string())),
            "embedding": pa.array([[0.1, 0.2], [1e-8], [math.nan]], pa.list_(pa.float32())),
            "seen": pa.array([T - timedelta(days=3), None, T], pa.timestamp("us", "UTC")),
            "raw": pa.array([b"\x00\xff", b"", None], pa.binary()),
            "flag": [True, False, None],
            "small": pa.array([1, -(2**31), None], pa.int32()),
            "ratio": pa.array([0.1, 1e30, None], pa.float32()),
        }
    )
    pq.write_table(table, root / "data" / "typed.parquet")
    store = FeatureStore(root, clock=clock)
    store.apply()
    store.materialize(T - timedelta(days=3), T)
    with TestClient(create_app(store)) as client:
        clock.now = T + timedelta(minutes=1)
        body = {"feature_service": "typed_service", "entities": {"user_id": ["a", "b", "c", "z"]}}
        assert client.post("/get-online-features", json=body).status_code == 200
    report = store.monitoring.consistency("typed_service", until=T + timedelta(hours=1))
    assert report.rows == 4
    assert {f.feature: f.counts.mismatch for f in report.features} == {
        "tags": 0,
        "embedding": 0,
        "seen": 0,
        "raw": 0,
        "flag": 0,
        "small": 0,
        "ratio": 0,
    }, [f.examples for f in report.features if f.examples]
    assert {f.feature: f.counts.both_null for f in report.features}["raw"] == 2
    store.close()


ON_DEMAND = """
    from parity import FeatureService, Field, Float64, RequestSource, on_demand_feature_view
    from defs import driver_live

    trip = RequestSource(name="trip", schema=[Field(name="limit", dtype=Float64)])

    @on_demand_feature_view(
        sources=[driver_live, trip], schema=[Field(name="over_limit", dtype=Float64)]
    )
    def speeding(row):
        return {"over_limit": row["speed"] / row["limit"] if row["limit"] else None}

    driver_od = FeatureService(name="driver_od", features=[speeding])
"""


def test_on_demand_features_replay_with_their_request_fields(tmp_path: Path, clock: Clock) -> None:
    root = write_repo(tmp_path / "od", {**REPO, "od.py": ON_DEMAND}, extra=YAML)
    pq.write_table(stats_rows(), root / "data" / "driver_stats.parquet")
    store = FeatureStore(root, clock=clock)
    store.apply()
    store.push("live", speeds(T - timedelta(hours=5), 10.0), to="both")
    with TestClient(create_app(store)) as client:
        clock.now = T + timedelta(minutes=1)
        entities = {"driver_id": [1, 2, 3], "limit": [22.0, 0.0, 3.0]}
        body = {"feature_service": "driver_od", "entities": entities}
        assert client.post("/get-online-features", json=body).status_code == 200
    report = store.monitoring.consistency("driver_od", until=T + timedelta(hours=1))
    (result,) = report.features  # speed is read only as the function's input: not served
    assert (result.feature, result.counts.total, result.counts.mismatch) == ("over_limit", 3, 0)
    assert result.counts.both_null == 1  # limit 0 -> None on both sides
    store.close()
