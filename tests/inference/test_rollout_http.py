"""The model server's rollout routes over real HTTP (uvicorn): `/v1/rollouts...` read, start and
steer rollouts through `store.rollouts`; POSTs answer 403 unless the server was started with
rollout control; every bad input of issue 14 is a typed 4xx naming the field."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pandas as pd
import pytest

from parity import FeatureStore
from parity.inference.app import create_model_app
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import TripsModel, running

ACTIONS = ("pause", "resume", "promote", "abort")
SAMPLE = pd.DataFrame({"trips": [1.0, 2.0], "bonus": [0.0, 1.0]})


RANKER_MONITOR = """
from parity import LabelSource, Monitor

ranker_monitor = Monitor(
    name="ranker_monitor",
    model="ranker",
    labels=LabelSource(path="data/ranker_labels.parquet", label="clicked"),
)
"""


def rollout_store(
    root: Path, *, registry: str = "", project: str = "demo"
) -> tuple[Path, FeatureStore]:
    """A repo whose `ranker` has versions 1 (champion), 2 and 3, and whose `lonely` has versions
    1 and 2 and no alias; both read the driver features (routing key: driver_id). `registry`:
    parity.yaml's registry section (default: SQLite in the repo)."""
    extra = f"models: {{trusted: true}}\n{registry}"
    files = {**DRIVER_REPO, "monitors.py": RANKER_MONITOR}  # label gates need labels
    path = write_repo(root / "repo", files, project=project, extra=extra)
    store = FeatureStore(path)
    store.apply()
    for scale in (10.0, 11.0, 12.0):
        store.models.register_model(
            "ranker",
            TripsModel(scale),
            flavor="pyfunc",
            feature_service="driver_service",
            sample_input=SAMPLE,
            alias="champion" if scale == 10.0 else None,
        )
    for scale in (1.0, 2.0):
        store.models.register_model(
            "lonely",
            TripsModel(scale),
            flavor="pyfunc",
            feature_service="driver_service",
            sample_input=SAMPLE,
        )
    return path, store


@dataclass
class Server:
    url: str
    store: FeatureStore

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=30)

    def post(self, path: str, body: Any = None, content: bytes | None = None) -> httpx.Response:
        if content is not None:
            return httpx.post(f"{self.url}{path}", content=content, timeout=30)
        return httpx.post(f"{self.url}{path}", json=body, timeout=30)


@pytest.fixture
def control(tmp_path: Path) -> Iterator[Server]:
    """A model server started with rollout control."""
    _, store = rollout_store(tmp_path)
    with running(create_model_app(store, enable_rollout_control=True)) as address:
        yield Server(f"http://{address}", store)


@pytest.fixture
def readonly(tmp_path: Path) -> Iterator[Server]:
    """A model server started without rollout control (the default)."""
    _, store = rollout_store(tmp_path)
    with running(create_model_app(store)) as address:
        yield Server(f"http://{address}", store)


def assert_error(reply: httpx.Response, status: int, code: str, *named: str) -> str:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error", "code"}
    assert body["code"] == code, body
    for text in named:
        assert text in body["error"], body
    return str(body["error"])


# --- routing, methods, 403: no controller needed -----------------------------------------------


def test_every_post_answers_403_without_rollout_control(readonly: Server) -> None:
    start = {"model": "ranker", "candidate": 2}
    assert_error(
        readonly.post("/v1/rollouts", start),
        403,
        "rollout_control_disabled",
        "--enable-rollout-control",
    )
    for action in ACTIONS:
        reply = readonly.post(f"/v1/rollouts/ranker/{action}", {"reason": "x"})
        assert_error(reply, 403, "rollout_control_disabled", "--enable-rollout-control")
    # a body that is not even JSON is refused the same way: nothing is parsed before the check
    reply = readonly.post("/v1/rollouts", content=b"{not json")
    assert_error(reply, 403, "rollout_control_disabled")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/v1/rollouts", "GET, POST"),
        ("PUT", "/v1/rollouts", "GET, POST"),
        ("POST", "/v1/rollouts/ranker", "GET"),
        ("GET", "/v1/rollouts/ranker/pause", "POST"),
        ("DELETE", "/v1/rollouts/ranker/abort", "POST"),
    ],
)
def test_wrong_methods_answer_405_with_allow(
    readonly: Server, method: str, path: str, allow: str
) -> None:
    reply = httpx.request(method, f"{readonly.url}{path}", timeout=30)
    assert_error(reply, 405, "method_not_allowed", allow)
    assert reply.headers["allow"] == allow


