"""The HTML drift report in a real browser (Debian's chromium driven by Playwright), offline:
it loads from file:// with every network request refused, its SVGs have a size, nothing errs.
Without chromium the test skips, except under CI=true where it fails (`make test` installs it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from parity.monitoring.report import (
    DRIFT,
    NO_DRIFT,
    Bin,
    HistoryPoint,
    ReportColumn,
    ReportView,
    render_report,
)
from tests.browser_support import chromium

T0 = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture(scope="module")
def browser() -> Any:
    with chromium() as launched:
        yield launched


def report_view() -> ReportView:
    hours = [T0 + timedelta(hours=i) for i in range(24)]
    amount = ReportColumn(
        name="amount <b>usd</b>",
        test="wasserstein",
        statistic=0.31,
        threshold=0.1,
        status=DRIFT,
        reason="normalised Wasserstein 0.31 >= 0.1",
        bins=[Bin(f"{i * 50}-{i * 50 + 50}", 0.1, 0.02 + 0.016 * i) for i in range(10)],
        history=[
            HistoryPoint(at, None if i == 5 else 0.02 + 0.3 * (i >= 18))
            for i, at in enumerate(hours)
        ],
        reference_rows=40_000,
        current_rows=1_200,
    )
    channel = ReportColumn(
        name="<script>alert(1)</script>",
        test="chi_squared",
        statistic=0.4,
        threshold=0.05,
        status=NO_DRIFT,
        reason="p-value 0.4 > 0.05",
        bins=[Bin("web", 0.5, 0.45), Bin("app", 0.3, 0.33), Bin("other", 0.2, 0.22)],
        history=[HistoryPoint(at, 0.3 + 0.01 * i) for i, at in enumerate(hours)],
        higher_is_drift=False,
    )
    return ReportView(
        title="Drift of fraud@champion (v3)",
        columns=[amount, channel],
        drift_share=0.5,
        dataset_drift=True,
        window_start=hours[-1],
        window_end=hours[-1] + timedelta(hours=1),
        reference="dataset fraud_train_v1",
        share_history=[HistoryPoint(at, 0.5 * (i >= 18)) for i, at in enumerate(hours)],
    )


def test_report_renders_offline_in_chromium(browser: Any, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_report(report_view()), encoding="utf-8")
    context = browser.new_context(offline=True, viewport={"width": 1100, "height": 900})
    requests: list[str] = []

    def refuse(route: Any) -> None:
        url = route.request.url
        if url == path.as_uri():
            route.continue_()
        else:
            requests.append(url)
            route.abort()

    context.route("**/*", refuse)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: errors.append(f"dialog: {d.message}"))
    page.goto(path.as_uri(), wait_until="load")

    sizes = page.eval_on_selector_all(
        "svg",
        "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; })",
    )
    assert len(sizes) == 5
    assert all(width > 100 and height > 100 for width, height in sizes), sizes
    bars = page.eval_on_selector_all(
        "rect.bar", "els => els.map(e => { const b = e.getBBox(); return [b.width, b.height]; })"
    )
    assert len(bars) == 2 * (10 + 3)
    assert all(width > 0 and height > 0 for width, height in bars), bars
    assert page.locator("circle.point").count() == 24 + 23 + 24
    assert page.title() == "Drift of fraud@champion (v3)"
    assert page.locator("script").count() == 0
    assert "<script>alert(1)</script>" in page.inner_text("#col-1 h2")
    assert requests == [] and errors == []
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    context.close()
