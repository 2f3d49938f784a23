"""decide/apply (pure): hold, advance, promote, abort, the two failure policies, and properties of
whole simulated rollouts (Hypothesis): steps never skipped, inconclusive never advances, a failing
gate aborts within interval x failure limit."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity.definitions.rollout import FailurePolicy, Gate, Phase, Rollout
from parity.deploy.decide import Decision, apply, decide, evidence
from parity.deploy.state import CheckOutcome, GateResult, RolloutState
from tests.deploy.control_support import MINUTE, T0

GATES = (Gate(metric="prediction_drift"), Gate(metric="latency_p99"))


def rollout(**changes: object) -> Rollout:
    fields: dict[str, object] = {
        "name": "r",
        "model": "fraud",
        "candidate": 2,
        "shadow": Phase(weight=0, duration=2 * MINUTE, min_samples=10),
        "steps": tuple(Phase(weight=w, duration=2 * MINUTE, min_samples=10) for w in (5, 50, 100)),
        "gates": GATES,
        "interval": MINUTE,
    }
    fields.update(changes)
    return Rollout(**fields)  # type: ignore[arg-type]


def state(definition: Rollout | None = None, **changes: object) -> RolloutState:
    base = RolloutState(
        id="fraud-1",
        project="p",
        model="fraud",
        definition=definition or rollout(),
        candidate=2,
        champion=1,
        status="active",
        step=0,
        step_started=T0,
        failures=0,
        started_at=T0,
        updated_at=T0,
    )
    from dataclasses import replace

    return replace(base, **changes)  # type: ignore[arg-type]


def outcome(*verdicts: str, samples: int = 100) -> CheckOutcome:
    results = tuple(
        GateResult(
            gate.metric,
            verdict,  # type: ignore[arg-type]
            candidate=0.31,
            champion=0.02,
            limit=0.2,
            samples={"candidate": samples},
            reason=f"PSI {verdict}",
        )
        for gate, verdict in zip(GATES, verdicts, strict=True)
    )
    return CheckOutcome(results, {"candidate": samples, "champion": samples})


def test_every_gate_passing_after_the_duration_with_enough_samples_advances() -> None:
    decision = decide(state(), outcome("pass", "pass"), T0 + 2 * MINUTE)
    assert decision.action == "advance" and decision.failures == 0
    after = apply(state(), decision, T0 + 2 * MINUTE)
    assert (after.step, after.step_started, after.weight) == (1, T0 + 2 * MINUTE, 5.0)


def test_before_the_duration_it_holds_even_when_every_gate_passes() -> None:
    decision = decide(state(), outcome("pass", "pass"), T0 + MINUTE)
    assert decision.action == "hold"
    assert "0:01:00 of 0:02:00" in decision.reason


def test_too_few_candidate_samples_hold() -> None:
    decision = decide(state(), outcome("pass", "pass", samples=9), T0 + 5 * MINUTE)
    assert decision.action == "hold"
    assert "9 candidate predictions of the 10 needed" in decision.reason


def test_an_inconclusive_gate_holds_and_names_the_gate() -> None:
    decision = decide(state(), outcome("pass", "inconclusive"), T0 + 5 * MINUTE)
    assert decision.action == "hold"
    assert "gate 'latency_p99' inconclusive" in decision.reason
    assert decision.failures == 0


def test_the_last_step_passing_promotes() -> None:
    last = state(step=3, step_started=T0)
    decision = decide(last, outcome("pass", "pass"), T0 + 2 * MINUTE)
    assert decision.action == "promote"
    assert apply(last, decision, T0 + 2 * MINUTE).status == "promoted"


def test_default_policy_aborts_on_the_first_failed_check_with_the_evidence() -> None:
    decision = decide(state(), outcome("fail", "pass"), T0 + MINUTE)
    assert decision.action == "abort" and decision.failures == 1
    assert "gate 'prediction_drift' fail: PSI fail" in decision.reason
    assert "candidate 0.31; champion 0.02; limit 0.2" in decision.reason
    assert "latency_p99" not in decision.reason  # only the failing gate is blamed
    after = apply(state(), decision, T0 + MINUTE)
    assert (after.status, after.weight, after.step) == ("aborted", 0.0, 0)


def test_cumulative_counts_every_failed_check() -> None:
    policy = FailurePolicy(mode="cumulative", limit=3)
    current = state(rollout(failure_policy=policy))
    actions = []
    for verdict in ("fail", "pass", "fail", "pass", "fail"):
        decision = decide(current, outcome(verdict, "pass", samples=0), T0 + MINUTE)
        current = apply(current, decision, T0 + MINUTE)
        actions.append((decision.action, decision.failures))
    assert actions == [("hold", 1), ("hold", 1), ("hold", 2), ("hold", 2), ("abort", 3)]


def test_consecutive_resets_on_a_passing_check() -> None:
    policy = FailurePolicy(mode="consecutive", limit=2)
    current = state(rollout(failure_policy=policy))
    actions = []
    for verdict in ("fail", "pass", "fail", "fail"):
        decision = decide(current, outcome(verdict, "pass", samples=0), T0 + MINUTE)
        current = apply(current, decision, T0 + MINUTE)
        actions.append((decision.action, decision.failures))
    assert actions == [("hold", 1), ("hold", 0), ("hold", 1), ("abort", 2)]


def test_a_paused_rollout_is_not_evaluated() -> None:
    paused = state(status="paused")
    decision = decide(paused, outcome("fail", "fail"), T0 + 9 * MINUTE)
    assert decision == Decision("hold", "rollout is paused: not evaluated", 0)


def test_a_rollout_without_gates_advances_on_time_and_samples_alone() -> None:
    bare = state(rollout(gates=()))
    assert decide(bare, CheckOutcome((), {"candidate": 10}), T0 + 2 * MINUTE).action == "advance"
    assert decide(bare, CheckOutcome((), {}), T0 + 2 * MINUTE).action == "hold"


def test_advancing_past_the_last_step_is_refused() -> None:
    with pytest.raises(ValueError, match="last step"):
        apply(state(step=3), Decision("advance", "x", 0), T0)


def test_evidence_of_a_gate_without_numbers() -> None:
    assert evidence(GateResult("custom:f", "inconclusive")) == "gate 'custom:f' inconclusive"


# --- whole rollouts, simulated: one check per interval ---------------------------------------

VERDICTS = st.sampled_from(["pass", "fail", "inconclusive"])


Step = tuple[RolloutState, CheckOutcome, Decision, datetime]


def simulate(
    current: RolloutState,
    script: list[tuple[str, str]],
    samples: list[int],
    start: datetime | None = None,
) -> list[Step]:
    """Check every interval from `start` with the scripted verdicts until the rollout ends or the
    script does: (state before, outcome, decision, time) per check."""
    trail = []
    now = current.step_started if start is None else start
    for (first, second), count in zip(script, samples, strict=False):
        now += current.definition.interval
        checked = outcome(first, second, samples=count)
        decision = decide(current, checked, now)
        trail.append((current, checked, decision, now))
        current = apply(current, decision, now)
        if current.status != "active":
            break
    return trail


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(VERDICTS, VERDICTS), min_size=1, max_size=40),
    st.lists(st.integers(0, 50), min_size=40, max_size=40),
    st.sampled_from(["cumulative", "consecutive"]),
    st.integers(1, 4),
)
def test_steps_are_never_skipped_and_only_passing_checks_move(
    script: list[tuple[str, str]], samples: list[int], mode: str, limit: int
) -> None:
    policy = FailurePolicy(mode=mode, limit=limit)  # type: ignore[arg-type]
    for before, checked, decision, now in simulate(
        state(rollout(failure_policy=policy)), script, samples
    ):
        after = apply(before, decision, now)
        assert after.step in (before.step, before.step + 1)
        if after.step == before.step + 1 or after.status == "promoted":
            assert all(result.verdict == "pass" for result in checked.results)
            assert checked.samples["candidate"] >= before.phase.min_samples
            assert now - before.step_started >= before.phase.duration
        if after.status == "promoted":
            assert before.step == len(before.phases) - 1
        if after.status == "aborted":
            assert any(result.verdict == "fail" for result in checked.results)


@settings(max_examples=100, deadline=None)
@given(st.lists(VERDICTS, min_size=1, max_size=30), st.sampled_from(["cumulative", "consecutive"]))
def test_a_never_conclusive_gate_never_advances(others: list[str], mode: str) -> None:
    policy = FailurePolicy(mode=mode, limit=100)  # type: ignore[arg-type]
    script = [("inconclusive", other) for other in others]
    trail = simulate(state(rollout(failure_policy=policy)), script, [1_000] * len(script))
    assert len(trail) == len(script)  # limit 100: never aborted either
    assert all(decision.action == "hold" for _, _, decision, _ in trail)
    assert all(before.step == 0 for before, _, _, _ in trail)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(VERDICTS, VERDICTS), min_size=0, max_size=10),
    st.sampled_from(["cumulative", "consecutive"]),
    st.integers(1, 5),
    st.integers(1, 120),
)
def test_a_failing_gate_aborts_within_interval_times_the_failure_limit(
    before_failing: list[tuple[str, str]], mode: str, limit: int, interval_minutes: int
) -> None:
    policy = FailurePolicy(mode=mode, limit=limit)  # type: ignore[arg-type]
    interval = timedelta(minutes=interval_minutes)
    current = state(rollout(failure_policy=policy, interval=interval))
    # whatever happened before, from the moment a gate starts failing on every check:
    trail = simulate(current, before_failing, [1_000] * len(before_failing))
    failing_since = T0
    if trail:
        before, _, decision, failing_since = trail[-1]
        current = apply(before, decision, failing_since)
    if current.status != "active":
        return  # ended (promoted or aborted) before the failures began
    script = [("fail", "pass")] * (limit + 5)
    checks = simulate(current, script, [1_000] * len(script), start=failing_since)
    aborted_at = checks[-1][3]
    assert checks[-1][2].action == "abort"
    assert aborted_at - failing_since <= interval * limit
    assert math.isclose((aborted_at - failing_since) / interval, len(checks))