@pytest.mark.parametrize(
    "path", ["/v1/rollouts/ranker/bogus", "/v1/rollouts/ranker/pause/now", "/v1/rollout"]
)
def test_unknown_rollout_routes_answer_404(readonly: Server, path: str) -> None:
    assert_error(readonly.post(path, {}), 404, "not_found", "/v1/rollouts")


# --- bad input refused before anything is started ------------------------------------------------


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"model": "ranker", "candidate": 2, "gates": [{"metric": "latency_p50"}]},
         ("gates[0].metric", "'latency_p50' is not known", "latency_p99")),
        ({"model": "ranker", "candidate": 2,
          "gates": [{"metric": "error_rate"}, {"metric": "accuracy", "threshold": 0.1}]},
         ("gates[1].metric", "'accuracy'", "label:<metric>")),
        ({"model": "ranker", "candidate": 2,
          "steps": [{"weight": 5}, {"weight": 25}, {"weight": 25}]},
         ("steps[2].weight", "must increase", "5, 25, 25", "1, 5, 25, 50, 100")),
        ({"model": "ranker", "candidate": 2, "steps": [{"weight": 50}, {"weight": 10}]},
         ("steps[1].weight", "must increase")),
        ({"model": "ranker", "candidate": 2, "steps": [{"weight": 150}]},
         ("steps[0].weight", "percentage from 0 to 100")),
        ({"model": "ranker", "candidate": 2, "shadow": {"duration": "ten minutes"}},
         ("shadow.duration", "'ten minutes' is not a duration", "30m")),
        ({"model": "ranker", "candidate": 2, "interval": "0s"},
         ("interval", "at least 1 second")),
        ({"model": "ranker", "candidate": 2, "failure_policy": {"mode": "sometimes"}},
         ("failure_policy.mode", "'cumulative' or 'consecutive'")),
        ({"model": "ranker", "candidate": 2, "routing_key": {"name": "x user", "source": "header"}},
         ("routing_key", "header name 'x user'")),
        ({"model": "ranker", "candidate": 2, "shadow_fraction": 0},
         ("shadow_fraction", "(0, 1]")),
        ({"model": "ranker", "candidate": 2, "weights": [1, 2]},
         ("weights", "not a rollout field", "steps")),
        ({"model": "ranker"}, ("candidate is required",)),
        ({"model": "ranker", "candidate": 0}, ("candidate", "version number")),
        ({"rollout": "ranker_ramp", "candidate": 3}, ("rollout", "drop candidate")),
        ({"model": "ranker", "candidate": 2, "gates": [{"metric": "custom:nothing_here"}]},
         ("gates[0].metric", "'custom:nothing_here'", "custom_gates")),
    ],
)  # fmt: skip
def test_bad_start_bodies_are_400_naming_the_field(
    control: Server, body: dict[str, Any], named: tuple[str, ...]
) -> None:
    assert_error(control.post("/v1/rollouts", body), 400, "invalid_rollout", *named)


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"{not json", "body: not JSON"),
        (b"[1, 2]", "a JSON object is expected, got list"),
        (b'"ranker"', "a JSON object is expected, got str"),
        (b"\xff\xfe", "body: not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "body: not JSON"),
        (b'{"model": "ranker", "candidate": 2, "steps": [{"weight": NaN}]}', "steps[0].weight"),
    ],
)
def test_start_bodies_that_are_not_json_objects_are_400(
    control: Server, content: bytes, named: str
) -> None:
    assert_error(control.post("/v1/rollouts", content=content), 400, "invalid_rollout", named)


@pytest.mark.parametrize(
    ("body", "named"),
    [({"reason": 7}, "reason: give a text"), ({"why": "x"}, "why: not a field")],
)
def test_action_bodies_are_checked(control: Server, body: dict[str, Any], named: str) -> None:
    assert_error(control.post("/v1/rollouts/ranker/pause", body), 400, "invalid_rollout", named)


def test_the_spec_declares_the_rollout_routes(readonly: Server) -> None:
    paths = readonly.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/rollouts"]) == {"get", "post"}
    assert "403" in paths["/v1/rollouts"]["post"]["responses"]
    for action in ACTIONS:
        responses = paths[f"/v1/rollouts/{{model_name}}/{action}"]["post"]["responses"]
        assert {"200", "400", "403", "404", "409"} <= set(responses)


# --- with the controller: the issue's bad input, shapes and round trips -------------------------


