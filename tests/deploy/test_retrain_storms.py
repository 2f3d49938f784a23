"""Storms: the trigger engine on a real SQLite trigger store with an in-memory job queue honouring
`store.jobs`' contract. 50 correlated features drifting at once give one retrain; a signal
flapping around its threshold for a simulated day gives at most one per cooldown; 10 models
drifting with an overall cap of 2 never have more than 2 retrain jobs and none is lost; two
concurrent evaluations fire once; a fire whose job was not queued is queued by the next one."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from parity.definitions.retrain import RetrainPolicy
from parity.deploy.retrain import LEASE_SECONDS
from parity.deploy.retrain_decide import Outcome, TriggerState
from parity.deploy.retrain_signals import weighted_share
from parity.deploy.retrain_store import TriggerStore
from parity.errors import ParityError, RetrainEvaluationBusy, TrainingJobNotFound
from parity.registry.sql import create_registry_engine, sqlite_url
from tests.deploy.retrain_support import (
    DAY,
    HOUR,
    MINUTE,
    T0,
    FakeQueue,
    Scripted,
    engine,
    policy,
    sqlite_store,
)


@pytest.fixture
def store(tmp_path: Path) -> TriggerStore:
    return sqlite_store(tmp_path / "registry.db")


def simulate(
    store: TriggerStore,
    queue: FakeQueue,
    signals: Scripted,
    policies: list[RetrainPolicy],
    *,
    until: timedelta,
    every: timedelta = 10 * MINUTE,
    cap: int = 2,
) -> list[datetime]:
    """Evaluate every `every` until T0 + `until`, a runner pass before each; the times."""
    runner = engine(store, queue, signals, cap=cap)
    times = []
    now = T0
    while now <= T0 + until:
        queue.step(now)
        runner.evaluate(policies, now)
        times.append(now)
        now += every
    return times


def test_fifty_correlated_features_drifting_at_once_give_exactly_one_retrain(
    store: TriggerStore,
) -> None:
    features = [f"f{i}" for i in range(50)]
    importance = {name: 1.0 + i % 5 for i, name in enumerate(features)}
    onset = T0 + 2 * HOUR
    fixed: dict[str, datetime] = {}  # the retrained version is promoted when its job ends

    def share(model: str, now: datetime) -> float | None:
        drifting = onset <= now and (model not in fixed or now < fixed[model])
        verdicts = {name: drifting for name in features}
        return weighted_share(verdicts, importance, "importance")[0]

    queue = FakeQueue(duration=HOUR)
    queue.on_finish = lambda job: fixed.setdefault(str(job.model), job.finished_at or T0)
    simulate(store, queue, Scripted(drift_value=share), [policy()], until=DAY)
    assert queue.fired_models() == ["fraud"]
    history = store.history("fraud", limit=1000)
    fires = [d for d in history if d.action == "fire"]
    assert len(fires) == 1 and fires[0].job_id == queue.jobs[0].id
    assert fires[0].signals["drift"]["value"] == pytest.approx(1.0)
    # the evaluations between the fire and the new version were recorded as suppressed
    held = [d for d in history if d.action == "suppress" and d.at > fires[0].at]
    assert held and all("folded" in d.reasons[0] or "cooldown" in d.reasons[0] for d in held)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_signal_flapping_around_its_threshold_gives_at_most_one_retrain_per_cooldown(
    store: TriggerStore, seed: int
) -> None:
    rng = random.Random(seed)

    def flapping(model: str, now: datetime) -> float:
        return rng.choice([0.25, 0.35, 0.45, 0.49, 0.5, 0.51, 0.55, 0.6])

    queue = FakeQueue(duration=10 * MINUTE)  # jobs end fast: the cooldown is what holds
    cooldown = 6 * HOUR
    simulate(store, queue, Scripted(drift_value=flapping), [policy(cooldown=cooldown)], until=DAY)
    fires = sorted(d.at for d in store.history("fraud", limit=10_000) if d.action == "fire")
    assert len(queue.jobs) == len(fires) >= 1
    gaps = [later - earlier for earlier, later in itertools.pairwise(fires)]
    assert all(gap >= cooldown for gap in gaps)
    assert len(fires) <= DAY // cooldown + 1


def test_ten_models_drifting_with_a_cap_of_two_never_exceed_two_jobs_and_none_is_lost(
    store: TriggerStore,
) -> None:
    models = [f"m{i}" for i in range(10)]
    retrained: dict[str, datetime] = {}

    def drift(model: str, now: datetime) -> float:
        return 0.0 if model in retrained else 0.9  # a retrain fixes its model

    queue = FakeQueue(cap=2, duration=HOUR)
    queue.on_finish = lambda job: retrained.setdefault(str(job.model), job.finished_at or T0)
    simulate(store, queue, Scripted(drift_value=drift), [policy(m) for m in models], until=DAY)
    assert queue.max_running <= 2
    assert queue.max_active <= 2  # the triggers defer, they do not pile jobs up in the queue
    assert sorted(queue.fired_models()) == models  # each retrained exactly once
    assert sorted(retrained) == models
    deferred = [d for d in store.history(limit=10_000) if "overall cap" in " ".join(d.reasons)]
    assert deferred  # the ones beyond the cap were recorded as deferred


def test_fires_held_by_the_cap_stay_owed_after_their_signal_clears(store: TriggerStore) -> None:
    models = [f"m{i}" for i in range(6)]

    def brief(model: str, now: datetime) -> float:
        return 0.9 if now < T0 + 20 * MINUTE else 0.0  # two evaluations of drift, then calm

    queue = FakeQueue(cap=2, duration=HOUR)
    simulate(
        store, queue, Scripted(drift_value=brief), [policy(m, sustain=1) for m in models], until=DAY
    )
    assert sorted(queue.fired_models()) == models
    assert queue.max_active <= 2


def test_manual_request_waits_for_the_models_active_job_then_fires_despite_cooldown(
    store: TriggerStore,
) -> None:
    queue = FakeQueue(duration=HOUR)
    chosen = policy(sustain=1, cooldown=DAY)
    runner = engine(store, queue, Scripted(drift_value=lambda m, now: 0.9 if now == T0 else 0.0))
    runner.evaluate([chosen], T0)
    assert len(queue.jobs) == 1
    runner.request(chosen, "labels backfilled", T0 + MINUTE)
    queue.step(T0 + MINUTE)  # the first job runs
    [held] = runner.evaluate([chosen], T0 + 2 * MINUTE)
    assert held.action == "suppress" and "#1" in held.reasons[0]
    queue.step(T0 + 2 * HOUR)  # it finished
    [fired] = runner.evaluate([chosen], T0 + 2 * HOUR)
    assert fired.action == "fire" and fired.signals["cooldown_bypassed_by"] == ["manual"]
    assert [j.reason for j in queue.jobs] == ["drift", "manual"]


def test_manual_requests_do_not_storm_one_pending_request_per_model(store: TriggerStore) -> None:
    queue = FakeQueue()
    chosen = policy()
    runner = engine(store, queue, Scripted())
    for minute in range(20):
        runner.request(chosen, f"click {minute}", T0 + minute * MINUTE)
    runner.evaluate([chosen], T0 + HOUR)
    runner.evaluate([chosen], T0 + 2 * HOUR)
    assert len(queue.jobs) == 1


def _evaluate(
    trigger_store: TriggerStore,
    queue: FakeQueue,
    signals: Scripted,
    chosen: list[RetrainPolicy],
    now: datetime,
    barrier: threading.Barrier,
    failures: list[BaseException],
) -> None:
    barrier.wait()
    try:
        engine(trigger_store, queue, signals).evaluate(chosen, now)
    except BaseException as error:  # reported by the caller
        failures.append(error)


def evaluate_concurrently(store_a: TriggerStore, store_b: TriggerStore, rounds: int) -> FakeQueue:
    queue = FakeQueue(duration=timedelta(0))
    chosen = [policy(sustain=1, cooldown=timedelta(0))]
    signals = Scripted(drift_value=lambda m, now: 0.9)
    for round_ in range(rounds):
        now = T0 + round_ * HOUR
        queue.step(now)  # the previous round's job starts and (second pass) finishes
        queue.step(now)
        barrier = threading.Barrier(2)
        failures: list[BaseException] = []
        threads = [
            threading.Thread(
                target=_evaluate, args=(s, queue, signals, chosen, now, barrier, failures)
            )
            for s in (store_a, store_b)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures
        assert len(queue.jobs) == round_ + 1  # one fire per round, never two
    return queue


def test_two_concurrent_evaluations_on_one_sqlite_file_fire_once(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    queue = evaluate_concurrently(sqlite_store(path), sqlite_store(path), rounds=5)
    store = sqlite_store(path)
    fires = [d for d in store.history(limit=100) if d.action == "fire"]
    assert sorted(d.job_id or 0 for d in fires) == [j.id for j in queue.jobs]


@pytest.fixture
def pg_stores(postgres_url: str, project_name: str) -> Iterator[tuple[TriggerStore, TriggerStore]]:
    first = TriggerStore(create_registry_engine(postgres_url), project_name)
    second = TriggerStore(create_registry_engine(postgres_url), project_name)
    first.clear()
    yield first, second
    first.clear()
    first.engine.dispose()
    second.engine.dispose()


@pytest.mark.postgres
def test_two_concurrent_evaluations_on_postgresql_fire_once(
    pg_stores: tuple[TriggerStore, TriggerStore],
) -> None:
    queue = evaluate_concurrently(*pg_stores, rounds=5)
    fires = [d for d in pg_stores[0].history(limit=100) if d.action == "fire"]
    assert sorted(d.job_id or 0 for d in fires) == [j.id for j in queue.jobs]


class Flaky(FakeQueue):
    failures: int = 1

    def submit(self, name: str, **kwargs: object) -> object:  # type: ignore[override]
        if self.failures:
            self.failures -= 1
            raise TrainingJobNotFound(f"training job '{name}' is not applied (flaky)")
        return super().submit(name, **kwargs)  # type: ignore[arg-type]


def test_a_fire_whose_submission_failed_is_queued_once_by_the_next_evaluation(
    store: TriggerStore,
) -> None:
    queue = Flaky()
    chosen = policy(sustain=1)
    runner = engine(store, queue, Scripted(drift_value=lambda m, now: 0.9))
    [first] = runner.evaluate([chosen], T0)
    assert first.action == "fire" and first.job_id is None
    assert "flaky" in store.errors(first.id or 0)[0]
    runner.evaluate([chosen], T0 + MINUTE)
    runner.evaluate([chosen], T0 + 2 * MINUTE)
    assert len(queue.jobs) == 1 and queue.jobs[0].trigger_decision == first.id
    assert store.history(limit=100)[-1].job_id == queue.jobs[0].id


def test_a_fire_queued_but_not_linked_is_linked_not_queued_again(store: TriggerStore) -> None:
    queue = FakeQueue()
    chosen = policy(sustain=1)
    fire = Outcome("fire", ("retrain: drift",), {}, TriggerState(last_fire_at=T0), ("drift",), True)
    decision = store.commit("fraud", chosen.name, 0, fire, T0)  # the evaluation died after this
    assert decision is not None and decision.id is not None
    queue.submit(chosen.job, reason="drift", trigger_decision=decision.id, now=T0)  # and this
    runner = engine(store, queue, Scripted())
    runner.evaluate([chosen], T0 + MINUTE)
    assert len(queue.jobs) == 1
    assert store.state("fraud").state.last_fire_job == queue.jobs[0].id
    assert store.history("fraud", limit=10)[-1].job_id == queue.jobs[0].id


def test_a_signal_error_on_one_model_does_not_stop_the_others(store: TriggerStore) -> None:
    from parity.errors import NoReference

    queue = FakeQueue()
    signals = Scripted(
        drift_value=lambda m, now: 0.9,
        errors={
            "a": NoReference(
                "model a/1 has no reference profile; run 'parity monitor profile --dataset d'"
            )
        },
    )
    decisions = engine(store, queue, signals).evaluate(
        [policy("a", sustain=1), policy("b", sustain=1)], T0
    )
    by_model = {d.model: d for d in decisions}
    assert by_model["a"].action == "suppress"
    assert "parity monitor profile --dataset d" in by_model["a"].reasons[0]
    assert by_model["a"].signals["drift"]["error"].startswith("no_reference")
    assert by_model["b"].action == "fire"
    assert isinstance(signals.errors["a"], ParityError)


def test_an_evaluation_that_outlives_its_lease_stops_instead_of_deciding_beside_another(
    tmp_path: Path,
) -> None:
    wall = {"now": 1_000_000.0}
    engine_ = create_registry_engine(sqlite_url(tmp_path / "registry.db"))
    slow_store = TriggerStore(engine_, "p", wall=lambda: wall["now"])
    other_store = TriggerStore(engine_, "p", wall=lambda: wall["now"])
    queue = FakeQueue()
    models = [policy("a", sustain=1), policy("b", sustain=1)]
    other = engine(other_store, queue, Scripted(drift_value=lambda m, now: 0.9))

    def slow(model: str, now: datetime) -> float:
        if model == "a":  # the first model's read hangs past the lease; another pass starts
            wall["now"] += LEASE_SECONDS + 1
            other.evaluate(models, now)
        return 0.9

    with pytest.raises(RetrainEvaluationBusy, match="took it over"):
        engine(slow_store, queue, Scripted(drift_value=slow)).evaluate(models, T0)
    assert sorted(queue.fired_models()) == ["a", "b"]  # each once, by the other evaluation


def test_a_fire_that_cannot_be_queued_is_given_up_after_ten_tries_and_blocks_nothing(
    store: TriggerStore,
) -> None:
    queue = Flaky()
    queue.failures = 10
    chosen = policy(sustain=1)
    runner = engine(store, queue, Scripted(drift_value=lambda m, now: 0.9 if now == T0 else 0.0))
    [first] = runner.evaluate([chosen], T0)
    for minute in range(1, 11):
        [held] = runner.evaluate([chosen], T0 + minute * MINUTE)
        assert held.action != "fire"
    assert not queue.jobs
    assert "given up" in store.errors(first.id or 0)[-1]
    assert len(store.errors(first.id or 0)) == 11  # ten failed tries, then the note
    runner.request(chosen, "after the fix", T0 + HOUR)
    [fired] = runner.evaluate([chosen], T0 + HOUR)
    assert fired.action == "fire" and fired.id != first.id
    assert [j.trigger_decision for j in queue.jobs] == [fired.id]


def test_a_retried_submission_keeps_the_signals_that_asked_as_its_reason(
    store: TriggerStore,
) -> None:
    queue = Flaky()
    chosen = policy(sustain=1, metric="auc")
    runner = engine(
        store, queue, Scripted(drift_value=lambda m, now: 0.9, performance_value=lambda m, now: 0.5)
    )
    runner.evaluate([chosen], T0)
    runner.evaluate([chosen], T0 + MINUTE)
    assert [j.reason for j in queue.jobs] == ["drift+performance"]
    assert queue.jobs[0].created_at == T0 + MINUTE
