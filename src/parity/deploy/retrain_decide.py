"""Retrain decisions, pure: from one model's policy, its signals at one evaluation and the state
left by the previous ones, decide fire / suppress / hold with reasons and the next state.
Hysteresis and sustain per signal (monitoring.alerts' state machine), cooldown, per-model and
overall caps, and every signal that asks at once folded into one decision. No I/O, no clock."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from parity.definitions.retrain import RetrainPolicy
from parity.deploy.retrain_state import Action
from parity.monitoring.alerts import AlertState, step

DRIFT, PERFORMANCE, SCHEDULE, MANUAL, DEFERRED = (
    "drift",
    "performance",
    "schedule",
    "manual",
    "deferred",
)
# A manual request and a fire already decided but held back by the overall cap are owed: they
# skip the cooldown (a person asked; the cooldown was checked when the deferred fire was decided).
OWED = (MANUAL, DEFERRED)


@dataclass(frozen=True)
class Observation:
    """One signal as read at one evaluation. `value` None is insufficient data: no evidence,
    it neither fires nor clears. `at` is the time of the evidence (the end of the window it
    describes): a value whose `at` was already counted is not counted again. `error` says why
    there is no value when something is wrong (no reference profile), not merely too few rows."""

    value: float | None
    at: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


NO_EVIDENCE = Observation(None)


@dataclass(frozen=True)
class SignalState:
    """One signal's hysteresis state: firing or not, the consecutive evaluations counted towards
    changing that, and the time of the last evidence counted."""

    firing: bool = False
    streak: int = 0
    last_at: datetime | None = None
    version: int | None = None  # the model version the evidence described

    def to_json(self) -> dict[str, Any]:
        last = None if self.last_at is None else self.last_at.isoformat()
        return {
            "firing": self.firing,
            "streak": self.streak,
            "last_at": last,
            "version": self.version,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SignalState:
        last = data.get("last_at")
        version = data.get("version")
        return cls(
            bool(data["firing"]),
            int(data["streak"]),
            None if last is None else datetime.fromisoformat(last),
            None if version is None else int(version),
        )


@dataclass(frozen=True)
class Request:
    """A pending manual request: why, and when it was made."""

    reason: str
    at: datetime


@dataclass(frozen=True)
class TriggerState:
    """What one model's trigger remembers between evaluations."""

    drift: SignalState = SignalState()
    performance: SignalState = SignalState()
    last_fire_at: datetime | None = None
    last_fire_decision: int | None = None  # the id of the last fire's recorded decision
    last_fire_job: int | None = None  # its job; None while the submission is unconfirmed
    request: Request | None = None
    deferred_since: datetime | None = None  # a fire held back by the overall cap, still owed
    deferred_reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        def moment(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        request = self.request
        return {
            "drift": self.drift.to_json(),
            "performance": self.performance.to_json(),
            "last_fire_at": moment(self.last_fire_at),
            "last_fire_decision": self.last_fire_decision,
            "last_fire_job": self.last_fire_job,
            "request": None
            if request is None
            else {"reason": request.reason, "at": request.at.isoformat()},
            "deferred_since": moment(self.deferred_since),
            "deferred_reasons": list(self.deferred_reasons),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TriggerState:
        def moment(value: Any) -> datetime | None:
            return None if value is None else datetime.fromisoformat(str(value))

        request = data.get("request")
        return cls(
            drift=SignalState.from_json(data["drift"]),
            performance=SignalState.from_json(data["performance"]),
            last_fire_at=moment(data.get("last_fire_at")),
            last_fire_decision=data.get("last_fire_decision"),
            last_fire_job=data.get("last_fire_job"),
            request=None
            if request is None
            else Request(str(request["reason"]), datetime.fromisoformat(request["at"])),
            deferred_since=moment(data.get("deferred_since")),
            deferred_reasons=tuple(data.get("deferred_reasons", ())),
        )


@dataclass(frozen=True)
class Context:
    """What the decision needs besides the signals: the time, the model's active retrain jobs,
    how many retrain jobs are active in the project and the overall cap, and when the model's
    newest version was registered (the schedule's clock)."""

    now: datetime
    model_active: tuple[int, ...] = ()
    total_active: int = 0
    overall_cap: int = 2
    newest_version_at: datetime | None = None
    unconfirmed_fire: int | None = None  # a fire decision whose job is not known to be queued
    rollout: str | None = None  # a rollout of the model in progress (its id and status)


@dataclass(frozen=True)
class Outcome:
    """The decision for one model at one evaluation and the state that follows. `asking` are the
    signals that asked for a retrain (all folded into this one decision); `changed` says whether
    a signal's state moved (a hold that changed nothing is not worth a history row)."""

    action: Action
    reasons: tuple[str, ...]
    evidence: dict[str, Any]
    state: TriggerState
    asking: tuple[str, ...]
    changed: bool


@dataclass(frozen=True)
class _Rule:
    """A signal's hysteresis rule in the shape monitoring.alerts' state machine reads."""

    name: str
    signal: str
    fire_at: float
    clear_at: float
    sustain: int
    direction: str = "above"


def drift_rule(policy: RetrainPolicy) -> _Rule | None:
    if policy.drift_fire_at is None:
        return None
    return _Rule(DRIFT, DRIFT, policy.drift_fire_at, policy.drift_clear_at, policy.sustain)


def performance_rule(policy: RetrainPolicy) -> _Rule | None:
    """On the relative drop of the metric from its reference (positive: worse)."""
    if policy.metric is None:
        return None
    return _Rule(PERFORMANCE, PERFORMANCE, policy.metric_drop, policy.metric_clear, policy.sustain)


def step_signal(
    rule: _Rule | None, state: SignalState, seen: Observation
) -> tuple[SignalState, dict[str, Any]]:
    """One signal's next state and its evidence entry. No value, or evidence already counted
    (`at` not after the last counted), leaves the state as it was."""
    if rule is None:
        return state, {"enabled": False}
    value = seen.value
    finite = value is not None and math.isfinite(value)
    evidence: dict[str, Any] = {
        "value": value if finite else None,  # NaN / inf are no evidence (and not JSON)
        "at": None if seen.at is None else seen.at.isoformat(),
        "fire_at": rule.fire_at,
        "clear_at": rule.clear_at,
        "sustain": rule.sustain,
        **seen.detail,
    }
    if seen.error is not None:
        evidence["error"] = seen.error
    if value is not None and not finite:
        evidence["invalid"] = repr(value)
    version = seen.detail.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version != state.version:
        if state.version is not None:  # a new champion: the old one's evidence says nothing
            evidence["reset"] = f"version {state.version} -> {version}: state started afresh"
            state = SignalState()
        state = replace(state, version=version)
    fresh = seen.at is None or state.last_at is None or seen.at > state.last_at
    if value is None or not finite or not fresh:
        evidence["counted"] = False
        after = state
    else:
        moved, _ = step(rule, AlertState(state.firing, state.streak), value)
        after = SignalState(moved.firing, moved.streak, seen.at or state.last_at, state.version)
        evidence["counted"] = True
    evidence.update(firing=after.firing, streak=after.streak)
    return after, evidence


def schedule_due(policy: RetrainPolicy, ctx: Context) -> bool:
    """The newest version is older than the schedule (no version known: not due; the schedule
    measures a version's age, and a model without one is not the trigger's to create)."""
    if policy.schedule is None or ctx.newest_version_at is None:
        return False
    return ctx.now - ctx.newest_version_at >= policy.schedule


def decide(
    policy: RetrainPolicy,
    state: TriggerState,
    drift: Observation,
    performance: Observation,
    ctx: Context,
) -> Outcome:
    """The decision for `policy`'s model at `ctx.now` (see docs/lifecycle.md, "Retrain
    triggers"): fire when a signal asks and no rule holds it back, suppress (with the rule's
    reason) when one does, hold when nothing asks."""
    drift_rule_ = drift_rule(policy)
    drift_state, drift_ev = step_signal(drift_rule_, state.drift, drift)
    perf_state, perf_ev = step_signal(performance_rule(policy), state.performance, performance)
    evidence: dict[str, Any] = {DRIFT: drift_ev, PERFORMANCE: perf_ev}
    evidence[SCHEDULE] = _schedule_evidence(policy, ctx)
    evidence[MANUAL] = None if state.request is None else _request_json(state.request)
    after = replace(state, drift=drift_state, performance=perf_state)
    changed = (drift_state.firing, drift_state.streak, perf_state.firing, perf_state.streak) != (
        state.drift.firing,
        state.drift.streak,
        state.performance.firing,
        state.performance.streak,
    )
    asking = _asking(policy, after, ctx, evidence)
    evidence["asking"] = list(asking)
    if not asking:
        action, reasons = _quiet(evidence)
        return Outcome(action, reasons, evidence, after, (), changed)
    return _held_or_fired(policy, after, ctx, asking, evidence, changed)


def _asking(
    policy: RetrainPolicy, state: TriggerState, ctx: Context, evidence: dict[str, Any]
) -> tuple[str, ...]:
    """The signals asking for a retrain. A firing drift or performance signal asks only while
    it has current evidence (a value this evaluation, counted before or not): a stale window or
    an unreadable signal keeps its state but cannot keep a model retraining."""
    found = []
    if state.drift.firing and evidence[DRIFT].get("value") is not None:
        found.append(DRIFT)
    if state.performance.firing and evidence[PERFORMANCE].get("value") is not None:
        found.append(PERFORMANCE)
    if schedule_due(policy, ctx):
        found.append(SCHEDULE)
    if state.request is not None:
        found.append(MANUAL)
    if state.deferred_since is not None:
        found.append(DEFERRED)
    return tuple(found)


def _quiet(evidence: dict[str, Any]) -> tuple[Action, tuple[str, ...]]:
    """Nothing asks: suppress when a signal is past its fire threshold but not yet sustained, or
    when a signal cannot be read (so the problem shows in the history); hold otherwise (saying
    so when a firing signal has no current evidence)."""
    reasons: list[str] = []
    idle: list[str] = []
    for name in (DRIFT, PERFORMANCE):
        entry = evidence[name]
        if entry.get("error"):
            reasons.append(f"{name} unavailable: {entry['error']}")
        elif entry.get("firing"):
            idle.append(f"{name} firing but without current evidence (stale or none): not asking")
        elif _building(entry):
            value = entry["value"]
            shown = "no new evidence" if value is None else f"{value:.4g}"
            reasons.append(
                f"{name} past its fire threshold {entry['fire_at']:.4g} ({shown}) but sustained "
                f"only {entry['streak']}/{entry['sustain']} evaluations"
            )
    if reasons:
        return "suppress", tuple(reasons)
    return "hold", tuple(idle) or ("no signal asks for a retrain",)


def _building(entry: dict[str, Any]) -> bool:
    """Not firing, with evidence past the fire threshold counted towards the sustain."""
    return bool(entry.get("enabled", True) and not entry["firing"] and entry["streak"] > 0)


def _held_or_fired(
    policy: RetrainPolicy,
    state: TriggerState,
    ctx: Context,
    asking: tuple[str, ...],
    evidence: dict[str, Any],
    changed: bool,
) -> Outcome:
    asked = describe(asking, evidence, state)
    cooling = state.last_fire_at is not None and ctx.now < state.last_fire_at + policy.cooldown
    owed = any(name in OWED for name in asking)
    unconfirmed = () if ctx.unconfirmed_fire is None else (ctx.unconfirmed_fire,)
    if len(ctx.model_active) + len(unconfirmed) >= policy.max_concurrent:
        pending = [f"of fire decision {d}, not queued yet" for d in unconfirmed]
        jobs = ", ".join([f"#{job}" for job in ctx.model_active] + pending)
        why = (
            f"retrain already active for '{policy.model}' (job {jobs}; max_concurrent "
            f"{policy.max_concurrent}): {asked} folded into it{_kept_owed(asking)}"
        )
        return Outcome("suppress", (why,), evidence, state, asking, changed)
    if ctx.rollout is not None:
        why = f"rollout {ctx.rollout} of '{policy.model}' in progress: {asked} waits for it"
        return Outcome("suppress", (why,), evidence, state, asking, changed)
    if cooling and not owed:
        until = state.last_fire_at + policy.cooldown  # type: ignore[operator]
        why = f"cooldown until {until.isoformat()} (last retrain {state.last_fire_at.isoformat()})"  # type: ignore[union-attr]
        return Outcome("suppress", (f"{why}: {asked}",), evidence, state, asking, changed)
    if ctx.total_active >= ctx.overall_cap:
        why = (
            f"overall cap reached: {ctx.total_active} retrain jobs active (jobs.max_concurrent "
            f"{ctx.overall_cap}); deferred, fires when one finishes: {asked}"
        )
        kept = tuple(
            dict.fromkeys(state.deferred_reasons + tuple(a for a in asking if a != DEFERRED))
        )
        held = replace(state, deferred_since=state.deferred_since or ctx.now, deferred_reasons=kept)
        return Outcome("suppress", (why,), evidence, held, asking, True)
    if cooling:
        evidence["cooldown_bypassed_by"] = [name for name in asking if name in OWED]
    fired = replace(
        state,
        last_fire_at=ctx.now,
        last_fire_decision=None,
        last_fire_job=None,
        request=None,
        deferred_since=None,
        deferred_reasons=(),
    )
    return Outcome("fire", (f"retrain: {asked}",), evidence, fired, asking, True)


def _kept_owed(asking: Sequence[str]) -> str:
    """What an active retrain does NOT absorb: a manual request or a deferred fire stays owed
    (it may ask for data the active job did not see) and fires once the job ends."""
    owed = [name for name in asking if name in OWED]
    return f" ({' and '.join(owed)} kept owed: retrains once it ends)" if owed else ""


def describe(asking: Sequence[str], evidence: dict[str, Any], state: TriggerState) -> str:
    """The signals that asked, in words, one clause each."""
    parts = []
    for name in asking:
        entry = evidence.get(name)
        if name in (DRIFT, PERFORMANCE) and isinstance(entry, dict):
            value = entry.get("value")
            shown = "no new evidence" if value is None else f"{value:.4g}"
            parts.append(f"{name} firing ({shown}; fire at {entry['fire_at']:.4g})")
        elif name == SCHEDULE and isinstance(entry, dict):
            parts.append(f"schedule (newest version {entry['age']} old, every {entry['every']})")
        elif name == MANUAL and state.request is not None:
            parts.append(f"manual request ({state.request.reason})")
        elif name == DEFERRED:
            since = state.deferred_since.isoformat() if state.deferred_since else "?"
            parts.append(f"deferred since {since} ({', '.join(state.deferred_reasons)})")
    return "; ".join(parts)


def _schedule_evidence(policy: RetrainPolicy, ctx: Context) -> dict[str, Any] | None:
    if policy.schedule is None:
        return None
    newest = ctx.newest_version_at
    return {
        "every": str(policy.schedule),
        "newest_version_at": None if newest is None else newest.isoformat(),
        "age": None if newest is None else str(ctx.now - newest),
        "due": schedule_due(policy, ctx),
    }


def _request_json(request: Request) -> dict[str, Any]:
    return {"reason": request.reason, "at": request.at.isoformat()}


def with_request(state: TriggerState, reason: str, at: datetime) -> TriggerState:
    """The state after a manual request: one pending request per model (a second one before the
    first fired is folded into it, both reasons kept)."""
    if state.request is None:
        return replace(state, request=Request(reason, at))
    reasons = state.request.reason if reason in state.request.reason.split("; ") else None
    merged = reasons or f"{state.request.reason}; {reason}"
    return replace(state, request=Request(merged, state.request.at))


def pass_order(states: Iterable[tuple[str, TriggerState]]) -> list[str]:
    """The order models are decided in one pass, so the overall cap is fair: deferred fires
    first (oldest first), then pending manual requests (oldest first), then the rest by name."""

    def key(item: tuple[str, TriggerState]) -> tuple[int, float, str]:
        model, state = item
        if state.deferred_since is not None:
            return (0, state.deferred_since.timestamp(), model)
        if state.request is not None:
            return (1, state.request.at.timestamp(), model)
        return (2, 0.0, model)

    return [model for model, _ in sorted(states, key=key)]
