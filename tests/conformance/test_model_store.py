"""ModelStore conformance: SQLite and PostgreSQL run the same contract, concurrency included."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from parity.errors import AliasNotFound, ModelNotFound, ModelVersionNotFound, VersionAliased
from parity.models.sql import SqlModelStore, aliases_table, events_table, versions_table
from parity.models.store import AliasEvent, ModelStore, ModelVersion
from parity.registry.sql import SqlRegistryStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SHA = "ab" * 32


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str, project_name: str) -> Iterator[SqlModelStore]:
    opened = SqlModelStore(store_url)
    yield opened
    with opened.engine.begin() as conn:  # leave a shared PostgreSQL database as it was
        for table in (events_table, aliases_table, versions_table):
            conn.execute(table.delete().where(table.c.project == project_name))
    opened.close()


def draft(project: str, name: str = "fraud", **changes: Any) -> ModelVersion:
    values: dict[str, Any] = {
        "project": project,
        "name": name,
        "version": 0,
        "created_at": T0,
        "author": "ann",
        "flavor": "sklearn",
        "artifact": SHA,
        "artifact_size": 1234,
    }
    return ModelVersion(**{**values, **changes})


def register(store: ModelStore, project: str, name: str = "fraud", count: int = 1) -> list[int]:
    return [store.add_version(draft(project, name)).version for _ in range(count)]


def move(store: ModelStore, project: str, alias: str, version: int, at: datetime) -> AliasEvent:
    return store.set_alias(project, "fraud", alias, version, author="bob", reason="r", at=at)


def test_the_sql_store_satisfies_the_protocol(store: SqlModelStore) -> None:
    assert isinstance(store, ModelStore)


def test_versions_are_numbered_from_one_per_model_and_project(
    store: ModelStore, project_name: str
) -> None:
    assert register(store, project_name, "fraud", 3) == [1, 2, 3]
    assert register(store, project_name, "churn", 2) == [1, 2]
    assert register(store, project_name + "_other", "fraud", 1) == [1]
    assert store.list_models(project_name) == ["churn", "fraud"]


def test_a_version_reads_back_with_every_field(store: ModelStore, project_name: str) -> None:
    signature = {"input_kind": "ndarray", "inputs": [], "outputs": []}
    local = T0.astimezone(timezone(timedelta(hours=2)))
    added = store.add_version(
        draft(
            project_name,
            created_at=local,
            signature=signature,
            feature_service="fraud_features",
            training_dataset="train_march",
            dataset_fingerprint="f" * 64,
            dataset_registry_version=7,
            registry_version=9,
            code_version="0123abc-dirty",
            metrics={"auc": 0.91},
            params={"C": 1.0, "layers": [3, 4], "opts": {"deep": None}},
            tags={"team": "risk"},
            description="first try",
        )
    )
    expected = ModelVersion(
        project=project_name,
        name="fraud",
        version=1,
        created_at=T0,
        author="ann",
        flavor="sklearn",
        artifact=SHA,
        artifact_size=1234,
        signature={"input_kind": "ndarray", "inputs": [], "outputs": []},
        feature_service="fraud_features",
        training_dataset="train_march",
        dataset_fingerprint="f" * 64,
        dataset_registry_version=7,
        registry_version=9,
        code_version="0123abc-dirty",
        metrics={"auc": 0.91},
        params={"C": 1.0, "layers": [3, 4], "opts": {"deep": None}},
        tags={"team": "risk"},
        description="first try",
    )
    assert added == expected
    assert store.get_version(project_name, "fraud", 1) == expected
    assert store.get_version(project_name, "fraud", 1).created_at.utcoffset() == timedelta(0)
    assert expected.ref == "fraud/1"


def test_latest_and_listing_follow_version_numbers(store: ModelStore, project_name: str) -> None:
    register(store, project_name, "fraud", 3)
    assert store.latest_version(project_name, "fraud").version == 3
    assert [v.version for v in store.list_versions(project_name, "fraud")] == [1, 2, 3]
    assert store.list_versions(project_name, "nothing") == []


def test_unknown_models_and_versions_raise_typed_errors(
    store: ModelStore, project_name: str
) -> None:
    register(store, project_name, "fraud", 1)
    with pytest.raises(ModelNotFound, match="parity models list"):
        store.latest_version(project_name, "nothing")
    with pytest.raises(ModelNotFound):
        store.get_version(project_name, "nothing", 1)
    with pytest.raises(ModelVersionNotFound, match="parity models versions fraud"):
        store.get_version(project_name, "fraud", 2)


def test_a_deleted_version_is_gone_and_its_number_never_comes_back(
    store: ModelStore, project_name: str
) -> None:
    register(store, project_name, "fraud", 3)
    store.delete_version(project_name, "fraud", 3)
    with pytest.raises(ModelVersionNotFound, match="was deleted"):
        store.get_version(project_name, "fraud", 3)
    with pytest.raises(ModelVersionNotFound):
        store.delete_version(project_name, "fraud", 3)
    assert [v.version for v in store.list_versions(project_name, "fraud")] == [1, 2]
    assert store.latest_version(project_name, "fraud").version == 2
    assert register(store, project_name, "fraud", 1) == [4]


def test_a_model_whose_versions_are_all_deleted_is_not_listed(
    store: ModelStore, project_name: str
) -> None:
    register(store, project_name, "fraud", 1)
    store.delete_version(project_name, "fraud", 1)
    assert store.list_models(project_name) == []
    with pytest.raises(ModelNotFound):
        store.latest_version(project_name, "fraud")


def test_an_aliased_version_cannot_be_deleted_until_its_aliases_go(
    store: ModelStore, project_name: str
) -> None:
    register(store, project_name, "fraud", 2)
    move(store, project_name, "prod", 1, T0)
    move(store, project_name, "canary", 1, T0)
    with pytest.raises(VersionAliased, match="canary, prod"):
        store.delete_version(project_name, "fraud", 1)
    assert store.get_version(project_name, "fraud", 1).version == 1
    store.delete_alias(project_name, "fraud", "prod", author="bob", reason="", at=T0)
    move(store, project_name, "canary", 2, T0)
    store.delete_version(project_name, "fraud", 1)
    assert [v.version for v in store.list_versions(project_name, "fraud")] == [2]


def test_an_alias_needs_a_live_version(store: ModelStore, project_name: str) -> None:
    with pytest.raises(ModelNotFound):
        move(store, project_name, "prod", 1, T0)
    register(store, project_name, "fraud", 2)
    store.delete_version(project_name, "fraud", 2)
    with pytest.raises(ModelVersionNotFound):
        move(store, project_name, "prod", 2, T0)
    with pytest.raises(ModelVersionNotFound):
        move(store, project_name, "prod", 5, T0)
    assert store.aliases(project_name, "fraud") == {}
    assert store.alias_history(project_name, "fraud") == []


def test_alias_moves_are_recorded_with_the_version_they_replaced(
    store: ModelStore, project_name: str
) -> None:
    register(store, project_name, "fraud", 3)
    first = move(store, project_name, "prod", 1, T0)
    move(store, project_name, "staging", 3, T0 + timedelta(minutes=1))
    move(store, project_name, "prod", 2, T0 + timedelta(minutes=2))
    assert first == AliasEvent(project_name, "fraud", "prod", 1, None, T0, "bob", "r")
    assert store.get_alias(project_name, "fraud", "prod") == 2
    assert store.aliases(project_name, "fraud") == {"prod": 2, "staging": 3}
    prod = [(e.version, e.previous) for e in store.alias_history(project_name, "fraud", "prod")]
    assert prod == [(1, None), (2, 1)]
    everything = [(e.alias, e.version) for e in store.alias_history(project_name, "fraud")]
    assert everything == [("prod", 1), ("staging", 3), ("prod", 2)]


def test_deleting_an_alias_records_a_move_to_nothing(store: ModelStore, project_name: str) -> None:
    register(store, project_name, "fraud", 1)
    move(store, project_name, "prod", 1, T0)
    later = T0 + timedelta(hours=1)
    event = store.delete_alias(project_name, "fraud", "prod", author="cy", reason="off", at=later)
    assert event == AliasEvent(project_name, "fraud", "prod", None, 1, later, "cy", "off")
    assert store.alias_history(project_name, "fraud", "prod")[-1] == event
    with pytest.raises(AliasNotFound, match="no alias 'prod'"):
        store.get_alias(project_name, "fraud", "prod")
    with pytest.raises(AliasNotFound):
        store.delete_alias(project_name, "fraud", "prod", author="cy", reason="", at=later)


def test_alias_at_answers_from_history_to_the_microsecond(
    store: ModelStore, project_name: str
) -> None:
    register(store, project_name, "fraud", 2)
    t1, t2, t3 = T0, T0 + timedelta(days=1), T0 + timedelta(days=2)
    move(store, project_name, "prod", 1, t1)
    move(store, project_name, "prod", 2, t2)
    store.delete_alias(project_name, "fraud", "prod", author="bob", reason="", at=t3)
    tick = timedelta(microseconds=1)

    def at(moment: datetime) -> int | None:
        return store.alias_at(project_name, "fraud", "prod", moment)

    assert [at(t1 - tick), at(t1), at(t2 - tick), at(t2), at(t3 - tick), at(t3)] == [
        None,
        1,
        1,
        2,
        2,
        None,
    ]
    assert at(t2.astimezone(timezone(timedelta(hours=-5)))) == 2
    assert store.alias_at(project_name, "fraud", "staging", t3) is None


def test_tables_are_created_once_and_a_shared_engine_is_accepted(
    store_url: str, store: SqlModelStore, project_name: str
) -> None:
    register(store, project_name, "fraud", 1)
    registry = SqlRegistryStore(store_url)
    shared = SqlModelStore(registry.engine)
    assert shared.latest_version(project_name, "fraud").version == 1
    shared.close()  # does not dispose the engine it was given
    assert registry.head(project_name) == 0
    registry.close()


def run_together(store_url: str, count: int, work: Callable[[ModelStore, int], None]) -> None:
    """Run `work` in `count` threads, each with its own store, released at the same moment."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        own = SqlModelStore(store_url)
        try:
            barrier.wait()
            work(own, index)
        except BaseException as error:  # reported by the main thread below
            errors.append(error)
        finally:
            own.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_concurrent_registrations_get_distinct_consecutive_numbers(
    store_url: str, store: ModelStore, project_name: str
) -> None:
    got: list[int] = []
    run_together(store_url, 4, lambda own, _: got.extend(register(own, project_name, "m", 5)))
    assert sorted(got) == list(range(1, 21))
    assert [v.version for v in store.list_versions(project_name, "m")] == list(range(1, 21))


def test_concurrent_alias_moves_leave_an_unbroken_history(
    store_url: str, store: ModelStore, project_name: str
) -> None:
    register(store, project_name, "fraud", 4)

    def moves(own: ModelStore, index: int) -> None:
        for step in range(5):
            move(own, project_name, "prod", index + 1, T0 + timedelta(seconds=step))

    run_together(store_url, 4, moves)
    events = store.alias_history(project_name, "fraud", "prod")
    assert len(events) == 20
    assert [e.previous for e in events] == [None] + [e.version for e in events[:-1]]
    assert store.get_alias(project_name, "fraud", "prod") == events[-1].version
