"""The HTML drift report: parses, one SVG per plot with one bar/point per input, escapes every
user string, references nothing on the network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

from hypothesis import given
from hypothesis import strategies as st

from parity.monitoring.report import (
    DRIFT,
    INSUFFICIENT,
    NO_DRIFT,
    Bin,
    HistoryPoint,
    ReportColumn,
    ReportView,
    render_report,
)

T0 = datetime(2026, 11, 20, tzinfo=UTC)
EVIL = "<script>alert(1)</script>"


class Tree(HTMLParser):
    """Start tags with their attributes and the stack of open tags at each; text by parent."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None], tuple[str, ...]]] = []
        self.stack: list[str] = []
        self.text: list[tuple[str, str]] = []
        self.void = {"meta", "link", "br", "img", "input", "hr"}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs), tuple(self.stack)))
        if tag not in self.void:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs), tuple(self.stack)))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append((self.stack[-1] if self.stack else "", data))


def parse(page: str) -> Tree:
    tree = Tree()
    tree.feed(page)
    tree.close()
    assert tree.stack == [], f"unclosed tags: {tree.stack}"
    return tree


def hist(scores: list[float | None]) -> list[HistoryPoint]:
    return [HistoryPoint(T0 + timedelta(hours=i), s) for i, s in enumerate(scores)]


def view() -> ReportView:
    amount = ReportColumn(
        name="amount",
        test="wasserstein",
        statistic=0.31,
        threshold=0.1,
        status=DRIFT,
        reason="normalised Wasserstein 0.31 >= 0.1",
        bins=[Bin(f"b{i}", 0.1, 0.05 + 0.01 * i) for i in range(10)],
        history=hist([0.02, 0.05, None, 0.31]),
    )
    channel = ReportColumn(
        name=EVIL,
        test="chi_squared",
        statistic=0.4,
        threshold=0.05,
        status=NO_DRIFT,
        reason=f"p-value of {EVIL}",
        bins=[Bin(EVIL, 0.5, 0.4), Bin("web", 0.3, 0.3), Bin("other", 0.2, 0.3)],
        history=hist([0.6, 0.4]),
        higher_is_drift=False,
    )
    empty = ReportColumn("score", "ks", None, 0.05, INSUFFICIENT, "12 rows < min_samples 100")
    return ReportView(
        title=f"Drift of fraud@{EVIL}",
        columns=[amount, channel, empty],
        drift_share=0.5,
        dataset_drift=False,
        window_start=T0,
        window_end=T0 + timedelta(hours=4),
        reference=f"dataset {EVIL}",
        details=[("Model", EVIL)],
        share_history=hist([0.0, 0.5, 0.5]),
    )


def test_report_parses_with_one_svg_per_plot_and_one_mark_per_input() -> None:
    tree = parse(render_report(view()))
    svgs = [attrs for tag, attrs, _ in tree.tags if tag == "svg"]
    # share history + amount (distribution, history) + channel (distribution, history);
    # the column with insufficient data has nothing to plot.
    assert len(svgs) == 5
    bars = [(a["class"], s) for t, a, s in tree.tags if t == "rect"]
    assert sum(1 for cls, _ in bars if cls == "bar ref") == 10 + 3
    assert sum(1 for cls, _ in bars if cls == "bar cur") == 10 + 3
    points = [a for t, a, _ in tree.tags if t == "circle"]
    assert len(points) == 3 + 3 + 2  # share history 3, amount 3 scored of 4, channel 2
    thresholds = [a for t, a, _ in tree.tags if t == "line" and a.get("class") == "thr"]
    assert len(thresholds) == 3


