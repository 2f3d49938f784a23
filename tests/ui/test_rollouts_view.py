"""The rollout page's pure logic (ui/rollouts_view.py) on hand-built states: the actions each status
allows, the weights and mirror share, the steps, the gate rows from the newest check, and the
decision history."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from parity import Gate, Phase, Rollout
from parity.deploy.state import GateResult, RolloutEvent, RolloutState
from parity.ui.rollouts_view import (
    allowed_actions,
    gate_op,
    gate_rows,
    history_rows,
    latest_check,
    phase_of,
    step_rows,
    weights,
)

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
GATES = (
    Gate(metric="latency_p99", threshold=0.2, min_samples=50),
    Gate(metric="error_rate"),
    Gate(metric="prediction_drift", test="ks"),
)


def state(
    *, step: int = 0, status: str = "active", shadow: bool = True, also: tuple[int, ...] = ()
) -> RolloutState:
    definition = Rollout(
        name="r",
        model="m",
        candidate=3,
        shadow=Phase(weight=0, duration=timedelta(minutes=20), min_samples=300) if shadow else None,
        shadow_fraction=0.25,
        steps=[
            Phase(weight=10, duration=timedelta(minutes=5), min_samples=40),
            Phase(weight=100, duration=timedelta(seconds=90), min_samples=80),
        ],
        gates=GATES,
        also_shadow=also,
    )
    return RolloutState(
        id="m-1",
        project="p",
        model="m",
        definition=definition,
        candidate=3,
        champion=2,
        status=status,  # type: ignore[arg-type]
        step=step,
        step_started=T0,
        failures=0,
        started_at=T0,
        updated_at=T0,
        shadows=also,
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("active", {"pause": True, "resume": False, "promote": True, "abort": True}),
        ("paused", {"pause": False, "resume": True, "promote": True, "abort": True}),
        ("promoted", {"pause": False, "resume": False, "promote": False, "abort": False}),
        ("aborted", {"pause": False, "resume": False, "promote": False, "abort": False}),
    ],
)
def test_each_status_allows_the_actions_the_controller_accepts(
    status: str, expected: dict[str, bool]
) -> None:
    assert allowed_actions(status) == expected


def test_no_action_for_an_older_rollout_or_a_caller_who_may_not() -> None:
    nothing = dict.fromkeys(("pause", "resume", "promote", "abort"), False)
    assert allowed_actions("active", latest=False) == nothing
    assert allowed_actions("paused", may=False) == nothing


def test_weights_and_mirror_share_per_phase_and_status() -> None:
    assert weights(state(step=0)) == (0.0, 100.0, 25.0)  # shadow: 25 % of requests mirrored
    assert weights(state(step=1)) == (10.0, 90.0, 0.0)
    assert weights(state(step=1, also=(1,))) == (10.0, 90.0, 25.0)  # an also_shadow version
    assert weights(state(step=2, status="paused")) == (100.0, 0.0, 0.0)  # paused: the step holds
    assert weights(state(step=0, shadow=False)) == (10.0, 90.0, 0.0)
    assert weights(state(step=1, status="promoted")) == (100.0, 0.0, 0.0)
    assert weights(state(step=1, status="aborted")) == (0.0, 100.0, 0.0)


def test_phase_is_shadow_canary_or_done() -> None:
    assert phase_of(state(step=0)) == "shadow"
    assert phase_of(state(step=1)) == "canary"
    assert phase_of(state(step=0, shadow=False)) == "canary"
    assert phase_of(state(step=2, status="paused")) == "canary"
    assert phase_of(state(status="promoted")) == "done"
    assert phase_of(state(status="aborted")) == "done"


def test_steps_list_every_phase_with_the_current_one_and_those_done() -> None:
    assert step_rows(state(step=1)) == [
        {
            "index": 0,
            "kind": "shadow",
            "weight": 0.0,
            "mirror": 25.0,
            "min_seconds": 1200.0,
            "min_samples": 300,
            "current": False,
            "done": True,
        },
        {
            "index": 1,
            "kind": "canary",
            "weight": 10.0,
            "mirror": 0.0,
            "min_seconds": 300.0,
            "min_samples": 40,
            "current": True,
            "done": False,
        },
        {
            "index": 2,
            "kind": "canary",
            "weight": 100.0,
            "mirror": 0.0,
            "min_seconds": 90.0,
            "min_samples": 80,
            "current": False,
            "done": False,
        },
    ]
    promoted = step_rows(state(step=2, status="promoted"))
    assert [(s["current"], s["done"]) for s in promoted] == [(False, True)] * 3
    aborted = step_rows(state(step=1, status="aborted"))
    assert [(s["current"], s["done"]) for s in aborted] == [
        (False, True),
        (False, False),
        (False, False),
    ]


def result(gate: str, verdict: str, candidate: float | None = None) -> GateResult:
    return GateResult(
        gate,
        verdict,  # type: ignore[arg-type]
        candidate=candidate,
        champion=0.5 if candidate is not None else None,
        limit=0.2,
        samples={"candidate": 60, "champion": 540},
        reason=f"{gate} {verdict}",
    )


def test_gate_rows_follow_the_definition_with_the_checks_values() -> None:
    rows = gate_rows(
        GATES,
        [
            result("error_rate", "fail", 0.03),
            result("latency_p99", "pass", 12.5),
            result("custom:gone", "inconclusive"),
        ],
    )
    assert [r["name"] for r in rows] == [
        "latency_p99",
        "error_rate",
        "prediction_drift",
        "custom:gone",
    ]
    latency, errors, drift, gone = rows
    assert latency == {
        "name": "latency_p99",
        "metric": "latency_p99",
        "op": "candidate p99 <= champion p99 x (1 + threshold)",
        "threshold": 0.2,
        "min_samples": 50,
        "value": 12.5,
        "champion_value": 0.5,
        "samples": {"candidate": 60, "champion": 540},
        "verdict": "pass",
        "passed": True,
        "reason": "latency_p99 pass",
    }
    assert (errors["passed"], errors["value"], errors["threshold"]) == (False, 0.03, 0.01)
    assert drift["passed"] is None and drift["reason"] == "not checked yet"
    assert drift["threshold"] == 0.05  # ks's default, a p-value
    assert drift["min_samples"] == 100
    assert "p-value" in drift["op"]
    assert (gone["passed"], gone["threshold"], gone["op"]) == (None, 0.2, "")


@pytest.mark.parametrize(
    ("gate", "words"),
    [
        (Gate(metric="error_rate"), "champion error rate + threshold"),
        (Gate(metric="prediction_drift"), "psi of candidate vs champion scores <= threshold"),
        (Gate(metric="label:auc"), "candidate auc >= champion auc x (1 - threshold)"),
        (Gate(metric="label:brier"), "candidate brier <= champion brier x (1 + threshold)"),
        (Gate(metric="custom:f"), "custom function f(evidence) decides"),
    ],
)
def test_gate_op_says_how_each_family_compares(gate: Gate, words: str) -> None:
    assert words in gate_op(gate)


def event(
    minutes: int, kind: str, reason: str, results: tuple[GateResult, ...] = ()
) -> RolloutEvent:
    return RolloutEvent("m-1", T0 + timedelta(minutes=minutes), kind, 1, 10.0, results, reason, "c")  # type: ignore[arg-type]


def test_the_newest_check_is_the_one_shown_and_history_splits_the_action() -> None:
    first = event(
        1,
        "check",
        "hold: step 1/2 (10 %): 0:01:00 of 0:05:00 elapsed",
        (result("error_rate", "pass", 0.0),),
    )
    second = event(2, "check", "advance: every gate passed", (result("error_rate", "fail", 0.1),))
    moved = event(2, "advanced", "every gate passed")
    paused = event(3, "paused", "hold: not a check, kept whole")
    assert latest_check([first, second, moved, paused]) is second
    assert latest_check([moved]) is None
    rows = history_rows(GATES, [first, second, moved, paused])
    assert [(r["kind"], r["action"], r["reason"]) for r in rows] == [
        ("check", "hold", "step 1/2 (10 %): 0:01:00 of 0:05:00 elapsed"),
        ("check", "advance", "every gate passed"),
        ("advanced", "", "every gate passed"),
        ("paused", "", "hold: not a check, kept whole"),
    ]
    assert [g["name"] for g in rows[1]["gates"]] == [
        "latency_p99",
        "error_rate",
        "prediction_drift",
    ]
    assert rows[1]["gates"][1]["passed"] is False
    assert rows[2]["gates"] == []


def test_a_paused_state_keeps_its_step_current() -> None:
    paused = replace(state(step=1), status="paused")
    assert [s["current"] for s in step_rows(paused)] == [False, True, False]


def test_a_value_that_is_not_finite_shows_as_none() -> None:
    (row,) = gate_rows(GATES[1:2], [result("error_rate", "fail", math.inf)])
    assert (row["value"], row["champion_value"]) == (None, 0.5)
    (row,) = gate_rows(GATES[1:2], [result("error_rate", "inconclusive", math.nan)])
    assert row["value"] is None
