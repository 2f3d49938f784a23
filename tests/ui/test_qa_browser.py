"""QA in the browser: text a user controls (descriptions, owners, tags, apply messages, alias
reasons, very long names) stays text on every page that shows it, and no page runs it; links
lead to pages that exist; a model no monitor watches is not shown another model's alerts; every
page of an empty registry says so."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import numpy as np
import pytest

from parity.ui.app import create_ui_app
from tests.inference.serving_helpers import Affine
from tests.ui.test_browser import LiveServer, browser, visit, watched_page  # noqa: F401
from tests.ui.world import World, copy_world

XSS = "<img src=x onerror=alert(1)>"
LONG = "hostile_view_" + "x" * 80
HOSTILE = f'''"""QA: a second team's view whose texts are markup."""
from datetime import timedelta
from entities import account
from parity import FeatureService, FeatureView, Field, FileSource, Int64

XSS = {XSS!r}
hostile_view = FeatureView(
    name={LONG!r},
    entities=[account],
    schema=[Field(name="spend_again", dtype=Int64, description=XSS)],
    source=FileSource(path="data/hostile.parquet", timestamp_field="event_timestamp"),
    description=XSS + " & 'quoted' \u00e9 \u65e5\u672c",
    owner=XSS,
    tags={{"team": XSS, XSS: "v"}},
)
hostile_service = FeatureService(name="hostile_service", features=[hostile_view], description=XSS)
'''


@pytest.fixture(scope="module")
def hostile(fraud_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A copy of the world with the hostile view applied (its source then removed: a view with
    no data) and the champion rolled back with a hostile reason."""
    world = copy_world(fraud_world, tmp_path_factory.mktemp("ui-qa-xss") / "fraud_detection")
    data = world.root / "data"
    duckdb.sql(
        f"COPY (SELECT account_id, event_timestamp, spend_cents_1d AS spend_again "
        f"FROM '{data / 'account_spend.parquet'}') TO '{data / 'hostile.parquet'}' (FORMAT parquet)"
    )
    (world.root / "hostile.py").write_text(HOSTILE)
    world.store.apply(message=XSS)
    (data / "hostile.parquet").unlink()
    world.store.models.set_alias("fraud", "champion", 2, reason=XSS)
    sample = np.ones((2, 1))
    world.store.models.register_model("unwatched", Affine([1.0], 0.0), sample_input=sample)
    with LiveServer(create_ui_app(world.store)) as server:
        yield server
    world.store.close()


PAGES = [  # (route, text it must show)
    ("#/catalog?q=%3Cimg", XSS),
    (f"#/view/{LONG}", XSS),
    (f"#/feature/{LONG}/spend_again", XSS),
    ("#/service/hostile_service", XSS),
    (f"#/lineage?node=view:{LONG}", LONG),  # the graph shows names only
    ("#/history", XSS),
    ("#/history/2", XSS),
    ("#/model/fraud", XSS),
    ("#/entity/account", LONG),
]


@pytest.mark.parametrize(("route", "text"), PAGES)
def test_markup_from_the_registry_is_shown_as_text(
    browser: Any,  # noqa: F811
    hostile: LiveServer,
    route: str,
    text: str,
) -> None:
    from playwright.sync_api import expect

    with watched_page(browser) as page:  # a dialog (alert) fails it
        visit(page, hostile, route)
        assert page.locator("img").count() == 0
        expect(page.get_by_test_id("view")).to_contain_text(text)  # waits for late parts


def test_a_model_no_monitor_watches_shows_no_alert_of_another_model(
    browser: Any,  # noqa: F811
    hostile: LiveServer,
) -> None:
    from playwright.sync_api import expect

    with watched_page(browser) as page:
        visit(page, hostile, "#/monitoring/unwatched")
        expect(page.get_by_test_id("view")).to_contain_text("No alert rule.")
        text = page.get_by_test_id("view").inner_text()
        assert "fraud_drift" not in text and "fraud_dollars_missed" not in text  # fraud's rules


def test_a_model_page_links_only_to_pages_that_exist(
    browser: Any,  # noqa: F811
    hostile: LiveServer,
) -> None:
    from playwright.sync_api import expect

    with watched_page(browser) as page:
        visit(page, hostile, "#/model/fraud")  # a champion and a rollout: both links
        view = page.get_by_test_id("view")
        expect(view.get_by_role("link", name="rollout", exact=True)).to_have_count(1)
        # unwatched: no alias, no rollout; its lineage link centres on its version
        visit(page, hostile, "#/model/unwatched")
        expect(view.get_by_role("link", name="rollout", exact=True)).to_have_count(0)
        view.get_by_role("link", name="lineage", exact=True).click()
        expect(page.get_by_test_id("loading")).to_have_count(0)
        expect(page.get_by_test_id("error-banner")).to_have_count(0)
        expect(page.get_by_test_id("view")).to_contain_text("model_version:unwatched/1")


EMPTY_PAGES = [  # (route, what it must say)
    ("#/", "Nothing is applied yet"),
    ("#/catalog", "Nothing matches."),
    ("#/lineage", "No lineage yet."),
    ("#/history", "Nothing applied yet."),
    ("#/models", "No model is registered."),
    ("#/rollouts", "No rollout has run."),
    ("#/monitoring", "No model is monitored."),
    ("#/duplicates", "No scan has run yet."),
]


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A feature repo where nothing was ever applied."""
    from parity import FeatureStore

    root = tmp_path_factory.mktemp("ui-qa-empty")
    (root / "parity.yaml").write_text("project: empty_project\n")
    with FeatureStore(root) as store, LiveServer(create_ui_app(store)) as server:
        yield server


@pytest.mark.parametrize(("route", "text"), EMPTY_PAGES)
def test_every_page_of_an_empty_registry_says_so(
    browser: Any,  # noqa: F811
    empty: LiveServer,
    route: str,
    text: str,
) -> None:
    from playwright.sync_api import expect

    with watched_page(browser) as page:
        visit(page, empty, route)
        expect(page.get_by_test_id("view")).to_contain_text(text)  # waits for late parts
