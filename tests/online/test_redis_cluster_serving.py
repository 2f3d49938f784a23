"""The feature server and materialization on Redis Cluster: over real HTTP, a master down makes
reads of its slots a 503 naming the slot range while entities in other slots keep answering; and
materializing (DuckDB) into the cluster reads exactly as materializing into one Redis."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity import FeatureStore
from parity.online.cluster_router import key_slot
from parity.online.encoding import entity_key
from parity.online.redis_store import redis_key
from parity.serving.app import create_app
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import running
from tests.redis_cluster import LocalRedisCluster, local_redis_cluster

pytestmark = pytest.mark.redis
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
DRIVERS = list(range(1, 41))


@pytest.fixture
def masters_only() -> Iterator[LocalRedisCluster]:
    """Three masters, no replicas, and slots of a dead master left uncovered without taking the
    cluster down (cluster-require-full-coverage no): a node down stays down."""
    with local_redis_cluster(replicas=0, options=("--cluster-require-full-coverage", "no")) as c:
        yield c


def post(address: str, drivers: list[int]) -> tuple[int, Any]:
    body = {"features": ["driver_stats:trips"], "entities": {"driver_id": drivers}}
    request = urllib.request.Request(
        f"http://{address}/get-online-features",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_a_master_down_answers_503_naming_its_slots_and_other_entities_still_answer(
    tmp_path: Path, masters_only: LocalRedisCluster
) -> None:
    project = f"h{uuid.uuid4().hex[:8]}"
    online = f"online: {{type: redis_cluster, connection_string: '{masters_only.url}'}}\n"
    root = write_repo(tmp_path / "repo", DRIVER_REPO, project=project, extra=online)
    stamp = pa.timestamp("us", tz="UTC")
    pq.write_table(
        pa.table(
            {
                "driver_id": pa.array(DRIVERS, pa.int64()),
                "event_timestamp": pa.array([NOW - timedelta(hours=1)] * len(DRIVERS), stamp),
                "conv_rate": pa.array([0.5] * len(DRIVERS)),
                "trips": pa.array([10 * d for d in DRIVERS], pa.int64()),
                "city": pa.array(["x"] * len(DRIVERS)),
            }
        ),
        root / "data" / "driver_stats.parquet",
    )
    store = FeatureStore(root, clock=lambda: NOW)
    store.apply()
    store.materialize(NOW - timedelta(days=1), NOW)
    victim = masters_only.masters()[0]
    low, high = masters_only.slots_of(victim)[0]

    def served_by_victim(driver: int) -> bool:
        return low <= key_slot(redis_key(project, entity_key(["driver_id"], [driver]))) <= high

    lost = [d for d in DRIVERS if served_by_victim(d)]
    kept = [d for d in DRIVERS if not served_by_victim(d)]
    assert lost and kept
    with running(create_app(store)) as address:
        status, body = post(address, DRIVERS)
        assert status == 200 and body["results"][1]["values"] == [10 * d for d in DRIVERS]
        masters_only.kill(victim)
        for _ in range(6):  # refused connections, then (breaker open: 5 failures) refused at once
            status, body = post(address, [kept[0], lost[0]])
            assert status == 503
            message = body["error"]["message"]
            assert f"Redis Cluster slots {low}-{high} (127.0.0.1:{victim})" in message
        status, body = post(address, kept)
        assert status == 200
        assert body["results"][1]["values"] == [10 * d for d in kept]
        assert body["results"][1]["statuses"] == ["PRESENT"] * len(kept)
        # /metrics names each node's breaker: the dead master's open, the others closed
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        for port in masters_only.masters():
            state = "open" if port == victim else "closed"
            label = f'store="redis_cluster:127.0.0.1:{port}"'
            assert f'parity_online_circuit_state{{state="{state}",{label}}} 1.0' in text or (
                f'parity_online_circuit_state{{{label},state="{state}"}} 1.0' in text
            ), (port, state)
    store.close()


DEFINITIONS = """
from datetime import timedelta
from parity import Aggregation, Entity, FeatureView, Field, FileSource, Float64, String

