"""The web UI in a real browser (Debian's chromium driven by Playwright) over the fraud world,
served by uvicorn on 127.0.0.1 in a thread: every other host is refused, and any console error
or failed request fails the test. Skips without chromium or playwright, except under CI=true.
Screenshots of the main pages go to $PARITY_UI_SCREENSHOTS, else build/ui-screenshots/."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from parity import FeatureStore, Phase, Rollout
from parity.monitoring.drift_history import DATASET
from parity.ui.app import create_ui_app
from tests.browser_support import chromium
from tests.ui.world import World, copy_world

VIEWPORT = {"width": 1280, "height": 800}
ROOT = Path(__file__).resolve().parents[2]
ACTOR = "ui-browser-test"
# The growth team's account_spend_daily copies two of account_txn_stats's features (the fraud
# template plants it): one equal, one in cents (x 100).
PLANTED = {
    (frozenset({"account_spend_daily:purchases_1d", "account_txn_stats:txn_count_1d"}), "equal"),
    (
        frozenset({"account_spend_daily:spend_cents_1d", "account_txn_stats:txn_amount_1d"}),
        "linear",
    ),
}
WAIT_MS = 15_000  # the longest a page may take to show what the test waits for


def screenshots() -> Path:
    folder = Path(os.environ.get("PARITY_UI_SCREENSHOTS") or ROOT / "build" / "ui-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shoot(page: Any, name: str) -> None:
    page.screenshot(path=str(screenshots() / f"{name}.png"))


# --- the server and the browser ----------------------------------------------------------------


class LiveServer:
    """`app` on a real uvicorn server, on a free port of 127.0.0.1, in a daemon thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the UI server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@dataclass
class Problems:
    """What went wrong in a page: console errors, page errors, failed or refused requests."""

    allowed: list[str] = field(default_factory=list)  # regexes of expected console errors
    seen: list[str] = field(default_factory=list)

    def console(self, message: Any) -> None:
        if message.type == "error" and not any(re.search(p, message.text) for p in self.allowed):
            self.seen.append(f"console: {message.text}")


