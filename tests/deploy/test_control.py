"""`store.rollouts` on a real registry (SQLite and PostgreSQL): start and its typed refusals, the
controller's ramp on an injected clock with a scripted checker, promotion through the alias (with
its reason in the alias history), abort, pause/resume, history and routes."""

from __future__ import annotations

from pathlib import Path

import pytest

from parity import FeatureStore
from parity.definitions.rollout import FailurePolicy, Gate, Phase, RoutingKey
from parity.deploy.service import Rollouts
from parity.deploy.state import RolloutState
from parity.errors import (
    InvalidRollout,
    RolloutActive,
    RolloutNotFound,
    RolloutStateError,
)
from parity.inference.routing import Routes, Shadow
from tests.deploy.control_support import (
    MINUTE,
    T0,
    Clock,
    Scripted,
    cleanup,
    register_versions,
    short_rollout,
)


@pytest.fixture
def checker() -> Scripted:
    return Scripted()


@pytest.fixture
def rollouts(fraud_store: FeatureStore, clock: Clock, checker: Scripted) -> Rollouts:
    return Rollouts(fraud_store, clock=clock, checker=checker)


def kinds(rollouts: Rollouts) -> list[tuple[str, int]]:
    return [(e.kind, e.step) for e in rollouts.history("fraud")]


def tick_until_done(rollouts: Rollouts, clock: Clock, limit: int = 50) -> RolloutState:
    for _ in range(limit):
        clock.advance(MINUTE)
        rollouts.step()
        current = rollouts.status("fraud")
        if current.status not in ("active", "paused"):
            return current
    raise AssertionError("the rollout did not finish")


# --- start -----------------------------------------------------------------------------------


def test_start_records_the_state_the_event_and_the_routes(rollouts: Rollouts) -> None:
    state = rollouts.start(short_rollout(), actor="ann")
    assert (state.id, state.champion, state.candidate, state.step) == ("fraud-1", 1, 2, 0)
    assert (state.status, state.in_shadow, state.weight) == ("active", True, 0.0)
    assert rollouts.status("fraud") == state
    (event,) = rollouts.history("fraud")
    assert (event.kind, event.actor, event.at) == ("started", "ann", T0)
    assert "routed by entity 'driver_id'" in event.reason  # driver_service's join key
    assert rollouts.routes() == {
        "fraud": Routes(
            model="fraud",
            rollout="fraud-1",
            champion_alias="champion",
            champion=1,
            candidate=2,
            weight=0.0,
            key="driver_id",
            key_source="entity",
            shadows=(Shadow(2, 1.0),),
        )
    }


def test_start_by_model_and_candidate_with_the_defaults(rollouts: Rollouts) -> None:
    state = rollouts.start(model="fraud", candidate=3)
    assert state.definition.steps[-1].weight == 100.0 and state.definition.shadow is not None
    assert (state.candidate, state.definition.name) == (3, "fraud_rollout")


def test_candidate_as_an_alias_and_a_header_routing_key(
    rollouts: Rollouts, fraud_store: FeatureStore
) -> None:
    fraud_store.models.set_alias("fraud", "challenger", 3)
    key = RoutingKey(name="x-user-id", source="header")
    state = rollouts.start(short_rollout(candidate="challenger", routing_key=key, shadow=None))
    assert state.candidate == 3 and state.weight == 5.0
    routes = rollouts.routes()["fraud"]
    assert (routes.key, routes.key_source, routes.weight, routes.shadows) == (
        "x-user-id",
        "header",
        5.0,
        (),
    )


