"""OnlineStore conformance: SQLite, Redis and Redis Cluster (six local nodes) run the same suite over
real files and connections."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity.online.encoding import OnlineRow, decode_payload, encode_payload, entity_key, tile_name
from parity.online.redis_cluster import RedisClusterOnlineStore
from parity.online.redis_store import RedisOnlineStore, redis_key
from parity.online.sqlite import SqliteOnlineStore
from parity.online.store import AsyncReads, OnlineStore, TileMerge, TileStore

KINDS = [
    "sqlite",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("redis_cluster", marks=pytest.mark.redis),
]


def _open(
    request: pytest.FixtureRequest, tmp_path: Path, project_name: str, *, expire: bool
) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        opened: OnlineStore = SqliteOnlineStore(tmp_path / "online.db", expire=expire)
    elif request.param == "redis_cluster":
        url = request.getfixturevalue("redis_cluster_url")
        opened = RedisClusterOnlineStore(url, expire=expire)
    else:
        opened = RedisOnlineStore(request.getfixturevalue("redis_url"), expire=expire)
    yield opened
    if isinstance(opened, RedisOnlineStore):  # leave the shared server as we found it
        prefix = f"parity:v1:{project_name}"
        for found in opened.client.scan_iter(match=prefix + "*", count=1000):
            opened.client.delete(found)
    opened.close()


@pytest.fixture(params=KINDS)
def store(
    request: pytest.FixtureRequest, tmp_path: Path, project_name: str
) -> Iterator[OnlineStore]:
    yield from _open(request, tmp_path, project_name, expire=False)


@pytest.fixture(params=KINDS)
def expiring(
    request: pytest.FixtureRequest, tmp_path: Path, project_name: str
) -> Iterator[OnlineStore]:
    yield from _open(request, tmp_path, project_name, expire=True)


def key(n: int) -> bytes:
    return entity_key(["account_id"], [n])


def row(n: int, event: int, created: int = 0, view: str = "stats", **values: object) -> OnlineRow:
    return OnlineRow(view, key(n), event, created, values or {"x": float(event)})


def test_read_returns_rows_in_request_order_and_none_when_missing(
    store: OnlineStore, project_name: str
) -> None:
    a, b = row(1, 10), row(2, 20, view="other", y="z")
    assert store.write(project_name, [a, b]) == 2
    got = store.read(
        project_name, [("other", key(2)), ("stats", key(3)), ("stats", key(1)), ("stats", key(2))]
    )
    assert got == [b, None, a, None]


def test_older_rows_never_replace_newer_ones(store: OnlineStore, project_name: str) -> None:
    store.write(project_name, [row(1, 100, 5)])
    assert store.write(project_name, [row(1, 99, 9)]) == 0  # older event
    assert store.write(project_name, [row(1, 100, 4)]) == 0  # same event, older created
    assert store.read(project_name, [("stats", key(1))]) == [row(1, 100, 5)]
    assert store.write(project_name, [row(1, 100, 6, x=1.0)]) == 1  # newer created
    assert store.write(project_name, [row(1, 100, 6, x=2.0)]) == 1  # a tie: the later write wins
    assert store.read(project_name, [("stats", key(1))]) == [row(1, 100, 6, x=2.0)]
    assert store.write(project_name, [row(1, 101, 0)]) == 1


def test_values_of_every_kind_round_trip(store: OnlineStore, project_name: str) -> None:
    values = {
        "f": -1.25,
        "i": 2**40,
        "s": "é",
        "b": b"\x00",
        "nothing": None,
        "a": [1.5, 2.5],
        "t": True,
    }
    store.write(project_name, [row(7, 1, 1, **values)])
    assert store.read(project_name, [("stats", key(7))])[0] == row(7, 1, 1, **values)


def test_delete_view_removes_only_that_view(store: OnlineStore, project_name: str) -> None:
    store.write(project_name, [row(1, 1), row(1, 1, view="keep")])
    store.delete_view(project_name, "stats")
    assert store.read(project_name, [("stats", key(1)), ("keep", key(1))]) == [
        None,
        row(1, 1, view="keep"),
    ]


def test_async_reads_equal_sync_reads(store: OnlineStore, project_name: str) -> None:
    store.write(project_name, [row(1, 10), row(2, 20, view="other", y="z")])
    keys = [("other", key(2)), ("stats", key(3)), ("stats", key(1))]
    expected = store.read(project_name, keys)
    if isinstance(store, AsyncReads):
        reader = store

        async def read() -> list[OnlineRow | None]:
            try:
                return await reader.read_async(project_name, keys)
            finally:
                await reader.close_async()

        assert asyncio.run(read()) == expected
        assert asyncio.run(read()) == expected  # a second event loop gets its own connections
    assert expected == [row(2, 20, view="other", y="z"), None, row(1, 10)]


def _now_us() -> int:
    return int(time.time() * 1_000_000)


def test_expired_rows_are_gone(expiring: OnlineStore, project_name: str) -> None:
    now = _now_us()
    stale = replace(row(1, now - 10**7), expires_at=now - 10**6)
    fresh = replace(row(2, now), expires_at=now + 3_600 * 10**6)
    forever = row(3, now - 10**9)  # expires_at None: the view has no ttl
    assert expiring.write(project_name, [stale, fresh, forever]) == 3
    got = expiring.read(project_name, [("stats", key(n)) for n in (1, 2, 3)])
    assert got == [None, fresh, forever]


def test_an_entity_expires_only_with_its_last_view(
    expiring: OnlineStore, project_name: str
) -> None:
    now = _now_us()
    first = replace(row(1, now, view="a"), expires_at=now + 3_600 * 10**6)
    later = replace(row(1, now, view="b"), expires_at=now + 7_200 * 10**6)
    expiring.write(project_name, [later, first])
    assert expiring.read(project_name, [("a", key(1)), ("b", key(1))]) == [first, later]
    if isinstance(expiring, RedisOnlineStore):  # the key lives as long as its longest view
        remaining = expiring.client.pttl(redis_key(project_name, key(1)))
        assert 7_100_000 < remaining <= 7_200_000
        expiring.write(project_name, [row(1, now + 1, view="c")])  # never expires
        assert expiring.client.pttl(redis_key(project_name, key(1))) == -1


def test_without_expiry_old_rows_stay(store: OnlineStore, project_name: str) -> None:
    now = _now_us()
    stale = replace(row(1, now - 10**7), expires_at=now - 10**6)
    store.write(project_name, [stale])
    assert store.read(project_name, [("stats", key(1))]) == [stale]


def test_projects_are_isolated(store: OnlineStore, project_name: str) -> None:
    store.write(project_name, [row(1, 1)])
    assert store.read(project_name + "_other", [("stats", key(1))]) == [None]


def test_concurrent_writers_leave_the_newest_row(store: OnlineStore, project_name: str) -> None:
    def writer(events: range) -> None:
        for event in events:
            store.write(project_name, [row(n, event) for n in range(5)])

    threads = [threading.Thread(target=writer, args=(range(start, 400, 4),)) for start in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [
        r.event_ts for r in store.read(project_name, [("stats", key(n)) for n in range(5)])
    ] == [399] * 5  # type: ignore[union-attr]


writes = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(0, 2), st.integers(0, 99)),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=writes, split=st.integers(0, 25))
def test_final_state_is_the_newest_write_per_key(
    store: OnlineStore, project_name: str, batch: list[tuple[int, int, int, int]], split: int
) -> None:
    """Oracle: per key, the last write among those with the largest (event, created)."""
    import uuid

    project = f"{project_name}_{uuid.uuid4().hex[:6]}"
    rows = [row(n, event, created, v=value) for n, event, created, value in batch]
    store.write(project, rows[:split])
    store.write(project, rows[split:])
    expected: dict[bytes, OnlineRow] = {}
    for r in rows:
        current = expected.get(r.entity_key)
        if current is None or r.version >= current.version:
            expected[r.entity_key] = r
    got = store.read(project, [("stats", k) for k in expected])
    assert got == list(expected.values())


# --- tiles (TileStore): merges are atomic read-fold-writes, serialized between writers ---------

HOUR_US = 3_600_000_000


def counting(view: str, n: int, names: tuple[str, ...], drop_before: int = 0) -> TileMerge:
    """A merge adding one to the count `c` kept in each named tile of entity n."""

    def fold(stored: dict[str, bytes]) -> dict[str, bytes]:
        return {
            name: encode_payload(
                {"c": decode_payload(stored[name])["c"] + 1 if name in stored else 1}
            )
            for name in names
        }

    return TileMerge(view, key(n), names, fold, drop_before, 24 * HOUR_US)


def counts(store: TileStore, project: str, names: list[str], entities: int) -> list[list[int]]:
    found = store.read_tiles(project, "velocity", [key(n) for n in range(entities)], names)
    return [
        [decode_payload(tiles[name])["c"] if name in tiles else 0 for name in names]
        for tiles in found
    ]


def test_concurrent_tile_merges_count_every_increment(
    store: OnlineStore, project_name: str
) -> None:
    assert isinstance(store, TileStore)
    names = (tile_name(HOUR_US, 0), tile_name(24 * HOUR_US, 0))

    def merger(worker: int) -> None:
        for step in range(25):
            merges = [counting("velocity", n, names) for n in range(3)]
            store.merge_tiles(project_name, merges, (f"worker-{worker}", [f"{worker}-{step}"]))

    threads = [threading.Thread(target=merger, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counts(store, project_name, list(names), 3) == [[100, 100]] * 3
    assert [store.read_marker(project_name, f"worker-{w}") for w in range(4)] == [
        [f"{w}-24"] for w in range(4)
    ]


def test_tile_merges_add_to_batch_written_tiles(store: OnlineStore, project_name: str) -> None:
    assert isinstance(store, TileStore)
    name = tile_name(HOUR_US, HOUR_US)
    written = {(key(n), name): encode_payload({"c": 10 * n}) for n in range(3)}
    assert store.write_tiles(project_name, "velocity", written, 2 * HOUR_US, 24 * HOUR_US) == 3
    store.merge_tiles(project_name, [counting("velocity", n, (name,)) for n in (0, 2)])
    assert counts(store, project_name, [name], 3) == [[1], [10], [21]]
    assert store.read_marker(project_name, "nobody") == []


def test_merges_drop_tiles_no_window_reads(store: OnlineStore, project_name: str) -> None:
    assert isinstance(store, TileStore)
    old, middle, new = (tile_name(HOUR_US, h * HOUR_US) for h in (0, 6, 10))
    store.merge_tiles(project_name, [counting("velocity", 0, (old, middle))])
    # Tiles ending at or before 6 h are no longer read: the 0 h tile goes, the 6 h one stays.
    store.merge_tiles(project_name, [counting("velocity", 0, (new,), drop_before=6 * HOUR_US)])
    assert counts(store, project_name, [old, middle, new], 1) == [[0, 1, 1]]


def test_the_pending_record_outlives_sweeps_and_expires_with_its_events(
    expiring: OnlineStore, project_name: str
) -> None:
    """Issue 12, item 2: an entity's pending record (events after the writer's clock) is never
    dropped as a stale tile; in Redis an empty one does not move the hash's expiry, a non-empty
    one keeps it at least a day (max_future_skew's bound) past the write."""
    from datetime import UTC, datetime
    from typing import cast

    from parity.online.encoding import PENDING
    from parity.online.redis_store import DAY_US, tiles_key
    from parity.timeutil import to_micros

    tiles = cast(TileStore, expiring)
    hour = 3_600_000_000
    now = to_micros(datetime.now(UTC)) // hour * hour
    stale, recent = tile_name(hour, now - 3 * hour), tile_name(hour, now - hour)
    written = {
        (key(1), stale): encode_payload({"n": 1}),
        (key(1), recent): encode_payload({"n": 2}),
        (key(1), PENDING): encode_payload({}),
    }
    tiles.write_tiles(project_name, "v", written, now, hour)
    found = tiles.read_tiles(project_name, "v", [key(1)], [stale, recent, PENDING])[0]
    assert set(found) == {recent, PENDING}
    if isinstance(expiring, RedisOnlineStore):
        at = expiring.client.pexpiretime(tiles_key(project_name, "v", key(1)))
        assert at == (now + hour) // 1000  # the recent tile's end plus the horizon
    events = encode_payload({"events": [[now + 1, 0, {"n": 1}]]})
    merge = TileMerge("v", key(1), (PENDING,), lambda _: {PENDING: events}, now - hour, hour)
    tiles.merge_tiles(project_name, [merge])
    found = tiles.read_tiles(project_name, "v", [key(1)], [recent, PENDING])[0]
    assert decode_payload(found[PENDING]) == {"events": [[now + 1, 0, {"n": 1}]]}
    if isinstance(expiring, RedisOnlineStore):
        at = expiring.client.pexpiretime(tiles_key(project_name, "v", key(1)))
        assert at == (now + DAY_US + hour) // 1000


@pytest.mark.parametrize("kind", KINDS)
def test_the_materialization_record_is_shared_cached_briefly_and_forgotten_with_the_view(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, project_name: str
) -> None:
    """Reads ask the record on every call, so a store keeps it PREPARED_CACHE_SECONDS (clock
    injected); its own writes and delete_view are seen at once, another process's within that."""
    from parity.online.store import PREPARED_CACHE_SECONDS, Prepared

    seconds = [100.0]

    def opened() -> TileStore:
        if kind == "sqlite":
            return SqliteOnlineStore(tmp_path / "online.db", monotonic=lambda: seconds[0])
        if kind == "redis_cluster":
            url = request.getfixturevalue("redis_cluster_url")
            return RedisClusterOnlineStore(url, monotonic=lambda: seconds[0])
        url = request.getfixturevalue("redis_url")
        return RedisOnlineStore(url, monotonic=lambda: seconds[0])

    writer, reader = opened(), opened()
    try:
        assert reader.materialized(project_name, "velocity") is None
        record = Prepared(end_us=5_000, since_us=4_000, until_us=9_000)
        writer.mark_materialized(project_name, "velocity", record)
        assert writer.materialized(project_name, "velocity") == record
        assert writer.materialized(project_name, "other") is None
        assert reader.materialized(project_name, "velocity") is None  # remembered, briefly
        seconds[0] += PREPARED_CACHE_SECONDS
        assert reader.materialized(project_name, "velocity") == record
        writer.delete_view(project_name, "velocity")
        assert writer.materialized(project_name, "velocity") is None
        seconds[0] += PREPARED_CACHE_SECONDS
        assert reader.materialized(project_name, "velocity") is None
    finally:
        writer.delete_view(project_name, "velocity")
        writer.close()
        reader.close()
