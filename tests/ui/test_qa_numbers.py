"""QA of the UI's numbers as a user reads them: the overview's tiles agree with the catalog page
each links to (for every caller), an unknown drift column is refused rather than shown as a column
that never drifted, and a teardown + re-apply under a running UI is not served from a stale cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from parity import FeatureStore
from parity.examples.fraud.rollout_sim import SimClock
from parity.ui.app import create_ui_app
from tests.ui.world import World

API = "/ui/api"
KINDS = {"entities": "entity", "feature_views": "view", "features": "feature",
         "feature_services": "service"}  # fmt: skip
# The fraud template, counted by hand: entities account and device; batch views account_profile
# (4 features), account_spend_daily (3), account_txn_stats (5), account_velocity (4),
# device_profile (3) and the on-demand amount_vs_history (1); services fraud_model_v1 and v2.
TEMPLATE = {"entities": 2, "feature_views": 6, "features": 20, "feature_services": 2}


def _total(client: TestClient, kind: str, headers: dict[str, str] | None = None) -> int:
    page = client.get(f"{API}/search", params={"kind": kind, "limit": 500}, headers=headers)
    assert page.status_code == 200, page.text
    total: int = page.json()["total"]
    return total


def test_overview_tiles_count_what_the_catalog_page_they_link_to_lists(fraud_world: World) -> None:
    client = TestClient(create_ui_app(fraud_world.store))
    overview = client.get(f"{API}/overview").json()
    assert {key: overview[key] for key in TEMPLATE} == TEMPLATE  # on-demand views included
    for key, kind in KINDS.items():
        assert overview[key] == _total(client, kind), key


# --- auth on: a narrowed token's overview -------------------------------------------------------


@pytest.fixture
def secured(fraud_world: World, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    import shutil

    root = tmp_path / "fraud_detection"
    shutil.copytree(fraud_world.root, root)
    config = root / "parity.yaml"
    config.write_text(config.read_text() + "auth: {enabled: true}\n")
    store = FeatureStore(root, clock=SimClock(fraud_world.clock.now()).now)
    grants = {
        "view_only": ["features:read:account_profile"],
        "models_only": ["models:read"],
        "other_model": ["models:read:other", "features:read"],
    }
    tokens = {name: store.access.tokens.create(name, scopes)[1] for name, scopes in grants.items()}
    yield TestClient(create_ui_app(store)), tokens
    store.close()


def test_a_narrowed_token_s_overview_counts_only_what_it_may_read(
    secured: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = secured

    def overview(who: str) -> dict[str, int]:
        headers = {"authorization": f"Bearer {tokens[who]}"}
        found = client.get(f"{API}/overview", headers=headers).json()
        return {k: found[k] for k in (*TEMPLATE, "models", "firing_alerts")}

    # account_profile: its 4 features, its entity account; no service, no model, no alert.
    assert overview("view_only") == {
        "entities": 1,
        "feature_views": 1,
        "features": 4,
        "feature_services": 0,
        "models": 0,
        "firing_alerts": 0,
    }
    # models:read on every model: fraud_monitor's two firing rules (parity monitor alerts).
    assert overview("models_only")["firing_alerts"] == 2
    # models:read narrowed to a model that is not fraud: fraud's alerts are not its to count.
    assert overview("other_model") == {**TEMPLATE, "models": 0, "firing_alerts": 0}


# --- drift: an unknown column -------------------------------------------------------------------


@pytest.mark.parametrize("column", ["nope", "", "<img src=x onerror=alert(1)>", "x" * 5000])
def test_drift_of_an_unknown_column_is_refused_naming_the_column(
    fraud_world: World, column: str
) -> None:
    client = TestClient(create_ui_app(fraud_world.store))
    response = client.get(f"{API}/monitoring/fraud/drift", params={"column": column})
    assert response.status_code == 422, response.text[:300]
    message = response.json()["error"]["message"]
    assert message.startswith("query.column:")
    assert "txn_count_1d" in message  # the columns it may ask for


def test_drift_of_a_known_column_outside_its_windows_is_an_empty_answer(
    fraud_world: World,
) -> None:
    client = TestClient(create_ui_app(fraud_world.store))
    params = {"column": "txn_count_1d", "since": "2020-01-01", "until": "2020-02-01"}
    response = client.get(f"{API}/monitoring/fraud/drift", params=params)
    assert response.status_code == 200
    assert response.json()["columns"] == []


# --- teardown + re-apply while the UI runs ------------------------------------------------------


def test_a_teardown_and_re_apply_to_the_same_version_is_seen_by_a_running_ui(
    fresh_world: World,
) -> None:
    ui = fresh_world.store
    client = TestClient(create_ui_app(ui))
    assert client.get(f"{API}/overview").json()["feature_views"] == 6
    (fresh_world.root / "engagement.py").unlink()  # account_spend_daily goes
    with FeatureStore(fresh_world.root, clock=fresh_world.clock.now) as other:
        other.registry.teardown()
        other.apply(message="again, without engagement")
        assert other.registry.version == ui.registry.version == 1
    ui.registry.refresh()  # past the refresh interval
    overview = client.get(f"{API}/overview").json()
    assert overview["feature_views"] == 5
    assert _total(client, "view") == 5
    assert client.get(f"{API}/views/account_spend_daily").status_code == 404


# --- the alias timeline's `at` ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "utc", "champion"),
    [
        ("2026-04-18T09:00:00+02:00", "2026-04-18T07:00:00Z", 2),  # the promotion's instant
        ("2026-04-18T08:59:59+02:00", "2026-04-18T06:59:59Z", 1),  # a second before it
        ("0001-01-01T00:00:00-14:00", "0001-01-01T14:00:00Z", None),  # before anything
    ],
)
def test_alias_timeline_at_is_answered_in_utc(
    fraud_world: World, at: str, utc: str, champion: int | None
) -> None:
    client = TestClient(create_ui_app(fraud_world.store))
    found = client.get(f"{API}/models/fraud/aliases", params={"at": at}).json()
    assert (found["at"], found["at_versions"]["champion"]) == (utc, champion)


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_alias_timeline_at_beyond_the_utc_calendar_is_refused(fraud_world: World, at: str) -> None:
    client = TestClient(create_ui_app(fraud_world.store), raise_server_exceptions=False)
    response = client.get(f"{API}/models/fraud/aliases", params={"at": at})
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("query.at:")


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/monitoring/fraud/drift?since=abc", "since"),
        ("/monitoring/fraud/drift?until=", "until"),
    ],
)
def test_a_bad_time_is_refused_naming_the_field_once(
    fraud_world: World, path: str, field: str
) -> None:
    client = TestClient(create_ui_app(fraud_world.store))
    response = client.get(API + path)
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert message.startswith(f"query.{field}: '") and f"{field}: {field}:" not in message