def test_the_issues_bad_input_is_a_typed_error_naming_the_field(control: Server) -> None:
    started = control.post("/v1/rollouts", {"model": "ranker", "candidate": 2})
    assert started.status_code == 201, started.text
    assert_error(  # a second rollout of the same model while one is active
        control.post("/v1/rollouts", {"model": "ranker", "candidate": 3}),
        409,
        "rollout_active",
        "ranker",
    )
    assert_error(  # a model without a champion
        control.post("/v1/rollouts", {"model": "lonely", "candidate": 2}),
        400,
        "invalid_rollout",
        "champion_alias",
        "parity models alias set lonely champion",
    )
    control.store.models.set_alias("lonely", "champion", 1)
    for candidate in (1, "champion"):  # the candidate is the champion (by number or alias)
        assert_error(
            control.post("/v1/rollouts", {"model": "lonely", "candidate": candidate}),
            400,
            "invalid_rollout",
            "candidate",
            "version 1",
        )
    assert_error(  # an unknown model
        control.post("/v1/rollouts", {"model": "nobody", "candidate": 2}),
        404,
        "model_not_found",
        "nobody",
    )
    assert_error(  # a candidate version the model does not have
        control.post("/v1/rollouts", {"model": "lonely", "candidate": 9}),
        400,
        "invalid_rollout",
        "candidate",
        "versions: 1, 2",
    )
    # nothing but the first one started
    listed = control.get("/v1/rollouts").json()["rollouts"]
    assert [(r["model"], r["candidate"]) for r in listed] == [("ranker", 2)]


def test_start_status_and_history_shapes(control: Server) -> None:
    body = {
        "model": "ranker",
        "candidate": 3,
        "shadow": {"duration": "15m", "min_samples": 40},
        "steps": [{"weight": 10, "duration": 300, "min_samples": 20}, {"weight": 50}],
        "routing_key": {"name": "x-user", "source": "header"},
        "gates": [{"metric": "latency_p99", "threshold": 0.2}, {"metric": "error_rate"}],
        "failure_policy": {"mode": "consecutive", "limit": 2},
        "interval": "30s",
    }
    reply = control.post("/v1/rollouts", body)
    assert reply.status_code == 201, reply.text
    state = reply.json()["rollout"]
    assert (state["model"], state["candidate"], state["champion"]) == ("ranker", 3, 1)
    assert (state["status"], state["step"], state["failures"]) == ("active", 0, 0)
    assert (state["weight"], state["in_shadow"], state["phases"]) == (0.0, True, 3)
    definition = state["definition"]
    assert [s["weight"] for s in definition["steps"]] == [10.0, 50.0]
    assert [s["min_samples"] for s in definition["steps"]] == [20, 100]  # 100: Phase's default
    assert definition["shadow"]["min_samples"] == 40
    assert definition["routing_key"] == {"name": "x-user", "source": "header"}
    assert definition["failure_policy"] == {"mode": "consecutive", "limit": 2}
    assert [(g["metric"], g["threshold"]) for g in definition["gates"]] == [
        ("latency_p99", 0.2),
        ("error_rate", None),
    ]
    detail = control.get("/v1/rollouts/ranker").json()
    assert set(detail) == {"rollout", "events"}
    assert detail["rollout"] == state
    [event] = detail["events"]
    assert (event["kind"], event["step"], event["weight"], event["rollout"]) == (
        "started",
        0,
        0.0,
        state["id"],
    )
    assert event["actor"] == "http:127.0.0.1"
    assert control.get("/v1/rollouts").json() == {"rollouts": [state]}


