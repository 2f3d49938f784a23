"""A rollout's timeline as a view-model (pure): each event's time, step, weight and gate verdicts,
with text lines for a terminal and a self-contained HTML page (inline SVG of the candidate's
weight over time, no script, a Content-Security-Policy forbidding fetches). No I/O; must not
import the store, the controller or the gates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from parity.deploy.state import GateResult, RolloutEvent, RolloutState

# Markers drawn on the weight curve, by event kind; checks are coloured by their action.
_MARKED = ("started", "advanced", "promoted", "aborted", "paused", "resumed", "resumed_after_crash")
_ACTIONS = ("hold", "advance", "promote", "abort")
_RANK = {"started": 0, "resumed_after_crash": 0, "check": 1}  # others (the moves) come after


@dataclass(frozen=True)
class Entry:
    """One event as the timeline shows it. `action` is a check's decision (hold, advance,
    promote, abort; '' for other kinds); `detail` the reason without that prefix."""

    at: datetime
    offset: timedelta  # since the rollout started
    step: int
    phase: str  # 'shadow', '1 %', ... ('step 3' without the definition)
    weight: float
    kind: str
    action: str
    detail: str
    actor: str
    gates: tuple[GateResult, ...]


@dataclass(frozen=True)
class Timeline:
    """A rollout's events in order, and where it ended (from its state, when given)."""

    rollout: str
    model: str
    candidate: int | None
    champion: int | None
    status: str
    reason: str
    started_at: datetime | None
    entries: tuple[Entry, ...]

    @property
    def span(self) -> timedelta:
        if not self.entries:
            return timedelta(0)
        return self.entries[-1].offset

    def curve(self) -> list[tuple[timedelta, float]]:
        """The candidate's weight as a step function: (offset, weight) where it changes. After
        a promotion the candidate is the champion: it answers everything (100 %)."""
        points: list[tuple[timedelta, float]] = []
        for entry in self.entries:
            if not points or points[-1][1] != entry.weight:
                points.append((entry.offset, entry.weight))
        return points


def build_timeline(events: Sequence[RolloutEvent], state: RolloutState | None = None) -> Timeline:
    """The view-model of `events` (any order; shown oldest first, a check before the move it
    decided at the same time) of one rollout."""
    ordered = sorted(events, key=lambda e: (e.at, _RANK.get(e.kind, 2)))
    start = state.started_at if state is not None else (ordered[0].at if ordered else None)
    entries = tuple(_entry(e, start or e.at, state) for e in ordered)
    return Timeline(
        rollout=state.id if state is not None else (ordered[0].rollout if ordered else ""),
        model=state.model if state is not None else "",
        candidate=state.candidate if state is not None else None,
        champion=state.champion if state is not None else None,
        status=state.status if state is not None else _status_of(ordered),
        reason=state.reason if state is not None else "",
        started_at=start,
        entries=entries,
    )


def _entry(event: RolloutEvent, start: datetime, state: RolloutState | None) -> Entry:
    action, detail = "", event.reason
    if event.kind == "check":
        head, sep, rest = event.reason.partition(": ")
        if sep and head in _ACTIONS:
            action, detail = head, rest
    return Entry(
        at=event.at,
        offset=max(event.at - start, timedelta(0)),
        step=event.step,
        phase=phase_label(event.step, state),
        weight=float(event.weight),
        kind=event.kind,
        action=action,
        detail=detail,
        actor=event.actor,
        gates=tuple(event.results),
    )


def phase_label(step: int, state: RolloutState | None) -> str:
    """'shadow' or the step's weight ('5 %'); 'step N' when the definition is not at hand."""
    if state is None:
        return f"step {step}"
    phases = state.phases
    if not 0 <= step < len(phases):
        return f"step {step}"
    if step == 0 and state.definition.shadow is not None:
        return "shadow"
    return f"{phases[step].weight:g} %"


def _status_of(events: Sequence[RolloutEvent]) -> str:
    for event in reversed(events):
        if event.kind in ("promoted", "aborted"):
            return event.kind
    return "active" if events else "unknown"


# --- text -------------------------------------------------------------------------------------


