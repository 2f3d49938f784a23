"""What a rollout does after one check of its gates (pure): hold, advance, promote or abort, and
the state that follows. Values in, values out, the clock passed in; no I/O, no store, no gates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from parity.deploy.state import CheckOutcome, GateResult, RolloutState, Status

Action = Literal["hold", "advance", "promote", "abort"]


@dataclass(frozen=True)
class Decision:
    """The controller's answer to one check: the action, why, and the failure count after it."""

    action: Action
    reason: str
    failures: int


def evidence(result: GateResult) -> str:
    """A gate's verdict with the numbers behind it, for reasons and events."""
    numbers = []
    if result.candidate is not None:
        numbers.append(f"candidate {result.candidate:.6g}")
    if result.champion is not None:
        numbers.append(f"champion {result.champion:.6g}")
    if result.limit is not None:
        numbers.append(f"limit {result.limit:.6g}")
    if result.samples:
        numbers.append("rows " + ", ".join(f"{k} {v}" for k, v in sorted(result.samples.items())))
    detail = f" ({'; '.join(numbers)})" if numbers else ""
    why = f": {result.reason}" if result.reason else ""
    return f"gate {result.gate!r} {result.verdict}{why}{detail}"


def decide(state: RolloutState, outcome: CheckOutcome, now: datetime) -> Decision:
    """The decision for `state` after `outcome`. A failed gate counts one failure (cumulative:
    every failed check of the rollout; consecutive: a check where every gate passed resets the
    count, an inconclusive one does not) and aborts at the policy's limit; an inconclusive gate
    holds; the step advances only when its duration has elapsed, the candidate has the step's
    minimum samples and every gate passed."""
    if state.status != "active":
        return Decision("hold", f"rollout is {state.status}: not evaluated", state.failures)
    policy = state.definition.failure_policy
    failed = [r for r in outcome.results if r.verdict == "fail"]
    if failed:
        failures = state.failures + 1
        told = "; ".join(evidence(r) for r in failed)
        count = f"failed check {failures} of {policy.limit} ({policy.mode})"
        if failures >= policy.limit:
            return Decision("abort", f"{told} [{count}]", failures)
        return Decision("hold", f"{told} [{count}; holding]", failures)
    waiting = [r for r in outcome.results if r.verdict == "inconclusive"]
    if waiting:  # neither a failure nor a pass: a consecutive count neither grows nor resets
        return Decision("hold", "; ".join(evidence(r) for r in waiting), state.failures)
    failures = 0 if policy.mode == "consecutive" else state.failures
    phase = state.phase
    elapsed = now - state.step_started
    label = step_label(state)
    if elapsed < phase.duration:
        return Decision("hold", f"{label}: {elapsed} of {phase.duration} elapsed", failures)
    samples = outcome.samples.get("candidate", 0)
    if samples < phase.min_samples:
        return Decision(
            "hold",
            f"{label}: {samples} candidate predictions of the {phase.min_samples} needed",
            failures,
        )
    passed = f"{label}: every gate passed over {elapsed} with {samples} candidate predictions"
    if state.step >= len(state.phases) - 1:
        return Decision("promote", passed, failures)
    return Decision("advance", passed, failures)


def apply(state: RolloutState, decision: Decision, now: datetime) -> RolloutState:
    """The state after `decision` at `now`: hold keeps the step, advance moves to the next one
    (never further), promote and abort end the rollout."""
    base = replace(state, failures=decision.failures, updated_at=now)
    if decision.action == "hold":
        return base
    if decision.action == "advance":
        if state.step + 1 >= len(state.phases):
            raise ValueError(f"rollout {state.id} is at its last step; it can only promote")
        return replace(base, step=state.step + 1, step_started=now)
    status: Status = "promoted" if decision.action == "promote" else "aborted"
    return replace(base, status=status, reason=decision.reason)


def step_label(state: RolloutState) -> str:
    """'shadow', or the canary step as `parity rollout status` numbers it: 'step 2/5 (5 %)'."""
    if state.in_shadow:
        return "shadow"
    number = state.step + (0 if state.definition.shadow is not None else 1)
    return f"step {number}/{len(state.definition.steps)} ({state.weight:g} %)"
