"""The rollout pages' data: the rollout list and one rollout's live view (phase, steps, weights,
each gate's latest value against its threshold, the decisions, the actions its state allows).
Reads the rollout tables only; pure functions shape the values. Must not import FastAPI."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from parity.errors import RolloutNotFound

if TYPE_CHECKING:
    from parity.definitions.rollout import Gate
    from parity.deploy.state import GateResult, RolloutEvent, RolloutState
    from parity.feature_store import FeatureStore

ACTIONS = ("pause", "resume", "promote", "abort")
# What each action needs the rollout to be (deploy/service.py's Rollouts enforces the same).
_ALLOWED: dict[str, tuple[str, ...]] = {
    "pause": ("active",),
    "resume": ("paused",),
    "promote": ("active", "paused"),
    "abort": ("active", "paused"),
}
_CHECK_ACTIONS = ("hold", "advance", "promote", "abort")


def rollout_url(model: str) -> str:
    return f"#/rollout/{model}"


# --- pure --------------------------------------------------------------------------------------


def allowed_actions(status: str, *, latest: bool = True, may: bool = True) -> dict[str, bool]:
    """Which buttons work: the action fits the status, the rollout is the model's latest (the
    actions steer that one), and the caller may act."""
    return {a: bool(latest and may and status in _ALLOWED[a]) for a in ACTIONS}


def phase_of(state: RolloutState) -> str:
    if state.status in ("promoted", "aborted"):
        return "done"
    return "shadow" if state.in_shadow else "canary"


def weights(state: RolloutState) -> tuple[float, float, float]:
    """(candidate %, champion %, mirrored %) of the champion alias's traffic now. Promoted: the
    candidate answers everything; aborted: the champion does; nothing is mirrored after."""
    if state.status == "promoted":
        return 100.0, 0.0, 0.0
    if state.status == "aborted":
        return 0.0, 100.0, 0.0
    candidate = float(state.phase.weight)
    mirrored = state.in_shadow or bool(state.shadows)
    mirror = state.definition.shadow_fraction * 100.0 if mirrored else 0.0
    return candidate, 100.0 - candidate, mirror


def step_rows(state: RolloutState) -> list[dict[str, Any]]:
    """Every phase of the definition: kind, weight, the share mirrored to shadows, how long and
    how many candidate rows it needs at least, whether it is the current one or done."""
    d = state.definition
    running = state.status in ("active", "paused")
    rows = []
    for index, phase in enumerate(state.phases):
        shadow = index == 0 and d.shadow is not None
        mirrored = shadow or bool(d.also_shadow)
        rows.append(
            {
                "index": index,
                "kind": "shadow" if shadow else "canary",
                "weight": float(phase.weight),
                "mirror": d.shadow_fraction * 100.0 if mirrored else 0.0,
                "min_seconds": phase.duration.total_seconds(),
                "min_samples": phase.min_samples,
                "current": running and index == state.step,
                "done": index < state.step or state.status == "promoted",
            }
        )
    return rows


def gate_op(gate: Gate) -> str:
    """How the gate compares the candidate with the champion and the threshold, in words."""
    family = gate.family
    if family == "latency_p99":
        return "candidate p99 <= champion p99 x (1 + threshold)"
    if family == "error_rate":
        return "candidate error rate <= champion error rate + threshold"
    if family == "prediction_drift":
        if gate.test == "ks":
            return "ks p-value of candidate vs champion scores >= threshold"
        return f"{gate.test} of candidate vs champion scores <= threshold"
    if family == "label":
        if gate.argument == "brier":
            return "candidate brier <= champion brier x (1 + threshold)"
        return f"candidate {gate.argument} >= champion {gate.argument} x (1 - threshold)"
    return f"custom function {gate.argument}(evidence) decides; threshold passed to it"


def finite(value: float | None) -> float | None:
    """A number JSON can carry: NaN and infinities (no value) as None."""
    return value if value is not None and math.isfinite(value) else None


def passed(verdict: str | None) -> bool | None:
    """pass: True, fail: False, inconclusive or never checked: None."""
    return {"pass": True, "fail": False}.get(verdict or "")


def gate_row(gate: Gate | None, name: str, result: GateResult | None) -> dict[str, Any]:
    """One gate as the page shows it: the definition's comparison and threshold, and the
    values, rows and verdict of `result` (None: not checked yet)."""
    threshold = gate.limit if gate is not None else (result.limit if result else None)
    return {
        "name": name,
        "metric": gate.metric if gate is not None else name,
        "op": gate_op(gate) if gate is not None else "",
        "threshold": threshold,
        "min_samples": gate.min_samples if gate is not None else None,
        "value": finite(result.candidate) if result is not None else None,
        "champion_value": finite(result.champion) if result is not None else None,
        "samples": dict(result.samples) if result is not None else {},
        "verdict": result.verdict if result is not None else None,
        "passed": passed(result.verdict if result is not None else None),
        "reason": result.reason if result is not None else "not checked yet",
    }


def latest_check(events: Sequence[RolloutEvent]) -> RolloutEvent | None:
    """The newest check event (the one whose gate results the page shows)."""
    checks = [e for e in events if e.kind == "check"]
    return max(checks, key=lambda e: e.at) if checks else None


def gate_rows(gates: Sequence[Gate], results: Sequence[GateResult]) -> list[dict[str, Any]]:
    """Every gate of the definition in its order, with its result from `results` (matched by
    metric); results of gates the definition does not have follow."""
    by_name = {r.gate: r for r in results}
    rows = [gate_row(g, g.name, by_name.pop(g.name, None)) for g in gates]
    return rows + [gate_row(None, name, r) for name, r in by_name.items()]


def history_rows(gates: Sequence[Gate], events: Sequence[RolloutEvent]) -> list[dict[str, Any]]:
    """Every decision and action, oldest first: a check's action (hold, advance, ...) apart."""
    rows = []
    for e in events:
        action, detail = "", e.reason
        if e.kind == "check":
            head, sep, rest = e.reason.partition(": ")
            if sep and head in _CHECK_ACTIONS:
                action, detail = head, rest
        rows.append(
            {
                "at": e.at,
                "kind": e.kind,
                "action": action,
                "step": e.step,
                "weight": float(e.weight),
                "actor": e.actor,
                "reason": detail,
                "gates": gate_rows(gates, e.results) if e.results else [],
            }
        )
    return rows


