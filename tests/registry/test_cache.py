from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from parity import Catalog, Entity, FeatureViewNotFound
from parity.errors import RegistryVersionNotFound
from parity.registry.cache import CachedRegistry
from parity.registry.catalog import Definition
from parity.registry.store import Snapshot, VersionInfo
from parity.testing import InMemoryRegistryStore


class CountingStore(InMemoryRegistryStore):
    """The reference store, counting how often the catalog is read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.heads = 0

    def head(self, project: str) -> int:
        self.heads += 1
        return super().head(project)

    def head_info(self, project: str) -> VersionInfo | None:
        self.heads += 1
        return super().head_info(project)

    def read(self, project: str, version: int | None = None) -> Snapshot:
        self.reads += 1
        return super().read(project, version)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def put(store: InMemoryRegistryStore, *items: Definition, author: str = "a") -> None:
    store.commit(
        Catalog.build("p", items),
        expected_version=store.head("p"),
        changes=(),
        author=author,
        message="",
        committed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_lookups_are_served_from_memory_until_the_interval_passes() -> None:
    store, clock = CountingStore(), Clock()
    put(store, Entity(name="a"))
    cache = CachedRegistry(store, "p", refresh_interval=10, clock=clock)
    assert cache.get_entity("a").name == "a"
    for _ in range(100):
        cache.get_entity("a")
    assert (store.heads, store.reads) == (2, 1)  # put() checked the head once itself

    put(store, Entity(name="a"), Entity(name="b"))
    with pytest.raises(KeyError):
        cache.get_entity("b")  # still cached: interval not over
    clock.now = 10.0
    assert cache.get_entity("b").name == "b"
    assert store.reads == 2


def test_unchanged_version_is_not_re_read() -> None:
    store, clock = CountingStore(), Clock()
    put(store, Entity(name="a"))
    cache = CachedRegistry(store, "p", refresh_interval=1, clock=clock)
    cache.refresh()
    for step in range(1, 6):
        clock.now = float(step)
        cache.get_entity("a")
    assert store.reads == 1
    assert cache.reloads == 1


def test_missing_view_lists_what_is_registered() -> None:
    store = CountingStore()
    cache = CachedRegistry(store, "p", clock=Clock())
    with pytest.raises(FeatureViewNotFound, match="nothing is registered"):
        cache.get_feature_view("x")
    assert cache.version == 0


def test_versioned_reads_answer_for_the_version_asked() -> None:
    store, clock = CountingStore(), Clock()
    put(store, Entity(name="a", description="first"), author="ann")
    cache = CachedRegistry(store, "p", refresh_interval=10, clock=clock)
    assert cache.describe("a").description == "first"  # type: ignore[union-attr]
    put(store, Entity(name="a", description="second"), Entity(name="b"), author="bob")

    assert sorted(cache.snapshot(1).catalog.entities) == ["a"]
    assert (cache.snapshot().version, sorted(cache.snapshot().catalog.entities)) == (2, ["a", "b"])
    assert cache.describe("a", version=2).description == "second"  # type: ignore[union-attr]
    assert cache.describe("a").description == "first"  # type: ignore[union-attr]  # cached
    with pytest.raises(FeatureViewNotFound, match="nothing named 'b'"):
        cache.describe("b", version=1)
    with pytest.raises(RegistryVersionNotFound):
        cache.snapshot(3)
    assert [(h.version, h.author) for h in cache.history()] == [(1, "ann"), (2, "bob")]


class SlowStore(InMemoryRegistryStore):
    """The reference store, whose first read of a catalog takes a while (a busy database)."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = threading.Event()

    def read(self, project: str, version: int | None = None) -> Snapshot:
        self.reading.set()
        time.sleep(0.3)
        return super().read(project, version)


def test_a_second_caller_during_the_first_load_waits_for_it_instead_of_seeing_nothing() -> None:
    store = SlowStore()
    put(store, Entity(name="driver", join_keys=["driver_id"]))
    cache = CachedRegistry(store, "p", refresh_interval=60)
    first = threading.Thread(target=lambda: cache.catalog)
    first.start()
    assert store.reading.wait(5)  # the first load is under way
    assert sorted(cache.catalog.entities) == ["driver"]  # not the empty catalog of version -1
    first.join()
    assert cache.version == 1


def test_a_teardown_and_a_re_apply_on_the_same_version_number_are_seen() -> None:
    """Version 1 after a teardown is another catalog: readers reload it (they once kept the old
    one, since only the number was compared)."""
    from parity.registry.apply import teardown

    store, clock = CountingStore(), Clock()
    put(store, Entity(name="old"))
    cache = CachedRegistry(store, "p", refresh_interval=10, clock=clock)
    assert cache.get_entity("old").name == "old" and cache.version == 1
    teardown(store, "p")
    store.commit(
        Catalog.build("p", [Entity(name="new")]),
        expected_version=0,
        changes=(),
        author="b",
        message="again",
        committed_at=datetime(2026, 1, 2, tzinfo=UTC),
    )
    assert store.head("p") == 1
    clock.now = 10
    assert cache.get_entity("new").name == "new" and cache.version == 1
    with pytest.raises(KeyError):
        cache.get_entity("old")
    assert cache.reloads == 2