def test_a_second_rollout_while_one_is_active_is_refused(rollouts: Rollouts) -> None:
    rollouts.start(short_rollout())
    with pytest.raises(RolloutActive, match="already has a rollout active \\(fraud-1\\)"):
        rollouts.start(short_rollout(candidate=3))
    rollouts.pause("fraud")
    with pytest.raises(RolloutActive, match="paused"):
        rollouts.start(model="fraud", candidate=3)
    rollouts.abort("fraud")
    assert rollouts.start(short_rollout(candidate=3)).id == "fraud-2"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"model": "nope", "candidate": 2}, "model: 'nope' is not a registered model"),
        ({"model": "fraud", "candidate": 9}, "candidate: model 'fraud' has no version 9"),
        ({"model": "fraud", "candidate": "ghost"}, "candidate: model 'fraud' has no alias 'ghost'"),
        ({"model": "fraud", "candidate": 1}, "version 1 of 'fraud' is already behind"),
        ({"model": "fraud", "candidate": 0}, "candidate 0: give a version number"),
        ({"model": "fraud", "candidate": None}, "candidate: give the version or alias"),
        ({"model": "", "candidate": 2}, "model: name the registered model"),
        (
            {"model": "fraud", "candidate": 2, "steps": [Phase(weight=50), Phase(weight=5)]},
            "weights must increase, got \\[50.0, 5.0\\]",
        ),
        (
            {"model": "fraud", "candidate": 2, "steps": [{"weight": float("nan")}]},
            "weight must be a percentage",
        ),
        (
            {"model": "fraud", "candidate": 2, "gates": [Gate(metric="label:dollars")]},
            "gates: metric 'label:dollars' is not a label metric",
        ),
        (
            {"model": "fraud", "candidate": 2, "also_shadow": [7]},
            "also_shadow: model 'fraud' has no version 7",
        ),
        ({"model": "fraud", "candidate": 2, "colour": "red"}, "field 'colour'"),
    ],
)
def test_invalid_starts_are_typed_errors_naming_the_field(
    rollouts: Rollouts, arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRollout, match=message):
        rollouts.start(**arguments)  # type: ignore[arg-type]
    with pytest.raises(RolloutNotFound):
        rollouts.status("fraud")  # nothing was stored


def test_unknown_gate_metric_names_are_refused_by_the_definition_as_invalid_rollout(
    rollouts: Rollouts,
) -> None:
    with pytest.raises(InvalidRollout, match="gate metric 'accuracy' is not known"):
        rollouts.start(model="fraud", candidate=2, gates=[{"metric": "accuracy"}])


def test_a_model_without_the_champion_alias(repo: Path, clock: Clock) -> None:
    with FeatureStore(repo, clock=clock) as store:
        store.apply()
        register_versions(store, 2, champion=None)
        try:
            with pytest.raises(
                InvalidRollout,
                match="model 'fraud' has no alias 'champion': set it with parity models alias set",
            ):
                store.rollouts.start(model="fraud", candidate=2)
        finally:
            cleanup(store)


def test_no_routing_key_without_a_feature_service(
    rollouts: Rollouts, fraud_store: FeatureStore
) -> None:
    from sklearn.dummy import DummyClassifier

    version = fraud_store.models.register_model(
        "plain", DummyClassifier().fit([[0], [1]], [0, 1]), alias="champion"
    )
    fraud_store.models.register_model("plain", DummyClassifier().fit([[0], [1]], [0, 1]))
    assert version.version == 1
    with pytest.raises(InvalidRollout, match="routing_key: version 1 of 'plain' has no feature"):
        rollouts.start(model="plain", candidate=2)
    header = RoutingKey(name="x-user", source="header")
    assert rollouts.start(model="plain", candidate=2, routing_key=header).id == "plain-1"


def test_a_custom_gate_without_a_function_and_an_unknown_declared_rollout(
    rollouts: Rollouts,
) -> None:
    with pytest.raises(InvalidRollout, match="no rollout named 'nope' is applied"):
        rollouts.start("nope")
    with pytest.raises(InvalidRollout, match="already defined"):
        rollouts.start(short_rollout(), candidate=3)
    with pytest.raises(InvalidRollout, match="custom_gates"):
        rollouts.start(model="fraud", candidate=2, gates=[{"metric": "custom:mine"}])


# --- the controller --------------------------------------------------------------------------


