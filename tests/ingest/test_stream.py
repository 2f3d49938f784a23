"""Streaming ingestion from Redis Streams: online equals offline, late and bad messages are counted
and dropped, and a worker SIGKILLed mid-batch and restarted applies every event exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import redis

from parity import FeatureStore
from parity.ingest.stream import StreamWorker, publish
from parity.online.cluster_router import cluster_client
from tests.conftest import write_repo

pytestmark = pytest.mark.redis
REFS = [
    "velocity:amount_count_5m",
    "velocity:amount_sum_1h",
    "velocity:device_count_distinct_10m",
    "velocity:amount_last2_1h",
    "velocity:amount_stddev_1h",
]


def repo_files(stream: str) -> dict[str, str]:
    return {
        "defs.py": f"""
            from datetime import timedelta
            from parity import (Aggregation, Entity, FeatureView, Field, FileSource, Float64,
                                Int64, StreamSource)

            account = Entity(name="account", join_keys=["account_id"])
            txns = StreamSource(
                name="txns", stream="{stream}", lateness=timedelta(hours=1),
                batch_source=FileSource(path="data/txns/"),
            )
            velocity = FeatureView(
                name="velocity", entities=[account],
                schema=[Field(name="amount", dtype=Float64), Field(name="device", dtype=Int64)],
                source=txns, tile_interval=timedelta(minutes=1),
                aggregations=[
                    Aggregation(column="amount", function="count", window=timedelta(minutes=5)),
                    Aggregation(column="amount", function="sum", window=timedelta(hours=1)),
                    Aggregation(column="device", function="count_distinct",
                                window=timedelta(minutes=10)),
                    Aggregation(column="amount", function="last_n", n=2, window=timedelta(hours=1)),
                    Aggregation(column="amount", function="stddev", window=timedelta(hours=1)),
                ],
            )
        """
    }


@pytest.fixture(params=["sqlite", "redis", "redis_cluster"])
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str
) -> Iterator[dict[str, Any]]:
    stream = f"parity:test:{uuid.uuid4().hex}"
    project = f"s{uuid.uuid4().hex[:10]}"
    extra = ""
    if request.param == "redis":
        extra = f"online:\n  type: redis\n  connection_string: {redis_url}\n"
    if request.param == "redis_cluster":  # the stream and the tiles on a six-node cluster
        url = request.getfixturevalue("redis_cluster_url")
        extra = f"online:\n  type: redis_cluster\n  connection_string: '{url}'\n"
    root = write_repo(tmp_path / "repo", repo_files(stream), project=project, extra=extra)
    if request.param == "redis_cluster":
        client = cluster_client(url)
    else:
        client = redis.Redis.from_url(redis_url)
    yield {"root": root, "client": client, "stream": stream, "project": project}
    client.delete(stream)
    for key in client.scan_iter(match=f"parity:v1:{project}:*", count=1000):
        client.delete(key)
    client.close()


def events(now: datetime, count: int) -> list[dict[str, Any]]:
    """Seeded events over the 40 minutes before `now`, some at equal times."""
    import random

    rng = random.Random(count)
    return [
        {
            "account_id": rng.randint(1, 3),
            "event_timestamp": now - timedelta(seconds=rng.randrange(0, 2_400, 30)),
            "amount": float(rng.randint(1, 50)),
            "device": rng.randint(1, 4),
        }
        for _ in range(count)
    ]


def compare_online_offline(store: FeatureStore, now: datetime) -> dict[str, list[Any]]:
    accounts = [1, 2, 3, 4]
    online = store.get_online_features(REFS, {"account_id": accounts})
    frame = pd.DataFrame({"account_id": accounts, "event_timestamp": [now] * 4})
    offline = store.get_historical_features(frame, REFS).to_pandas()
    for ref in REFS:
        name = ref.split(":")[1]
        want = offline[name].tolist()
        got = online.values[name]
        for w, g in zip(want, got, strict=True):
            if isinstance(g, float):
                assert w == pytest.approx(g, rel=1e-9), name
            elif isinstance(g, list):
                assert list(w) == g, name
            else:
                assert (None if pd.isna(w) else w) == g, name
    return online.values


def test_streamed_events_read_the_same_online_and_offline(setup: dict[str, Any]) -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    store = FeatureStore(setup["root"], clock=lambda: now)
    store.apply()
    sent = events(now, 60)
    source = store.get_feature_view("velocity").source
    publish(setup["client"], source, sent, project=store.project)  # type: ignore[arg-type]
    worker = StreamWorker(store, "txns", batch_size=7, block_ms=1, client=setup["client"])
    while worker.run_once():
        pass
    assert worker.stats.applied == 60 and worker.stats.batches == 9
    values = compare_online_offline(store, now)
    expected = [
        sum(
            1
            for e in sent
            if e["account_id"] == a and e["event_timestamp"] >= now - timedelta(minutes=4)
        )
        for a in (1, 2, 3)
    ]
    # tile 1 min: the 5-min window starts 4 min back; account 4 has no events (NOT_FOUND)
    assert values["amount_count_5m"] == [*expected, None]


def test_late_and_undecodable_messages_are_counted_and_dropped(setup: dict[str, Any]) -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    store = FeatureStore(setup["root"], clock=lambda: now)
    store.apply()
    source = store.get_feature_view("velocity").source
    good = {"account_id": 1, "event_timestamp": now, "amount": 5.0, "device": 1}
    late = {**good, "event_timestamp": now - timedelta(hours=2)}
    wrong_type = {**good, "account_id": "not-an-int"}
    publish(setup["client"], source, [good, late, wrong_type], project=store.project)  # type: ignore[arg-type]
    setup["client"].xadd(setup["stream"], {b"e": b"\xc1 not msgpack"})
    worker = StreamWorker(store, "txns", block_ms=1, client=setup["client"])
    while worker.run_once():
        pass
    assert (worker.stats.applied, worker.stats.late, worker.stats.invalid) == (1, 1, 2)
    # only account 1's good event was applied; the others were never seen (NOT_FOUND, null)
    assert compare_online_offline(store, now)["amount_count_5m"] == [1, None, None, None]


def run_worker(root: Path, crash: str | None) -> int:
    env = {**os.environ}
    env.pop("PARITY_INGEST_CRASH", None)
    if crash:
        env["PARITY_INGEST_CRASH"] = crash
    command = [sys.executable, "-m", "parity.cli.main", "ingest", "--source", "txns"]
    command += ["--repo", str(root), "--batch-size", "5", "--until-idle", "--consumer", "c1"]
    return subprocess.run(command, env=env, capture_output=True, timeout=120).returncode


def assert_every_event_applied_once(
    setup: dict[str, Any], store: FeatureStore, now: datetime, sent: list[dict[str, Any]]
) -> None:
    files = sorted((setup["root"] / "data" / "txns").glob("*.parquet"))
    assert sum(pq.read_metadata(f).num_rows for f in files) == len(sent)  # offline: none twice
    values = compare_online_offline(store, now)
    sums = [sum(e["amount"] for e in sent if e["account_id"] == a) for a in (1, 2, 3)]
    assert values["amount_sum_1h"][:3] == pytest.approx(sums)  # online: every event once
    assert values["amount_sum_1h"][3] is None  # account 4 has no events: NOT_FOUND
    pending = setup["client"].xpending(setup["stream"], f"parity:{setup['project']}")
    assert pending["pending"] == 0


# On the cluster only the crash after the tiles were merged (CI budget): after_offline crashes
# before the online store is touched, so it tests nothing the cluster changes.
CRASHES = [
    pytest.param(kind, crash, id=f"{kind}-{crash}")
    for kind in ("sqlite", "redis", "redis_cluster")
    for crash in ("after_offline", "before_ack")
    if (kind, crash) != ("redis_cluster", "after_offline")
]


@pytest.mark.parametrize(("setup", "crash"), CRASHES, indirect=["setup"])
def test_a_worker_killed_mid_batch_applies_every_event_once(
    setup: dict[str, Any], crash: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    store = FeatureStore(setup["root"], clock=lambda: now)
    store.apply()
    sent = events(now, 23)
    publish(setup["client"], store.get_feature_view("velocity").source, sent, project=store.project)  # type: ignore[arg-type]
    assert run_worker(setup["root"], crash) == -9  # SIGKILLed at the crash point of batch 1
    assert run_worker(setup["root"], None) == 0
    assert_every_event_applied_once(setup, store, now, sent)


@pytest.mark.parametrize(("setup", "crash"), CRASHES, indirect=["setup"])
def test_a_dead_consumers_pending_batch_is_claimed_and_applied_once(
    setup: dict[str, Any], crash: str
) -> None:
    """The killed worker never comes back: one under another name claims its pending batch."""
    now = datetime.now(UTC).replace(microsecond=0)
    store = FeatureStore(setup["root"], clock=lambda: now)
    store.apply()
    sent = events(now, 12)
    publish(setup["client"], store.get_feature_view("velocity").source, sent, project=store.project)  # type: ignore[arg-type]
    assert run_worker(setup["root"], crash) == -9  # consumer c1 dies holding batch 1
    worker = StreamWorker(
        store, "txns", consumer="c2", claim_idle_ms=0, block_ms=1, client=setup["client"]
    )
    while worker.run_once():
        pass
    assert worker.stats.applied == (12 if crash == "after_offline" else 7)
    assert worker.stats.replayed == 0
    assert_every_event_applied_once(setup, store, now, sent)


def test_an_awkward_batch_reads_the_same_online_and_offline(setup: dict[str, Any]) -> None:
    """The batch path (times cast per column, lateness checked on the column) and the row path
    it falls back to agree with the offline computation: NaN and null values, a missing
    column, ties, out-of-order, late and future events, and times of the wrong kind."""
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    store = FeatureStore(setup["root"], clock=lambda: now)
    store.apply()
    source = store.get_feature_view("velocity").source

    def at(minutes: float, account: int = 1, amount: Any = 2.0, **extra: Any) -> dict[str, Any]:
        moment = now - timedelta(minutes=minutes)
        row = {"account_id": account, "event_timestamp": moment, "amount": amount, "device": 1}
        return row | extra

    batches = [
        # all times as published (µs): the batch path
        [at(3, device=1), at(1, 2, 5.0, device=2), at(3, amount=float("nan"), device=1)],
        [at(0.5, amount=None, device=3), at(3, 3, 7.5), at(9, device=2), at(3, device=1)],
        [at(90, device=1), at(-1, device=4), at(-20, device=4), at(2, 2, 1.0, device=2)],
        # a time of another kind: the row path for the whole batch
        [at(2, 2, 4.0, device=1) | {"event_timestamp": (now - timedelta(minutes=2)).isoformat()}],
        [at(1) | {"event_timestamp": True}, at(1) | {"event_timestamp": 2**62}, {"account_id": 1}],
        [at(1, amount=float("inf")), at(4, 3, 1.5, device=9)],
    ]
    for batch in batches:
        publish(setup["client"], source, batch, project=store.project)  # type: ignore[arg-type]
    worker = StreamWorker(store, "txns", batch_size=4, block_ms=1, client=setup["client"])
    while worker.run_once():
        pass
    stats = worker.stats
    # late: 90 min back (lateness 1 h); future: 20 min ahead (skew 5 min); invalid: a bool, a
    # time past year 9999, no time, an infinity
    assert (stats.late, stats.future, stats.invalid) == (1, 1, 4)
    assert stats.applied == 11  # of 17
    values = compare_online_offline(store, now)
    # account 1 in the 5-min window at 12:00: the events 3, 3 (NaN: not counted), 0.5 (null
    # amount: not counted) and 3 minutes back; the event a minute ahead is pending
    assert values["amount_count_5m"][0] == 2
