"""Events after the read time never count online, as offline (issue 12, item 2), and the clock-skew
policy `ingest.max_future_skew`: a push of events stamped further ahead is refused, a stream
worker drops and counts them."""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity import FeatureStore
from parity.errors import FutureEventError
from tests.offline.test_windows import same

T = datetime(2026, 3, 1, 10, 0, 10, tzinfo=UTC)  # inside the 1-minute tile [10:00, 10:01)
KINDS = ["sqlite", pytest.param("redis", marks=pytest.mark.redis)]
FUNCTIONS = ["count", "sum", "mean", "min", "max", "stddev", "last", "count_distinct"]

DEFS = """
from datetime import timedelta
from parity import (Aggregation, Entity, FeatureView, Field, FileSource, Float64, PushSource,
    StreamSource)
account = Entity(name="account", join_keys=["account_id"])
SOURCE
velocity = FeatureView(
    name="velocity",
    entities=[account],
    schema=[Field(name="amount", dtype=Float64)],
    source=events,
    tile_interval=timedelta(minutes=1),
    aggregations=[
        Aggregation(column="amount", function="count", window=timedelta(minutes=5), name="n5"),
        Aggregation(column="amount", function="count", window=timedelta(hours=1), name="n1h"),
        FUNCTIONS
    ],
)
"""
PUSH = "events = PushSource(name='events', batch_source=FileSource(path='events/'))"


def write_repo(root: Path, online: str, source: str = PUSH, extra: str = "") -> None:
    functions = "".join(
        f"Aggregation(column='amount', function={f!r}, window=timedelta(minutes=3), "
        f"name='f_{f}'),\n        "
        for f in FUNCTIONS
    )
    (root / "parity.yaml").write_text(f"project: f{uuid.uuid4().hex[:10]}\n{online}{extra}")
    (root / "defs.py").write_text(DEFS.replace("SOURCE", source).replace("FUNCTIONS", functions))