def test_a_passing_rollout_ramps_step_by_step_and_promotes(
    rollouts: Rollouts, fraud_store: FeatureStore, clock: Clock, checker: Scripted
) -> None:
    rollouts.start(short_rollout())
    assert rollouts.step() == []  # checked only after an interval
    final = tick_until_done(rollouts, clock)
    assert final.status == "promoted"
    events = rollouts.history("fraud")
    advanced = [(e.step, e.weight) for e in events if e.kind == "advanced"]
    assert advanced == [(1, 5.0), (2, 50.0), (3, 100.0)]
    # each step: 2 checks (1 min holds, 2 min passes) -> 8 checks, every one recorded with results
    checks = [e for e in events if e.kind == "check"]
    assert [e.step for e in checks] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert all(e.results[0].gate == "prediction_drift" for e in checks)
    assert len(checker.calls) == 8
    assert fraud_store.models.aliases("fraud")["champion"] == 2
    moves = fraud_store.models.history("fraud", "champion")
    assert moves[-1].version == 2 and moves[-1].reason.startswith("rollout fraud-1: step 3")
    assert rollouts.routes() == {}
    assert rollouts.status("fraud").weight == 0.0 and events[-1].weight == 100.0


def test_a_failing_gate_aborts_with_its_evidence_and_leaves_the_champion(
    rollouts: Rollouts, fraud_store: FeatureStore, clock: Clock, checker: Scripted
) -> None:
    rollouts.start(short_rollout(shadow=None))
    checker.verdict = lambda state, now: "pass" if state.step == 0 else "fail"
    final = tick_until_done(rollouts, clock)
    assert (final.status, final.step) == ("aborted", 1)
    assert "gate 'prediction_drift' fail: scripted fail" in final.reason
    aborted = rollouts.history("fraud")[-1]
    assert (aborted.kind, aborted.weight, aborted.step) == ("aborted", 0.0, 1)
    assert aborted.results[0].candidate == 0.5 and aborted.results[0].verdict == "fail"
    assert fraud_store.models.aliases("fraud")["champion"] == 1
    assert [m.version for m in fraud_store.models.history("fraud", "champion")] == [1]
    assert rollouts.routes() == {}


def test_failures_counted_by_the_policy_before_the_abort(
    rollouts: Rollouts, clock: Clock, checker: Scripted
) -> None:
    policy = FailurePolicy(mode="consecutive", limit=2)
    rollouts.start(short_rollout(failure_policy=policy))
    verdicts = iter(["fail", "pass", "fail", "fail"])
    checker.verdict = lambda state, now: next(verdicts)
    final = tick_until_done(rollouts, clock)
    assert final.status == "aborted"
    checks = [e.reason.split(":")[0] for e in rollouts.history("fraud") if e.kind == "check"]
    assert checks == ["hold", "advance", "hold", "abort"]  # the pass at 2 min advanced


def test_an_inconclusive_gate_holds_the_step_forever(
    rollouts: Rollouts, clock: Clock, checker: Scripted
) -> None:
    rollouts.start(short_rollout())
    checker.verdict = lambda state, now: "inconclusive"
    for _ in range(10):
        clock.advance(MINUTE)
        rollouts.step()
    state = rollouts.status("fraud")
    assert (state.status, state.step) == ("active", 0)
    assert kinds(rollouts).count(("check", 0)) == 10


def test_a_checker_that_raises_holds_and_is_recorded(
    rollouts: Rollouts, clock: Clock, checker: Scripted
) -> None:
    rollouts.start(short_rollout())

    def broken(state: RolloutState, now: object) -> str:
        raise RuntimeError("log unreadable")

    checker.verdict = broken
    clock.advance(5 * MINUTE)
    (event,) = rollouts.step()
    assert event.kind == "check" and event.results[0].verdict == "inconclusive"
    assert "RuntimeError: log unreadable" in event.results[0].reason
    assert rollouts.status("fraud").step == 0


