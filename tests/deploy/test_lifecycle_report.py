"""The closed loop's page (deploy/lifecycle_report.py) from hand-made values: every string from
the data escaped, the embedded pages' bodies and styles composed, the signals drawn where they
belong, and nothing to fetch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

from parity.deploy.lifecycle_report import (
    Decision,
    LifecycleView,
    Series,
    Step,
    render_lifecycle_report,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parsed(page: str) -> Tags:
    found = Tags()
    found.feed(page)
    return found


def view(**changes: object) -> LifecycleView:
    base: dict[str, object] = {
        "title": "Loop <of> 'fraud'",
        "summary": [("Retrains fired", "1")],
        "steps": [Step(T0, "shift", "a <script>alert(1)</script> ring")],
    }
    return LifecycleView(**(base | changes))  # type: ignore[arg-type]


def test_strings_from_the_data_are_escaped_and_nothing_is_fetched() -> None:
    page = render_lifecycle_report(view())
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>Loop &lt;of&gt; &#x27;fraud&#x27;</title>" in page
    tags = parsed(page).tags
    assert not {t for t, _ in tags} & {"script", "img", "link", "iframe", "object"}
    csp = next(a["content"] for t, a in tags if a.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None and csp.startswith("default-src 'none'")
    assert "<p>None recorded.</p>" in page  # no decisions
    assert "Signals over time" not in page  # no series: no chart


def test_embedded_pages_bring_their_body_and_style_demoted_under_a_heading() -> None:
    drift = (
        "<html><head><style>.drift{color:red}</style></head><body><main><h1>Drift of fraud</h1>"
        '<p id="x">columns</p></main></body></html>'
    )
    page = render_lifecycle_report(view(drift_page=drift))
    assert ".drift{color:red}" in page.split("</style>")[0]
    body = page.split("The drift report of the first drifted week</h2>")[1]
    assert body.startswith('<h3>Drift of fraud</h3><p id="x">columns</p></section>')
    assert page.count("<h1>") == 1  # only the page's own title


def test_signals_are_drawn_in_time_with_their_thresholds_and_markers() -> None:
    points = [(T0 + timedelta(days=7 * k), share) for k, share in enumerate([0.25, None, 0.75])]
    series = Series("drift share", "drift", points, threshold=0.5)
    page = render_lifecycle_report(
        view(series=[series], markers=[(T0 + timedelta(days=7), "new pattern")])
    )
    svg = page.split("<svg")[1].split("</svg>")[0]
    # Plot: x from 52 to 944 over 14 days, y from 18 (100 %) to 240 (0 %).
    assert '<polyline class="series s-drift" points="52.0,184.5 944.0,73.5"/>' in svg
    assert 'y1="129.0" y2="129.0"' in svg  # the 50 % threshold
    assert 'x1="498.0" x2="498.0"' in svg and "new pattern" in svg  # the marker at day 7
    assert svg.count("<circle") == 2  # the missing week has no point


def test_decisions_show_their_action_reasons_job_and_evidence() -> None:
    fired = Decision(1, T0, "fire", ["performance firing (0.8; fire at 0.5)"], {"v": "<1>"}, 7)
    page = render_lifecycle_report(view(decisions=[fired]))
    row = page.split("<h2>Retrain decisions</h2>")[1]
    assert '<span class="badge a-fire">fire</span>' in row
    assert "performance firing (0.8; fire at 0.5)<br>job #7" in row
    assert "&quot;v&quot;: &quot;&lt;1&gt;&quot;" in row
