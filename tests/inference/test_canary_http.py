"""Canary routing over real HTTP: sticky arms by the routing key (entity or header), the response
naming the version that answered, explicit versions and other aliases never routed, failed canary
predictions logged as errors, and a model server without rollout control serving normally."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest

from parity import FeatureStore
from parity.inference.app import create_model_app, prediction_logger
from parity.inference.routing import Routes, Shadow
from tests.inference.rollout_helpers import (
    CANDIDATE,
    CHAMPION,
    RAISING,
    expected_trips,
    logged_rows,
    rollout_store,
    trips_routes,
)
from tests.inference.serving_helpers import TripsModel, running


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return rollout_store(tmp_path)


def fixed(routes: Routes) -> Any:
    return lambda: {routes.model: routes}


def candidate_by_hand(key: str, weight: float) -> bool:
    digest = hashlib.blake2b(key.encode(), digest_size=8, key=b"trips-1").digest()
    return int.from_bytes(digest, "big") % 10_000 < weight * 100


def predict(url: str, path: str, driver: int, **options: Any) -> httpx.Response:
    body = {"entities": {"driver_id": [driver, 1], "bonus": [0.5, 0.0]}}
    return httpx.post(f"http://{url}/v1/models/{path}/predict", json=body, **options)


def test_canary_is_sticky_by_entity_key_and_says_which_version_answered(
    store: FeatureStore,
) -> None:
    weight = 30.0
    app = create_model_app(
        store, prediction_log=prediction_logger(store), routes=fixed(trips_routes(weight))
    )
    drivers = list(range(1, 301))
    with running(app) as url:
        first = {d: predict(url, "trips", d) for d in drivers}
        again = {d: predict(url, "trips@champion", d) for d in drivers[:60]}
    for driver, reply in first.items():
        assert reply.status_code == 200, reply.text
        canary = candidate_by_hand(str(driver), weight)
        version, route, scale = (CANDIDATE, "canary", 100) if canary else (CHAMPION, "champion", 10)
        body = reply.json()
        assert (body["model_version"], body["route"], body["alias"]) == (version, route, "champion")
        assert reply.headers["x-parity-model-version"] == str(version)
        assert reply.headers["x-parity-route"] == route
        assert body["predictions"] == [expected_trips(driver, 0.5, scale), 3 * scale]
    for driver, reply in again.items():  # the same key gets the same arm every time
        assert reply.json()["model_version"] == first[driver].json()["model_version"]
    share = sum(candidate_by_hand(str(d), weight) for d in drivers) / len(drivers)
    assert 0.2 < share < 0.4  # the slice is the weight's, within what 300 keys can show
    rows = logged_rows(store)
    assert len(rows) == 2 * (len(drivers) + 60)
    assert {(r["version"], r["role"]) for r in rows} == {(1, "champion"), (2, "canary")}


def test_header_routing_key_and_requests_without_a_key(store: FeatureStore) -> None:
    routes = trips_routes(50.0, key="x-user", source="header")
    app = create_model_app(store, routes=fixed(routes))
    users = [f"user-{n}" for n in range(40)]
    with running(app) as url:
        replies = {u: predict(url, "trips", 1, headers={"X-User": u}) for u in users}
        keyless = predict(url, "trips", 1)
    for user, reply in replies.items():
        wanted = CANDIDATE if candidate_by_hand(user, 50.0) else CHAMPION
        assert reply.json()["model_version"] == wanted
    assert {r.json()["route"] for r in replies.values()} == {"champion", "canary"}
    assert (keyless.json()["model_version"], keyless.json()["route"]) == (CHAMPION, "champion")


def test_explicit_versions_other_aliases_and_stale_routes_are_never_routed(
    store: FeatureStore,
) -> None:
    store.models.set_alias("trips", "other", CHAMPION)
    all_canary = trips_routes(100.0)
    app = create_model_app(store, prediction_log=prediction_logger(store), routes=fixed(all_canary))
    with running(app) as url:
        routed = predict(url, "trips", 7)
        pinned = predict(url, "trips/versions/1", 7)
        other = predict(url, "trips@other", 7)
        store.models.set_alias("trips", "champion", RAISING)  # the routes' champion is stale now
        stale = predict(url, "trips", 7)
    assert (routed.json()["model_version"], routed.json()["route"]) == (CANDIDATE, "canary")
    for reply in (pinned, other):
        body = reply.json()
        assert (body["model_version"], body["route"]) == (CHAMPION, None)
        assert reply.headers["x-parity-model-version"] == "1"
        assert "x-parity-route" not in reply.headers
    assert stale.status_code == 400  # v3 (raising) answers: the alias's version, unrouted
    assert stale.json()["code"] == "predict_failed"
    roles = sorted(repr((r["version"], r["role"], r["alias"])) for r in logged_rows(store))
    expected = [(2, "canary", "champion")] * 2 + [(1, None, None)] * 2 + [(1, None, "other")] * 2
    assert roles == sorted(repr(row) for row in expected)  # the unrouted v3 failure: not logged


def test_a_failing_canary_is_logged_as_an_error_for_the_error_rate_gate(
    store: FeatureStore,
) -> None:
    routes = trips_routes(100.0, candidate=RAISING)
    app = create_model_app(store, prediction_log=prediction_logger(store), routes=fixed(routes))
    with running(app) as url:
        replies = [predict(url, "trips", d) for d in (5, 6)]
    assert [r.status_code for r in replies] == [400, 400]  # predict_failed maps to 400
    assert {r.json()["code"] for r in replies} == {"predict_failed"}
    rows = logged_rows(store)
    assert len(rows) == 4  # two entity rows per request
    assert {(r["version"], r["role"], r["status"], r["prediction"]) for r in rows} == {
        (RAISING, "canary", "error", "null")
    }
    assert sorted(json.loads(r["entities"])["driver_id"] for r in rows) == [1, 1, 5, 6]


def test_without_rollout_control_the_server_serves_every_alias_unrouted(
    store: FeatureStore,
) -> None:
    def unsupported() -> Mapping[str, Routes]:
        raise NotImplementedError

    failing_app = create_model_app(store, routes=unsupported)
    default_app = create_model_app(store)  # store.rollouts.routes, whatever it answers now
    for app in (failing_app, default_app):
        with running(app) as url:
            reply = predict(url, "trips", 2)
        assert reply.status_code == 200, reply.text
        assert (reply.json()["model_version"], reply.json()["route"]) == (CHAMPION, None)


def test_v2_infer_routes_by_the_input_tensor_named_like_the_key(tmp_path: Path) -> None:
    store = rollout_store(tmp_path)
    frame = pd.DataFrame({"user_id": [1.0, 2.0], "trips": [1.0, 2.0], "bonus": [0.0, 1.0]})
    for scale, alias in ((10.0, "champion"), (100.0, None)):
        store.models.register_model("keyed", TripsModel(scale), flavor="pyfunc",
                                    sample_input=frame, alias=alias)  # fmt: skip
    routes = Routes("keyed", "keyed-1", "champion", 1, 2, 50.0, "user_id")
    app = create_model_app(store, routes=lambda: {"keyed": routes})

    def infer(user: int) -> httpx.Response:
        inputs = [
            {"name": name, "datatype": "FP64", "shape": [1], "data": [value]}
            for name, value in (("user_id", float(user)), ("trips", 2.0), ("bonus", 0.5))
        ]
        return httpx.post(f"http://{url}/v2/models/keyed/infer", json={"inputs": inputs})

    with running(app) as url:
        replies = {user: infer(user) for user in range(1, 41)}
        pinned = httpx.post(
            f"http://{url}/v2/models/keyed/versions/2/infer",
            json={"inputs": [{"name": n, "datatype": "FP64", "shape": [1], "data": [1.0]}
                             for n in ("user_id", "trips", "bonus")]},
        )  # fmt: skip
    for user, reply in replies.items():
        assert reply.status_code == 200, reply.text
        canary = candidate_by_hand_for("keyed-1", str(user), 50.0)
        version, scale = (2, 100.0) if canary else (1, 10.0)
        assert reply.headers["x-parity-model-version"] == str(version)
        assert reply.headers["x-parity-route"] == ("canary" if canary else "champion")
        assert reply.json()["model_version"] == str(version)
        np.testing.assert_allclose(reply.json()["outputs"][0]["data"], [2.0 * scale + 0.5])
    assert {r.headers["x-parity-route"] for r in replies.values()} == {"champion", "canary"}
    assert pinned.headers["x-parity-model-version"] == "2"
    assert "x-parity-route" not in pinned.headers


def candidate_by_hand_for(rollout: str, key: str, weight: float) -> bool:
    digest = hashlib.blake2b(key.encode(), digest_size=8, key=rollout.encode()).digest()
    return int.from_bytes(digest, "big") % 10_000 < weight * 100


def test_champion_errors_during_a_rollout_are_logged_too(store: FeatureStore) -> None:
    store.models.set_alias("trips", "champion", RAISING)
    routes = trips_routes(0.0, champion=RAISING)  # all traffic stays with the (broken) champion
    app = create_model_app(store, prediction_log=prediction_logger(store), routes=fixed(routes))
    with running(app) as url:
        reply = predict(url, "trips", 9)
    assert reply.status_code == 400 and reply.json()["code"] == "predict_failed"
    rows = logged_rows(store)
    assert [(r["version"], r["role"], r["status"]) for r in rows] == [
        (RAISING, "champion", "error")
    ] * 2


def test_v2_shadow_mirrors_the_request_tensors_with_the_same_request_id(tmp_path: Path) -> None:
    store = rollout_store(tmp_path)
    frame = pd.DataFrame({"user_id": [1.0, 2.0], "trips": [1.0, 2.0], "bonus": [0.0, 1.0]})
    for scale, alias in ((10.0, "champion"), (100.0, None)):
        store.models.register_model("keyed", TripsModel(scale), flavor="pyfunc",
                                    sample_input=frame, alias=alias)  # fmt: skip
    routes = Routes("keyed", "keyed-1", "champion", 1, 2, 0.0, "user_id", shadows=(Shadow(2),))
    app = create_model_app(
        store, prediction_log=prediction_logger(store), routes=lambda: {"keyed": routes}
    )
    inputs = [
        {"name": name, "datatype": "FP64", "shape": [2], "data": values}
        for name, values in (("user_id", [7.0, 8.0]), ("trips", [2.0, 3.0]), ("bonus", [0.5, 0.0]))
    ]
    with running(app) as url:
        reply = httpx.post(f"http://{url}/v2/models/keyed/infer", json={"inputs": inputs})
        deadline = time.monotonic() + 10
        while "parity_shadow_requests_total{" not in httpx.get(f"http://{url}/metrics").text:
            assert time.monotonic() < deadline, "the shadow never ran"
            time.sleep(0.05)
    assert reply.status_code == 200, reply.text
    assert "id" not in reply.json()  # the client sent no id (the log made one up)
    np.testing.assert_allclose(reply.json()["outputs"][0]["data"], [20.5, 30.0])
    rows = [r for r in logged_rows(store)]
    assert [(r["version"], r["role"]) for r in rows] == [(1, "champion")] * 2 + [(2, "shadow")] * 2
    assert len({r["request_id"] for r in rows}) == 1  # one request id pairs all four rows
    by_version = {v: sorted(json.loads(r["prediction"]) for r in rows if r["version"] == v)
                  for v in (1, 2)}  # fmt: skip
    assert by_version == {1: [20.5, 30.0], 2: [200.5, 300.0]}
