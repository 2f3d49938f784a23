"""Aggregated views online: tiles materialized into SQLite and Redis read back exactly the values
offline retrieval computes at the same time, for every function and window."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings

from parity import Aggregation, FeatureStore
from parity.aggregation.tiles import cover, levels
from tests.offline.test_windows import US, same, streams, velocity_view

KINDS = ["sqlite", pytest.param("redis", marks=pytest.mark.redis)]


def test_cover_uses_the_largest_aligned_tiles() -> None:
    hour, day = 3_600_000_000, 86_400_000_000
    pieces = cover(22 * hour, 2 * day + 3 * hour, [hour, day])
    assert [(p.size_us, p.start_us) for p in pieces] == [
        (hour, 22 * hour),
        (hour, 23 * hour),
        (day, day),
        (hour, 2 * day),
        (hour, 2 * day + hour),
        (hour, 2 * day + 2 * hour),
    ]
    view = velocity_view(
        [Aggregation(column="amount", function="sum", window=timedelta(days=30))],
        timedelta(hours=1),
    )
    assert levels(view) == (hour, day)


def write_defs(root: Path, s: dict[str, Any], online: str) -> None:
    lines = ",\n    ".join(
        f"Aggregation(column={a.column!r}, function={a.function!r}, "
        f"window=timedelta(microseconds={a.window_us}), n={a.n!r}, name={a.name!r})"
        for a in s["aggregations"]
    )
    (root / "parity.yaml").write_text(f"project: w{uuid.uuid4().hex[:10]}\n{online}")
    (root / "defs.py").write_text(
        "from datetime import timedelta\n"
        "from parity import Aggregation, Entity, FeatureView, Field, FileSource, Float64, String\n"
        "account = Entity(name='account', join_keys=['account_id'])\n"
        "velocity = FeatureView(name='velocity', entities=[account],\n"
        "    schema=[Field(name='amount', dtype=Float64), Field(name='device', dtype=String)],\n"
        "    source=FileSource(path='events', timestamp_field='ts'),\n"
        f"    tile_interval=timedelta(microseconds={int(s['tile'].total_seconds() * 1e6)}),\n"
        f"    aggregations=[\n    {lines}])\n"
    )


def assert_online_equals_offline(
    store: FeatureStore, aggregations: list[Aggregation], t: datetime
) -> None:
    refs = [f"velocity:{a.name}" for a in aggregations]
    keys = [1, 2, 3, 4]
    online = store.get_online_features(refs, {"account_id": keys})
    frame = pd.DataFrame({"account_id": keys, "event_timestamp": [t] * len(keys)})
    offline = store.get_historical_features(frame, refs).to_pandas()
    for a in aggregations:
        got, want = online.values[a.name], offline[a.name].tolist()
        assert all(same(w, g) for w, g in zip(want, got, strict=True)), (a.name, t, got, want)


@pytest.fixture(params=KINDS)
def online_config(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        yield ""
        return
    url = request.getfixturevalue("redis_url")
    yield f"online:\n  type: redis\n  connection_string: {url}\n"


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(s=streams())
def test_online_windows_equal_offline_windows(online_config: str, s: dict[str, Any]) -> None:
    """For each time t of the entity rows (in order): materialize up to t on a clock at t, then
    the online read at t equals offline retrieval at t."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_defs(root, s, online_config)
        (root / "events").mkdir()
        events = pa.table(
            {
                "account_id": pa.array([e["account_id"] for e in s["events"]], pa.int64()),
                "ts": pa.array([e["ts"] for e in s["events"]], US),
                "amount": pa.array([e["amount"] for e in s["events"]], pa.float64()),
                "device": pa.array([e["device"] for e in s["events"]], pa.string()),
            }
        )
        pq.write_table(events, root / "events" / "part-0.parquet")
        clock = [datetime(2026, 1, 1, tzinfo=UTC)]
        store = FeatureStore(root, clock=lambda: clock[0])
        try:
            store.apply()
            for t in sorted({moment for _, moment in s["rows"]}):
                clock[0] = t
                store.materialize_incremental(t)
                assert_online_equals_offline(store, s["aggregations"], t)
        finally:
            store.online_store.delete_view(store.project, "velocity")
            store.close()


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(s=streams())
def test_streamed_windows_equal_offline_windows(
    online_config: str, redis_url: str, s: dict[str, Any]
) -> None:
    """The streaming path: ingest exactly the events with time <= t (in a shuffled order), then
    the online read at t equals offline retrieval at t over the files the worker wrote."""
    import random
    import tempfile

    import redis as redis_client

    from parity.ingest.stream import StreamWorker, publish

    stream = f"parity:test:{uuid.uuid4().hex}"
    client = redis_client.Redis.from_url(redis_url)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_defs(root, s, online_config)
        defs = (root / "defs.py").read_text()
        defs = defs.replace(
            "source=FileSource(path='events', timestamp_field='ts')",
            "source=StreamSource(name='events', stream="
            f"{stream!r}, lateness=timedelta(days=3650), "
            "batch_source=FileSource(path='events/', timestamp_field='ts'))",
        ).replace("FileSource, Float64", "FileSource, Float64, StreamSource")
        (root / "defs.py").write_text(defs)
        clock = [datetime(2026, 1, 1, tzinfo=UTC)]
        store = FeatureStore(root, clock=lambda: clock[0])
        try:
            store.apply()
            source = store.get_feature_view("velocity").source
            worker = StreamWorker(store, "events", batch_size=4, block_ms=1, client=client)
            sent = 0
            events = sorted(s["events"], key=lambda e: e["ts"])
            for t in sorted({moment for _, moment in s["rows"]}):
                clock[0] = t
                due = [e for e in events[sent:] if e["ts"] <= t]
                sent += len(due)
                random.Random(len(due)).shuffle(due)
                if due:
                    publish(client, source, [{**e} for e in due], project=store.project)  # type: ignore[arg-type]
                while worker.run_once():
                    pass
                if not sent:
                    continue  # nothing offline yet: no files to read
                # last/last_n: ties rank by stream id online, by file order offline.
                compared = [a for a in s["aggregations"] if a.function not in ("last", "last_n")]
                assert_online_equals_offline(store, compared, t)
        finally:
            store.online_store.delete_view(store.project, "velocity")
            store.close()
            client.delete(stream)
            for key in client.scan_iter(match=f"parity:v1:{store.project}:*", count=1000):
                client.delete(key)  # the worker's marker lives in Redis when the store does
            client.close()


