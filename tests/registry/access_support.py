"""Stores on a real SQLite or PostgreSQL registry for the token and audit tests, with a clock the
test moves, and the clean-up that leaves a shared PostgreSQL database as it was."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from parity.feature_store import FeatureStore
from tests.conftest import DRIVER_REPO, write_repo

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


def registry_yaml(kind: str, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return ""
    url = request.getfixturevalue("postgres_url")
    return f"registry:\n  type: postgres\n  url: {url}\n"


def open_store(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, project: str, clock: Clock
) -> Iterator[FeatureStore]:
    """A FeatureStore on the driver repo with its registry on `kind` (sqlite or postgres)."""
    root = write_repo(
        tmp_path / "repo", DRIVER_REPO, project=project, extra=registry_yaml(kind, request)
    )
    store = FeatureStore(root, clock=clock)
    try:
        yield store
    finally:
        forget(store)
        store.close()


def forget(store: FeatureStore) -> None:
    """Delete the project's tokens and audit records (other tests share the PostgreSQL db)."""
    from parity.registry.audit import audit_table, metadata
    from parity.registry.sql import create_tables
    from parity.serving.auth.token_store import metadata as token_metadata
    from parity.serving.auth.token_store import tokens_table

    engine = getattr(store.registry.store, "engine", None)
    if engine is None:
        return
    create_tables(metadata, engine)
    create_tables(token_metadata, engine)
    with engine.begin() as conn:
        for table in (audit_table, tokens_table):
            conn.execute(table.delete().where(table.c.project == store.project))