def summary(state: RolloutState) -> dict[str, Any]:
    candidate, _, _ = weights(state)
    return {
        "id": state.id,
        "model": state.model,
        "definition": state.definition.name,
        "status": state.status,
        "phase": phase_of(state),
        "step": state.step,
        "steps": len(state.phases),
        "candidate": state.candidate,
        "champion": state.champion,
        "candidate_weight": candidate,
        "started_at": state.started_at,
        "updated_at": state.updated_at,
        "reason": state.reason,
        "url": rollout_url(state.model),
    }


def rollout_view(
    state: RolloutState, events: Sequence[RolloutEvent], actions: dict[str, bool]
) -> dict[str, Any]:
    """The rollout page's data from its state and events (`actions`: allowed_actions)."""
    gates = state.definition.gates
    check = latest_check(events)
    candidate, champion, mirror = weights(state)
    return {
        **summary(state),
        "champion_alias": state.definition.champion_alias,
        "shadows": list(state.shadows),
        "failures": state.failures,
        "failure_limit": state.definition.failure_policy.limit,
        "failure_mode": state.definition.failure_policy.mode,
        "step_started": state.step_started,
        "steps": step_rows(state),
        "candidate_weight": candidate,
        "champion_weight": champion,
        "mirror_percent": mirror,
        "checked_at": check.at if check is not None else None,
        "gates": gate_rows(gates, check.results if check is not None else ()),
        "history": history_rows(gates, events),
        "actions": actions,
    }


# --- reads -------------------------------------------------------------------------------------


def rollout_states(store: FeatureStore, *, active: bool | None) -> list[RolloutState]:
    """Every rollout (`active` True: active and paused only; False: finished only)."""
    states = store.rollouts.list(active_only=bool(active))
    if active is False:
        states = [s for s in states if s.status not in ("active", "paused")]
    return states


def read_rollout(
    store: FeatureStore, model: str, rollout: str | None
) -> tuple[RolloutState, list[RolloutEvent], bool]:
    """(state, events, is the model's latest) of the model's latest rollout or of `rollout`."""
    latest = store.rollouts.status(model)
    if rollout is None or rollout == latest.id:
        return latest, store.rollouts.history(model, latest.id), True
    item = store.rollouts.db.get(rollout)
    if item is None or item.state.model != model:
        raise RolloutNotFound(
            f"model '{model}' has no rollout '{rollout}'; its latest is '{latest.id}' (see "
            "GET /ui/api/rollouts for all of them)"
        )
    return item.state, store.rollouts.history(model, rollout), False
