"""deploy/timeline.py: a rollout's events as a view-model, as terminal lines and as one
self-contained HTML page (parsed back with html.parser: no script, no fetch, data escaped)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from parity import Gate, Phase, Rollout
from parity.deploy.state import GateResult, RolloutEvent, RolloutState
from parity.deploy.timeline import (
    build_timeline,
    gate_text,
    phase_label,
    render_timeline_html,
    timeline_lines,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EVIL = '<script>alert("x")</script> & <img src=http://evil/x>'


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def definition(shadow: bool = True) -> Rollout:
    return Rollout(
        name="r",
        model="fraud",
        candidate=2,
        shadow=Phase(weight=0, duration=timedelta(minutes=2)) if shadow else None,
        steps=[Phase(weight=1), Phase(weight=50), Phase(weight=100)],
        gates=[Gate(metric="latency_p99"), Gate(metric="error_rate")],
    )


def state(
    status: str = "promoted", reason: str = "every gate passed", **kw: object
) -> RolloutState:
    values: dict[str, object] = {
        "id": "fraud-1",
        "project": "p",
        "model": "fraud",
        "definition": definition(),
        "candidate": 2,
        "champion": 1,
        "status": status,
        "step": 3,
        "step_started": minutes(9),
        "failures": 0,
        "started_at": T0,
        "updated_at": minutes(10),
        "reason": reason,
    }
    values.update(kw)
    return RolloutState(**values)  # type: ignore[arg-type]


LATENCY_OK = GateResult("latency_p99", "pass", 12.5, 11.0, 0.1, {"candidate": 40}, "p99 ok")
ERRORS_OK = GateResult("error_rate", "pass", 0.0, 0.0, 0.01, {}, "")
WAITING = GateResult("latency_p99", "inconclusive", None, None, 0.1, {}, "too few rows")


def check(at: float, step: int, weight: float, action: str, *results: GateResult) -> RolloutEvent:
    return RolloutEvent("fraud-1", minutes(at), "check", step, weight, results, f"{action}: why")


def promoted_events() -> list[RolloutEvent]:
    return [
        RolloutEvent("fraud-1", T0, "started", 0, 0.0, (), "version 2 against champion 1"),
        check(1, 0, 0.0, "hold", WAITING),
        check(2, 0, 0.0, "hold", WAITING),
        check(3, 0, 0.0, "advance", LATENCY_OK, ERRORS_OK),
        RolloutEvent("fraud-1", minutes(3), "advanced", 1, 1.0, (), "shadow passed"),
        check(5, 1, 1.0, "advance", LATENCY_OK, ERRORS_OK),
        RolloutEvent("fraud-1", minutes(5), "advanced", 2, 50.0, (), "step passed"),
        check(7, 2, 50.0, "advance", LATENCY_OK, ERRORS_OK),
        RolloutEvent("fraud-1", minutes(7), "advanced", 3, 100.0, (), "step passed"),
        check(10, 3, 100.0, "promote", LATENCY_OK, ERRORS_OK),
        RolloutEvent("fraud-1", minutes(10), "promoted", 3, 100.0, (), "every gate passed"),
    ]


def test_the_view_model_orders_events_and_names_each_phase() -> None:
    events = promoted_events()
    timeline = build_timeline(list(reversed(events)), state())
    assert [e.at for e in timeline.entries] == [e.at for e in events]
    assert [e.phase for e in timeline.entries][:5] == ["shadow"] * 4 + ["1 %"]
    assert timeline.entries[-1].phase == "100 %"
    assert [e.offset for e in timeline.entries][-1] == timedelta(minutes=10)
    assert timeline.span == timedelta(minutes=10)
    assert [e.action for e in timeline.entries][1:4] == ["hold", "hold", "advance"]
    assert timeline.entries[1].detail == "why" and timeline.entries[0].action == ""
    assert (timeline.status, timeline.candidate, timeline.champion) == ("promoted", 2, 1)
    assert timeline.curve() == [
        (timedelta(0), 0.0),
        (timedelta(minutes=3), 1.0),
        (timedelta(minutes=5), 50.0),
        (timedelta(minutes=7), 100.0),
    ]


def test_without_the_state_the_timeline_uses_the_events_alone() -> None:
    abort = RolloutEvent("fraud-1", minutes(4), "aborted", 0, 0.0, (), "gate failed")
    events = [*promoted_events()[:4], abort]
    timeline = build_timeline(events)
    assert timeline.status == "aborted" and timeline.rollout == "fraud-1"
    assert timeline.entries[0].phase == "step 0"
    assert build_timeline(events[:2]).status == "active"
    empty = build_timeline([])
    assert empty.entries == () and empty.span == timedelta(0) and empty.curve() == []


def test_phase_labels_without_a_shadow_phase() -> None:
    no_shadow = state(definition=definition(shadow=False))
    assert [phase_label(n, no_shadow) for n in range(3)] == ["1 %", "50 %", "100 %"]
    assert phase_label(7, no_shadow) == "step 7"


def test_terminal_lines_fold_held_checks_and_list_the_gates_that_moved_the_rollout() -> None:
    lines = timeline_lines(build_timeline(promoted_events(), state()), width=200)
    assert " ".join(lines[0].split()) == "+0:00:00 shadow 0 % started version 2 against champion 1"
    assert "2 checks held" in lines[1] and "(last: why)" in lines[1] and "+0:02:00" in lines[1]
    assert "check -> advance" in lines[2]
    assert lines[3].strip() == ("latency_p99 PASS (candidate 12.5, champion 11, limit 0.1): p99 ok")
    assert lines[4].strip() == "error_rate PASS (candidate 0, champion 0, limit 0.01)"
    assert "promoted" in lines[-1] and "+0:10:00" in lines[-1] and "100 %" in lines[-1]
    assert len(lines) == 1 + 1 + 4 * 3 + 3 + 1  # started, held, 4 checks with 2 gates, 3 advances
    narrow = timeline_lines(build_timeline(promoted_events(), state()), width=30)
    assert all(len(line) <= 30 for line in narrow)
    assert narrow[0].endswith("…")


def test_a_trailing_run_of_held_checks_is_shown() -> None:
    lines = timeline_lines(build_timeline(promoted_events()[:3], state("active", "")))
    assert "2 checks held" in lines[-1]
    one = timeline_lines(build_timeline(promoted_events()[:2], state("active", "")))
    assert "1 check held" in one[-1]


def test_gate_text_shows_only_the_numbers_it_has() -> None:
    assert gate_text(WAITING) == "latency_p99 INCONCLUSIVE (limit 0.1): too few rows"
    nan = GateResult("custom:x", "fail", float("nan"), None, None, {}, "")
    assert gate_text(nan) == "custom:x FAIL (candidate nan)"


class Page(HTMLParser):
    """Every tag with its attributes, and the text, of a parsed page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def polyline(page: Page) -> str | None:
    return next(a for t, a in page.tags if t == "polyline")["points"]


