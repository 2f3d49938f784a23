"""GET /ui/api/rollouts and /rollouts/{model} on the fraud world (the loop's promoted retrain,
checked against the example's template/rollouts.py and the stored events), and the actions
(pause, resume, promote, abort) on copies: the state and audit trail after each, and every
refusal (403 off, 409 state, 404 unknown, 422 body)."""

from __future__ import annotations

import importlib.util
from datetime import timedelta
from types import ModuleType
from typing import Any

import pytest
from starlette.testclient import TestClient

import parity.examples.fraud as fraud_example
from parity.deploy.service import Rollouts
from parity.deploy.state import CheckOutcome, GateResult, RolloutState
from parity.examples.fraud import model as fraud_model
from parity.ui.app import create_ui_app
from tests.ui.world import World

API = "/ui/api"
NONE = {"pause": False, "resume": False, "promote": False, "abort": False}


def template_rollouts() -> ModuleType:
    """The example's template/rollouts.py, loaded from the package's files."""
    path = fraud_example.__path__[0] + "/template/rollouts.py"
    spec = importlib.util.spec_from_file_location("fraud_template_rollouts", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def client(fraud_world: World) -> TestClient:
    return TestClient(create_ui_app(fraud_world.store))


def get(client: TestClient, path: str, status: int = 200) -> Any:
    response = client.get(API + path)
    assert response.status_code == status, response.text
    return response.json()


def post(client: TestClient, path: str, status: int = 200, **kwargs: Any) -> Any:
    response = client.post(API + path, **kwargs)
    assert response.status_code == status, response.text
    return response.json()


# --- the fraud world's promoted rollout (read only) -------------------------------------------


def test_rollouts_list_has_the_loops_promoted_retrain(client: TestClient) -> None:
    rows = get(client, "/rollouts")["rollouts"]
    assert len(rows) == 1
    row = rows[0]
    assert {k: row[k] for k in row if k not in ("started_at", "updated_at", "reason")} == {
        "id": "fraud-1",
        "model": "fraud",
        "definition": "fraud_retrain_rollout",
        "status": "promoted",
        "phase": "done",
        "step": 5,  # the shadow phase, then five canary steps: the last one
        "steps": 6,
        "candidate": 2,
        "champion": 1,
        "candidate_weight": 100.0,  # promoted: the candidate answers everything
        "url": "#/rollout/fraud",
    }
    assert row["started_at"] == "2026-04-18T07:00:00Z"
    assert row["updated_at"] == "2026-04-18T07:48:00Z"
    assert get(client, "/rollouts?active=true") == {"rollouts": []}
    assert get(client, "/rollouts?active=false")["rollouts"] == rows


def test_rollout_steps_and_gates_are_the_templates_definition(client: TestClient) -> None:
    declared = template_rollouts().fraud_retrain_rollout
    view = get(client, "/rollouts/fraud")
    assert view["definition"] == declared.name == "fraud_retrain_rollout"
    phases = [declared.shadow, *declared.steps]
    assert [s["kind"] for s in view["steps"]] == ["shadow"] + ["canary"] * len(declared.steps)
    assert [s["weight"] for s in view["steps"]] == [0.0, 1.0, 5.0, 25.0, 50.0, 100.0]
    assert [s["min_seconds"] for s in view["steps"]] == [p.duration.total_seconds() for p in phases]
    assert [s["min_samples"] for s in view["steps"]] == [p.min_samples for p in phases]
    assert [s["mirror"] for s in view["steps"]] == [100.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert all(s["done"] and not s["current"] for s in view["steps"])
    assert [(g["name"], g["threshold"], g["min_samples"]) for g in view["gates"]] == [
        ("custom:block_rate", 0.05, 10),
        ("error_rate", 0.01, 10),
    ]
    assert (view["candidate_weight"], view["champion_weight"], view["mirror_percent"]) == (
        100.0,
        0.0,
        0.0,
    )
    assert (view["failure_limit"], view["failure_mode"]) == (1, "cumulative")
    assert view["actions"] == NONE  # finished


def test_rollout_gates_hold_the_newest_checks_values(
    client: TestClient, fraud_world: World
) -> None:
    view = get(client, "/rollouts/fraud")
    events = fraud_world.store.rollouts.history("fraud", "fraud-1")
    newest = [e for e in events if e.kind == "check"][-1]
    assert (
        view["checked_at"] == "2026-04-18T07:48:00Z" == newest.at.isoformat().replace("+00:00", "Z")
    )
    block, errors = view["gates"]
    # the last check of the 100 % step: 400 candidate rows, the champion's 8,572 from before it
    assert block["samples"] == errors["samples"] == {"candidate": 400, "champion": 8572}
    assert (block["passed"], block["value"], block["verdict"]) == (True, None, "pass")
    assert block["reason"].startswith("paired in shadow only")
    assert (errors["passed"], errors["value"], errors["champion_value"]) == (True, 0.0, 0.0)
    assert errors["op"] == "candidate error rate <= champion error rate + threshold"
    assert [r.gate for r in newest.results] == [g["name"] for g in view["gates"]]


def test_rollout_history_is_every_stored_event_in_order(
    client: TestClient, fraud_world: World
) -> None:
    history = get(client, "/rollouts/fraud")["history"]
    events = fraud_world.store.rollouts.history("fraud", "fraud-1")
    assert [(h["kind"], h["step"], h["weight"]) for h in history] == [
        (e.kind, e.step, e.weight) for e in events
    ]
    assert history[0]["kind"] == "started" and history[-1]["kind"] == "promoted"
    moves = [(h["step"], h["weight"]) for h in history if h["kind"] == "advanced"]
    assert moves == [(1, 1.0), (2, 5.0), (3, 25.0), (4, 50.0), (5, 100.0)]  # one per step
    actions = {h["action"] for h in history if h["kind"] == "check"}
    assert actions == {"hold", "advance", "promote"}
    assert all(h["actor"] == "controller:rollout-sim" for h in history[1:])


def test_rollout_by_id_and_the_refusals(client: TestClient) -> None:
    assert get(client, "/rollouts/fraud?id=fraud-1") == get(client, "/rollouts/fraud")
    assert get(client, "/rollouts/fraud?id=fraud-9", 404)["error"]["code"] == "rollout_not_found"
    assert get(client, "/rollouts/nope", 404)["error"]["code"] == "rollout_not_found"
    assert get(client, "/rollouts/fraud?id=", 404)["error"]["code"] == "rollout_not_found"
    assert get(client, "/rollouts/" + "m" * 5000, 404)["error"]["code"] == "rollout_not_found"
    body = get(client, "/rollouts/fraud?id=" + "x" * 301, 422)
    assert body["error"]["message"].startswith("query.id: ")
    for bad in ("maybe", "2", "", "null"):
        body = get(client, f"/rollouts?active={bad}", 422)
        assert body["error"]["message"].startswith("query.active: ")


# --- actions on a copy ---------------------------------------------------------------------------


def start(world: World) -> RolloutState:
    """A default rollout of fraud/2 (the champion is back at 1): shadow first, no gates."""
    return world.store.rollouts.start(model="fraud", candidate=2)


def audit(world: World, action: str, rollout: str = "fraud-2") -> list[Any]:
    """The audit records of `action` on `rollout` (the copy's first own rollout)."""
    found = world.store.access.audit.query(action=f"rollouts.{action}", limit=100)
    return [record for record in found if record.detail.get("rollout") == rollout]


def test_actions_are_refused_with_auth_off_unless_enabled(fresh_world: World) -> None:
    start(fresh_world)
    off = TestClient(create_ui_app(fresh_world.store))
    view = get(off, "/rollouts/fraud")
    assert view["actions"] == NONE  # the state allows them; the UI does not
    for action in ("pause", "resume", "promote", "abort"):
        body = post(off, f"/rollouts/fraud/{action}", 403, json={"reason": "x"})
        assert body["error"]["code"] == "rollout_control_disabled"
        assert "parity ui --enable-actions" in body["error"]["message"]
    assert fresh_world.store.rollouts.status("fraud").status == "active"
    assert audit(fresh_world, "pause") == []


def test_pause_resume_abort_through_the_api_change_the_state_and_the_audit_trail(
    fresh_world: World,
) -> None:
    started = start(fresh_world)
    ui = TestClient(create_ui_app(fresh_world.store, enable_actions=True))
    view = get(ui, "/rollouts/fraud")
    assert view["id"] == started.id == "fraud-2"
    assert (view["status"], view["phase"], view["step"]) == ("active", "shadow", 0)
    assert (view["candidate_weight"], view["champion_weight"], view["mirror_percent"]) == (
        0.0,
        100.0,
        100.0,
    )
    assert view["actions"] == {"pause": True, "resume": False, "promote": True, "abort": True}
    assert view["gates"] == [] and view["checked_at"] is None

    paused = post(ui, "/rollouts/fraud/pause", json={"reason": "look at the scores first"})
    assert paused["status"] == "paused"
    assert paused["actions"] == {"pause": False, "resume": True, "promote": True, "abort": True}
    assert fresh_world.store.rollouts.status("fraud").status == "paused"
    (record,) = audit(fresh_world, "pause")
    assert (record.target, record.actor.name) == ("fraud", "http:testclient")
    assert paused["history"][-1]["kind"] == "paused"
    assert paused["history"][-1]["reason"] == "look at the scores first"
    assert paused["history"][-1]["actor"] == "http:testclient"

    resumed = post(ui, "/rollouts/fraud/resume")  # no body: the default reason
    assert resumed["status"] == "active"
    assert resumed["history"][-1]["reason"] == "resumed"
    assert fresh_world.store.rollouts.status("fraud").status == "active"

    aborted = post(ui, "/rollouts/fraud/abort", json={"reason": None})
    assert (aborted["status"], aborted["phase"], aborted["actions"]) == ("aborted", "done", NONE)
    assert (aborted["candidate_weight"], aborted["champion_weight"]) == (0.0, 100.0)
    assert fresh_world.store.rollouts.status("fraud").status == "aborted"
    assert fresh_world.store.models.aliases("fraud")["champion"] == 1  # abort leaves the alias
    assert [len(audit(fresh_world, a)) for a in ("resume", "abort")] == [1, 1]


def test_an_action_the_state_does_not_allow_is_a_409_and_changes_nothing(
    fresh_world: World,
) -> None:
    start(fresh_world)
    ui = TestClient(create_ui_app(fresh_world.store, enable_actions=True))
    body = post(ui, "/rollouts/fraud/resume", 409)
    assert body["error"]["code"] == "rollout_state"
    assert "it is active" in body["error"]["message"]
    post(ui, "/rollouts/fraud/pause")
    assert post(ui, "/rollouts/fraud/pause", 409)["error"]["code"] == "rollout_state"
    post(ui, "/rollouts/fraud/abort")
    for action in ("pause", "resume", "promote", "abort"):
        body = post(ui, f"/rollouts/fraud/{action}", 409)
        assert "it is aborted" in body["error"]["message"]
    assert fresh_world.store.rollouts.status("fraud").status == "aborted"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"json": {"reason": 5}}, "body.reason"),
        ({"json": {"reason": "x" * 1001}}, "body.reason"),
        ({"json": {"reason": "ok", "force": True}}, "body.force"),
        ({"json": ["reason"]}, "body"),
        ({"json": "pause"}, "body"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, "body"),
    ],
)
def test_a_bad_body_is_a_422_naming_the_field(
    fresh_world: World, kwargs: dict[str, Any], field: str
) -> None:
    start(fresh_world)
    ui = TestClient(create_ui_app(fresh_world.store, enable_actions=True))
    body = post(ui, "/rollouts/fraud/pause", 422, **kwargs)
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["message"].startswith(field)
    assert fresh_world.store.rollouts.status("fraud").status == "active"


