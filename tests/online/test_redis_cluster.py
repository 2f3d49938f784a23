"""The Redis Cluster online store on clusters of the tests' own: slots resharded during traffic
(MOVED/ASK followed, nothing lost), a master killed (its slots' reads fail naming them while the
others answer; writes ride out the failover; nothing acknowledged and replicated is lost)."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import traceback
import uuid
from collections.abc import Iterator

import pytest

from parity.errors import BadRequest, OnlineStoreUnavailable
from parity.online.cluster_router import key_slot, one_slot_keys
from parity.online.encoding import (
    OnlineRow,
    decode_payload,
    encode_payload,
    entity_key,
    tile_name,
)
from parity.online.redis_cluster import RedisClusterOnlineStore
from parity.online.redis_store import redis_key, tiles_key
from parity.online.store import TileMerge
from tests.redis_cluster import LocalRedisCluster, local_redis_cluster

pytestmark = pytest.mark.redis


def key(n: int) -> bytes:
    return entity_key(["account_id"], [n])


def row(n: int, event: int) -> OnlineRow:
    return OnlineRow("stats", key(n), event, 0, {"x": float(event), "n": n})


def events(store: RedisClusterOnlineStore, project: str, entities: range) -> list[int | None]:
    found = store.read(project, [("stats", key(n)) for n in entities])
    return [None if r is None else r.event_ts for r in found]


def slot_of(project: str, n: int) -> int:
    return key_slot(redis_key(project, key(n)))


@pytest.fixture
def cluster() -> Iterator[LocalRedisCluster]:
    with local_redis_cluster() as started:
        yield started


def node_id(cluster: LocalRedisCluster, port: int) -> str:
    return next(str(n["id"]) for n in cluster.nodes() if int(str(n["port"])) == port)


def test_reads_and_writes_follow_slots_resharded_during_traffic(cluster: LocalRedisCluster) -> None:
    """1000 slots move from the first master to the second (redis-cli --cluster reshard: keys
    MIGRATEd while their slot is MIGRATING/IMPORTING) while a writer keeps raising every
    entity's event and reading it back: every write is seen by the next read, nothing fails."""
    project, entities = f"m{uuid.uuid4().hex[:8]}", range(600)
    store = RedisClusterOnlineStore(cluster.url)
    source, target = cluster.masters()[:2]
    moved = [n for n in entities if slot_of(project, n) <= 999]
    assert len(moved) > 20  # the reshard moves slots 0-999: these entities' keys move
    store.write(project, [row(n, 1) for n in entities])
    acknowledged, problems, stop = [1], [], threading.Event()

    def traffic() -> None:
        event = 1
        while not stop.is_set():
            event += 1
            try:
                assert store.write(project, [row(n, event) for n in entities]) == len(entities)
                acknowledged.append(event)
                seen = events(store, project, entities)
                assert seen == [event] * len(entities), f"event {event}: {set(seen)}"
            except Exception:  # collected: the assertion below shows it
                problems.append(traceback.format_exc())
                return

    writer = threading.Thread(target=traffic)
    writer.start()
    try:
        ids = ("--cluster-from", node_id(cluster, source), "--cluster-to", node_id(cluster, target))
        resharded = subprocess.run(
            [
                *("redis-cli", "--cluster", "reshard", f"127.0.0.1:{source}", *ids),
                *("--cluster-slots", "1000", "--cluster-yes", "--cluster-pipeline", "5"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        time.sleep(0.3)  # a few more rounds against the new layout
    finally:
        stop.set()
        writer.join(60)
    assert resharded.returncode == 0, resharded.stdout[-2000:]
    assert problems == []
    assert len(acknowledged) > 3  # traffic ran through the reshard
    assert cluster.master_of_slot(0) == target and cluster.master_of_slot(999) == target
    assert events(store, project, entities) == [acknowledged[-1]] * len(entities)
    assert store.writer.redirects > 0  # MOVED (and ASK) were met and followed
    got = asyncio.run(_read_async(store, project, entities))
    assert got == [acknowledged[-1]] * len(entities)
    store.close()


async def _read_async(
    store: RedisClusterOnlineStore, project: str, entities: range
) -> list[int | None]:
    try:
        found = await store.read_async(project, [("stats", key(n)) for n in entities])
    finally:
        await store.close_async()
    return [None if r is None else r.event_ts for r in found]


def test_a_killed_master_fails_only_its_slots_then_its_replica_serves_everything_acknowledged(
    cluster: LocalRedisCluster,
) -> None:
    project, entities = f"f{uuid.uuid4().hex[:8]}", range(300)
    store = RedisClusterOnlineStore(cluster.url, read_timeout_seconds=0.3)
    store.write(project, [row(n, 1) for n in entities])
    for master in cluster.masters():  # acknowledged by a replica before the kill
        assert int(cluster.command(master, "WAIT", "1", "5000").strip() or 0) >= 1
    victim = cluster.masters()[0]
    low, high = cluster.slots_of(victim)[0]
    lost = [n for n in entities if low <= slot_of(project, n) <= high]
    kept = [n for n in entities if n not in lost]
    cluster.kill(victim)

    with pytest.raises(OnlineStoreUnavailable) as refused:
        store.read(project, [("stats", key(lost[0])), ("stats", key(kept[0]))])
    assert f"Redis Cluster slots {low}-{high} (127.0.0.1:{victim}) unreachable" in str(
        refused.value
    )
    assert [r.event_ts for r in store.read(project, [("stats", key(n)) for n in kept])] == [  # type: ignore[union-attr]
        1
    ] * len(kept)  # the other masters keep answering

    started = time.monotonic()
    assert store.write(project, [row(n, 2) for n in lost]) == len(lost)  # waits for the replica
    took = time.monotonic() - started
    assert took < 15, f"the write rode out the failover in {took:.1f} s"
    assert cluster.master_of_slot(low) != victim
    expected = [2 if n in lost else 1 for n in entities]
    assert events(store, project, entities) == expected  # nothing acknowledged was lost
    store.close()


def test_a_cluster_that_cannot_be_reached_is_a_503_without_the_password() -> None:
    from tests.private_redis import free_port

    port = free_port(range(23500, 23600))
    store = RedisClusterOnlineStore(f"redis://reader:s3cret-pw@127.0.0.1:{port}")
    with pytest.raises(OnlineStoreUnavailable) as refused:
        store.read("p", [("stats", key(1))])
    assert "s3cret-pw" not in str(refused.value)
    assert f"127.0.0.1:{port}" in str(refused.value)
    store.close()


def test_a_score_stream_outside_the_source_streams_slot_is_refused_naming_a_slot_safe_name(
    redis_cluster_url: str,
) -> None:
    from parity.online.cluster_router import cluster_client

    client = cluster_client(redis_cluster_url)
    source = "parity:p:stream:txns"
    one_slot_keys(client, source=source, sink="{parity:p:stream:txns}:scores")
    with pytest.raises(BadRequest, match=r"'\{parity:p:stream:txns\}:sink'"):
        one_slot_keys(client, source=source, sink="scores")
    client.close()


def test_merges_meeting_a_half_migrated_slot_count_every_increment_once(
    cluster: LocalRedisCluster,
) -> None:
    """Slots of one node travel in one script call; when one key of it has already been
    MIGRATEd away (its slot MIGRATING), the call must fail before writing anything, so that
    re-sending its parts slot by slot (ASK-redirected) adds each increment exactly once."""
    store = RedisClusterOnlineStore(cluster.url)
    project = f"t{uuid.uuid4().hex[:8]}"
    entities = range(120)
    store.merge_tiles(project, increments(entities))
    source, target = cluster.masters()[:2]
    on_source = [n for n in entities if cluster.master_of_slot(slot_of(project, n)) == source]
    moving = on_source[-1]  # the last part of the node's call: the others come before it
    slot, moved_key = slot_of(project, moving), tiles_key(project, "v", key(moving))
    cluster.command(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", node_id(cluster, source))
    cluster.command(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", node_id(cluster, target))
    migrate = ("MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", moved_key.decode())
    assert cluster.command(source, *migrate).strip() == "OK"
    store.merge_tiles(project, increments(entities))  # the node's call meets the moved key
    assert store.writer.redirects >= 1  # its part was ASK-redirected to the importing node
    for port in cluster.masters():
        cluster.command(port, "CLUSTER", "SETSLOT", str(slot), "NODE", node_id(cluster, target))
    assert counts(store, project, entities) == [2] * len(entities)
    store.close()


TILE = tile_name(3_600_000_000, 0)


def increments(entities: range) -> list[TileMerge]:
    """Merges adding one to the count kept in tile TILE of each entity."""

    def fold(stored: dict[str, bytes]) -> dict[str, bytes]:
        count = decode_payload(stored[TILE])["c"] if TILE in stored else 0
        return {TILE: encode_payload({"c": count + 1})}

    return [TileMerge("v", key(n), (TILE,), fold, 0, 10**12) for n in entities]


def counts(store: RedisClusterOnlineStore, project: str, entities: range) -> list[int]:
    found = store.read_tiles(project, "v", [key(n) for n in entities], [TILE])
    return [decode_payload(tiles[TILE])["c"] if TILE in tiles else 0 for tiles in found]


def test_a_batch_redone_after_a_crash_between_slots_is_applied_once_in_every_slot(
    redis_cluster_url: str,
) -> None:
    """A stream worker's merge is atomic per slot, not across slots: killed after writing some
    slots and before its marker, it redoes the same batch; the slots already written hold the
    batch in their slot marker and are skipped."""
    from parity.online.cluster_router import by_slot
    from parity.online.redis_cluster import _batch_marker

    store = RedisClusterOnlineStore(redis_cluster_url)
    project, entities = f"x{uuid.uuid4().hex[:8]}", range(80)
    marker = ("stream:txns:parity:x:c1", ["1700000000000-0", "1700000000000-1"])
    keys = [tiles_key(project, "v", key(n)) for n in entities]
    slots = list(by_slot(keys).items())
    crashed = dict(slots[: len(slots) // 2])  # what the killed worker had written
    store._merge_round(increments(entities), keys, crashed, _batch_marker(project, marker))
    assert store.read_marker(project, marker[0]) == []  # killed before its marker
    store.merge_tiles(project, increments(entities), marker)  # the restarted worker's redo
    assert counts(store, project, entities) == [1] * len(entities)
    assert store.read_marker(project, marker[0]) == marker[1]
    store.merge_tiles(project, increments(entities), (marker[0], ["1700000000001-0"]))
    assert counts(store, project, entities) == [2] * len(entities)  # a new batch: applied
    store.close()


def test_a_cluster_connection_string_names_one_or_more_nodes_and_refuses_a_database() -> None:
    from pydantic import ValidationError

    from parity.errors import ConfigError
    from parity.online.cluster_router import cluster_urls
    from parity.repo.config import OnlineConfig

    nodes = "redis://127.0.0.1:7000, redis://u:pw@127.0.0.1:7001"
    assert OnlineConfig(type="redis_cluster", connection_string=nodes).connection_string == nodes
    assert cluster_urls(nodes) == ["redis://127.0.0.1:7000", "redis://u:pw@127.0.0.1:7001"]
    with pytest.raises((ValidationError, ConfigError)):  # one Redis takes one URL
        OnlineConfig(type="redis", connection_string=nodes)
    with pytest.raises((ValidationError, ConfigError), match="port"):
        OnlineConfig(type="redis_cluster", connection_string="redis://127.0.0.1:7000,x:y:z")
    with pytest.raises(ConfigError, match=r"online\.connection_string: .*database 0"):
        cluster_urls("redis://127.0.0.1:7000/2")
    with pytest.raises(ConfigError, match=r"online\.connection_string: .*\*\*\*") as refused:
        cluster_urls("redis://u:s3cret@127.0.0.1:7000/2")
    assert "s3cret" not in str(refused.value)