def test_the_alias_moved_during_the_rollout_aborts_without_touching_it(
    rollouts: Rollouts, fraud_store: FeatureStore, clock: Clock
) -> None:
    rollouts.start(short_rollout())
    fraud_store.models.set_alias("fraud", "champion", 3, reason="hotfix")
    final = tick_until_done(rollouts, clock)
    assert final.status == "aborted"
    assert "the 'champion' alias of 'fraud' moved during the rollout" in final.reason
    assert fraud_store.models.aliases("fraud")["champion"] == 3
    assert [m.reason for m in fraud_store.models.history("fraud", "champion")][-1] == "hotfix"


# --- user actions ----------------------------------------------------------------------------


def test_pause_holds_evaluation_and_resume_continues_the_same_step(
    rollouts: Rollouts, clock: Clock, checker: Scripted
) -> None:
    rollouts.start(short_rollout())
    paused = rollouts.pause("fraud", reason="investigating", actor="bob")
    assert paused.status == "paused" and rollouts.routes()["fraud"].shadows  # still routed
    clock.advance(10 * MINUTE)
    assert rollouts.step() == [] and checker.calls == []
    with pytest.raises(RolloutStateError, match="cannot pause rollout fraud-1: it is paused"):
        rollouts.pause("fraud")
    resumed = rollouts.resume("fraud")
    assert (resumed.status, resumed.step, resumed.step_started) == ("active", 0, T0)
    events = rollouts.step()
    assert [e.kind for e in events] == ["check", "advanced"]
    history = rollouts.history("fraud")
    assert [(e.kind, e.actor, e.reason) for e in history[1:3]] == [
        ("paused", "bob", "investigating"),
        ("resumed", "", "resumed"),
    ]
    with pytest.raises(RolloutStateError, match="cannot resume"):
        rollouts.resume("fraud")


def test_manual_promote_and_abort_and_finished_rollouts_refuse_actions(
    rollouts: Rollouts, fraud_store: FeatureStore
) -> None:
    rollouts.start(short_rollout())
    promoted = rollouts.promote("fraud", reason="looks great", actor="ann")
    assert promoted.status == "promoted"
    assert fraud_store.models.history("fraud", "champion")[-1].reason == (
        "rollout fraud-1: looks great"
    )
    for action in (rollouts.pause, rollouts.resume, rollouts.promote, rollouts.abort):
        with pytest.raises(RolloutStateError, match="it is promoted"):
            action("fraud")
    second = rollouts.start(short_rollout(candidate=3))  # champion is now 2
    assert (second.id, second.champion) == ("fraud-2", 2)
    aborted = rollouts.abort("fraud", reason="not today")
    assert (aborted.status, aborted.weight, aborted.reason) == ("aborted", 0.0, "not today")
    assert fraud_store.models.aliases("fraud")["champion"] == 2
    assert [s.id for s in rollouts.list()] == ["fraud-2", "fraud-1"]
    assert rollouts.list(active_only=True) == []
    assert [e.kind for e in rollouts.history("fraud", "fraud-1")] == ["started", "promoted"]
    with pytest.raises(RolloutNotFound, match="no rollout 'fraud-9'"):
        rollouts.history("fraud", "fraud-9")


def test_unknown_model_has_no_rollout(rollouts: Rollouts) -> None:
    with pytest.raises(RolloutNotFound, match="model 'ghost' has no rollout"):
        rollouts.status("ghost")
    with pytest.raises(RolloutNotFound):
        rollouts.abort("ghost")


def test_state_survives_a_new_store(repo: Path, clock: Clock, checker: Scripted) -> None:
    with FeatureStore(repo, clock=clock) as store:
        store.apply()
        register_versions(store)
        first = Rollouts(store, clock=clock, checker=checker)
        started = first.start(short_rollout())
        clock.advance(2 * MINUTE)
        first.step()
    try:
        with FeatureStore(repo, clock=clock) as store:
            again = Rollouts(store, clock=clock, checker=checker)
            state = again.status("fraud")
            assert state.definition == started.definition
            assert (state.step, state.step_started, state.weight) == (1, T0 + 2 * MINUTE, 5.0)
            assert [e.kind for e in again.history("fraud")] == ["started", "check", "advanced"]
    finally:
        with FeatureStore(repo) as store:
            cleanup(store)