def test_an_action_on_a_model_without_a_rollout_is_a_404(fresh_world: World) -> None:
    ui = TestClient(create_ui_app(fresh_world.store, enable_actions=True))
    for model in ("nope", "fraud"):  # fraud's only rollout is finished: 409, not 404
        status = 404 if model == "nope" else 409
        body = post(ui, f"/rollouts/{model}/pause", status)
        assert body["error"]["code"] == (
            "rollout_not_found" if model == "nope" else "rollout_state"
        )


def test_the_view_follows_the_controller_as_it_advances(fresh_world: World) -> None:
    """A controller whose gates always pass with enough rows: after the shadow phase's 30
    minutes it advances to the first canary step (1 %), and the page says so."""
    started = start(fresh_world)

    def passing(_: Any, state: RolloutState, __: Any) -> CheckOutcome:
        samples = {"candidate": 1000, "champion": 1000}
        return CheckOutcome((GateResult("error_rate", "pass", 0.0, 0.0, 0.01, samples),), samples)

    ui = TestClient(create_ui_app(fresh_world.store))
    controller = Rollouts(fresh_world.store, clock=fresh_world.clock.now, checker=passing)
    fresh_world.clock.set(started.started_at + timedelta(minutes=10))
    controller.step(owner="test")
    held = get(ui, "/rollouts/fraud")
    assert (held["phase"], held["step"], held["history"][-1]["action"]) == ("shadow", 0, "hold")
    assert held["gates"] == [
        {
            "name": "error_rate",
            "metric": "error_rate",
            "op": "",  # a result the definition has no gate for (no gates by default)
            "threshold": 0.01,
            "min_samples": None,
            "value": 0.0,
            "champion_value": 0.0,
            "samples": {"candidate": 1000, "champion": 1000},
            "verdict": "pass",
            "passed": True,
            "reason": "",
        }
    ]
    fresh_world.clock.set(started.started_at + timedelta(minutes=31))
    controller.step(owner="test")
    moved = get(ui, "/rollouts/fraud")
    assert (moved["phase"], moved["step"]) == ("canary", 1)
    assert (moved["candidate_weight"], moved["champion_weight"], moved["mirror_percent"]) == (
        1.0,
        99.0,
        0.0,
    )
    assert [(s["current"], s["done"]) for s in moved["steps"][:3]] == [
        (False, True),
        (True, False),
        (False, False),
    ]
    assert [h["kind"] for h in moved["history"][-2:]] == ["check", "advanced"]


