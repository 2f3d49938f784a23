"""The self-contained HTML drift report: inline CSS and inline SVG drawn here, no script, no
network (a Content-Security-Policy forbids any fetch), every user string escaped.
Takes a plain view-model (`ReportView`); must not import numpy, DuckDB or the registry."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape

# Verdicts the report knows how to colour; any other status is shown as given, in grey.
DRIFT = "drift"
NO_DRIFT = "no_drift"
INSUFFICIENT = "insufficient_data"

NO_DATA = "no_data"

_STATUS_LABEL = {
    DRIFT: "drift",
    NO_DRIFT: "no drift",
    INSUFFICIENT: "insufficient data",
    NO_DATA: "no data",
}
_MAX_LABEL = 14  # characters of a bin label under a bar; the full label is in its tooltip


@dataclass(frozen=True)
class Bin:
    """One bin of the distribution plot: its label and the share of rows in it (0..1) in the
    reference and in the current window (None: the current rows are not at hand)."""

    label: str
    reference: float
    current: float | None


@dataclass(frozen=True)
class HistoryPoint:
    """One past run of the column's test: window end, statistic (None: insufficient data)."""

    at: datetime
    score: float | None
    drifted: bool | None = None


@dataclass(frozen=True)
class ReportColumn:
    """One column's verdict and what to draw for it."""

    name: str
    test: str
    statistic: float | None
    threshold: float
    status: str
    reason: str = ""
    bins: Sequence[Bin] = ()
    history: Sequence[HistoryPoint] = ()
    higher_is_drift: bool = True  # False for p-value tests: drift when statistic <= threshold
    reference_rows: int | None = None
    current_rows: int | None = None


@dataclass(frozen=True)
class ReportView:
    """Everything the page shows; `drift_share` is the configured dataset-drift share."""

    title: str
    columns: Sequence[ReportColumn]
    drift_share: float
    dataset_drift: bool | None = None  # None: insufficient data for a dataset verdict
    window_start: datetime | None = None
    window_end: datetime | None = None
    reference: str = ""
    generated_at: datetime | None = None
    details: Sequence[tuple[str, str]] = field(default_factory=tuple)
    share_history: Sequence[HistoryPoint] = ()


def render_report(view: ReportView) -> str:
    """The whole HTML page for `view`."""
    tested = [c for c in view.columns if c.status in (DRIFT, NO_DRIFT)]
    parts = [
        _head(view.title),
        f"<h1>{_e(view.title)}</h1>",
        _details(view),
        _summary(view, tested),
        _column_table(view.columns),
    ]
    if any(p.score is not None for p in view.share_history):
        svg = _history_svg(view.share_history, view.drift_share, True, "share drifted")
        parts.append(
            '<div class="card"><h2>Share of drifted columns over time</h2>'
            f"{_figure(f'threshold ≥ {_num(view.drift_share)}', svg, 'history')}</div>"
        )
    parts.extend(_column_section(i, column) for i, column in enumerate(view.columns))
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


