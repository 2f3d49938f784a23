"""The feature server over HTTP: Feast's JSON shapes, and 4xx JSON for anything a client sends."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity import FeatureStore
from parity.serving.app import create_app
from parity.serving.guard import Guard
from parity.serving.metrics import ServerMetrics
from tests.conftest import DRIVER_REPO, write_repo

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    feature_store = FeatureStore(write_repo(tmp_path / "repo", DRIVER_REPO), clock=lambda: NOW)
    feature_store.apply()
    feature_store.materialize(datetime(2025, 12, 31, tzinfo=UTC), NOW)
    return feature_store


@pytest.fixture
def client(store: FeatureStore) -> TestClient:
    return TestClient(create_app(store, max_body_bytes=10_000))


def test_feast_shaped_request_and_response(client: TestClient) -> None:
    body = {
        "features": ["driver_stats:trips", "driver_stats:city"],
        "entities": {"driver_id": [1, 99]},
    }
    reply = client.post("/get-online-features", json=body)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["metadata"]["feature_names"] == ["driver_id", "trips", "city"]
    driver, trips, city = data["results"]
    assert driver["values"] == [1, 99]
    assert trips["values"] == [3, None]
    assert trips["statuses"] == ["PRESENT", "NOT_FOUND"]
    assert trips["event_timestamps"][0] == "2026-01-01T00:00:00.000000Z"
    assert city["values"] == ["x", None]


def test_feature_service_by_name(client: TestClient) -> None:
    reply = client.post(
        "/get-online-features",
        json={"feature_service": "driver_service", "entities": {"driver_id": [2]}},
    )
    assert reply.json()["results"][1]["values"] == [3]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"features": ["nope:x"], "entities": {"driver_id": [1]}}, 404, "feature_view_not_found"),
        (
            {"features": ["driver_stats:x"], "entities": {"driver_id": [1]}},
            404,
            "feature_not_found",
        ),
        ({"feature_service": "nope", "entities": {"driver_id": [1]}}, 400, "invalid_retrieval"),
        (
            {"features": ["driver_stats:trips"], "entities": {"rider": [1]}},
            400,
            "invalid_entity_frame",
        ),
        (
            {"features": ["driver_stats:trips"], "entities": {"driver_id": [1.5]}},
            400,
            "invalid_entity_key",
        ),
        ({"features": ["driver_stats:trips"]}, 422, "invalid_request"),
        ({"entities": {"driver_id": [1]}}, 400, "bad_request"),
    ],
)
def test_bad_requests_get_4xx_json(
    client: TestClient, body: dict[str, object], status: int, code: str
) -> None:
    reply = client.post("/get-online-features", json=body)
    assert (reply.status_code, reply.json()["error"]["code"]) == (status, code)
    assert reply.json()["error"]["message"]


def test_malformed_json_and_huge_bodies_are_refused(client: TestClient) -> None:
    reply = client.post(
        "/get-online-features", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_request"
    reply = client.post(
        "/get-online-features", content=b"x" * 20_000, headers={"content-type": "application/json"}
    )
    assert reply.status_code == 413


def test_health_and_metrics(client: TestClient) -> None:
    assert client.get("/health").json()["registry_version"] == 1
    client.post(
        "/get-online-features", json={"features": ["nope:x"], "entities": {"driver_id": [1]}}
    )
    text = client.get("/metrics").text
    assert 'parity_errors_total{code="feature_view_not_found"} 1.0' in text
    assert "parity_request_seconds_bucket" in text


@pytest.mark.parametrize("workers", [1, 2])
def test_parity_serve_answers_over_real_http(store: FeatureStore, workers: int) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "parity.cli.main",
            "serve",
            "--repo",
            str(store.repo_path),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as reply:
                    assert json.load(reply)["status"] == "ok"
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/get-online-features",
            data=json.dumps(
                {"features": ["driver_stats:trips"], "entities": {"driver_id": [1, 2]}}
            ).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            trips = json.load(reply)["results"][1]
        # The server runs on the real clock, long after these one-day-ttl rows: stale, not lost.
        assert trips["statuses"] == ["OUTSIDE_MAX_AGE", "OUTSIDE_MAX_AGE"]
        assert trips["event_timestamps"] == [
            "2026-01-01T00:00:00.000000Z",
            "2026-01-01T01:00:00.000000Z",
        ]
        for _ in range(20):  # every worker answers (the kernel spreads connections over them)
            with urllib.request.urlopen(request, timeout=5) as reply:
                assert reply.status == 200
    finally:
        server.terminate()
        server.wait(10)


def test_push_over_http_and_its_bad_bodies(tmp_path: Path) -> None:
    from tests.ingest.test_push import REPO as PUSH_REPO

    store = FeatureStore(
        write_repo(tmp_path / "push", PUSH_REPO), clock=lambda: datetime(2026, 6, 1, tzinfo=UTC)
    )
    store.apply()
    client = TestClient(create_app(store, enable_push=True))
    good = {
        "account_id": [1],
        "event_timestamp": ["2026-06-01T00:00:00Z"],
        "clicks_1h": [3],
        "spend": [1.5],
    }
    reply = client.post("/push", json={"push_source_name": "clicks", "df": good, "to": "both"})
    assert reply.json() == {"pushed": 1}
    online = client.post(
        "/get-online-features",
        json={"features": ["click_stats:clicks_1h"], "entities": {"account_id": [1]}},
    )
    assert online.json()["results"][1]["values"] == [3]
    bad_bodies = [
        ({**good, "account_id": [1, 2]}, "invalid_push"),  # ragged columns
        ({**good, "event_timestamp": ["garbage"]}, "invalid_entity_frame"),
        ({"account_id": [1]}, "invalid_push"),
        ({**good, "spend": [{"a": 1}]}, "invalid_push"),
    ]
    for df, code in bad_bodies:
        reply = client.post("/push", json={"push_source_name": "clicks", "df": df})
        assert (reply.status_code, reply.json()["error"]["code"]) == (400, code), df
    reply = client.post("/push", json={"push_source_name": "nope", "df": good})
    assert reply.status_code == 404


def test_metrics_report_freshness_per_view(client: TestClient) -> None:
    text = client.get("/metrics").text
    # The fixture materialized up to NOW on a clock frozen at NOW: zero seconds old.
    assert 'parity_feature_freshness_seconds{view="driver_stats"} 0.0' in text


def test_openapi_documents_the_endpoints(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    online = spec["paths"]["/get-online-features"]["post"]
    schema = online["requestBody"]["content"]["application/json"]["schema"]
    assert {"features", "feature_service", "entities", "full_feature_names"} <= set(
        schema["properties"]
    )
    assert "entities" in schema["required"]
    assert set(spec["paths"]) >= {"/get-online-features", "/push", "/health", "/metrics"}
    assert client.get("/docs").status_code == 200


def test_a_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is counted as it arrives
        yield b'{"features": ["driver_stats:trips"], "entities": {"driver_id": ['
        for _ in range(2_000):
            yield b"1, 2, 3, 4, "
        yield b"5]}"

    reply = client.post("/get-online-features", content=chunks())
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "body_too_large"


def test_an_unreachable_online_store_is_503(tmp_path: Path) -> None:
    extra = "online:\n  type: redis\n  connection_string: redis://127.0.0.1:1/0\n"
    store = FeatureStore(write_repo(tmp_path / "repo", DRIVER_REPO, extra=extra))
    store.apply()
    reply = TestClient(create_app(store)).post(
        "/get-online-features",
        json={"features": ["driver_stats:trips"], "entities": {"driver_id": [1]}},
    )
    assert reply.status_code == 503
    assert reply.json()["error"]["code"] == "online_store_unavailable"


def test_past_max_in_flight_requests_get_a_fast_503(store: FeatureStore) -> None:
    """Drive the guard over ASGI directly: one request is held inside the app, so the
    next one finds the server full."""
    release = asyncio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    metrics = ServerMetrics(lambda: {}, lambda: NOW)
    guard = Guard(slow_app, metrics=metrics, max_in_flight=1, max_body_bytes=100)

    async def call() -> list[Any]:
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/health", "headers": []}
        await guard(scope, receive, send)
        return sent

    async def scenario() -> tuple[list[Any], list[Any]]:
        held = asyncio.create_task(call())
        await asyncio.sleep(0.01)
        refused = await asyncio.wait_for(call(), timeout=1)
        release.set()
        return await held, refused

    held, refused = asyncio.run(scenario())
    assert held[0]["status"] == 200
    assert refused[0]["status"] == 503
    assert json.loads(refused[1]["body"])["error"]["code"] == "overloaded"
    assert guard.in_flight == 0


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
plausible = st.fixed_dictionaries(
    {},
    optional={
        "features": st.one_of(
            json_values,
            st.lists(st.sampled_from(["driver_stats:trips", "driver_stats:city", "x:y", ":"])),
        ),
        "feature_service": st.one_of(json_values, st.sampled_from(["driver_service", "nope"])),
        "entities": st.one_of(
            json_values,
            st.dictionaries(
                st.sampled_from(["driver_id", "rider"]),
                st.lists(st.one_of(st.integers(), st.text(max_size=3), json_values), max_size=3),
            ),
        ),
        "full_feature_names": json_values,
    },
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.one_of(plausible, json_values))
def test_no_request_body_makes_a_500(client: TestClient, body: object) -> None:
    reply = client.post("/get-online-features", json=body)
    assert reply.status_code < 500, reply.text
    if reply.status_code != 200:
        assert reply.json()["error"]["code"]


def test_the_body_feast_remote_online_store_sends_is_answered(client: TestClient) -> None:
    """The request body Feast 0.67's RemoteOnlineStore posted, recorded by
    benchmarks/online_feast_client.py (which also runs Feast's real client against this server),
    re-keyed to this repo's view."""
    body = {
        "entities": {"driver_id": [1, 2, 99]},
        "full_feature_names": False,
        "include_feature_view_version_metadata": False,
        "features": ["driver_stats:trips", "driver_stats:conv_rate"],
    }
    reply = client.post("/get-online-features", json=body)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["metadata"]["feature_names"] == ["driver_id", "trips", "conv_rate"]
    assert [r["values"] for r in data["results"]] == [[1, 2, 99], [3, 3, None], [0.5, 0.5, None]]
    assert data["results"][1]["statuses"] == ["PRESENT", "PRESENT", "NOT_FOUND"]
    # Feast's client parses event times with datetime.fromisoformat after replacing "Z".
    for stamp in data["results"][1]["event_timestamps"]:
        assert datetime.fromisoformat(stamp.replace("Z", "+00:00")).tzinfo is not None
    typo = client.post("/get-online-features", json={**body, "feature": ["driver_stats:trips"]})
    assert typo.status_code == 422 and "feature" in typo.json()["error"]["message"]


@pytest.mark.parametrize("field", ["full_feature_names", "include_feature_view_version_metadata"])
@pytest.mark.parametrize("value", ["yes", "true", 1, 0, "1", None, [True]], ids=repr)
def test_a_flag_that_is_not_a_json_boolean_is_refused_naming_it(
    client: TestClient, field: str, value: object
) -> None:
    """QA finding 9: `full_feature_names: "yes"` was coerced to true (pydantic's lax bools);
    /v1 of the model server refuses `return_features: "yes"` the same way."""
    body = {"features": ["driver_stats:trips"], "entities": {"driver_id": [1]}, field: value}
    reply = client.post("/get-online-features", json=body)
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_request" and field in error["message"]
    taken = client.post("/get-online-features", json={**body, field: True})
    assert taken.status_code == 200, taken.text


def test_full_feature_names_true_still_prefixes_the_view(client: TestClient) -> None:
    body = {"features": ["driver_stats:trips"], "entities": {"driver_id": [1]}}
    reply = client.post("/get-online-features", json={**body, "full_feature_names": True})
    assert reply.json()["metadata"]["feature_names"] == ["driver_id", "driver_stats__trips"]