NAN = float("nan")
T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def test_nan_amounts_online_equal_offline(tmp_path: Path, online_config: str) -> None:
    """NaN in an aggregated column, each event in a tile of its own (so partials are decoded
    and merged): online reads what DuckDB computes offline. NaN is one distinct value (decoded
    NaNs are new objects and NaN != NaN), the largest in min and max."""
    # stddev is left out: of a lone NaN, DuckDB's window function answers NaN where its
    # aggregate (and the online read) answer null, a difference of DuckDB's own.
    aggregations = [
        Aggregation(column="amount", function=f, window=timedelta(hours=1), name=f"a_{f}")
        for f in ("count", "sum", "min", "max", "mean", "last", "count_distinct")
    ]
    s = {"aggregations": aggregations, "tile": timedelta(minutes=1)}
    write_defs(tmp_path, s, online_config)
    (tmp_path / "events").mkdir()
    rows = [  # account: amounts, one event a minute (each in a tile of its own)
        (1, [NAN, NAN, 1.0, NAN]),
        (2, [2.0, NAN, 1.0]),
        (3, [NAN]),
        (4, [3.0, 1.0, NAN, NAN, 2.0]),
    ]
    ids, times, amounts = [], [], []
    for account, values in rows:
        for i, value in enumerate(values):
            ids.append(account)
            times.append(T0 + timedelta(minutes=i))
            amounts.append(value)
    pq.write_table(
        pa.table(
            {
                "account_id": pa.array(ids, pa.int64()),
                "ts": pa.array(times, US),
                "amount": pa.array(amounts, pa.float64()),
                "device": pa.array(["d"] * len(ids), pa.string()),
            }
        ),
        tmp_path / "events" / "part-0.parquet",
    )
    t = T0 + timedelta(minutes=10)
    store = FeatureStore(tmp_path, clock=lambda: t)
    try:
        store.apply()
        store.materialize(T0 - timedelta(days=1), t)
        refs = [f"velocity:{a.name}" for a in aggregations]
        keys = [1, 2, 3, 4]
        online = store.get_online_features(refs, {"account_id": keys}).values
        frame = pd.DataFrame({"account_id": keys, "event_timestamp": [t] * 4})
        offline = store.get_historical_features(frame, refs).to_pandas()
        for a in aggregations:
            got, want = online[a.name], offline[a.name].tolist()
            for g, w in zip(got, want, strict=True):
                both_nan = all(isinstance(v, float) and math.isnan(v) for v in (g, w))
                assert both_nan or g == w, (a.name, got, want)
    finally:
        store.online_store.delete_view(store.project, "velocity")
        store.close()