def test_pause_resume_abort_round_trip_keeps_the_champion(control: Server) -> None:
    start = {"model": "ranker", "candidate": 2, "shadow": None, "steps": [{"weight": 5}]}
    assert control.post("/v1/rollouts", start).status_code == 201
    paused = control.post("/v1/rollouts/ranker/pause", {"reason": "holiday freeze"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["rollout"]["status"] == "paused"
    assert paused.json()["rollout"]["weight"] == 5.0  # a pause holds the split
    assert_error(control.post("/v1/rollouts/ranker/pause"), 409, "rollout_state")
    resumed = control.post("/v1/rollouts/ranker/resume")
    assert resumed.json()["rollout"]["status"] == "active"
    aborted = control.post("/v1/rollouts/ranker/abort", {"reason": "p99 too high"})
    state = aborted.json()["rollout"]
    assert (state["status"], state["weight"]) == ("aborted", 0.0)
    assert "p99 too high" in state["reason"]
    assert control.store.models.aliases("ranker") == {"champion": 1}
    assert control.get("/v1/rollouts").json() == {"rollouts": []}
    events = control.get("/v1/rollouts/ranker").json()["events"]
    assert [e["kind"] for e in events] == ["started", "paused", "resumed", "aborted"]
    assert "holiday freeze" in events[1]["reason"]
    for action in ACTIONS:  # a finished rollout takes no more actions
        assert_error(control.post(f"/v1/rollouts/ranker/{action}"), 409, "rollout_state")


def test_promote_moves_the_champion_alias_with_the_reason(control: Server) -> None:
    assert control.post("/v1/rollouts", {"model": "ranker", "candidate": 3}).status_code == 201
    reply = control.post("/v1/rollouts/ranker/promote", {"reason": "reviewed by hand"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["rollout"]["status"] == "promoted"
    assert control.store.models.aliases("ranker") == {"champion": 3}
    moves = control.store.models.history("ranker", "champion")
    assert moves[-1].version == 3 and "reviewed by hand" in moves[-1].reason
    # the next rollout of the model may start now, against the new champion
    again = control.post("/v1/rollouts", {"model": "ranker", "candidate": 2})
    assert again.status_code == 201, again.text
    assert again.json()["rollout"]["champion"] == 3


@pytest.mark.parametrize(
    "path", ["/v1/rollouts/nobody", "/v1/rollouts/lonely", "/v1/rollouts/ranker"]
)
def test_models_without_a_rollout_are_404(control: Server, path: str) -> None:
    assert_error(control.get(path), 404, "rollout_not_found")
    assert_error(control.post(f"{path}/abort"), 404, "rollout_not_found")


def test_a_declared_rollout_starts_by_name(tmp_path: Path) -> None:
    path, store = rollout_store(tmp_path)
    (path / "rollouts.py").write_text(
        "from datetime import timedelta\n"
        "from parity import Phase, Rollout\n"
        "ranker_ramp = Rollout(name='ranker_ramp', model='ranker', candidate=2, shadow=None,\n"
        "    steps=[Phase(weight=20, duration=timedelta(minutes=2))])\n"
    )
    store.apply()
    with running(create_model_app(store, enable_rollout_control=True)) as address:
        url = f"http://{address}/v1/rollouts"
        reply = httpx.post(url, json={"rollout": "ranker_ramp"}, timeout=30)
        assert reply.status_code == 201, reply.text
        state = reply.json()["rollout"]
        assert state["definition"]["name"] == "ranker_ramp"
        assert (state["weight"], state["in_shadow"], state["phases"]) == (20.0, False, 1)
        unknown = httpx.post(url, json={"rollout": "no_such_ramp"}, timeout=30)
        assert_error(unknown, 400, "invalid_rollout", "no_such_ramp", "ranker_ramp")


@pytest.mark.postgres
def test_round_trip_with_the_registry_on_postgresql(
    tmp_path: Path, postgres_url: str, project_name: str
) -> None:
    from tests.deploy.control_support import cleanup

    registry = f"registry:\n  type: postgres\n  url: {postgres_url}\n"
    _, store = rollout_store(tmp_path, registry=registry, project=project_name)
    try:
        with running(create_model_app(store, enable_rollout_control=True)) as address:
            server = Server(f"http://{address}", store)
            start = {"model": "ranker", "candidate": 2, "shadow": None}
            assert server.post("/v1/rollouts", start).status_code == 201
            assert_error(server.post("/v1/rollouts", start), 409, "rollout_active")
            assert server.post("/v1/rollouts/ranker/pause").json()["rollout"]["status"] == "paused"
            promoted = server.post("/v1/rollouts/ranker/promote", {"reason": "on postgres"})
            assert promoted.json()["rollout"]["status"] == "promoted", promoted.text
            events = server.get("/v1/rollouts/ranker").json()["events"]
            assert [e["kind"] for e in events] == ["started", "paused", "promoted"]
        assert store.models.aliases("ranker") == {"champion": 2}
    finally:
        cleanup(store)
        store.close()


def test_json_shapes_turn_nan_and_inf_into_null() -> None:
    import json
    from datetime import UTC, datetime

    from parity.deploy.state import GateResult, RolloutEvent
    from parity.inference.rollout_http import plain

    result = GateResult("latency_p99", "fail", math.nan, math.inf, 0.1, {"candidate": 3})
    event = RolloutEvent("m-1", datetime(2026, 1, 1, 12, tzinfo=UTC), "check", 1, 5.0, (result,))
    shaped = plain(event)
    assert json.loads(json.dumps(shaped, allow_nan=False)) == {
        "rollout": "m-1",
        "at": "2026-01-01T12:00:00+00:00",
        "kind": "check",
        "step": 1,
        "weight": 5.0,
        "results": [
            {
                "gate": "latency_p99",
                "verdict": "fail",
                "candidate": None,
                "champion": None,
                "limit": 0.1,
                "samples": {"candidate": 3},
                "reason": "",
            }
        ],
        "reason": "",
        "actor": "",
    }
