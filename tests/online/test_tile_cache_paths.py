"""The tile cache against every other path that changes a tile hash: a rebuild's write_tiles,
a TTL expiry, a failover that loses the last write, and concurrent writers in other processes."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from parity.online.encoding import encode_payload, entity_key
from parity.online.redis_store import RedisOnlineStore, tiles_key
from tests.online import test_tile_cache
from tests.online.test_tile_cache import HOUR_US, adding, count, minute

pytestmark = pytest.mark.redis
project = test_tile_cache.project  # its fixture: a project name, its keys deleted after
KEY = entity_key(["id"], [1])


def test_a_rebuild_written_under_a_cache_is_merged_into_not_overwritten(
    redis_url: str, project: str
) -> None:
    worker, rebuild = RedisOnlineStore(redis_url), RedisOnlineStore(redis_url)
    names = (minute(1), minute(2))
    worker.merge_tiles(project, [adding(5, names)])
    tiles = {(KEY, minute(1)): encode_payload({"c": 1000})}
    rebuild.write_tiles(project, "velocity", tiles, 10 * HOUR_US, 24 * HOUR_US)
    worker.merge_tiles(project, [adding(1, names)])
    assert [count(worker, project, n) for n in names] == [1001, 6]
    worker.close()
    rebuild.close()


def test_a_hash_expired_under_a_cache_is_not_brought_back(redis_url: str, project: str) -> None:
    worker = RedisOnlineStore(redis_url)
    names = (minute(1), minute(2))
    worker.merge_tiles(project, [adding(5, names)])
    worker.client.pexpire(tiles_key(project, "velocity", KEY), 1)
    time.sleep(0.05)
    worker.merge_tiles(project, [adding(1, names[:1])])
    assert [count(worker, project, n) for n in names] == [1, 0]
    worker.close()


def test_a_write_lost_in_a_failover_is_not_resurrected_by_the_cache(
    redis_url: str, project: str
) -> None:
    worker = RedisOnlineStore(redis_url)
    key = tiles_key(project, "velocity", KEY)
    names = (minute(1),)
    worker.merge_tiles(project, [adding(5, names)])
    replica = worker.client.dump(key)  # what a replica held before the next write
    worker.merge_tiles(project, [adding(1, names)])
    worker.client.restore(key, 0, replica, replace=True)  # promoted: the write of 1 is lost
    worker.merge_tiles(project, [adding(100, names)])
    assert count(worker, project, names[0]) == 105
    worker.close()


def _add_many(url: str, project: str, times: int) -> None:
    store = RedisOnlineStore(url)
    for _ in range(times):
        store.merge_tiles(project, [adding(1, (minute(1), minute(2)))])
    store.close()


def test_two_worker_processes_on_one_hash_lose_no_increment(redis_url: str, project: str) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_add_many, args=(redis_url, project, 150)) for _ in "ab"]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
    assert [p.exitcode for p in workers] == [0, 0]
    store = RedisOnlineStore(redis_url)
    assert [count(store, project, n) for n in (minute(1), minute(2))] == [300, 300]
    store.close()