@contextmanager
def watched_page(browser: Any, allow: tuple[str, ...] = ()) -> Iterator[Any]:
    """A page at 1280x800 that may reach only 127.0.0.1; on leaving, the test fails if the
    console logged an error (but the `allow`ed ones), a script threw or a request failed."""
    context = browser.new_context(viewport=VIEWPORT)
    problems = Problems(list(allow))

    def local_only(route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            problems.seen.append(f"refused request to {route.request.url}")
            route.abort()

    context.route("**/*", local_only)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("console", problems.console)
    page.on("pageerror", lambda error: problems.seen.append(f"page error: {error}"))
    page.on("requestfailed", lambda r: problems.seen.append(f"failed: {r.url} {r.failure}"))
    page.on("dialog", lambda d: problems.seen.append(f"dialog: {d.message}"))
    try:
        yield page
    finally:
        context.close()
    assert problems.seen == []


def visit(page: Any, server: LiveServer, route: str) -> None:
    """Open the app at `route` (a hash route) and wait until the page has loaded its data."""
    from playwright.sync_api import expect

    page.goto(f"{server.url}/ui/{route}")
    expect(page.get_by_test_id("view")).to_be_visible()
    expect(page.get_by_test_id("loading")).to_have_count(0)
    expect(page.get_by_test_id("error-banner")).to_have_count(0)


@dataclass
class Ui:
    world: World
    server: LiveServer


@pytest.fixture(scope="module")
def ui(fraud_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    """One copy of the world (the rollout test changes it) and one server for the module."""
    world = copy_world(fraud_world, tmp_path_factory.mktemp("ui-browser") / "fraud_detection")
    with LiveServer(create_ui_app(world.store)) as server:
        yield Ui(world, server)
    world.store.close()


@pytest.fixture
def page(browser: Any, ui: Ui) -> Iterator[Any]:
    with watched_page(browser) as opened:
        yield opened


# --- rollouts driven by the test -----------------------------------------------------------------


def quick_rollout(candidate: int) -> Rollout:
    """A rollout with no gates whose steps last a minute each: every controller tick a minute
    later moves it one step (shadow, 10 %, 100 %, then promoted)."""
    minute = timedelta(minutes=1)
    return Rollout(
        name="ui_quick_rollout",
        model="fraud",
        candidate=candidate,
        shadow=Phase(weight=0, duration=minute, min_samples=0),
        steps=[
            Phase(weight=10, duration=minute, min_samples=0),
            Phase(weight=100, duration=minute),
        ],
        interval=minute,
    )


def tick(world: World, store: FeatureStore, minutes: float = 1.01) -> None:
    """Move the simulated clock on and run one controller tick."""
    world.clock.set(world.clock.now() + timedelta(minutes=minutes))
    store.rollouts.step(now=world.clock.now(), owner=ACTOR)


# --- the scenarios ---------------------------------------------------------------------------------


def test_search_finds_a_feature_and_its_page_lists_the_models_using_it(page: Any, ui: Ui) -> None:
    from playwright.sync_api import expect

    store = ui.world.store
    service = store.get_feature_service("fraud_model_v1")
    view, feature = service_features(service)[0]
    versions = [
        v.version for v in store.models.versions("fraud") if v.feature_service == "fraud_model_v1"
    ]
    assert versions, "the world's fraud versions were trained from fraud_model_v1"

    visit(page, ui.server, "#/catalog")
    page.get_by_test_id("search-input").fill("txn")  # live: results as one types
    expect(page.get_by_test_id("search-result").nth(2)).to_be_visible()
    shoot(page, "catalog")
    page.get_by_test_id("search-input").fill(feature)
    hit = page.locator(f"[data-testid=search-result][data-name='{view}:{feature}']")
    expect(hit).to_have_count(1)
    expect(page).to_have_url(re.compile(rf"#/catalog\?q={feature}"))
    hit.get_by_test_id("result-link").click()
    expect(page).to_have_url(re.compile(rf"#/feature/{view}/{feature}$"))
    expect(page.get_by_test_id("feature-title")).to_contain_text(f"{view}:{feature}")
    used = page.locator("[data-testid=used-by-models] [data-testid=model-version]")
    expect(used).to_have_count(len(versions))
    listed = sorted(int(v) for v in used.evaluate_all("ns => ns.map(n => n.dataset.version)"))
    assert listed == sorted(versions)
    expect(page.get_by_test_id("used-by-services")).to_contain_text("fraud_model_v1")
    expect(page.get_by_test_id("freshness")).to_be_visible()
    shoot(page, "feature")


def service_features(service: Any) -> list[tuple[str, str]]:
    """(view, feature) of each feature a service serves, from its definition."""
    return [(p.view, name) for p in service.features for name in p.features]


def test_the_lineage_graph_shows_the_path_from_source_to_alias(page: Any, ui: Ui) -> None:
    from playwright.sync_api import expect

    store = ui.world.store
    views = sorted(
        {view for view, _ in service_features(store.get_feature_service("fraud_model_v1"))}
    )
    versions = [v.version for v in store.models.versions("fraud")]
    expected = {
        *(f"view:{v}" for v in views),
        "service:fraud_model_v1",
        "dataset:fraud_train_v1",
        *(f"model_version:fraud/{v}" for v in versions),
        "alias:fraud@champion",
    }
    visit(page, ui.server, "#/lineage?node=service:fraud_model_v1")
    nodes = page.get_by_test_id("lineage-node")
    rendered = set(nodes.evaluate_all("ns => ns.map(n => n.dataset.nodeId)"))
    assert expected <= rendered, expected - rendered
    kinds = set(nodes.evaluate_all("ns => ns.map(n => n.dataset.kind)"))
    assert {"source", "view", "service", "dataset", "model_version", "alias"} <= kinds
    expect(page.locator(".node.focus")).to_have_attribute("data-node-id", "service:fraud_model_v1")
    assert page.get_by_test_id("lineage-edge").count() >= len(expected) - 1
    # Navigable both ways: focus the champion's version, see its dataset upstream and the alias.
    champion = store.models.resolve("fraud@champion").version
    page.locator(f"[data-node-id='model_version:fraud/{champion}']").click()
    expect(page.get_by_test_id("lineage-focus")).to_have_text(f"model_version:fraud/{champion}")
    near = page.locator(".edge.near")
    pairs = set(near.evaluate_all("es => es.map(e => e.dataset.source + '>' + e.dataset.target)"))
    assert f"dataset:fraud_train_v1>model_version:fraud/{champion}" in pairs
    assert f"model_version:fraud/{champion}>alias:fraud@champion" in pairs
    visit(page, ui.server, "#/lineage")
    shoot(page, "lineage")


def test_the_duplicate_scan_finds_features_with_the_same_values(page: Any, ui: Ui) -> None:
    from playwright.sync_api import expect

    visit(page, ui.server, "#/duplicates")
    page.get_by_test_id("scan-start").click()
    expect(page.get_by_test_id("scan-status")).to_have_attribute(
        "data-state", "done", timeout=90_000
    )
    expect(page.get_by_test_id("scan-progress")).to_have_attribute("data-state", "done")
    pairs = page.get_by_test_id("duplicate-pair")
    expect(pairs).to_have_count(len(PLANTED))
    found = set()
    for pair in pairs.all():
        names = frozenset((pair.get_attribute("data-a"), pair.get_attribute("data-b")))
        found.add((names, pair.get_by_test_id("relation").inner_text()))
        expect(pair.get_by_test_id("evidence")).not_to_be_empty()
        assert pair.get_by_test_id("scatter-point").count() > 1
    assert found == PLANTED
    shoot(page, "duplicates")


def test_the_alias_timeline_shows_the_rollback_and_answers_which_version_on_a_date(
    page: Any, ui: Ui
) -> None:
    from playwright.sync_api import expect

    store = ui.world.store
    moves = store.models.history("fraud", "champion")
    promoted, rollback = moves[-2], moves[-1]
    assert (promoted.version, rollback.version) == (
        ui.world.result.candidate.version,
        ui.world.rolled_back,
    )
    visit(page, ui.server, "#/model/fraud")
    expect(page.get_by_test_id("timeline-rollback")).to_have_count(1)
    rows = page.locator("[data-testid=alias-event]", has_text="rollback")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(f"v{promoted.version} → v{rollback.version}")
    lane = page.locator("[data-testid=timeline-segment][data-alias=champion]")
    segments = lane.evaluate_all("ns => ns.map(n => [n.dataset.start, +n.dataset.version])")
    shown = [version for _, version in sorted(segments)]  # in time order
    moved = [pair for pair in pairwise(shown) if pair[0] != pair[1]]
    assert (promoted.version, rollback.version) in moved
    # Which version was champion at a minute between the promotion and the rollback?
    middle = promoted.moved_at + (rollback.moved_at - promoted.moved_at) / 2
    page.get_by_test_id("alias-time").fill(middle.strftime("%H:%M"))
    page.get_by_test_id("alias-date").fill(middle.strftime("%Y-%m-%d"))
    expect(page.get_by_test_id("alias-at")).to_contain_text(f"@champion: v{promoted.version}")
    expect(page.get_by_test_id("timeline-at")).to_have_count(1)
    shoot(page, "model")


def test_the_rollout_page_follows_the_controller(page: Any, ui: Ui) -> None:
    from playwright.sync_api import expect

    world, store = ui.world, ui.world.store
    state = store.rollouts.start(quick_rollout(world.result.candidate.version), actor=ACTOR)
    try:
        visit(page, ui.server, "#/rollout/fraud")
        step = page.get_by_test_id("rollout-step")
        expect(page.get_by_test_id("rollout-status")).to_have_text("active")
        expect(step).to_have_attribute("data-step", "0")
        expect(page.get_by_test_id("rollout-phase")).to_have_text("shadow")
        checks = page.get_by_test_id("history-row").count()
        tick(world, store)
        assert store.rollouts.status("fraud").step == 1
        expect(step).to_have_attribute("data-step", "1")  # the page refreshed by itself
        expect(page.get_by_test_id("rollout-phase")).to_have_text("canary")
        expect(page.get_by_test_id("weights")).to_contain_text("candidate 10 %")
        assert page.get_by_test_id("history-row").count() > checks
        shoot(page, "rollout")
    finally:
        store.rollouts.abort("fraud", reason="browser test done", actor=ACTOR)
    expect(page.get_by_test_id("rollout-status")).to_have_text("aborted")
    assert state.id == store.rollouts.status("fraud").id


def test_a_drift_chart_draws_each_column_series_with_its_threshold(page: Any, ui: Ui) -> None:
    from playwright.sync_api import expect

    rows = ui.world.store.monitoring.drift_history("fraud")
    points: dict[str, int] = {}
    for row in rows:
        if row.statistic is not None and row.column != DATASET:
            points[row.column] = points.get(row.column, 0) + 1
    assert points, "the world ran drift"
    visit(page, ui.server, "#/monitoring/fraud")
    for column, count in points.items():
        chart = page.locator(f"[data-testid=drift-column][data-column='{column}']")
        expect(chart).to_have_count(1)
        path = chart.locator("[data-testid=drift-chart] path[data-testid=series]")
        drawn = path.get_attribute("d") or ""
        assert len(re.findall(r"[ML]", drawn)) == count, column
        expect(chart.get_by_test_id("threshold")).to_have_count(1)
    shoot(page, "monitoring")


def test_a_rollout_action_without_the_admin_scope_is_refused(
    browser: Any, fresh_world: World
) -> None:
    from playwright.sync_api import expect

    config = fresh_world.root / "parity.yaml"
    config.write_text(config.read_text() + "\nauth: {enabled: true}\n")
    with FeatureStore(fresh_world.root, clock=fresh_world.clock.now) as store:
        store.rollouts.start(quick_rollout(fresh_world.result.candidate.version), actor=ACTOR)
        before = store.rollouts.status("fraud")
        _, token = store.access.tokens.create("viewer", "features:read models:read")
        allow = (r"status of 401", r"status of 403")  # the refusals the test asks for
        with LiveServer(create_ui_app(store)) as server, watched_page(browser, allow) as page:
            page.goto(f"{server.url}/ui/#/rollout/fraud")
            expect(page.get_by_test_id("login-why")).to_be_visible()  # 401: sign in first
            expect(page.get_by_test_id("sign-in")).to_be_visible()
            page.get_by_test_id("token-input").fill(token)
            page.get_by_test_id("sign-in-button").click()
            expect(page.get_by_test_id("whoami")).to_have_text("viewer")
            expect(page.get_by_test_id("rollout-status")).to_have_text("active")
            expect(page.get_by_test_id("action-note")).to_contain_text("rollouts:admin")
            page.get_by_test_id("action-pause").click()
            message = page.get_by_test_id("action-message")
            expect(message.get_by_test_id("error-banner")).to_contain_text("403")
            expect(message).to_contain_text("rollouts:admin")
            expect(page.get_by_test_id("rollout-status")).to_have_text("active")
        after = store.rollouts.status("fraud")
        assert (after.status, after.step, after.updated_at) == (
            "active",
            before.step,
            before.updated_at,
        )


def test_every_nav_page_loads_without_errors(page: Any, ui: Ui) -> None:
    """Each section's first page renders from the real endpoints (no banner, no console error)."""
    from playwright.sync_api import expect

    for route in (
        "#/",
        "#/history",
        "#/models",
        "#/rollouts",
        "#/monitoring",
        "#/service/fraud_model_v1",
        "#/history/1",
        "#/consistency/fraud_model_v1",
    ):
        visit(page, ui.server, route)
    expect(page.get_by_test_id("project")).to_have_text(ui.world.store.project)
    # The loop's promoted rollout, with its gates and every decision.
    promoted = ui.world.result.rollout
    assert promoted is not None and promoted.state.status == "promoted"
    visit(page, ui.server, f"#/rollout/fraud?id={promoted.state.id}")
    expect(page.get_by_test_id("rollout-status")).to_have_text("promoted")
    gates = page.locator("[data-testid=gates] [data-testid=gate-row]")
    expect(gates).to_have_count(len(promoted.state.definition.gates))
    shoot(page, "rollout_gates")
