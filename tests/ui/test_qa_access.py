"""QA of what a narrowed token sees: no list, answer or refusal names a view, service or monitor
the token may not read (duplicates' skipped views, an unknown monitor's 404)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from parity import FeatureStore
from parity.examples.fraud.rollout_sim import SimClock
from parity.ui.app import create_ui_app
from tests.ui.world import World

API = "/ui/api"
GRANTS = {
    "features": ["features:read"],
    "profile_only": ["features:read:account_profile"],
    "models": ["models:read"],
    "other_model": ["models:read:other"],
}


class Secured:
    def __init__(self, store: FeatureStore) -> None:
        self.client = TestClient(create_ui_app(store))
        self.tokens = {name: store.access.tokens.create(name, s)[1] for name, s in GRANTS.items()}

    def get(self, who: str, path: str, **params: str) -> tuple[int, str]:
        headers = {"authorization": f"Bearer {self.tokens[who]}"}
        response = self.client.get(API + path, params=params, headers=headers)
        return response.status_code, response.text


@pytest.fixture
def secured(fraud_world: World, tmp_path: Path) -> Iterator[Secured]:
    root = tmp_path / "fraud_detection"
    shutil.copytree(fraud_world.root, root)
    config = root / "parity.yaml"
    config.write_text(config.read_text() + "auth: {enabled: true}\n")
    store = FeatureStore(root, clock=SimClock(fraud_world.clock.now()).now)
    yield Secured(store)
    store.close()


def test_a_duplicate_scan_lists_only_the_skipped_views_a_token_may_read(secured: Secured) -> None:
    headers = {"authorization": f"Bearer {secured.tokens['features']}"}
    assert secured.client.post(f"{API}/duplicates", json={}, headers=headers).status_code == 202
    deadline = time.monotonic() + 60
    while (scan := secured.client.get(f"{API}/duplicates", headers=headers).json())["state"] in (
        "running",
    ):
        assert time.monotonic() < deadline, scan
        time.sleep(0.2)
    assert scan["state"] == "done", scan
    # device_profile is the only view keyed by device_id: the scan skips it, and says so ...
    assert any(s.startswith("device_profile:") for s in scan["skipped"])
    # ... but not to a token that may read account_profile only.
    status, text = secured.get("profile_only", "/duplicates")
    assert status == 200
    assert "device_profile" not in text
    assert "account_txn_stats" not in text


def test_an_unknown_monitor_is_not_answered_with_the_monitors_of_other_models(
    secured: Secured,
) -> None:
    status, text = secured.get("models", "/alerts", monitor="nope")
    assert status == 404 and "fraud_monitor" in text  # models:read on every model: the list
    status, text = secured.get("other_model", "/alerts", monitor="nope")
    assert status == 404 and "fraud_monitor" not in text
    status, text = secured.get("other_model", "/alerts", monitor="fraud_monitor")
    assert status == 403 and "models:read" in text


def test_a_narrowed_token_s_version_list_counts_the_changes_its_version_page_shows(
    secured: Secured,
) -> None:
    _, listed = secured.get("profile_only", "/registry/versions")
    _, page = secured.get("profile_only", "/registry/versions/1")

    (first,) = [v for v in json.loads(listed)["versions"] if v["version"] == 1]
    changes = json.loads(page)["changes"]
    assert 0 < len(changes) < 15  # the token reads part of the first version's 15 objects
    for action in ("added", "changed", "removed"):
        assert first[action] == len([c for c in changes if c["action"] == action])


def test_a_narrowed_token_s_version_page_names_only_the_entities_the_catalog_shows_it(
    secured: Secured,
) -> None:

    _, page = secured.get("profile_only", "/registry/versions/1")
    shown = {(c["kind"], c["name"]) for c in json.loads(page)["changes"]}
    # account_profile and its entity account; not device (device_profile's entity), which the
    # catalog hides from this token and whose page refuses it.
    assert shown == {("entity", "account"), ("view", "account_profile")}
    assert secured.get("profile_only", "/entities/device")[0] == 403
