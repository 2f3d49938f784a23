"""Rollouts declared in the repo and applied: started by name with their custom gate functions
bound from the repo (and refused when the repo's function changed since apply); `label:` gates
naming a metric of the model's Monitor; the leased loop `run` in a thread."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from parity import FeatureStore
from parity.deploy.service import Rollouts
from parity.deploy.state import RolloutState
from parity.errors import InvalidRollout
from tests.deploy.control_support import (
    MINUTE,
    Clock,
    Scripted,
    cleanup,
    register_versions,
    short_rollout,
)

ROLLOUTS = """
from datetime import timedelta
from parity import Gate, LabelSource, Monitor, Phase, Rollout

def recall_dollars(labels, scores, rows):
    return 1.0

fraud_monitor = Monitor(
    name="fraud_monitor",
    model="fraud",
    labels=LabelSource(path="data/labels.parquet", label="is_fraud"),
    metrics=[recall_dollars],
)

def same_scores(evidence):
    return "pass"

careful = Rollout(
    name="careful",
    model="fraud",
    candidate=2,
    steps=[Phase(weight=10, duration=timedelta(minutes=2), min_samples=5)],
    gates=[Gate(metric="custom:same_scores"), Gate(metric="label:recall_dollars")],
    custom_gates=[same_scores],
    interval=timedelta(minutes=1),
)
"""


@pytest.fixture
def declared(repo: Path, clock: Clock) -> Path:
    (repo / "rollouts.py").write_text(ROLLOUTS)
    with FeatureStore(repo, clock=clock) as store:
        store.apply()
        register_versions(store)
    return repo


def test_a_declared_rollout_starts_by_name_with_its_gate_functions_bound(
    declared: Path, clock: Clock
) -> None:
    seen: list[tuple[str, ...]] = []

    def checker(store: object, state: RolloutState, now: datetime) -> object:
        seen.append(tuple(sorted(state.definition.gate_functions)))
        return Scripted()(store, state, now)

    with FeatureStore(declared, clock=clock) as store:
        try:
            assert (
                store.registry.catalog.rollouts["careful"].gate_functions == {}
            )  # applied: no code
            rollouts = Rollouts(store, clock=clock, checker=checker)  # type: ignore[arg-type]
            state = rollouts.start("careful", actor="ann")
            assert (state.definition.name, state.candidate, state.in_shadow) == ("careful", 2, True)
            assert [g.metric for g in state.definition.gates] == [
                "custom:same_scores",
                "label:recall_dollars",
            ]
            function = store.registry.catalog.rollouts["careful"].gate_functions["same_scores"]
            assert function(None) == "pass"  # the repo's own function, bound at start
            clock.advance(MINUTE)
            assert [e.kind for e in rollouts.step()] == ["check"]
            # read back from the database, the definition gets its functions from the repo again
            assert seen == [("same_scores",)]
        finally:
            cleanup(store)


def test_a_custom_gate_changed_since_apply_is_refused(declared: Path, clock: Clock) -> None:
    text = (declared / "rollouts.py").read_text()
    (declared / "rollouts.py").write_text(text.replace('return "pass"', 'return "fail"'))
    with FeatureStore(declared, clock=clock) as store:
        try:
            with pytest.raises(
                InvalidRollout, match="differs from the applied one; run 'parity apply'"
            ):
                store.rollouts.start("careful")
        finally:
            cleanup(store)


def test_a_label_gate_on_a_metric_no_monitor_has_is_refused_naming_the_monitor_metrics(
    declared: Path, clock: Clock
) -> None:
    with FeatureStore(declared, clock=clock) as store:
        try:
            with pytest.raises(InvalidRollout, match="the model's Monitor \\(recall_dollars\\)"):
                store.rollouts.start(model="fraud", candidate=2, gates=[{"metric": "label:nope"}])
            state = store.rollouts.start(
                model="fraud", candidate=2, gates=[{"metric": "label:recall_dollars"}]
            )
            assert state.definition.gates[0].argument == "recall_dollars"
        finally:
            cleanup(store)


def test_run_loops_in_a_thread_until_stopped_and_releases_the_lease(
    fraud_store: FeatureStore,
) -> None:
    began = datetime.now(UTC)
    start = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def fast() -> datetime:  # one simulated minute per 0.02 s of real time
        return start + (datetime.now(UTC) - began) * 3000

    rollouts = Rollouts(fraud_store, clock=fast, checker=Scripted())
    rollouts.start(short_rollout())
    stop = threading.Event()
    thread = threading.Thread(target=rollouts.run, kwargs={"stop": stop, "poll": 0.005})
    thread.start()
    try:
        for _ in range(4000):  # a safety net against a hung loop, not a timing assertion
            if rollouts.status("fraud").status != "active":
                break
            stop.wait(0.005)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert rollouts.status("fraud").status == "promoted"
    advanced = [e.step for e in rollouts.history("fraud") if e.kind == "advanced"]
    assert advanced == [1, 2, 3]
    assert rollouts.db.lease() is None  # released on the way out
    assert fraud_store.models.aliases("fraud")["champion"] == 2
    assert timedelta(0) < fast() - start