account = Entity(name="account", join_keys=["account_id"])
balance = FeatureView(
    name="balance", entities=[account],
    schema=[Field(name="balance", dtype=Float64), Field(name="tier", dtype=String)],
    source=FileSource(path="data/balance.parquet"), ttl=timedelta(days=2),
)
velocity = FeatureView(
    name="velocity", entities=[account], schema=[Field(name="amount", dtype=Float64)],
    source=FileSource(path="data/events", timestamp_field="ts"),
    tile_interval=timedelta(minutes=5),
    aggregations=[
        Aggregation(column="amount", function="sum", window=timedelta(hours=1), name="sum_1h"),
        Aggregation(column="amount", function="count", window=timedelta(hours=6), name="n_6h"),
    ],
)
"""
REFS = ["balance:balance", "balance:tier", "velocity:sum_1h", "velocity:n_6h"]


def _materialized(root: Path, project: str, online: str) -> FeatureStore:
    (root / "data" / "events").mkdir(parents=True)
    (root / "parity.yaml").write_text(f"project: {project}\n{online}")
    (root / "defs.py").write_text(DEFINITIONS)
    stamp = pa.timestamp("us", tz="UTC")
    accounts = list(range(200))
    pq.write_table(
        pa.table(
            {
                "account_id": pa.array(accounts * 2, pa.int64()),
                "event_timestamp": pa.array(
                    [NOW - timedelta(hours=30)] * 200 + [NOW - timedelta(hours=3)] * 200, stamp
                ),
                "balance": pa.array([float(a) for a in accounts] + [a + 0.5 for a in accounts]),
                "tier": pa.array(["old"] * 200 + [f"t{a % 7}" for a in accounts]),
            }
        ),
        root / "data" / "balance.parquet",
    )
    minutes = [(a * 37 + i * 11) % 400 for a in accounts for i in range(5)]
    pq.write_table(
        pa.table(
            {
                "account_id": pa.array([a for a in accounts for _ in range(5)], pa.int64()),
                "ts": pa.array([NOW - timedelta(minutes=m) for m in minutes], stamp),
                "amount": pa.array([float(m % 13) for m in minutes]),
            }
        ),
        root / "data" / "events" / "part-0.parquet",
    )
    store = FeatureStore(root, clock=lambda: NOW)
    store.apply()
    store.materialize(NOW - timedelta(days=3), NOW)
    return store


def test_materializing_into_the_cluster_reads_as_materializing_into_one_redis(
    tmp_path: Path, redis_url: str, redis_cluster_url: str
) -> None:
    project = f"mat{uuid.uuid4().hex[:8]}"
    cluster_online = f"online: {{type: redis_cluster, connection_string: '{redis_cluster_url}'}}\n"
    single_online = f"online: {{type: redis, connection_string: '{redis_url}'}}\n"
    on_cluster = _materialized(tmp_path / "cluster", project, cluster_online)
    on_single = _materialized(tmp_path / "single", project, single_online)
    try:
        entities = {"account_id": list(range(-1, 201))}  # -1 and 200: never written
        got = on_cluster.get_online_features(REFS, entities)
        want = on_single.get_online_features(REFS, entities)
        assert got.values == want.values
        assert got.statuses == want.statuses
        assert got.event_timestamps == want.event_timestamps
        assert got.values["tier"][1:4] == ["t0", "t1", "t2"]  # the newer row won
        assert sum(s == "PRESENT" for s in got.statuses["sum_1h"]) > 100
    finally:
        client = on_single.online_store.client  # type: ignore[attr-defined]
        for found in client.scan_iter(match=f"parity:v1:{project}:*", count=1000):
            client.delete(found)
        on_single.close()
        on_cluster.close()


def test_a_hung_master_times_its_slots_out_at_the_read_timeout_and_they_recover(
    masters_only: LocalRedisCluster,
) -> None:
    """SIGSTOP: the node holds its connections and answers nothing. Its slots' reads fail after
    `timeout_seconds` (sync and async), the other slots' answer at once; after SIGCONT all do."""
    import asyncio
    import time

    from parity.errors import OnlineStoreUnavailable
    from parity.online.breaker import CircuitBreaker
    from parity.online.encoding import OnlineRow
    from parity.online.redis_cluster import RedisClusterOnlineStore

    project = f"z{uuid.uuid4().hex[:8]}"
    store = RedisClusterOnlineStore(
        masters_only.url, read_timeout_seconds=0.3, breaker=CircuitBreaker(100, 5.0)
    )
    key = {n: entity_key(["account_id"], [n]) for n in range(40)}
    store.write(project, [OnlineRow("v", key[n], 1, 0, {"n": n}) for n in key])
    victim = masters_only.masters()[1]
    low, high = masters_only.slots_of(victim)[0]
    lost = [n for n in key if low <= key_slot(redis_key(project, key[n])) <= high]
    kept = [n for n in key if n not in lost]

    async def read_async(entities: list[int]) -> list[Any]:
        try:
            return await store.read_async(project, [("v", key[n]) for n in entities])
        finally:
            await store.close_async()

    masters_only.pause(victim)
    try:
        for read in (lambda: store.read(project, [("v", key[lost[0]])]),
                     lambda: asyncio.run(read_async([lost[0]]))):  # fmt: skip
            started = time.monotonic()
            with pytest.raises(OnlineStoreUnavailable, match=f"slots {low}-{high} .*Timeout"):
                read()
            assert 0.25 < time.monotonic() - started < 3
        started = time.monotonic()
        found = store.read(project, [("v", key[n]) for n in kept])
        assert [r.values["n"] for r in found if r is not None] == kept
        assert time.monotonic() - started < 0.25
    finally:
        masters_only.resume(victim)
    assert [r.values["n"] for r in asyncio.run(read_async(lost)) if r is not None] == lost
    store.close()