@pytest.fixture(params=KINDS)
def online_config(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        yield ""
        return
    url = request.getfixturevalue("redis_url")
    yield f"online:\n  type: redis\n  connection_string: {url}\n"


def events(moments: list[datetime], amounts: list[float] | None = None) -> dict[str, list[Any]]:
    return {
        "account_id": [1] * len(moments),
        "event_timestamp": moments,
        "amount": amounts or [1.0] * len(moments),
    }


def offline_at(store: FeatureStore, refs: list[str], t: datetime) -> pd.DataFrame:
    frame = pd.DataFrame({"account_id": [1], "event_timestamp": [t]})
    return store.get_historical_features(frame, refs).to_pandas()


def test_an_event_after_t_in_ts_own_tile_counts_neither_online_nor_offline(
    tmp_path: Path, online_config: str
) -> None:
    write_repo(tmp_path, online_config)
    clock = [T]
    store = FeatureStore(tmp_path, clock=lambda: clock[0])
    try:
        store.apply()
        store.push("events", events([T - timedelta(seconds=30), T + timedelta(seconds=30)]), "both")
        online = store.get_online_features(["velocity:n5"], {"account_id": [1]})
        assert online.values["n5"] == [1]  # was 2: the event at t + 30 s shares t's tile
        assert offline_at(store, ["velocity:n5"], T)["n5"].tolist() == [1]
        clock[0] = T + timedelta(seconds=31)  # once t + 30 s has passed, it counts on both
        online = store.get_online_features(["velocity:n5"], {"account_id": [1]})
        assert online.values["n5"] == [2]
        assert offline_at(store, ["velocity:n5"], clock[0])["n5"].tolist() == [2]
    finally:
        store.online_store.delete_view(store.project, "velocity")
        store.close()


def test_materializing_past_now_keeps_future_events_out_until_due(tmp_path: Path) -> None:
    write_repo(tmp_path, "")
    clock = [T]
    store = FeatureStore(tmp_path, clock=lambda: clock[0])
    try:
        store.apply()
        store.push(
            "events", events([T - timedelta(seconds=5), T + timedelta(seconds=5)]), "offline"
        )
        store.materialize(T - timedelta(hours=1), T + timedelta(minutes=1))
        assert store.get_online_features(["velocity:n5"], {"account_id": [1]}).values["n5"] == [1]
        clock[0] = T + timedelta(seconds=5)
        assert store.get_online_features(["velocity:n5"], {"account_id": [1]}).values["n5"] == [2]
        # materializing again after the push-to-online of the same event does not count it twice
        store.materialize(T - timedelta(hours=1), T + timedelta(minutes=1))
        assert store.get_online_features(["velocity:n5"], {"account_id": [1]}).values["n5"] == [2]
    finally:
        store.close()


def test_a_push_beyond_max_future_skew_is_refused_naming_the_row(tmp_path: Path) -> None:
    write_repo(tmp_path, "")
    store = FeatureStore(tmp_path, clock=lambda: T)
    try:
        store.apply()
        far = datetime(9999, 1, 1, tzinfo=UTC)
        with pytest.raises(FutureEventError) as failure:
            store.push("events", events([T, far]), "both")
        message = str(failure.value)
        assert "row 1" in message and "9999-01-01" in message and "max_future_skew" in message
        assert failure.value.code == "event_too_far_in_future"
        assert not list((tmp_path / "events").glob("*.parquet"))  # nothing was written
        assert store.get_online_features(["velocity:n5"], {"account_id": [1]}).values["n5"] == [
            None
        ]
        # The default skew is 5 minutes: 4 minutes ahead is accepted, 6 minutes refused.
        store.push("events", events([T + timedelta(minutes=4)]), "both")
        with pytest.raises(FutureEventError):
            store.push("events", events([T + timedelta(minutes=6)]), "both")
    finally:
        store.close()


def test_max_future_skew_is_a_setting(tmp_path: Path) -> None:
    write_repo(tmp_path, "", extra="ingest:\n  max_future_skew: 60\n")
    store = FeatureStore(tmp_path, clock=lambda: T)
    try:
        store.apply()
        assert store.config.ingest.max_future_skew == timedelta(seconds=60)
        store.push("events", events([T + timedelta(seconds=59)]), "online")
        with pytest.raises(FutureEventError):
            store.push("events", events([T + timedelta(seconds=61)]), "online")
    finally:
        store.close()


def test_push_over_http_answers_400_for_a_timestamp_in_9999(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from parity.serving.app import create_app

    write_repo(tmp_path, "")
    store = FeatureStore(tmp_path, clock=lambda: T)
    store.apply()
    client = TestClient(create_app(store, enable_push=True))
    body = {
        "push_source_name": "events",
        "df": {
            "account_id": [1, 1],
            "event_timestamp": ["2026-03-01T10:00:00Z", "9999-12-31T00:00:00Z"],
            "amount": [1.0, 2.0],
        },
        "to": "both",
    }
    reply = client.post("/push", json=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "event_too_far_in_future" and "row 1" in error["message"]
    store.close()


@pytest.mark.redis
def test_a_stream_worker_drops_and_counts_events_beyond_the_skew(
    tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import redis as redis_client

    from parity.ingest.stream import StreamWorker, publish

    stream = f"parity:test:{uuid.uuid4().hex}"
    source = (
        f"events = StreamSource(name='events', stream={stream!r}, "
        "batch_source=FileSource(path='events/'))"
    )
    write_repo(tmp_path, "", source=source)
    client = redis_client.Redis.from_url(redis_url)
    store = FeatureStore(tmp_path, clock=lambda: T)
    try:
        store.apply()
        worker = StreamWorker(store, "events", batch_size=10, block_ms=1, client=client)
        rows = [
            {"account_id": 1, "event_timestamp": T - timedelta(seconds=1), "amount": 1.0},
            {"account_id": 1, "event_timestamp": T + timedelta(days=1), "amount": 2.0},
        ]
        publish(client, store.get_feature_view("velocity").source, rows, project=store.project)  # type: ignore[arg-type]
        with caplog.at_level(logging.WARNING, logger="parity.ingest.stream"):
            while worker.run_once():
                pass
        assert worker.stats.applied == 1
        assert worker.stats.future == 1 and worker.stats.by_reason["future"] == 1
        assert any("max_future_skew" in r.getMessage() for r in caplog.records)
        assert store.get_online_features(["velocity:n5"], {"account_id": [1]}).values["n5"] == [1]
        files = list((tmp_path / "events").glob("*.parquet"))
        assert sum(pq.read_table(f).num_rows for f in files) == 1  # the dropped one is not kept
    finally:
        store.close()
        client.delete(stream)
        client.close()


# Events within the skew around t: on the minute's edges, a microsecond either side of t, and
# repeats; reads at t and at later times.
OFFSETS_US = st.one_of(
    st.integers(-240_000_000, 240_000_000),
    st.sampled_from([0, 1, -1, 50_000_000, -10_000_000, 49_999_999, 50_000_001]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    offsets=st.lists(OFFSETS_US, max_size=12),
    amounts=st.lists(st.one_of(st.none(), st.integers(-3, 3).map(float)), min_size=12),
    later_us=st.lists(st.sampled_from([0, 1, 49_999_999, 50_000_000, 120_000_000]), max_size=3),
)
def test_online_windows_around_t_equal_offline_windows(
    online_config: str, offsets: list[int], amounts: list[float | None], later_us: list[int]
) -> None:
    """Push events around t (before and after it, within the skew) on a clock at t, then read at
    t and at later times: online equals offline retrieval at each time, for every function."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_repo(root, online_config)
        clock = [T]
        store = FeatureStore(root, clock=lambda: clock[0])
        refs = ["velocity:n5", "velocity:n1h", *(f"velocity:f_{f}" for f in FUNCTIONS)]
        try:
            store.apply()
            moments = [T + timedelta(microseconds=o) for o in offsets]
            if moments:
                store.push("events", events(moments, amounts[: len(moments)]), "both")
            for later in [0, *sorted(later_us)]:
                clock[0] = T + timedelta(microseconds=later)
                online = store.get_online_features(refs, {"account_id": [1]})
                if not moments:
                    continue  # no files offline to compare with
                offline = offline_at(store, refs, clock[0])
                for ref in refs:
                    name = ref.split(":")[1]
                    got, want = online.values[name][0], offline[name].tolist()[0]
                    assert same(want, got), (name, later, got, want)
        finally:
            store.online_store.delete_view(store.project, "velocity")
            store.close()


def test_tiles_hold_events_up_to_the_writers_clock_and_the_rest_wait_pending() -> None:
    from parity.aggregation.tiles import fold_events, window_values
    from parity.definitions import Aggregation
    from parity.online.encoding import PENDING
    from parity.timeutil import to_micros
    from tests.offline.test_windows import velocity_view

    count = Aggregation(column="amount", function="count", window=timedelta(minutes=5), name="n")
    view = velocity_view([count], timedelta(minutes=1))
    t = to_micros(T)
    moments = [t - 1, t, t + 1, t + 2]
    tiles = fold_events(view, [b"k"] * 4, moments, [0, 1, 2, 3], {"amount": [1.0] * 4}, now_us=t)
    entity = tiles[b"k"]
    assert [e[0] for e in entity[PENDING]["events"]] == [t + 1, t + 2]
    assert sum(tile.get("n", 0) for name, tile in entity.items() if name.startswith("60")) == 2
    assert [window_values(view, ["n"], entity, at) for at in (t, t + 1, t + 2)] == [[2], [3], [4]]
    assert window_values(view, ["n"], {}, t) is None  # never seen
    only_future = fold_events(view, [b"f"], [t + 5], [0], {"amount": [None]}, now_us=t)[b"f"]
    assert window_values(view, ["n"], only_future, t) is None  # seen only after t: not yet
    assert window_values(view, ["n"], only_future, t + 5) == [0]  # seen (a null amount): 0
