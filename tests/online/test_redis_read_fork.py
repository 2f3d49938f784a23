"""The Redis serving read's own connection per thread (issue 19) in a forked process: a child of
a process that had read (multiprocessing's default start method on Linux) must not share the
parent's socket, or each reads the other's replies: another entity's values, silently. redis-py's
pool, which the reads used before, starts a forked child with connections of its own."""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Iterator

import pytest

from parity.online.encoding import OnlineRow, entity_key
from parity.online.redis_store import RedisOnlineStore

NOW_US = 1_767_268_800_000_000
IDS = range(40)


@pytest.fixture
def redis_store(redis_url: str, project_name: str) -> Iterator[RedisOnlineStore]:
    store = RedisOnlineStore(redis_url)
    rows = [OnlineRow("v", entity_key(["id"], [i]), NOW_US, NOW_US, {"x": float(i)}) for i in IDS]
    store.write(project_name, rows)
    yield store
    for key in store.client.scan_iter(match=f"parity:v1:{project_name}*", count=1000):
        store.client.delete(key)
    store.close()


def wrong_reads(store: RedisOnlineStore, project: str, seed: int, reads: int) -> int:
    """How many of `reads` random lookups (one entity: HMGET; several: the script) came back
    with values other than the ids asked for, or failed."""
    rng = random.Random(seed)
    wrong = 0
    for _ in range(reads):
        ids = rng.sample(IDS, rng.choice([1, 1, 3]))
        try:
            found = store.read_views(project, [("v", [entity_key(["id"], [i]) for i in ids])])
            got = [None if row is None else row[1]["x"] for row in found[0]]
        except Exception:
            got = None
        wrong += got != [float(i) for i in ids]
    return wrong


_CHILD: tuple[RedisOnlineStore, str] | None = None  # what forked children read with


def _child(seed: int) -> int:
    assert _CHILD is not None
    return wrong_reads(*_CHILD, seed, 300)


# Other tests' read threads may still run in this process; the children use none of them.
@pytest.mark.filterwarnings(
    "ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning"
)  # 3.12+
def test_forked_children_read_their_own_answers(
    redis_store: RedisOnlineStore, project_name: str
) -> None:
    global _CHILD
    assert wrong_reads(redis_store, project_name, 0, 5) == 0  # this thread's connection made
    _CHILD = (redis_store, project_name)
    try:
        with multiprocessing.get_context("fork").Pool(4) as pool:
            children = pool.map_async(_child, range(1, 9))
            parent = wrong_reads(redis_store, project_name, 99, 300)
            assert children.get(60) == [0] * 8
    finally:
        _CHILD = None
    assert parent == 0


def _child_socket(_: int) -> tuple[str, int]:
    assert _CHILD is not None
    store, project = _CHILD
    assert wrong_reads(store, project, 7, 3) == 0
    return store._thread.connection._sock.getsockname()  # type: ignore[no-any-return]


@pytest.mark.filterwarnings(
    "ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning"
)  # 3.12+
def test_a_forked_child_reads_on_a_socket_of_its_own(
    redis_store: RedisOnlineStore, project_name: str
) -> None:
    global _CHILD
    assert wrong_reads(redis_store, project_name, 0, 5) == 0
    parents = redis_store._thread.connection._sock.getsockname()
    _CHILD = (redis_store, project_name)
    try:
        with multiprocessing.get_context("fork").Pool(1) as pool:
            child = pool.map(_child_socket, [0])[0]
    finally:
        _CHILD = None
    assert tuple(child) != tuple(parents)
    assert wrong_reads(redis_store, project_name, 1, 5) == 0
