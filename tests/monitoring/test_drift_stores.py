"""The profile store and the drift history on SQLite and PostgreSQL: immutable profiles keyed by
fingerprint, failed attempts replaceable, history rows round-trip and `latest` per column."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from parity.errors import ProfileNotFound
from parity.monitoring.drift_history import DATASET, DriftHistory, DriftRow, drift_table
from parity.monitoring.profile_store import (
    FAILED,
    FEATURES,
    OK,
    ProfileStore,
    StoredProfile,
    model_subject,
    profiles_table,
)
from parity.registry.sql import create_registry_engine

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FP = "f" * 64


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path, project_name: str) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    created = create_registry_engine(url)
    yield created
    ProfileStore(created)
    DriftHistory(created)
    with created.begin() as conn:  # leave a shared PostgreSQL database as it was
        for table in (profiles_table, drift_table):
            conn.execute(table.delete().where(table.c.project == project_name))
    created.dispose()


def profile(project: str, subject: str = FEATURES, **changes: object) -> StoredProfile:
    values: dict[str, object] = {
        "project": project,
        "fingerprint": FP,
        "subject": subject,
        "dataset": "train_v1",
        "created_at": T0,
        "status": OK,
        "rows": 10,
        "profile": '{"columns": {}}',
        "error": "",
    }
    values.update(changes)
    return StoredProfile(**values)  # type: ignore[arg-type]


def test_a_stored_profile_reads_back_equal(engine: Engine, project_name: str) -> None:
    store = ProfileStore(engine)
    stored = store.put(profile(project_name))
    assert store.get(project_name, FP, FEATURES) == stored == profile(project_name)
    assert store.get(project_name, FP, FEATURES).created_at == T0


def test_a_computed_profile_is_never_replaced(engine: Engine, project_name: str) -> None:
    store = ProfileStore(engine)
    store.put(profile(project_name, profile='{"first": 1}'))
    kept = store.put(profile(project_name, profile='{"second": 2}', rows=99))
    assert kept.profile == '{"first": 1}'
    assert store.get(project_name, FP, FEATURES).rows == 10


def test_a_failed_attempt_is_recorded_and_then_replaced(engine: Engine, project_name: str) -> None:
    store = ProfileStore(engine)
    store.put(profile(project_name, status=FAILED, profile=None, rows=0, error="file gone"))
    failed = store.get(project_name, FP, FEATURES)
    assert (failed.ok, failed.error, failed.profile) == (False, "file gone", None)
    store.put(profile(project_name))
    assert store.get(project_name, FP, FEATURES).ok


def test_a_missing_profile_names_the_command_to_run(engine: Engine, project_name: str) -> None:
    with pytest.raises(ProfileNotFound, match="parity monitor profile --dataset"):
        ProfileStore(engine).get(project_name, FP, "features")


def test_profiles_are_listed_per_project_and_fingerprint(engine: Engine, project_name: str) -> None:
    store = ProfileStore(engine)
    store.put(profile(project_name))
    store.put(profile(project_name, subject=model_subject("fraud", 3)))
    store.put(profile(project_name, fingerprint="e" * 64))
    assert model_subject("fraud", 3) == "model:fraud/3:outputs"
    assert len(store.list(project_name)) == 3
    assert [p.subject for p in store.list(project_name, FP)] == [FEATURES, "model:fraud/3:outputs"]
    assert store.list(f"{project_name}_other") == []


def drift_row(project: str, run: str, column: str, at: datetime, **changes: object) -> DriftRow:
    values: dict[str, object] = {
        "run_id": run,
        "run_at": at,
        "project": project,
        "model": "fraud",
        "version": 1,
        "window_start": at - timedelta(hours=1),
        "window_end": at,
        "column": column,
        "kind": "feature",
        "test": "wasserstein",
        "statistic": 0.25,
        "p_value": None,
        "threshold": 0.1,
        "status": "drift",
        "drifted": True,
        "rows": 500,
        "reason": "",
    }
    values.update(changes)
    return DriftRow(**values)  # type: ignore[arg-type]


def test_history_rows_round_trip_in_order(engine: Engine, project_name: str) -> None:
    history = DriftHistory(engine)
    rows = [
        drift_row(project_name, "r1", "amount", T0),
        drift_row(project_name, "r1", DATASET, T0, kind="dataset", drifted=None, statistic=None),
        drift_row(project_name, "r2", "amount", T0 + timedelta(hours=1), p_value=0.01),
    ]
    history.record(rows[:2])
    history.record(rows[2:])
    assert history.history(project_name, "fraud") == rows
    assert history.history(project_name, "fraud", column="amount", limit=1) == rows[2:]
    assert history.history(project_name, "fraud", since=T0) == rows[2:]
    assert history.history(project_name, "fraud", until=T0) == rows[:2]
    assert history.history(project_name, "fraud", version=2) == []


def test_latest_is_the_newest_row_per_version_and_column(engine: Engine, project_name: str) -> None:
    history = DriftHistory(engine)
    old = drift_row(project_name, "r1", "amount", T0, statistic=0.5)
    new = drift_row(project_name, "r2", "amount", T0 + timedelta(hours=1), statistic=0.05)
    other = drift_row(project_name, "r2", "amount", T0, version=2, statistic=0.7)
    history.record([old])
    history.record([new, other])
    assert history.latest(project_name) == [new, other]


def test_a_run_is_recorded_whole_or_not_at_all(engine: Engine, project_name: str) -> None:
    history = DriftHistory(engine)
    good = drift_row(project_name, "r1", "amount", T0)
    bad = drift_row(project_name, "r1", "x" * 300, T0)  # longer than the column allows (PG)
    try:
        history.record([good, bad])
    except sa.exc.DBAPIError:
        assert history.history(project_name, "fraud") == []
    else:  # SQLite does not enforce VARCHAR lengths: both rows are there
        assert len(history.history(project_name, "fraud")) == 2


def test_concurrent_writers_of_one_profile_keep_one_row(engine: Engine, project_name: str) -> None:
    import threading

    stores = [ProfileStore(engine) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    kept: list[StoredProfile] = []

    def put(store: ProfileStore, index: int) -> None:
        barrier.wait()
        kept.append(store.put(profile(project_name, profile=f'{{"writer": {index}}}')))

    threads = [threading.Thread(target=put, args=(s, i)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = ProfileStore(engine).get(project_name, FP, FEATURES)
    assert len(kept) == 4 and {k.profile for k in kept} == {stored.profile}  # every writer agrees
    assert len(ProfileStore(engine).list(project_name)) == 1