def timeline_lines(timeline: Timeline, *, width: int = 120) -> list[str]:
    """The timeline for a terminal: one line per event, a run of held checks at one step folded
    into one line, and each gate's verdict under the check that moved the rollout."""
    lines: list[str] = []
    held: list[Entry] = []
    for entry in timeline.entries:
        if entry.kind == "check" and entry.action == "hold":
            held.append(entry)
            continue
        if held:
            lines.append(_held_line(held, width))
            held = []
        lines.append(_clip(_line(entry, _verb(entry), entry.detail), width))
        if entry.kind == "check" or entry.kind == "aborted":
            lines.extend(_clip(f"      {gate_text(g)}", width) for g in entry.gates)
    if held:
        lines.append(_held_line(held, width))
    return lines


def gate_text(result: GateResult) -> str:
    """'gate VERDICT (candidate x, champion y, limit z): reason'."""
    numbers = _gate_numbers(result)
    shown = f" ({numbers})" if numbers else ""
    reason = f": {result.reason}" if result.reason else ""
    return f"{result.gate} {result.verdict.upper()}{shown}{reason}"


def _gate_numbers(result: GateResult) -> str:
    return ", ".join(
        f"{name} {_num(value)}"
        for name, value in (
            ("candidate", result.candidate),
            ("champion", result.champion),
            ("limit", result.limit),
        )
        if value is not None
    )


def _verb(entry: Entry) -> str:
    if entry.kind == "check":
        return f"check -> {entry.action or 'done'}"
    return entry.kind.replace("_", " ")


def _line(entry: Entry, verb: str, detail: str) -> str:
    return (
        f"  {_offset(entry.offset):>9}  {entry.phase:<7} {entry.weight:>5g} %  {verb:<15} {detail}"
    )


def _held_line(held: Sequence[Entry], width: int) -> str:
    last = held[-1]
    count = f"{len(held)} check{'s' if len(held) != 1 else ''} held"
    return _clip(_line(last, count, f"(last: {last.detail})"), width)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


