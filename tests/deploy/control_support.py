"""Shared pieces of the control tests: a repo with a registered model, a settable clock, and a
scripted gate checker (verdicts decided by the test, not by the prediction log)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from parity import FeatureStore
from parity.definitions.rollout import Gate, Phase, Rollout
from parity.deploy.state import CheckOutcome, GateResult, RolloutState
from parity.deploy.store import RolloutStore, events_table, lease_table, rollouts_table
from tests.conftest import DRIVER_REPO, write_repo

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> datetime:
        self.now += by
        return self.now


@dataclass
class Scripted:
    """A gate checker: `verdict(state, now)` says each gate's verdict; every call is recorded."""

    verdict: Callable[[RolloutState, datetime], str] = lambda state, now: "pass"
    samples: int = 1_000
    calls: list[tuple[str, int, datetime]] = field(default_factory=list)

    def __call__(self, _store: object, state: RolloutState, now: datetime) -> CheckOutcome:
        self.calls.append((state.id, state.step, now))
        verdict = self.verdict(state, now)
        results = tuple(
            GateResult(
                gate.metric,
                verdict,  # type: ignore[arg-type]
                candidate=0.5 if verdict == "fail" else 0.1,
                champion=0.1,
                limit=gate.limit,
                samples={"candidate": self.samples, "champion": self.samples},
                reason=f"scripted {verdict}",
            )
            for gate in state.definition.gates
        )
        return CheckOutcome(results, {"candidate": self.samples, "champion": self.samples})


def short_rollout(**changes: object) -> Rollout:
    """Shadow + 3 canary steps of 2 minutes each, checked every minute, one drift gate."""
    fields: dict[str, object] = {
        "name": "fraud_rollout",
        "model": "fraud",
        "candidate": 2,
        "shadow": Phase(weight=0, duration=2 * MINUTE, min_samples=10),
        "steps": tuple(Phase(weight=w, duration=2 * MINUTE, min_samples=10) for w in (5, 50, 100)),
        "gates": (Gate(metric="prediction_drift"),),
        "interval": MINUTE,
    }
    fields.update(changes)
    return Rollout(**fields)  # type: ignore[arg-type]


def register_versions(store: FeatureStore, count: int = 3, *, champion: int | None = 1) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    for _ in range(count):
        store.models.register_model(
            "fraud", LogisticRegression().fit(x, y), feature_service="driver_service"
        )
    if champion is not None:
        store.models.set_alias("fraud", "champion", champion)


def make_repo(root: Path, backend: str, project: str, postgres_url: str | None) -> Path:
    extra = ""
    if backend == "postgres":
        extra = f"registry:\n  type: postgres\n  url: {postgres_url}\n"
    return write_repo(root, DRIVER_REPO, project=project, extra=extra)


def cleanup(store: FeatureStore) -> None:
    """Leave a shared PostgreSQL database as it was (rollout rows of this project)."""
    engine: sa.Engine = store.registry.store.engine  # type: ignore[attr-defined]
    RolloutStore(engine, store.project)  # creates the tables if no test got that far
    with engine.begin() as conn:
        for table in (events_table, rollouts_table, lease_table):
            conn.execute(table.delete().where(table.c.project == store.project))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def repo(tmp_path: Path, backend: str, project_name: str, request: pytest.FixtureRequest) -> Path:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    return make_repo(tmp_path / "repo", backend, project_name, url)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fraud_store(repo: Path, clock: Clock) -> Iterator[FeatureStore]:
    store = FeatureStore(repo, clock=clock)
    store.apply()
    register_versions(store)
    yield store
    cleanup(store)
    store.close()
