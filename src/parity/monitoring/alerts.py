"""Alert rules as a pure state machine: hysteresis (separate fire and clear thresholds) and a
sustain count. Takes a rule's fields and a signal value, returns the next state and the event
(if any). No I/O, no clock, no registry: alert_store.py keeps the state and the events."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

from parity.errors import InvalidAlertRule

Direction = Literal["above", "below"]
Transition = Literal["fired", "cleared"]


class RuleLike(Protocol):
    """The fields of `parity.AlertRule` the state machine reads."""

    @property
    def name(self) -> str: ...
    @property
    def signal(self) -> str: ...
    @property
    def fire_at(self) -> float: ...
    @property
    def clear_at(self) -> float: ...
    @property
    def sustain(self) -> int: ...
    @property
    def direction(self) -> str: ...


@dataclass(frozen=True)
class AlertState:
    """Where one rule stands: firing or not, and the consecutive evaluations counted towards
    changing that (breaching ones while not firing, clear ones while firing)."""

    firing: bool = False
    streak: int = 0


def check_rule(rule: RuleLike) -> None:
    """InvalidAlertRule naming the rule and field when the rule cannot work as hysteresis."""
    where = f"alert rule '{rule.name}' (signal '{rule.signal}')"
    if rule.direction not in ("above", "below"):
        raise InvalidAlertRule(
            f"{where}: direction must be 'above' or 'below', not {rule.direction!r}"
        )
    for field in ("fire_at", "clear_at"):
        value = getattr(rule, field)
        if not math.isfinite(value):
            raise InvalidAlertRule(f"{where}: {field} must be a finite number, not {value!r}")
    if rule.sustain < 1:
        raise InvalidAlertRule(f"{where}: sustain must be at least 1, not {rule.sustain}")
    if rule.direction == "above" and rule.clear_at > rule.fire_at:
        raise InvalidAlertRule(
            f"{where}: clear_at ({rule.clear_at}) must be at or below fire_at ({rule.fire_at}) for "
            "direction 'above'; set clear_at a little below fire_at so the alert does not flap"
        )
    if rule.direction == "below" and rule.clear_at < rule.fire_at:
        raise InvalidAlertRule(
            f"{where}: clear_at ({rule.clear_at}) must be at or above fire_at ({rule.fire_at}) for "
            "direction 'below'; set clear_at a little above fire_at so the alert does not flap"
        )


def breaching(rule: RuleLike, value: float) -> bool:
    """The value is on the firing side of `fire_at` (reaching it counts)."""
    return value >= rule.fire_at if rule.direction == "above" else value <= rule.fire_at


def clear(rule: RuleLike, value: float) -> bool:
    """The value is on the clear side of `clear_at` (reaching it counts) and not breaching (so
    a rule with clear_at == fire_at does not flap on a value sitting exactly at both)."""
    beyond = value <= rule.clear_at if rule.direction == "above" else value >= rule.clear_at
    return beyond and not breaching(rule, value)


def step(
    rule: RuleLike, state: AlertState, value: float | None
) -> tuple[AlertState, Transition | None]:
    """The state after one evaluation of `rule` on `value`, and "fired"/"cleared" when it changed.

    None or NaN is insufficient data: it neither counts towards nor breaks a streak. A value
    between the two thresholds (the hysteresis band) keeps the state and breaks the streak."""
    if value is None or math.isnan(value):
        return state, None
    toward = clear(rule, value) if state.firing else breaching(rule, value)
    if not toward:
        return AlertState(state.firing, 0), None
    streak = state.streak + 1
    if streak >= rule.sustain:
        return AlertState(not state.firing, 0), "cleared" if state.firing else "fired"
    return AlertState(state.firing, streak), None


def run(
    rule: RuleLike, values: list[float | None], state: AlertState | None = None
) -> tuple[AlertState, list[tuple[int, Transition]]]:
    """Evaluate `values` in order; the final state and (index, transition) for each change."""
    current = state or AlertState()
    changes: list[tuple[int, Transition]] = []
    for index, value in enumerate(values):
        current, change = step(rule, current, value)
        if change is not None:
            changes.append((index, change))
    return current, changes
