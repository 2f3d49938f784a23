"""RegistryStore conformance: every backend (in-memory reference, SQLite, PostgreSQL) runs this."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from parity import Catalog, Entity, FeatureView, Field, FileSource, Float64, RegistryConflict
from parity.errors import ProjectNotFound, RegistryVersionNotFound
from parity.registry.plan import plan
from parity.registry.sql import SqlRegistryStore
from parity.registry.sqlite_read import open_registry_store
from parity.registry.store import RegistryStore
from parity.testing import InMemoryRegistryStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def catalog_with(project: str, *views: str) -> Catalog:
    account = Entity(name="account")
    items: list[object] = [account]
    for name in views:
        items.append(
            FeatureView(
                name=name,
                entities=[account],
                schema=[Field(name="x", dtype=Float64)],
                source=FileSource(path=f"data/{name}.parquet"),
                ttl=timedelta(hours=1),
            )
        )
    return Catalog.build(project, items)  # type: ignore[arg-type]


@pytest.fixture(
    params=["memory", "sqlite", "sqlite-read", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    if request.param == "sqlite-read":  # the sqlite3 reader in front (registry/sqlite_read.py)
        return f"sqlite-read:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("postgres_url"))


def open_store(url: str) -> RegistryStore:
    if url.startswith("sqlite-read:"):
        return open_registry_store("sqlite:" + url.removeprefix("sqlite-read:"))
    return InMemoryRegistryStore() if url == "memory" else SqlRegistryStore(url)


@pytest.fixture
def store(store_url: str, project_name: str) -> Iterator[RegistryStore]:
    opened = open_store(store_url)
    yield opened
    if opened.head(project_name):
        opened.delete_project(project_name, expected_version=opened.head(project_name))
    opened.close()


def commit(store: RegistryStore, catalog: Catalog, expected: int, when: datetime = T0) -> int:
    changes = plan(Catalog(catalog.project), catalog, expected).changes
    info = store.commit(
        catalog,
        expected_version=expected,
        changes=changes,
        author="ann",
        message=f"v{expected + 1}",
        committed_at=when,
    )
    return info.version


def test_empty_project_has_head_zero_and_no_history(
    store: RegistryStore, project_name: str
) -> None:
    assert store.head(project_name) == 0
    assert store.history(project_name) == []
    with pytest.raises(ProjectNotFound):
        store.read(project_name)


def test_versions_are_numbered_and_each_keeps_its_full_catalog(
    store: RegistryStore, project_name: str
) -> None:
    first, second = catalog_with(project_name, "a"), catalog_with(project_name, "a", "b")
    assert commit(store, first, 0) == 1
    assert commit(store, second, 1, T0 + timedelta(minutes=5)) == 2
    assert store.head(project_name) == 2
    assert store.read(project_name).catalog == second
    assert store.read(project_name, 1).catalog == first
    assert store.read(project_name, 1).catalog.fingerprint() == first.fingerprint()
    history = store.history(project_name)
    assert [(h.version, h.author, h.message) for h in history] == [
        (1, "ann", "v1"),
        (2, "ann", "v2"),
    ]
    assert [h.committed_at for h in history] == [T0, T0 + timedelta(minutes=5)]
    assert [c.name for c in history[0].changes] == ["account", "a"]
    assert project_name in store.projects()


def test_head_info_carries_the_fingerprint_without_the_catalog(
    store: RegistryStore, project_name: str
) -> None:
    assert store.head_info(project_name) is None
    first, second = catalog_with(project_name, "a"), catalog_with(project_name, "a", "b")
    commit(store, first, 0)
    commit(store, second, 1)
    info = store.head_info(project_name)
    assert info is not None
    assert (info.version, info.fingerprint) == (2, second.fingerprint())
    assert info.fingerprint != first.fingerprint()


def test_missing_version_is_a_clear_error(store: RegistryStore, project_name: str) -> None:
    commit(store, catalog_with(project_name, "a"), 0)
    with pytest.raises(RegistryVersionNotFound):
        store.read(project_name, 7)


def test_stale_commit_conflicts_and_writes_nothing(store: RegistryStore, project_name: str) -> None:
    commit(store, catalog_with(project_name, "a"), 0)
    commit(store, catalog_with(project_name, "a", "b"), 1)
    with pytest.raises(RegistryConflict, match="nothing was written"):
        commit(store, catalog_with(project_name, "zzz"), 1)
    assert store.head(project_name) == 2
    assert set(store.read(project_name).catalog.feature_views) == {"a", "b"}
    assert len(store.history(project_name)) == 2


def test_first_commit_race_is_a_conflict_too(store: RegistryStore, project_name: str) -> None:
    commit(store, catalog_with(project_name, "a"), 0)
    with pytest.raises(RegistryConflict):
        commit(store, catalog_with(project_name, "b"), 0)


def test_delete_project_removes_all_versions(store: RegistryStore, project_name: str) -> None:
    commit(store, catalog_with(project_name, "a"), 0)
    commit(store, catalog_with(project_name, "b"), 1)
    with pytest.raises(RegistryConflict):
        store.delete_project(project_name, expected_version=1)
    store.delete_project(project_name, expected_version=2)
    assert store.head(project_name) == 0
    assert store.history(project_name) == []
    assert project_name not in store.projects()
    with pytest.raises(ProjectNotFound):
        store.delete_project(project_name, expected_version=0)


def test_projects_are_isolated(store: RegistryStore, project_name: str) -> None:
    other = project_name + "_other"
    commit(store, catalog_with(project_name, "a"), 0)
    commit(store, catalog_with(other, "b"), 0)
    try:
        assert set(store.read(project_name).catalog.feature_views) == {"a"}
        assert set(store.read(other).catalog.feature_views) == {"b"}
    finally:
        store.delete_project(other, expected_version=1)


# --- two processes racing --------------------------------------------------------------------


def _race(url: str, project: str, view: str, barrier: Callable[[], object], out: object) -> None:
    """Read the head, then (once both processes have) commit against it: a true CAS race."""
    store = SqlRegistryStore(url)
    head = store.head(project)
    desired = catalog_with(project, "base", view)
    changes = plan(store.read(project, head).catalog, desired, head).changes
    barrier()
    try:
        info = store.commit(
            desired,
            expected_version=head,
            changes=changes,
            author=view,
            message=view,
            committed_at=T0,
        )
        out.put(("won", view, head, info.version))  # type: ignore[attr-defined]
    except RegistryConflict:
        out.put(("conflict", view, head, None))  # type: ignore[attr-defined]
    finally:
        store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    if request.param == "sqlite-read":  # the sqlite3 reader in front (registry/sqlite_read.py)
        return f"sqlite-read:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_two_processes_committing_at_once_one_wins_and_nothing_is_half_written(
    sql_url: str, project_name: str
) -> None:
    store = SqlRegistryStore(sql_url)
    commit(store, catalog_with(project_name, "base"), 0)
    context = multiprocessing.get_context("spawn")
    try:
        for round_ in range(3):
            barrier, queue = context.Barrier(2), context.Queue()
            names = [f"r{round_}_left", f"r{round_}_right"]
            workers = [
                context.Process(target=_race, args=(sql_url, project_name, n, barrier.wait, queue))
                for n in names
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(60)
                assert worker.exitcode == 0
            outcomes = sorted([queue.get(timeout=5) for _ in workers])
            head_before = round_ + 1
            assert [(o[0], o[2]) for o in outcomes] == [
                ("conflict", head_before),
                ("won", head_before),
            ]
            winner = outcomes[1][1]
            assert store.head(project_name) == head_before + 1
            assert set(store.read(project_name).catalog.feature_views) == {"base", winner}
            history = store.history(project_name)
            assert [h.version for h in history] == list(range(1, head_before + 2))
            assert history[-1].author == winner
    finally:
        store.delete_project(project_name, expected_version=store.head(project_name))
        store.close()
