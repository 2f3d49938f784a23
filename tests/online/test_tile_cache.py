"""The tile cache of tile merges: what it knows of a hash, and that a stale memory is refused by
the store (a retry, never a wrong tile): a second writer, a deleted hash, a hash seen first
with tiles the cache never read."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from parity.online.encoding import decode_payload, encode_payload, entity_key, tile_name
from parity.online.redis_store import RedisOnlineStore, tiles_key
from parity.online.store import TileMerge
from parity.online.tile_cache import TileCache

MINUTE_US = 60_000_000
HOUR_US = 60 * MINUTE_US


def minute(n: int) -> str:
    return tile_name(MINUTE_US, n * MINUTE_US)


def test_an_unknown_hash_or_tile_needs_a_read() -> None:
    cache = TileCache()
    assert cache.reply(b"k", [minute(1)]) is None
    cache.read(b"k", [minute(1)], [b"one", b"7", b"0"])  # an existing hash: only minute 1 known
    assert cache.reply(b"k", [minute(1)]) == [b"one", b"7", b"0"]
    assert cache.reply(b"k", [minute(1), minute(2)]) is None


def test_a_hash_created_here_knows_its_other_tiles_are_absent() -> None:
    cache = TileCache()
    cache.read(b"k", [minute(1)], [False, False, False])  # no hash yet
    assert cache.reply(b"k", [minute(2)]) == [False, False, False]
    cache.wrote(b"k", False, b"v1", b"0", {minute(2): b"two"}, -1)
    assert cache.reply(b"k", [minute(1), minute(2)]) == [False, b"two", b"v1", b"0"]


def test_a_write_over_another_version_than_the_one_known_forgets_the_hash() -> None:
    cache = TileCache()
    cache.read(b"k", [minute(1)], [b"one", b"v1", b"0"])
    cache.wrote(b"k", b"v0", b"v2", b"0", {minute(1): b"uno"}, -1)  # based on another version
    assert cache.reply(b"k", [minute(1)]) is None


def test_tiles_past_the_retention_or_the_sweep_are_forgotten() -> None:
    cache = TileCache(retain_us=10 * MINUTE_US)
    cache.read(b"k", [minute(0)], [False, False, False])
    version = False
    for n in range(40):  # one new minute tile per write
        cache.wrote(b"k", version, b"v%d" % n, b"0", {minute(n): b"%d" % n}, -1)
        version = b"v%d" % n
    assert cache.reply(b"k", [minute(39), minute(30)]) == [b"39", b"30", version, b"0"]
    assert cache.reply(b"k", [minute(3)]) is None  # forgotten: read it again
    assert cache.reply(b"k", [minute(45)]) == [False, version, b"0"]  # newer: still absent
    cache.wrote(b"k", version, b"w", b"0", {minute(40): b"40"}, 35 * MINUTE_US)  # a sweep
    assert cache.reply(b"k", [minute(34)]) is None


def test_at_most_max_hashes_are_kept_least_recently_used_first() -> None:
    cache = TileCache(max_hashes=2)
    for key in (b"a", b"b", b"c"):
        cache.read(key, [minute(1)], [b"x", b"v", b"0"])
    assert len(cache) == 2 and cache.reply(b"a", [minute(1)]) is None
    assert cache.reply(b"c", [minute(1)]) is not None


@pytest.fixture
def project(redis_url: str) -> Iterator[str]:
    name = f"tc{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"parity:v1:{name}:*", count=1000):
        client.delete(key)
    client.close()


def adding(n: int, names: tuple[str, ...]) -> TileMerge:
    """A merge adding n to the count `c` of each named tile of one entity."""

    def fold(stored: dict[str, bytes]) -> dict[str, bytes]:
        return {
            name: encode_payload(
                {"c": (decode_payload(stored[name])["c"] if name in stored else 0) + n}
            )
            for name in names
        }

    return TileMerge("velocity", entity_key(["id"], [1]), names, fold, 0, 24 * HOUR_US)


def count(store: RedisOnlineStore, project: str, name: str) -> int:
    tiles = store.read_tiles(project, "velocity", [entity_key(["id"], [1])], [name])[0]
    return int(decode_payload(tiles[name])["c"]) if name in tiles else 0


@pytest.mark.redis
def test_two_caching_writers_on_one_hash_count_every_merge(redis_url: str, project: str) -> None:
    first, second = RedisOnlineStore(redis_url), RedisOnlineStore(redis_url)
    names = (minute(1), tile_name(HOUR_US, 0))
    for step in range(6):  # each writer's cache is stale after the other's write
        (first if step % 2 else second).merge_tiles(project, [adding(1, names)])
        first.merge_tiles(project, [adding(10, names[:1])])
    assert count(first, project, names[0]) == 66 and count(first, project, names[1]) == 6
    first.close()
    second.close()


@pytest.mark.redis
def test_a_hash_deleted_under_a_cache_is_not_brought_back(redis_url: str, project: str) -> None:
    store = RedisOnlineStore(redis_url)
    names = (minute(1), minute(2))
    store.merge_tiles(project, [adding(5, names)])
    store.client.delete(tiles_key(project, "velocity", entity_key(["id"], [1])))
    other = RedisOnlineStore(redis_url)  # recreates it with one write: with versions counted
    other.merge_tiles(project, [adding(1, names[:1])])  # from 1 again, the cache would match
    store.merge_tiles(project, [adding(100, names)])
    assert [count(store, project, n) for n in names] == [101, 100]
    store.close()
    other.close()
