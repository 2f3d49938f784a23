"""How `parity rollout` shows rollouts: the one-line summary, the phases, the status of every
active rollout and the history timeline (each gate's verdict with its numbers). Pure: builds text
and rich tables from deploy's values; prints nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from parity.timeutil import format_span

if TYPE_CHECKING:
    from parity.deploy.state import GateResult, RolloutEvent, RolloutState


def when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def phase_name(state: RolloutState, step: int) -> str:
    has_shadow = state.definition.shadow is not None
    if has_shadow and step == 0:
        return "shadow"
    canary = step - (1 if has_shadow else 0)
    return f"step {canary + 1}/{len(state.definition.steps)}"


def summary(state: RolloutState) -> str:
    d = state.definition
    ramp = " → ".join(f"{s.weight:g}%" for s in d.steps)
    shadow = f"shadow {format_span(d.shadow.duration)}, then " if d.shadow is not None else ""
    where = (
        f"{state.status} at {phase_name(state, state.step)} (weight {state.weight:g}%)"
        if state.status in ("active", "paused")
        else state.status
    )
    reason = f"; {state.reason}" if state.reason else ""
    return (
        f"{state.model} v{state.candidate} against {d.champion_alias}=v{state.champion}, "
        f"{shadow}{ramp or 'no canary'}; {where}{reason}"
    )


def phases_table(state: RolloutState) -> Table:
    """The phases with their weight, least duration and samples; the current one marked."""
    table = Table("phase", "weight", "least duration", "min samples", "")
    for i, phase in enumerate(state.phases):
        now = "← now" if i == state.step and state.status in ("active", "paused") else ""
        table.add_row(
            phase_name(state, i),
            f"{phase.weight:g}%",
            format_span(phase.duration),
            str(phase.min_samples),
            now,
        )
    return table


def settings_line(state: RolloutState) -> str:
    d = state.definition
    gates = ", ".join(f"{g.metric} ≤ {g.limit:g}" for g in d.gates) or "none"
    return (
        f"gates: {gates}; failures {state.failures}/{d.failure_policy.limit} "
        f"({d.failure_policy.mode}); checked every {format_span(d.interval)}; "
        f"step started {when(state.step_started)}"
    )


def status_table(states: Sequence[RolloutState]) -> Table:
    table = Table("rollout", "model", "status", "candidate", "champion", "phase", "weight", "since")
    for state in states:
        table.add_row(
            state.id,
            state.model,
            state.status,
            str(state.candidate),
            str(state.champion),
            phase_name(state, state.step),
            f"{state.weight:g}%",
            when(state.step_started),
        )
    return table


def _verdicts(results: Sequence[GateResult]) -> str:
    lines = []
    for r in results:
        numbers = ""
        if r.candidate is not None or r.champion is not None:
            numbers = f" {_num(r.candidate)} vs {_num(r.champion)}"
        limit = "" if r.limit is None else f" (limit {_num(r.limit)})"
        samples = ", ".join(f"{k} {v:,}" for k, v in sorted(r.samples.items()))
        samples = f" [{samples}]" if samples else ""
        reason = f": {r.reason}" if r.reason else ""
        lines.append(f"{r.gate} {r.verdict.upper()}{numbers}{limit}{samples}{reason}")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def history_table(state: RolloutState, events: Sequence[RolloutEvent]) -> Table:
    """The timeline: time, phase, weight, event, the gates' verdicts with their numbers."""
    table = Table("time", "phase", "weight", "event", "gates", "by / why")
    for event in events:
        # a check's reason repeats its gates' ('hold: gate ... inconclusive: ...'): its action
        reason = event.reason.split(":", 1)[0] if event.kind == "check" else event.reason
        why = " / ".join(p for p in (event.actor, reason) if p)
        table.add_row(
            when(event.at),
            phase_name(state, event.step),
            f"{event.weight:g}%",
            event.kind,
            escape(_verdicts(event.results)) or "-",
            escape(why) or "-",
        )
    return table


def event_line(event: RolloutEvent) -> str:
    verdicts = "; ".join(_verdicts([r]) for r in event.results)
    return f"{when(event.at)} {event.rollout} {event.kind} at weight {event.weight:g}% {verdicts}"
