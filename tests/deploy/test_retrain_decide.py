"""The pure retrain decision: hysteresis, sustain, insufficient data, cooldown, caps, manual
requests, dedup; and a Hypothesis property against a whole-history oracle written differently
(run search over the evidence string instead of a counter)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity.deploy.retrain_decide import (
    Context,
    Observation,
    Outcome,
    TriggerState,
    decide,
    pass_order,
    with_request,
)
from parity.errors import InvalidDefinition
from tests.deploy.retrain_support import DAY, HOUR, MINUTE, T0, policy

NONE = Observation(None)


def seen(value: float | None, at: datetime) -> Observation:
    return Observation(value, at if value is not None else None)


def run(
    values: list[float | None],
    *,
    every: timedelta = 10 * MINUTE,
    state: TriggerState | None = None,
    **changes: Any,
) -> tuple[list[Outcome], TriggerState]:
    """Evaluate a drift-only policy on `values`, one per `every`, jobs finishing at once."""
    chosen = policy(**changes)
    current = state or TriggerState()
    outcomes = []
    for index, value in enumerate(values):
        now = T0 + every * index
        outcome = decide(chosen, current, seen(value, now), NONE, Context(now))
        current = TriggerState.from_json(outcome.state.to_json())  # as the store keeps it
        outcomes.append(outcome)
    return outcomes, current


def actions(outcomes: list[Outcome]) -> list[str]:
    return [o.action for o in outcomes]


def test_drift_fires_only_after_sustain_consecutive_evaluations_past_fire() -> None:
    outcomes, _ = run([0.6, 0.2, 0.6, 0.6], sustain=2)
    assert actions(outcomes) == ["suppress", "hold", "suppress", "fire"]
    assert "sustained only 1/2" in outcomes[0].reasons[0]
    assert outcomes[3].asking == ("drift",)


def test_value_in_the_hysteresis_band_keeps_firing_state_and_cooldown_holds_the_retrain() -> None:
    # fires at 0.5, clears at 0.3: 0.4 neither clears nor re-fires; the cooldown holds it back
    outcomes, state = run([0.6, 0.4, 0.4, 0.45], sustain=1)
    assert actions(outcomes) == ["fire", "suppress", "suppress", "suppress"]
    assert all("cooldown until" in o.reasons[0] for o in outcomes[1:])
    assert state.drift.firing


def test_clearing_needs_sustain_values_at_or_below_clear() -> None:
    outcomes, state = run([0.6, 0.6, 0.1, 0.35, 0.1, 0.1], sustain=2)
    assert [o.state.drift.firing for o in outcomes] == [False, True, True, True, True, False]
    assert not state.drift.firing


def test_insufficient_data_neither_fires_nor_clears_nor_breaks_a_streak() -> None:
    outcomes, _ = run([0.6, None, None, 0.6], sustain=2)
    assert actions(outcomes) == ["suppress", "suppress", "suppress", "fire"]
    assert [o.state.drift.streak for o in outcomes[:3]] == [1, 1, 1]
    # firing, then only insufficient data: it stays firing (never cleared by no evidence)
    outcomes, state = run([0.6, None, None, None, None], sustain=1, cooldown=timedelta(0))
    assert state.drift.firing
    assert all(not o.evidence["drift"]["counted"] for o in outcomes[1:])


def test_only_insufficient_data_never_fires() -> None:
    outcomes, state = run([None] * 50, sustain=1)
    assert set(actions(outcomes)) == {"hold"}
    assert state == TriggerState()


def test_nan_and_infinite_values_are_no_evidence() -> None:
    outcomes, state = run([float("nan"), float("inf"), float("-inf")], sustain=1)
    assert set(actions(outcomes)) == {"hold"}
    assert not state.drift.firing
    assert [o.evidence["drift"]["value"] for o in outcomes] == [None, None, None]
    assert [o.evidence["drift"]["invalid"] for o in outcomes] == ["nan", "inf", "-inf"]


def test_the_same_evidence_seen_twice_counts_once() -> None:
    chosen = policy(sustain=2)
    state = TriggerState()
    window_end = T0
    for minute in range(5):  # five evaluations of one window's value
        now = T0 + minute * MINUTE
        outcome = decide(chosen, state, Observation(0.9, window_end), NONE, Context(now))
        state = outcome.state
    assert outcome.action == "suppress" and state.drift.streak == 1
    later = decide(chosen, state, Observation(0.9, T0 + HOUR), NONE, Context(T0 + HOUR))
    assert later.action == "fire"


def test_drift_and_performance_firing_together_are_one_decision_listing_both() -> None:
    chosen = policy(metric="auc", sustain=1)
    outcome = decide(chosen, TriggerState(), seen(0.9, T0), seen(0.5, T0), Context(T0))
    assert outcome.action == "fire"
    assert outcome.asking == ("drift", "performance")
    assert len(outcome.reasons) == 1 and "drift" in outcome.reasons[0]
    assert "performance" in outcome.reasons[0]


def test_a_signal_while_the_models_retrain_is_active_is_folded_into_it() -> None:
    chosen = policy(sustain=1, cooldown=timedelta(0))
    outcome = decide(chosen, TriggerState(), seen(0.9, T0), NONE, Context(T0, model_active=(7,)))
    assert outcome.action == "suppress"
    assert "#7" in outcome.reasons[0] and "folded" in outcome.reasons[0]


def test_overall_cap_defers_the_fire_and_it_stays_owed_after_the_signal_clears() -> None:
    chosen = policy(sustain=1)
    full = Context(T0, total_active=2, overall_cap=2)
    held = decide(chosen, TriggerState(), seen(0.9, T0), NONE, full)
    assert held.action == "suppress" and "overall cap" in held.reasons[0]
    assert held.state.deferred_since == T0
    # the drift clears, the cap frees: the deferred fire is still owed
    later = T0 + HOUR
    fired = decide(chosen, held.state, seen(0.0, later), NONE, Context(later, overall_cap=2))
    assert fired.action == "fire" and fired.asking == ("deferred",)
    assert fired.state.deferred_since is None


def test_manual_request_bypasses_the_cooldown_but_not_the_per_model_cap() -> None:
    chosen = policy(sustain=1, cooldown=DAY)
    state = TriggerState(last_fire_at=T0)
    state = with_request(state, "labels fixed", T0 + HOUR)
    busy = decide(chosen, state, NONE, NONE, Context(T0 + HOUR, model_active=(3,)))
    assert busy.action == "suppress" and busy.state.request is not None
    fired = decide(chosen, busy.state, NONE, NONE, Context(T0 + 2 * HOUR))
    assert fired.action == "fire" and fired.asking == ("manual",)
    assert fired.evidence["cooldown_bypassed_by"] == ["manual"]
    assert fired.state.request is None


def test_manual_request_beyond_the_overall_cap_is_deferred_not_lost() -> None:
    chosen = policy()
    state = with_request(TriggerState(), "please", T0)
    held = decide(chosen, state, NONE, NONE, Context(T0, total_active=1, overall_cap=1))
    assert held.action == "suppress" and held.state.request is not None
    fired = decide(chosen, held.state, NONE, NONE, Context(T0 + MINUTE, overall_cap=1))
    assert fired.action == "fire"
    assert set(fired.asking) == {"manual", "deferred"}


def test_a_second_request_before_the_first_fired_is_folded_into_it() -> None:
    state = with_request(with_request(TriggerState(), "a", T0), "b", T0 + MINUTE)
    assert state.request is not None
    assert state.request.reason == "a; b" and state.request.at == T0
    assert with_request(state, "a", T0 + HOUR).request == state.request


def test_schedule_fires_when_the_newest_version_is_older_than_it() -> None:
    chosen = policy(schedule=timedelta(days=7), drift_fire_at=None)
    young = Context(T0, newest_version_at=T0 - timedelta(days=6))
    old = Context(T0, newest_version_at=T0 - timedelta(days=7))
    assert decide(chosen, TriggerState(), NONE, NONE, young).action == "hold"
    outcome = decide(chosen, TriggerState(), NONE, NONE, old)
    assert outcome.action == "fire" and outcome.asking == ("schedule",)
    assert decide(chosen, TriggerState(), NONE, NONE, Context(T0)).action == "hold"


def test_performance_drop_fires_and_clears_with_its_own_thresholds() -> None:
    chosen = policy(metric="auc", metric_drop=0.1, metric_clear=0.05, sustain=1, cooldown=DAY)
    state = TriggerState()
    firing = []
    for hour, drop in enumerate([0.02, 0.12, 0.07, 0.04]):
        now = T0 + hour * HOUR
        state = decide(chosen, state, NONE, seen(drop, now), Context(now)).state
        firing.append(state.performance.firing)
    assert firing == [False, True, True, False]


def test_a_signal_that_cannot_be_read_is_a_recorded_suppress_naming_the_error() -> None:
    broken = Observation(None, error="no_reference: run 'parity monitor profile --dataset d'")
    outcome = decide(policy(), TriggerState(), broken, NONE, Context(T0))
    assert outcome.action == "suppress"
    assert "parity monitor profile --dataset d" in outcome.reasons[0]


def test_pass_order_puts_deferred_then_requests_first_oldest_first() -> None:
    states = [
        ("b", TriggerState()),
        ("c", with_request(TriggerState(), "r", T0 + MINUTE)),
        ("d", TriggerState(deferred_since=T0 + HOUR)),
        ("a", TriggerState()),
        ("e", TriggerState(deferred_since=T0)),
    ]
    assert pass_order(states) == ["e", "d", "c", "a", "b"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"drift_fire_at": 0.2, "drift_clear_at": 0.4}, "drift_clear_at"),
        ({"drift_fire_at": 1.5}, "drift_fire_at"),
        ({"sustain": 0}, "sustain"),
        ({"metric": "my_metric"}, "metric_better"),
        ({"cooldown": timedelta(seconds=-1)}, "cooldown"),
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"job": "bad name!"}, "job"),
    ],
)
def test_bad_policies_are_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidDefinition, match=field):
        policy(**changes)


def test_lower_is_better_metrics_are_known() -> None:
    assert not policy(metric="log_loss").higher_is_better
    assert policy(metric="auc").higher_is_better
    assert not policy(metric="mine", metric_better="lower").higher_is_better


# --- property: the incremental machine equals a whole-history oracle --------------------------


def oracle_fires(
    values: list[float | None], fire_at: float, clear_at: float, sustain: int, cooldown: int
) -> list[int]:
    """Fire indexes from the whole history: classify each evidence as F (at or past fire), C
    (at or below clear, not F) or B (between); the signal starts firing where a run of `sustain`
    F's ends and stops where a later run of `sustain` C's ends (string search); a retrain fires
    at each firing index that has evidence (a firing signal without current evidence does not
    ask) at least `cooldown` indexes after the previous retrain."""
    kept = [(i, v) for i, v in enumerate(values) if v is not None]
    text = "".join("F" if v >= fire_at else "C" if v <= clear_at else "B" for _, v in kept)
    firing_from: list[tuple[int, int]] = []  # [start, end) over the evidence positions
    position = 0
    while True:
        start = text.find("F" * sustain, position)
        if start < 0:
            break
        begin = start + sustain - 1
        stop = text.find("C" * sustain, begin + 1)
        end = len(text) if stop < 0 else stop + sustain - 1
        firing_from.append((begin, end))
        position = end + 1
    firing = [False] * len(values)
    for begin, end in firing_from:
        first = kept[begin][0]
        last = kept[end][0] if end < len(kept) else len(values)
        for index in range(first, last):
            firing[index] = True
    fires: list[int] = []
    for index, on in enumerate(firing):
        current = values[index] is not None
        if on and current and (not fires or index - fires[-1] >= cooldown):
            fires.append(index)
    return fires


values_strategy = st.lists(
    st.one_of(st.none(), st.sampled_from([0.0, 0.2, 0.3, 0.31, 0.45, 0.5, 0.51, 0.9])),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(values=values_strategy, sustain=st.integers(1, 3), cooldown=st.integers(0, 8))
def test_the_state_machine_matches_the_whole_history_oracle(
    values: list[float | None], sustain: int, cooldown: int
) -> None:
    outcomes, _ = run(values, every=HOUR, sustain=sustain, cooldown=cooldown * HOUR)
    fired = [i for i, o in enumerate(outcomes) if o.action == "fire"]
    assert fired == oracle_fires(values, 0.5, 0.3, sustain, cooldown)


def test_a_new_champion_starts_its_signals_afresh() -> None:
    chosen = policy(sustain=1, cooldown=HOUR)
    old = Observation(0.9, T0, {"version": 1})
    fired = decide(chosen, TriggerState(), old, NONE, Context(T0))
    assert fired.action == "fire" and fired.state.drift.version == 1
    # the retrained version 2 is promoted; it has no complete window yet: no evidence, and the
    # old version's firing state does not fire a second retrain after the cooldown
    fresh = Observation(None, None, {"version": 2})
    later = decide(chosen, fired.state, fresh, NONE, Context(T0 + 2 * HOUR))
    assert later.action == "hold" and not later.state.drift.firing
    assert later.evidence["drift"]["reset"].startswith("version 1 -> 2")
    assert later.state.drift.version == 2


def test_a_rollout_in_progress_holds_every_signal_and_request_back() -> None:
    chosen = policy(sustain=1)
    state = with_request(TriggerState(), "please", T0)
    ctx = Context(T0, rollout="fraud-3 (active)")
    held = decide(chosen, state, seen(0.9, T0), NONE, ctx)
    assert held.action == "suppress" and "rollout fraud-3 (active)" in held.reasons[0]
    assert held.state.request is not None  # still pending
    done = decide(chosen, held.state, seen(0.9, T0), NONE, Context(T0 + HOUR))  # re-read
    assert done.action == "fire" and set(done.asking) == {"drift", "manual"}


step_strategy = st.tuples(
    st.one_of(st.none(), st.floats(0, 1)),  # drift share
    st.one_of(st.none(), st.floats(-0.5, 0.5)),  # metric drop
    st.booleans(),  # a manual request before this evaluation
    st.booleans(),  # the model has a retrain job active
    st.integers(0, 3),  # retrain jobs active in the project
)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(step_strategy, max_size=40), cooldown=st.integers(0, 6))
def test_invariants_hold_for_any_mix_of_signals_requests_and_jobs(
    steps: list[tuple[float | None, float | None, bool, bool, int]], cooldown: int
) -> None:
    chosen = policy(metric="auc", sustain=1, cooldown=cooldown * HOUR)
    state = TriggerState()
    fires: list[tuple[int, tuple[str, ...]]] = []
    requested = False
    for index, (drift, drop, request, busy, total) in enumerate(steps):
        now = T0 + index * HOUR
        if request:
            state = with_request(state, f"r{index}", now)
            requested = True
        ctx = Context(now, model_active=(1,) if busy else (), total_active=total, overall_cap=2)
        outcome = decide(chosen, state, seen(drift, now), seen(drop, now), ctx)
        state = TriggerState.from_json(outcome.state.to_json())
        if outcome.action == "fire":
            assert outcome.asking and not busy and total < 2  # never past a cap
            fires.append((index, outcome.asking))
            requested = False
            assert state.request is None and state.deferred_since is None
        else:
            assert requested == (state.request is not None)  # a request is never lost
    for (earlier, _), (later, asking) in itertools.pairwise(fires):
        owed = any(name in ("manual", "deferred") for name in asking)
        assert owed or later - earlier >= cooldown  # the cooldown holds unless owed
