"""Alias moves are compare-and-swap: a rollback never undoes a move it did not see.

Real SQLite and PostgreSQL stores; the race window is hit deterministically by a store that runs a
concurrent move (in another thread, on its own connection) right after rollback reads the history.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from parity.errors import AliasMoved, NoRollbackTarget
from parity.models.artifacts import LocalArtifactStore
from parity.models.registry import ModelRegistry
from parity.models.sql import SqlModelStore, aliases_table, events_table, versions_table
from parity.models.store import AliasEvent, ModelVersion

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("postgres_url"))


class RacingStore(SqlModelStore):
    """A real SQL store that runs `after_history` once, right after a history read returns."""

    after_history: Callable[[], None] | None = None

    def alias_history(self, project: str, name: str, alias: str | None = None) -> list[AliasEvent]:
        events = super().alias_history(project, name, alias)
        hook, self.after_history = self.after_history, None
        if hook is not None:
            hook()
        return events


@pytest.fixture
def store(store_url: str, project_name: str) -> Iterator[RacingStore]:
    opened = RacingStore(store_url)
    for _ in range(3):
        opened.add_version(
            ModelVersion(project_name, "fraud", 0, T0, "ann", "sklearn", "ab" * 32, 1)
        )
    yield opened
    with opened.engine.begin() as conn:  # leave a shared PostgreSQL database as it was
        for table in (events_table, aliases_table, versions_table):
            conn.execute(table.delete().where(table.c.project == project_name))
    opened.close()


def open_registry(store: SqlModelStore, project: str, tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(
        store, LocalArtifactStore(tmp_path / "artifacts"), project=project, author="ann"
    )


def in_another_thread(store_url: str, work: Callable[[SqlModelStore], None]) -> None:
    """Run `work` to completion in a thread with its own store (its own connection)."""
    errors: list[BaseException] = []

    def run() -> None:
        own = SqlModelStore(store_url)
        try:
            work(own)
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            own.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert errors == []


def test_a_move_between_reading_history_and_rolling_back_is_not_undone(
    store: RacingStore, store_url: str, project_name: str, tmp_path: Path
) -> None:
    registry = open_registry(store, project_name, tmp_path)
    registry.set_alias("fraud", "prod", 1)
    registry.set_alias("fraud", "prod", 2)

    def someone_moves_prod_to_3() -> None:
        in_another_thread(
            store_url,
            lambda own: own.set_alias(
                project_name, "fraud", "prod", 3, author="bob", reason="hotfix", at=T0
            ),
        )

    store.after_history = someone_moves_prod_to_3
    with pytest.raises(AliasMoved, match=r"prod.*version 3, not at version 2"):
        registry.rollback("fraud", "prod")
    assert registry.aliases("fraud") == {"prod": 3}
    moves = [(e.version, e.previous) for e in registry.history("fraud", "prod")]
    assert moves == [(1, None), (2, 1), (3, 2)]  # bob's move stands; the rollback wrote nothing


def test_a_rollback_after_a_delete_conflicts_with_a_concurrent_recreate(
    store: RacingStore, store_url: str, project_name: str, tmp_path: Path
) -> None:
    registry = open_registry(store, project_name, tmp_path)
    registry.set_alias("fraud", "prod", 1)
    registry.delete_alias("fraud", "prod")
    store.after_history = lambda: in_another_thread(
        store_url,
        lambda own: own.set_alias(project_name, "fraud", "prod", 2, author="bob", reason="", at=T0),
    )
    with pytest.raises(AliasMoved, match="prod"):
        registry.rollback("fraud", "prod")
    assert registry.aliases("fraud") == {"prod": 2}


def test_a_move_away_and_back_in_the_window_is_caught_too(
    store: RacingStore, store_url: str, project_name: str, tmp_path: Path
) -> None:
    registry = open_registry(store, project_name, tmp_path)
    registry.set_alias("fraud", "prod", 1)
    registry.set_alias("fraud", "prod", 2)

    def away_and_back(own: SqlModelStore) -> None:
        for version in (3, 2):
            own.set_alias(project_name, "fraud", "prod", version, author="bob", reason="", at=T0)

    store.after_history = lambda: in_another_thread(store_url, away_and_back)
    with pytest.raises(AliasMoved, match="2 more move"):
        registry.rollback("fraud", "prod")
    assert [e.version for e in registry.history("fraud", "prod")] == [1, 2, 3, 2]


def test_set_alias_with_an_expected_version_moves_only_from_it(
    store: RacingStore, project_name: str, tmp_path: Path
) -> None:
    registry = open_registry(store, project_name, tmp_path)
    with pytest.raises(AliasMoved, match="does not exist"):
        registry.set_alias("fraud", "prod", 1, expected=2)
    registry.set_alias("fraud", "prod", 1, expected=None)  # None: only if the alias is absent
    with pytest.raises(AliasMoved, match="points at version 1"):
        registry.set_alias("fraud", "prod", 2, expected=None)
    with pytest.raises(AliasMoved, match="not at version 3"):
        registry.set_alias("fraud", "prod", 2, expected=3)
    registry.set_alias("fraud", "prod", 2, expected=1)
    assert registry.aliases("fraud") == {"prod": 2}
    assert [e.version for e in registry.history("fraud")] == [1, 2]


def test_concurrent_rollbacks_and_moves_each_undo_exactly_the_move_before_them(
    store: RacingStore, store_url: str, project_name: str, tmp_path: Path
) -> None:
    registry = open_registry(store, project_name, tmp_path)
    registry.set_alias("fraud", "prod", 1)
    registry.set_alias("fraud", "prod", 2)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []
    outcomes: list[str] = []

    def worker(index: int) -> None:
        own = open_registry(SqlModelStore(store_url), project_name, tmp_path)
        try:
            barrier.wait()
            for step in range(6):
                try:
                    if index % 2:
                        own.rollback("fraud", "prod")
                        outcomes.append("rolled back")
                    else:
                        own.set_alias("fraud", "prod", 1 + (index + step) % 3, reason="move")
                except (AliasMoved, NoRollbackTarget):
                    outcomes.append("refused")
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            own.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    events = registry.history("fraud", "prod")
    assert [e.previous for e in events[1:]] == [e.version for e in events[:-1]]
    for before, event in itertools.pairwise(events):
        if event.reason.startswith("rollback"):  # it undid the move just before it, exactly
            assert (event.previous, event.version) == (before.version, before.previous)
    assert registry.aliases("fraud") == {"prod": events[-1].version}
    assert outcomes.count("rolled back") == sum(e.reason.startswith("rollback") for e in events)