def test_a_new_version_rolled_out_with_the_declared_rollout_and_promoted_by_hand(
    fresh_world: World,
) -> None:
    store = fresh_world.store
    version = fraud_model.train_and_register(store, "fraud_train_v1", alias="challenger", seed=11)
    assert version.version == 3
    started = store.rollouts.start("fraud_rollout")  # candidate: fraud@challenger
    ui = TestClient(create_ui_app(store, enable_actions=True))
    models = get(ui, "/models")["models"]
    assert models[0]["active_rollout"] == started.id == "fraud-2"
    assert models[0]["latest"] == 3
    view = get(ui, "/rollouts/fraud")
    assert (view["candidate"], view["champion"], view["definition"]) == (3, 1, "fraud_rollout")
    declared = template_rollouts().fraud_rollout
    assert [g["name"] for g in view["gates"]] == [g.metric for g in declared.gates]
    assert [g["threshold"] for g in view["gates"]] == [g.threshold for g in declared.gates]
    assert all(g["passed"] is None and g["reason"] == "not checked yet" for g in view["gates"])
    promoted = post(ui, "/rollouts/fraud/promote", json={"reason": "reviewed by hand"})
    assert (promoted["status"], promoted["actions"]) == ("promoted", NONE)
    assert store.models.aliases("fraud")["champion"] == 3
    (record,) = audit(fresh_world, "promote")
    assert record.actor.name == "http:testclient"
    moves = get(ui, "/models/fraud/aliases?at=now")
    assert moves["events"][-1]["kind"] == "moved"
    assert (moves["events"][-1]["version"], moves["events"][-1]["previous"]) == (3, 1)
    assert moves["at_versions"]["champion"] == 3
    assert get(ui, "/rollouts?active=true") == {"rollouts": []}