def test_bar_heights_are_proportional_to_the_shares() -> None:
    column = ReportColumn(
        "x", "psi", 0.0, 0.2, NO_DRIFT, bins=[Bin("a", 0.25, 0.5), Bin("b", 0.75, 0.5)]
    )
    tree = parse(render_report(ReportView("t", [column], 0.5)))
    heights = {
        (a["class"], i): float(a["height"] or 0)
        for i, (t, a, _) in enumerate(x for x in tree.tags if x[0] == "rect")
    }
    ref = [
        h for (cls, _), h in sorted(heights.items(), key=lambda kv: kv[0][1]) if cls == "bar ref"
    ]
    cur = [
        h for (cls, _), h in sorted(heights.items(), key=lambda kv: kv[0][1]) if cls == "bar cur"
    ]
    # y axis tops at 100% (0.75 rounds up to 1): plot height 240 - 12 - 44 = 184 px.
    assert ref == [46.0, 138.0]
    assert cur == [92.0, 92.0]


def test_points_above_the_threshold_are_marked_and_the_threshold_line_is_placed() -> None:
    column = ReportColumn(
        "x", "psi", 0.3, 0.2, DRIFT, history=hist([0.1, 0.3, 0.2]), higher_is_drift=True
    )
    tree = parse(render_report(ReportView("t", [column], 0.5)))
    classes = [a["class"] for t, a, _ in tree.tags if t == "circle"]
    assert classes == ["point", "point hit", "point hit"]  # reaching the threshold counts
    (line,) = [a for t, a, _ in tree.tags if t == "line" and a.get("class") == "thr"]
    # y axis tops at 0.5 (nice maximum above 0.3); 0.2 sits at 12 + 184 * (1 - 0.4).
    assert float(line["y1"] or 0) == 122.4


def test_user_strings_are_escaped_everywhere() -> None:
    page = render_report(view())
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    tree = parse(page)
    assert [tag for tag, _, _ in tree.tags if tag == "script"] == []
    texts = [text for _, text in tree.text]
    assert sum(1 for text in texts if EVIL in text) >= 5  # title, heading, table, bin, reason


def test_report_references_nothing_on_the_network() -> None:
    page = render_report(view())
    assert "http://" not in page and "https://" not in page
    tree = parse(page)
    for tag, attrs, _ in tree.tags:
        for name in ("src", "href", "xlink:href", "action"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (tag, name, value)
    (csp,) = [a for t, a, _ in tree.tags if t == "meta" and a.get("http-equiv")]
    assert "default-src 'none'" in (csp["content"] or "")


def test_summary_states_the_share_drifted_against_the_configured_share() -> None:
    page = render_report(view())
    tree = parse(page)
    summary = " ".join(text for _, text in tree.text)
    assert "1 of 2 tested columns drifted (share 50%)" in summary
    assert "at least 50%" in summary
    assert "1 column(s) not tested" in summary


def test_all_null_constant_and_non_finite_inputs_render() -> None:
    columns = [
        ReportColumn("nulls", "psi", None, 0.2, INSUFFICIENT, bins=[Bin("null", 0.0, 0.0)]),
        ReportColumn(
            "inf",
            "wasserstein",
            float("inf"),
            0.1,
            DRIFT,
            history=hist([float("inf"), float("nan"), 0.0]),
        ),
        ReportColumn("one", "ks", 1.0, 0.05, NO_DRIFT, history=hist([1.0])),
    ]
    tree = parse(render_report(ReportView("t", columns, 0.5, dataset_drift=None)))
    assert len([t for t, _, _ in tree.tags if t == "svg"]) == 3


@given(st.text(max_size=30), st.text(max_size=30), st.text(max_size=30))
def test_any_user_text_reads_back_as_text(name: str, label: str, reason: str) -> None:
    column = ReportColumn(
        name, "psi", 0.3, 0.2, DRIFT, reason, bins=[Bin(label, 1.0, 1.0)], history=hist([0.3])
    )
    tree = parse(render_report(ReportView(name, [column], 0.5, details=[(label, reason)])))
    assert [t for t, _, _ in tree.tags if t in ("script", "iframe", "object", "embed")] == []
    text = "".join(data for _, data in tree.text)
    for value in (name, reason, label[:13]):
        assert value.replace("\r", "\n") in text.replace("\r", "\n") or not value.strip()