def test_the_default_checker_is_the_gates_check_of_the_prediction_log(
    fraud_store: FeatureStore, clock: Clock
) -> None:
    rollouts = Rollouts(fraud_store, clock=clock)  # no checker: parity.deploy.evidence
    rollouts.start(short_rollout())
    clock.advance(5 * MINUTE)
    (check,) = rollouts.step()
    assert check.kind == "check" and check.reason.startswith("hold: gate 'prediction_drift'")
    assert [(r.gate, r.verdict) for r in check.results] == [("prediction_drift", "inconclusive")]
    assert rollouts.status("fraud").step == 0  # no logged predictions: the shadow holds


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"rollout": 123}, "give a Rollout, the name of an applied one or None, not 123"),
        ({"model": "fraud", "candidate": True}, "candidate True: give a version number"),
        ({"model": "fraud", "candidate": 2**40}, "give a version number"),
        ({"model": "fraud", "candidate": -1}, "give a version number"),
        ({"model": "fraud", "candidate": "no such!"}, "candidate alias 'no such!'"),
        ({"model": "fraud/2", "candidate": 2}, "give a registered model's name"),
        ({"model": "fraud", "candidate": 2, "interval": 0}, "interval must be at least 1 second"),
        ({"model": "fraud", "candidate": 2, "steps": []}, None),  # shadow only: allowed
    ],
)
def test_bad_types_and_values_are_invalid_rollouts(
    rollouts: Rollouts, arguments: dict[str, object], message: str | None
) -> None:
    if message is None:
        assert rollouts.start(**arguments).definition.steps == ()  # type: ignore[arg-type]
        return
    with pytest.raises(InvalidRollout, match=message):
        rollouts.start(**arguments)  # type: ignore[arg-type]


def test_a_naive_tick_time_is_utc(rollouts: Rollouts) -> None:
    rollouts.start(short_rollout())
    naive = (T0 + 2 * MINUTE).replace(tzinfo=None)
    events = rollouts.step(now=naive)
    assert [(e.kind, e.at) for e in events] == [
        ("check", T0 + 2 * MINUTE),
        ("advanced", T0 + 2 * MINUTE),
    ]


def test_state_writes_are_compare_and_swap_on_the_revision(rollouts: Rollouts) -> None:
    from dataclasses import replace

    from parity.deploy.state import RolloutEvent

    started = rollouts.start(short_rollout())
    read = rollouts.db.get(started.id)
    assert read is not None and read.revision == 0
    first = replace(read.state, failures=1, updated_at=T0 + MINUTE)
    event = RolloutEvent(started.id, T0 + MINUTE, "check", 0, 0.0, (), "first", "a")
    written = rollouts.db.write(read, first, [event])
    assert written is not None and written.revision == 1
    stale = replace(read.state, step=1, step_started=T0 + MINUTE)  # from the same old read
    late = RolloutEvent(started.id, T0 + MINUTE, "advanced", 1, 5.0, (), "second", "b")
    assert rollouts.db.write(read, stale, [late]) is None
    now = rollouts.db.get(started.id)
    assert now is not None and (now.revision, now.state.step, now.state.failures) == (1, 0, 1)
    assert [e.reason for e in rollouts.history("fraud")] == [
        rollouts.history("fraud")[0].reason,
        "first",
    ]


def test_a_routing_key_no_request_carries_is_refused(
    rollouts: Rollouts, fraud_store: FeatureStore
) -> None:
    """A feature name (not a join key) as the routing key would leave every request with the
    champion: refused at start, naming the keys that do route."""
    with pytest.raises(InvalidRollout, match=r"routing_key: .*do not carry 'trips'.*'driver_id'"):
        rollouts.start(model="fraud", candidate=2, routing_key=RoutingKey(name="trips"))
    state = rollouts.start(model="fraud", candidate=2, routing_key=RoutingKey(name="driver_id"))
    assert rollouts.routes()["fraud"].key == "driver_id" == state.definition.routing_key.name