# --- page parts -------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2328;
background:#f6f8fa}
main{max-width:1060px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:0 0 6px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px;margin:0 0 16px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;
border-bottom:1px solid #eaeef2;vertical-align:top}th{font-weight:600;color:#57606a}
td.num{font-variant-numeric:tabular-nums;text-align:right}
.badge{display:inline-block;white-space:nowrap;border-radius:10px;padding:1px 8px;font-size:12px;
font-weight:600;
color:#fff;background:#6e7781}
.drift{background:#cf222e}.no_drift{background:#1a7f37}
.insufficient_data,.no_data{background:#9a6700}
.plots{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}
figcaption{font-size:12px;color:#57606a;margin-bottom:4px}
svg{background:#fff;display:block}svg text{font:11px system-ui,sans-serif;fill:#57606a}
.ref{fill:#8c959f;fill-opacity:.55}.cur{fill:#0969da;fill-opacity:.75}
.thr{stroke:#cf222e;stroke-dasharray:6 4;stroke-width:1.5}
.line{fill:none;stroke:#0969da;stroke-width:1.5}.axis{stroke:#8c959f}
.point{fill:#0969da}.point.hit{fill:#cf222e}.empty{font-style:italic;color:#57606a}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"


def _head(title: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>"
    )


def _details(view: ReportView) -> str:
    rows: list[tuple[str, str]] = []
    if view.window_start is not None or view.window_end is not None:
        rows.append(("Window", f"{_time(view.window_start)} to {_time(view.window_end)}"))
    if view.reference:
        rows.append(("Reference", view.reference))
    rows.extend(view.details)
    if view.generated_at is not None:
        rows.append(("Generated", _time(view.generated_at)))
    if not rows:
        return ""
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<div class="card"><table>{body}</table></div>'


def _summary(view: ReportView, tested: Sequence[ReportColumn]) -> str:
    drifted = sum(1 for c in tested if c.status == DRIFT)
    skipped = len(view.columns) - len(tested)
    if view.dataset_drift is None:
        verdict = _badge(INSUFFICIENT)
    else:
        verdict = _badge(DRIFT if view.dataset_drift else NO_DRIFT)
    share = f"{drifted / len(tested):.0%}" if tested else "n/a"
    text = (
        f"{drifted} of {len(tested)} tested columns drifted (share {share}); the dataset "
        f"drifts when the share is at least {view.drift_share:.0%}."
    )
    if skipped:
        text += f" {skipped} column(s) not tested (see their reasons)."
    return f'<div class="card" id="summary"><h2>Dataset drift {verdict}</h2><p>{_e(text)}</p></div>'


def _column_table(columns: Sequence[ReportColumn]) -> str:
    head = (
        "<tr><th>Column</th><th>Test</th><th>Statistic</th><th>Threshold</th>"
        "<th>Verdict</th><th>Reason</th></tr>"
    )
    rows = []
    for i, c in enumerate(columns):
        rows.append(
            f'<tr><td><a href="#col-{i}">{_e(c.name)}</a></td><td>{_e(c.test)}</td>'
            f'<td class="num">{_num(c.statistic)}</td>'
            f'<td class="num">{_e(_rule(c))}</td><td>{_badge(c.status)}</td>'
            f"<td>{_e(c.reason)}</td></tr>"
        )
    return f'<div class="card"><h2>Columns</h2><table>{head}{"".join(rows)}</table></div>'


def _column_section(index: int, column: ReportColumn) -> str:
    facts = []
    if column.statistic is not None:
        facts.append(f"{column.test} = {_num(column.statistic)}, threshold {_rule(column)}")
    if column.reference_rows is not None or column.current_rows is not None:
        facts.append(
            f"reference rows {_count(column.reference_rows)}, "
            f"current rows {_count(column.current_rows)}"
        )
    text = " · ".join(facts) + (". " if facts else "") + column.reason
    distribution = _figure(
        "Distribution: reference vs current (share of rows)",
        _bars_svg(column.bins) if column.bins else "",
        "distribution",
        legend=bool(column.bins),
    )
    scored = any(p.score is not None for p in column.history)
    history = _figure(
        f"{column.test} over time, threshold {_rule(column)}",
        _history_svg(column.history, column.threshold, column.higher_is_drift, column.test)
        if scored
        else "",
        "history",
    )
    return (
        f'<section class="card column" id="col-{index}"><h2>{_e(column.name)} '
        f"{_badge(column.status)}</h2><p>{_e(text)}</p>"
        f'<div class="plots">{distribution}{history}</div></section>'
    )


def _figure(caption: str, svg: str, kind: str, *, legend: bool = False) -> str:
    key = ""
    if legend:
        key = (
            '<div class="legend"><span style="background:#8c959f"></span>'
            'reference<span style="background:#0969da"></span>current</div>'
        )
    body = svg or '<p class="empty">nothing to plot</p>'
    return f'<figure class="{kind}"><figcaption>{_e(caption)}</figcaption>{key}{body}</figure>'


# --- SVG ---------------------------------------------------------------------------------------

_W, _H = 500, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 12, 44


def _bars_svg(bins: Sequence[Bin]) -> str:
    """Reference bars full width, current bars narrower on top of them: one <rect> each."""
    top = max([_finite(b.reference) for b in bins] + [_finite(b.current) for b in bins])
    y_max = _nice_max(top)
    plot_w = _W - _LEFT - _RIGHT
    slot = plot_w / len(bins)
    out = [_svg_open("distribution of reference and current rows"), _y_axis(0.0, y_max, "%")]
    widest = max(len(b.label) for b in bins)
    every = max(1, math.ceil(min(widest, _MAX_LABEL) * 6.5 / slot))  # labels must not overlap
    for i, b in enumerate(bins):
        x = _LEFT + i * slot
        out.append(_bar(x + slot * 0.08, slot * 0.84, _finite(b.reference), y_max, "ref", b))
        if b.current is not None:
            out.append(_bar(x + slot * 0.28, slot * 0.44, _finite(b.current), y_max, "cur", b))
        if i % every == 0:
            label = b.label if len(b.label) <= _MAX_LABEL else b.label[: _MAX_LABEL - 1] + "…"
            out.append(
                f'<text x="{x + slot / 2:.1f}" y="{_H - _BOTTOM + 14}" '
                f'text-anchor="middle">{_e(label)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def _bar(x: float, width: float, share: float, y_max: float, kind: str, b: Bin) -> str:
    plot_h = _H - _TOP - _BOTTOM
    height = plot_h * share / y_max if y_max > 0 else 0.0
    y = _TOP + plot_h - height
    who = "reference" if kind == "ref" else "current"
    tip = f"{b.label}: {who} {share:.1%}"
    return (
        f'<rect class="bar {kind}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
        f'height="{height:.1f}"><title>{_e(tip)}</title></rect>'
    )


def _history_svg(
    points: Sequence[HistoryPoint], threshold: float, higher_is_drift: bool, label: str
) -> str:
    """The score per run as a line with one <circle> per scored run, and the threshold as a
    dashed line; runs without a score (insufficient data) break the line."""
    ordered = sorted(points, key=lambda p: p.at)
    scores = [_finite(p.score) for p in ordered if p.score is not None]
    y_max = _nice_max(max([*scores, _finite(threshold)]))
    first, last = ordered[0].at, ordered[-1].at
    span = (last - first).total_seconds() or 1.0
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def xy(p: HistoryPoint) -> tuple[float, float]:
        x = _LEFT + plot_w * ((p.at - first).total_seconds() / span if len(ordered) > 1 else 0.5)
        return x, _TOP + plot_h * (1 - min(_finite(p.score), y_max) / y_max)

    out = [_svg_open(f"{label} over time"), _y_axis(0.0, y_max, "")]
    ty = _TOP + plot_h * (1 - min(_finite(threshold), y_max) / y_max)
    out.append(
        f'<line class="thr" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}">'
        f"<title>threshold {_num(threshold)}</title></line>"
    )
    for run in _runs(ordered):
        if len(run) > 1:
            coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in map(xy, run))
            out.append(f'<polyline class="line" points="{coords}"/>')
    for p in ordered:
        if p.score is None:
            continue
        x, y = xy(p)
        hit = p.drifted if p.drifted is not None else _breaches(p.score, threshold, higher_is_drift)
        tip = f"{_time(p.at)}: {_num(p.score)}"
        out.append(
            f'<circle class="point{" hit" if hit else ""}" cx="{x:.1f}" cy="{y:.1f}" r="3.5">'
            f"<title>{_e(tip)}</title></circle>"
        )
    out.append(_time_axis(first, last))
    out.append("</svg>")
    return "".join(out)


def _time_axis(first: datetime, last: datetime) -> str:
    return "".join(
        f'<text x="{x}" y="{_H - _BOTTOM + 14}" text-anchor="{anchor}">{_e(_time(at))}</text>'
        for at, anchor, x in ((first, "start", _LEFT), (last, "end", _W - _RIGHT))
    )


def _runs(points: Sequence[HistoryPoint]) -> list[list[HistoryPoint]]:
    """Consecutive scored points; a point without a score ends a run."""
    runs: list[list[HistoryPoint]] = [[]]
    for p in points:
        if p.score is None:
            runs.append([])
        else:
            runs[-1].append(p)
    return [r for r in runs if r]


def _svg_open(title: str) -> str:
    return (
        f'<svg role="img" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}">'
        f"<title>{_e(title)}</title>"
    )


def _y_axis(low: float, high: float, unit: str) -> str:
    plot_h = _H - _TOP - _BOTTOM
    out = [
        f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{_TOP + plot_h}"/>',
        f'<line class="axis" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{_TOP + plot_h}" '
        f'y2="{_TOP + plot_h}"/>',
    ]
    for k in range(5):
        value = low + (high - low) * k / 4
        y = _TOP + plot_h * (1 - k / 4)
        text = f"{value * 100:.3g}%" if unit == "%" else f"{value:.3g}"
        out.append(f'<text x="{_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{text}</text>')
    return "".join(out)


# --- formatting ----------------------------------------------------------------------------------


def _breaches(score: float, threshold: float, higher_is_drift: bool) -> bool:
    return score >= threshold if higher_is_drift else score <= threshold


def _finite(value: float | None) -> float:
    """A value that can be drawn: None and NaN draw as 0, ±inf as a large finite number."""
    if value is None or math.isnan(value):
        return 0.0
    return max(min(value, 1e300), -1e300)


def _nice_max(value: float) -> float:
    """The top of a y axis: 1, 2 or 5 times a power of ten, at least `value` (1 if it is 0)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        if value <= step * power * (1 + 1e-12):
            return step * power
    return 10.0 * power


def _rule(column: ReportColumn) -> str:
    if math.isnan(column.threshold):
        return "-"
    return f"{'≥' if column.higher_is_drift else '≤'} {_num(column.threshold)}"


def _badge(status: str) -> str:
    css = status if status in _STATUS_LABEL else "other"
    return f'<span class="badge {css}">{_e(_STATUS_LABEL.get(status, status))}</span>'


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4g}"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M")


def _e(text: object) -> str:
    return escape(str(text), quote=True)