def _offset(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"+{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4g}"


# --- HTML -------------------------------------------------------------------------------------

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2328;
background:#f6f8fa}main{max-width:1060px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:0 0 6px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px;margin:0 0 16px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;
border-bottom:1px solid #eaeef2;vertical-align:top}th{font-weight:600;color:#57606a}
.badge{display:inline-block;border-radius:10px;padding:1px 8px;font-size:12px;font-weight:600;
color:#fff;background:#6e7781}.promoted,.pass,.advance,.promote{background:#1a7f37}
.aborted,.fail,.abort{background:#cf222e}.inconclusive,.hold,.paused{background:#9a6700}
.active{background:#0969da}ul.gates{margin:4px 0 0;padding-left:18px}
svg{background:#fff;display:block}svg text{font:11px system-ui,sans-serif;fill:#57606a}
.axis{stroke:#8c959f}.weight{fill:none;stroke:#0969da;stroke-width:2}
.m-check{fill:#8c959f}.m-hold{fill:#9a6700}.m-advance,.m-advanced,.m-started{fill:#0969da}
.m-promote,.m-promoted{fill:#1a7f37}.m-abort,.m-aborted{fill:#cf222e}.m-other{fill:#6e7781}
"""
_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 960, 260, 52, 16, 14, 34


def render_timeline_html(events: Sequence[RolloutEvent], state: RolloutState | None = None) -> str:
    """The whole page for one rollout: its outcome, the weight over time with a marker per
    event, and every event with its gates' verdicts. Every string from the data is escaped."""
    timeline = build_timeline(events, state)
    title = f"Rollout {timeline.rollout or '?'}" + (
        f" of {timeline.model}" if timeline.model else ""
    )
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1>",
        _summary(timeline),
        f'<div class="card"><h2>Candidate weight over time</h2>{_svg(timeline)}</div>',
        _event_table(timeline),
        "</main></body></html>\n",
    ]
    return "\n".join(parts)


def _summary(timeline: Timeline) -> str:
    rows = [("Status", _badge(timeline.status))]
    if timeline.candidate is not None:
        rows.append(("Candidate", _e(f"version {timeline.candidate}")))
    if timeline.champion is not None:
        rows.append(("Champion", _e(f"version {timeline.champion} when it started")))
    if timeline.started_at is not None:
        rows.append(("Started", _e(timeline.started_at.isoformat(timespec="seconds"))))
    rows.append(("Duration", _e(_offset(timeline.span))))
    if timeline.reason:
        rows.append(("Reason", _e(timeline.reason)))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<div class="card"><table>{body}</table></div>'


def _svg(timeline: Timeline) -> str:
    if not timeline.entries:
        return "<p>No events.</p>"
    # 5 % past the last event, so where the rollout ended (promoted: 100 %) shows as a plateau
    span = max(timeline.span.total_seconds() * 1.05, 1.0)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(offset: timedelta) -> float:
        return _LEFT + plot_w * offset.total_seconds() / span

    def y(weight: float) -> float:
        shown = 0.0 if math.isnan(weight) else min(max(weight, 0.0), 100.0)
        return _TOP + plot_h * (1 - shown / 100)

    out = [f'<svg role="img" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}">']
    out.append(f"<title>{_e('candidate weight (percent of routing keys) over time')}</title>")
    out.append(_axes(span, plot_w, plot_h))
    path: list[str] = []
    for offset, weight in timeline.curve():
        if path:
            path.append(f"{x(offset):.1f},{path[-1].split(',')[1]}")
        path.append(f"{x(offset):.1f},{y(weight):.1f}")
    path.append(f"{x(timedelta(seconds=span)):.1f},{path[-1].split(',')[1]}")
    out.append(f'<polyline class="weight" points="{" ".join(path)}"/>')
    for entry in timeline.entries:
        out.append(_marker(entry, x(entry.offset), y(entry.weight)))
    out.append("</svg>")
    return "".join(out)


def _axes(span: float, plot_w: float, plot_h: float) -> str:
    bottom = _TOP + plot_h
    out = [
        f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{bottom}"/>',
        f'<line class="axis" x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{bottom}" y2="{bottom}"/>',
    ]
    for weight in (0, 25, 50, 75, 100):
        level = _TOP + plot_h * (1 - weight / 100)
        out.append(f'<text x="{_LEFT - 6}" y="{level + 4:.1f}" text-anchor="end">{weight}%</text>')
    for k in range(5):
        at = _LEFT + plot_w * k / 4
        label = _offset(timedelta(seconds=span * k / 4))
        out.append(f'<text x="{at:.1f}" y="{bottom + 16}" text-anchor="middle">{label}</text>')
    return "".join(out)


def _marker(entry: Entry, cx: float, cy: float) -> str:
    kind = entry.action if entry.kind == "check" and entry.action else entry.kind
    css = f"m-{kind}" if kind in _MARKED or kind in _ACTIONS else "m-other"
    radius = 3 if entry.kind == "check" else 6
    tip = f"{_offset(entry.offset)} {entry.phase}: {_verb(entry)} {entry.detail}".strip()
    return (
        f'<g class="marker {css}"><title>{_e(tip)}</title>'
        f'<circle class="{css}" cx="{cx:.1f}" cy="{cy:.1f}" r="{radius}"/></g>'
    )


def _event_table(timeline: Timeline) -> str:
    rows = []
    for entry in timeline.entries:
        kind = entry.action if entry.kind == "check" and entry.action else entry.kind
        gates = "".join(
            f"<li>{_badge(g.verdict)} {_e(g.gate)} {_e(_gate_numbers(g))}"
            f"{'<br>' + _e(g.reason) if g.reason else ''}</li>"
            for g in entry.gates
        )
        listed = f'<ul class="gates">{gates}</ul>' if gates else ""
        rows.append(
            f"<tr><td>{_e(_offset(entry.offset))}</td><td>{_e(entry.phase)}</td>"
            f"<td>{_e(f'{entry.weight:g} %')}</td><td>{_e(entry.kind)} {_badge(kind)}</td>"
            f"<td>{_e(entry.detail)}{listed}</td></tr>"
        )
    head = "<tr><th>Time</th><th>Phase</th><th>Weight</th><th>Event</th><th>Details</th></tr>"
    return f'<div class="card"><h2>Events</h2><table>{head}{"".join(rows)}</table></div>'


_BADGES = frozenset(
    ("active", "paused", "promoted", "aborted", "pass", "fail", "inconclusive", *_ACTIONS)
)


def _badge(status: str) -> str:
    css = status if status in _BADGES else "other"
    return f'<span class="badge {css}">{_e(status)}</span>'


def _e(text: object) -> str:
    return escape(str(text), quote=True)
