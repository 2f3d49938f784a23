"""The models and rollouts routes with auth on: models:read reads, a token narrowed to other
models sees a filtered list and 403 on fraud, rollout actions need rollouts:admin for the model
(and then are audited as the token), and a reader's page offers no button."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from parity import FeatureStore
from parity.examples.fraud.rollout_sim import SimClock
from parity.ui.app import create_ui_app
from tests.inference.serving_helpers import Affine
from tests.ui.world import World

API = "/ui/api"
NONE = {"pause": False, "resume": False, "promote": False, "abort": False}


@dataclass
class Secured:
    store: FeatureStore
    client: TestClient
    tokens: dict[str, str]

    def get(self, path: str, who: str | None, status: int = 200) -> Any:
        response = self.client.get(API + path, headers=self._auth(who))
        assert response.status_code == status, response.text
        return response.json()

    def post(self, path: str, who: str | None, status: int = 200, **kwargs: Any) -> Any:
        response = self.client.post(API + path, headers=self._auth(who), **kwargs)
        assert response.status_code == status, response.text
        return response.json()

    def _auth(self, who: str | None) -> dict[str, str]:
        return {} if who is None else {"authorization": f"Bearer {self.tokens[who]}"}


SCOPES = {
    "reader": "models:read",
    "narrowed": "models:read:other",
    "admin": ["models:read", "rollouts:admin:fraud"],
    "other_admin": ["models:read", "rollouts:admin:other"],
    "features_only": "features:read",
}


@pytest.fixture(scope="module")
def secured(fraud_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """A copy of the fraud world with auth on, a second model `other`, and an active rollout
    of fraud/2 against the champion (1)."""
    root = tmp_path_factory.mktemp("ui-auth") / "fraud_detection"
    shutil.copytree(fraud_world.root, root)
    config = root / "parity.yaml"
    config.write_text(config.read_text() + "auth: {enabled: true}\n")
    clock = SimClock(fraud_world.clock.now())
    store = FeatureStore(root, clock=clock.now)
    store.models.register_model(
        "other", Affine([1.0], 0.0), flavor="pyfunc", sample_input=np.ones((2, 1))
    )
    store.rollouts.start(model="fraud", candidate=2)
    tokens = {name: store.access.tokens.create(name, scopes)[1] for name, scopes in SCOPES.items()}
    yield Secured(store, TestClient(create_ui_app(store)), tokens)
    store.close()


def test_a_reader_sees_every_model_and_rollout_but_no_button(secured: Secured) -> None:
    names = [m["name"] for m in secured.get("/models", "reader")["models"]]
    assert names == ["fraud", "other"]
    rollouts = secured.get("/rollouts", "reader")["rollouts"]
    assert [(r["id"], r["status"]) for r in rollouts] == [
        ("fraud-2", "active"),
        ("fraud-1", "promoted"),
    ]
    assert secured.get("/models/other", "reader")["versions"][0]["version"] == 1
    view = secured.get("/rollouts/fraud", "reader")
    assert (view["status"], view["actions"]) == ("active", NONE)


def test_a_token_narrowed_to_other_models_sees_them_only(secured: Secured) -> None:
    models = secured.get("/models", "narrowed")["models"]
    assert [m["name"] for m in models] == ["other"]
    assert models[0]["active_rollout"] is None
    assert secured.get("/rollouts", "narrowed") == {"rollouts": []}  # fraud's is hidden
    assert secured.get("/models/other/aliases", "narrowed")["events"] == []
    for path in ("/models/fraud", "/models/fraud/aliases", "/rollouts/fraud"):
        body = secured.get(path, "narrowed", 403)
        assert "models:read" in body["error"]["message"]


def test_without_models_read_every_models_route_is_refused(secured: Secured) -> None:
    for path in ("/models", "/models/fraud", "/rollouts", "/rollouts/fraud"):
        assert "models:read" in secured.get(path, "features_only", 403)["error"]["message"]
        secured.get(path, None, 401)


def test_an_action_needs_rollouts_admin_for_that_model(secured: Secured) -> None:
    for who in ("reader", "narrowed", "other_admin", "features_only"):
        body = secured.post("/rollouts/fraud/pause", who, 403, json={"reason": "no"})
        assert "rollouts:admin" in body["error"]["message"]
    secured.post("/rollouts/fraud/pause", None, 401)
    assert secured.store.rollouts.status("fraud").status == "active"


def test_an_admin_pauses_and_resumes_and_the_audit_names_the_token(secured: Secured) -> None:
    view = secured.get("/rollouts/fraud", "admin")
    assert view["actions"] == {"pause": True, "resume": False, "promote": True, "abort": True}
    paused = secured.post("/rollouts/fraud/pause", "admin", json={"reason": "night freeze"})
    assert (paused["status"], paused["actions"]["resume"]) == ("paused", True)
    assert secured.store.rollouts.status("fraud").status == "paused"
    records = secured.store.access.audit.query(action="rollouts.pause", limit=10)
    mine = [r for r in records if r.detail.get("rollout") == view["id"]]
    assert [(r.actor.name, r.detail["reason"]) for r in mine] == [("admin", "night freeze")]
    assert paused["history"][-1]["actor"] == "admin"
    resumed = secured.post("/rollouts/fraud/resume", "admin")
    assert resumed["status"] == "active"
    assert secured.store.rollouts.status("fraud").status == "active"