def aborted() -> tuple[list[RolloutEvent], RolloutState]:
    failing = GateResult("custom:blocked_disagreement", "fail", None, None, 0.25, {}, EVIL)
    events = [
        RolloutEvent("fraud-1", T0, "started", 0, 0.0, (), "started"),
        check(1, 0, 0.0, "hold", WAITING),
        check(2, 0, 0.0, "abort", failing, ERRORS_OK),
        RolloutEvent("fraud-1", minutes(2), "aborted", 0, 0.0, (failing,), EVIL, actor=EVIL),
    ]
    return events, state("aborted", EVIL, step=0)


def test_the_page_is_self_contained_no_script_no_fetch() -> None:
    page = parse(render_timeline_html(promoted_events(), state()))
    names = [tag for tag, _ in page.tags]
    assert "script" not in names and "link" not in names and "iframe" not in names
    assert not [a for _, a in page.tags if "src" in a or "href" in a]
    csp = [a["content"] for t, a in page.tags if t == "meta" and "http-equiv" in a]
    assert csp and "default-src 'none'" in (csp[0] or "")
    assert names.count("svg") == 1 and names.count("polyline") == 1
    assert names.count("circle") == len(promoted_events())  # one marker per event
    classes = [a.get("class") for t, a in page.tags if t == "circle"]
    assert classes.count("m-promoted") == 1 and classes.count("m-advanced") == 3
    assert classes.count("m-hold") == 2
    text = " ".join(page.text)
    assert "Rollout fraud-1 of fraud" in text and "version 2" in text and "promoted" in text
    # The weight climbs 0 -> 1 -> 50 -> 100 % and stays at 100 % after the promotion, to the
    # plot's right edge (x 944 of 960): the last marker is left of it.
    points = [tuple(map(float, p.split(","))) for p in (polyline(page) or "").split()]
    heights = sorted({y for _, y in points}, reverse=True)
    assert heights == [226.0, 223.9, 120.0, 14.0]  # 0, 1, 50, 100 % of a 212 px plot (0.1 px)
    assert points[-1] == (944.0, 14.0)
    last_marker = max(float(a["cx"] or 0) for t, a in page.tags if t == "circle")
    assert last_marker < 944.0


def test_every_string_from_the_data_is_escaped() -> None:
    events, final = aborted()
    html = render_timeline_html(events, final)
    assert "<script>" not in html and "<img" not in html
    page = parse(html)
    assert not [t for t, _ in page.tags if t in ("script", "img")]
    text = "".join(page.text)
    assert EVIL in text  # shown as text, every character kept
    classes = [a.get("class") for t, a in page.tags if t == "circle"]
    assert classes == ["m-started", "m-hold", "m-abort", "m-aborted"]
    polyline = next(a for t, a in page.tags if t == "polyline")
    assert all(ch in "0123456789., " for ch in polyline["points"] or "")


def test_unknown_statuses_get_a_neutral_badge_and_no_events_draw_nothing() -> None:
    page = parse(render_timeline_html([], state("weird status", "")))
    badges = [a.get("class") for t, a in page.tags if t == "span"]
    assert badges == ["badge other"]
    assert "No events." in "".join(page.text)


@pytest.mark.parametrize("weight", [-5.0, 250.0, float("inf"), float("nan")])
def test_weights_outside_0_to_100_stay_inside_the_plot(weight: float) -> None:
    events = [
        RolloutEvent("fraud-1", T0, "started", 0, 0.0, (), ""),
        RolloutEvent("fraud-1", minutes(1), "advanced", 1, weight, (), ""),
    ]
    page = parse(render_timeline_html(events, state("active", "")))
    ys = [float(a["cy"] or "nan") for t, a in page.tags if t == "circle"]
    assert all(14 <= y <= 260 - 34 for y in ys)
