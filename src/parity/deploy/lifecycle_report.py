"""The closed loop of one model as one self-contained HTML page: its timeline (what happened, in
simulated or real time), the monitoring signals over it, every retrain decision with its evidence,
the lineage of the retrained version, and the drift report and rollout timeline pages it
composes (monitoring/report.py and deploy/timeline.py). Pure: values in, text out, no I/O. The
page has no script and fetches nothing (its Content-Security-Policy forbids it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"
_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 960, 280, 52, 16, 18, 40


@dataclass(frozen=True)
class Step:
    """One line of the timeline: `kind` picks its badge (shift, drift, alert, labels, decision,
    job, registered, rollout, promoted, ...)."""

    at: datetime
    kind: str
    text: str


@dataclass(frozen=True)
class Series:
    """A signal over time, values in [0, 1] (None: no value), drawn as a line with points;
    `threshold` draws its firing level."""

    name: str
    css: str  # 'drift' or 'perf' (its colour)
    points: Sequence[tuple[datetime, float | None]]
    threshold: float | None = None


@dataclass(frozen=True)
class Decision:
    """A recorded retrain decision, as shown: its id, time, action, reasons and evidence."""

    id: int | None
    at: datetime
    action: str
    reasons: Sequence[str]
    signals: dict[str, Any]
    job_id: int | None = None


@dataclass(frozen=True)
class LifecycleView:
    """Everything the page shows. `drift_page` and `rollout_page` are whole pages rendered by
    monitoring and deploy; their bodies are embedded (their styles merged)."""

    title: str
    summary: Sequence[tuple[str, str]]
    steps: Sequence[Step]
    series: Sequence[Series] = ()
    markers: Sequence[tuple[datetime, str]] = ()
    decisions: Sequence[Decision] = ()
    lineage: Sequence[tuple[str, str]] = ()
    drift_page: str | None = None
    rollout_page: str | None = None
    generated_at: datetime | None = None
    notes: Sequence[str] = field(default_factory=tuple)
    span: tuple[datetime, datetime] | None = None  # the chart's time axis (default: the data's)


def render_lifecycle_report(view: LifecycleView) -> str:
    """The whole page. Every string from the data is escaped."""
    embedded = [p for p in (view.drift_page, view.rollout_page) if p]
    styles = "".join(_between(page, "<style>", "</style>") for page in embedded)
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(view.title)}</title><style>{styles}{_CSS}</style></head><body><main>",
        f"<h1>{_e(view.title)}</h1>",
        _table_card("Summary", _with_time(view.summary, view.generated_at)),
    ]
    parts.extend(f'<p class="note">{_e(note)}</p>' for note in view.notes)
    if view.series:
        parts.append(
            '<div class="card"><h2>Signals over time</h2>'
            f"{_legend(view.series)}{_chart(view)}</div>"
        )
    parts.append(_steps(view.steps))
    parts.append(_decisions(view.decisions))
    if view.lineage:
        parts.append(_table_card("Lineage of the retrained version", view.lineage, "lineage"))
    for heading, page in (
        ("The drift report of the first drifted week", view.drift_page),
        ("The rollout: shadow, canary steps and every gate decision", view.rollout_page),
    ):
        if page:
            parts.append(f'<section class="embedded"><h2>{_e(heading)}</h2>{_body(page)}</section>')
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


# --- parts -------------------------------------------------------------------------------------

_CSS = """
.note{color:#57606a;margin:0 0 12px}.lineage td:first-child,.lineage th:first-child{width:220px}
section.embedded{border-top:3px solid #d0d7de;margin-top:28px;padding-top:8px}
section.embedded h1{font-size:18px}
.k-shift,.k-drift,.k-alert{background:#9a6700}.k-labels{background:#8250df}
.k-decision,.k-job,.k-registered,.k-rollout,.k-start{background:#0969da}
.k-promoted{background:#1a7f37}.k-aborted,.k-failed{background:#cf222e}
.a-fire{background:#cf222e}.a-suppress{background:#9a6700}.a-hold{background:#6e7781}
.s-drift{stroke:#9a6700}.s-perf{stroke:#8250df}.p-drift{fill:#9a6700}.p-perf{fill:#8250df}
.series{fill:none;stroke-width:2}.mark{stroke:#57606a;stroke-dasharray:3 3}
.lvl{stroke-dasharray:6 4;stroke-width:1}.legend span{display:inline-block;width:12px;height:3px;
margin:0 6px 3px 14px;vertical-align:middle}.legend .s-drift{background:#9a6700}
.legend .s-perf{background:#8250df}pre{white-space:pre-wrap;margin:0;font-size:12px}
"""


def _with_time(rows: Sequence[tuple[str, str]], at: datetime | None) -> Sequence[tuple[str, str]]:
    return [*rows, ("Written at", _time(at))] if at is not None else rows


def _table_card(title: str, rows: Sequence[tuple[str, str]], css: str = "") -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<div class="card"><h2>{_e(title)}</h2><table class="{css}">{body}</table></div>'


def _steps(steps: Sequence[Step]) -> str:
    rows = "".join(
        f"<tr><td>{_e(_time(s.at))}</td><td>{_badge(s.kind, 'k')}</td><td>{_e(s.text)}</td></tr>"
        for s in steps
    )
    head = "<tr><th>Time</th><th>Event</th><th>What happened</th></tr>"
    return f'<div class="card"><h2>Timeline</h2><table>{head}{rows}</table></div>'


def _decisions(decisions: Sequence[Decision]) -> str:
    if not decisions:
        return '<div class="card"><h2>Retrain decisions</h2><p>None recorded.</p></div>'
    rows = []
    for d in decisions:
        job = "" if d.job_id is None else f"job #{d.job_id}"
        evidence = json.dumps(d.signals, indent=1, sort_keys=True, default=str)
        rows.append(
            f"<tr><td>{_e(d.id)}</td><td>{_e(_time(d.at))}</td><td>{_badge(d.action, 'a')}</td>"
            f"<td>{_e('; '.join(d.reasons))}<br>{_e(job)}</td>"
            f"<td><details><summary>signals</summary><pre>{_e(evidence)}</pre></details></td></tr>"
        )
    head = "<tr><th>#</th><th>At</th><th>Action</th><th>Why</th><th>Evidence</th></tr>"
    return f'<div class="card"><h2>Retrain decisions</h2><table>{head}{"".join(rows)}</table></div>'


def _legend(series: Sequence[Series]) -> str:
    items = "".join(f'<span class="s-{_e(s.css)}"></span>{_e(s.name)}' for s in series)
    return f'<div class="legend">{items}</div>'


def _chart(view: LifecycleView) -> str:
    times = [t for s in view.series for t, _ in s.points] + [t for t, _ in view.markers]
    times += list(view.span or ())
    if not times:
        return "<p>No signal recorded.</p>"
    first, last = min(times), max(times)
    span = max((last - first).total_seconds(), 1.0)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(at: datetime) -> float:
        return _LEFT + plot_w * (at - first).total_seconds() / span

    def y(value: float) -> float:
        return _TOP + plot_h * (1 - min(max(value, 0.0), 1.0))

    out = [f'<svg role="img" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}">']
    out.append("<title>signals over time, with the loop's events marked</title>")
    out.append(_axes(first, last, plot_w, plot_h))
    for row, (at, label) in enumerate(view.markers):
        left = x(at) > _LEFT + plot_w * 0.8  # near the right edge: the label goes left
        tx, anchor = (x(at) - 3, "end") if left else (x(at) + 3, "start")
        out.append(
            f'<g><title>{_e(label)} ({_e(_time(at))})</title><line class="mark" '
            f'x1="{x(at):.1f}" x2="{x(at):.1f}" y1="{_TOP}" y2="{_TOP + plot_h}"/>'
            f'<text x="{tx:.1f}" y="{_TOP + 10 + 13 * row}" text-anchor="{anchor}">'
            f"{_e(label)}</text></g>"
        )
    for s in view.series:
        out.extend(_series(s, x, y))
    out.append("</svg>")
    return "".join(out)


def _series(s: Series, x: Any, y: Any) -> list[str]:
    out = []
    if s.threshold is not None:
        level = y(s.threshold)
        out.append(
            f'<line class="lvl s-{_e(s.css)}" x1="{_LEFT}" x2="{_W - _RIGHT}" '
            f'y1="{level:.1f}" y2="{level:.1f}"/>'
        )
    known = [(t, v) for t, v in s.points if v is not None and math.isfinite(v)]
    if len(known) > 1:
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in known)
        out.append(f'<polyline class="series s-{_e(s.css)}" points="{path}"/>')
    for t, v in known:
        tip = f"{s.name} {v:.1%} ({_time(t)})"
        out.append(
            f'<g><title>{_e(tip)}</title><circle class="p-{_e(s.css)}" cx="{x(t):.1f}" '
            f'cy="{y(v):.1f}" r="4"/></g>'
        )
    return out


def _axes(first: datetime, last: datetime, plot_w: float, plot_h: float) -> str:
    bottom = _TOP + plot_h
    out = [
        f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{bottom}"/>',
        f'<line class="axis" x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{bottom}" y2="{bottom}"/>',
    ]
    for level in (0, 25, 50, 75, 100):
        at = _TOP + plot_h * (1 - level / 100)
        out.append(f'<text x="{_LEFT - 6}" y="{at + 4:.1f}" text-anchor="end">{level}%</text>')
    for k in range(5):
        moment = first + (last - first) * k / 4
        at = _LEFT + plot_w * k / 4
        out.append(
            f'<text x="{at:.1f}" y="{bottom + 16}" text-anchor="middle">'
            f"{_e(moment.strftime('%Y-%m-%d'))}</text>"
        )
    return "".join(out)


# --- helpers -----------------------------------------------------------------------------------


def _between(page: str, start: str, end: str) -> str:
    """The text between the first `start` and the next `end` in `page` ('' if absent)."""
    i = page.find(start)
    if i < 0:
        return ""
    j = page.find(end, i + len(start))
    return page[i + len(start) : j] if j >= 0 else ""


def _body(page: str) -> str:
    """An embedded page's content (inside its <main>), its title demoted under our heading."""
    return _between(page, "<main>", "</main>").replace("<h1>", "<h3>").replace("</h1>", "</h3>")


def _badge(kind: str, prefix: str) -> str:
    return f'<span class="badge {prefix}-{_e(kind)}">{_e(kind)}</span>'


def _time(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


def _e(text: object) -> str:
    return escape(str(text), quote=True)
