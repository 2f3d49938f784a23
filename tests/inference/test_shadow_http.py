"""Shadow traffic over real HTTP: a shadow that raises or sleeps leaves the champion's answers and
latency alone; shadow rows are paired with the champion's by request id in the Parquet log, reuse
the champion's features or read their own; several shadows, fractions; a full queue drops and
counts."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from parity import FeatureStore
from parity.inference.app import create_model_app, prediction_logger
from parity.inference.routing import Routes, Shadow
from tests.inference.rollout_helpers import (
    CANDIDATE,
    CHAMPION,
    GATE,
    GATED,
    OTHER_SERVICE,
    RAISING,
    SLEEPY,
    expected_trips,
    logged_rows,
    rollout_store,
    trips_routes,
)
from tests.inference.serving_helpers import running

DRIVERS = [1, 2, 5, 8, 13, 21, 34, 55]


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return rollout_store(tmp_path)


def body_for(driver: int) -> dict[str, Any]:
    return {"entities": {"driver_id": [driver], "bonus": [0.25]}, "id": f"req-{driver}"}


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


def wait_for_shadows(url: str, expected: float, timeout: float = 20.0) -> str:
    """Polls /metrics until `expected` shadow predictions finished (any status); its text."""
    deadline = time.monotonic() + timeout
    while True:
        text = httpx.get(f"http://{url}/metrics").text
        if metric(text, "parity_shadow_requests_total") >= expected:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"shadows did not finish: {text}")
        time.sleep(0.05)


def serve(store: FeatureStore, routes: Routes | None, **options: Any) -> tuple[list[Any], str]:
    """Each driver's answer (status, body, seconds, route header) and the /metrics text after
    every shadow finished."""
    reader = None if routes is None else (lambda: {"trips": routes})
    app = create_model_app(
        store, prediction_log=prediction_logger(store), routes=reader or (lambda: {}), **options
    )
    shadows = 0 if routes is None else len(routes.shadows) * len(DRIVERS)
    answers = []
    with running(app) as url:
        for driver in DRIVERS:
            started = time.perf_counter()
            reply = httpx.post(f"http://{url}/v1/models/trips/predict", json=body_for(driver))
            seconds = time.perf_counter() - started
            answers.append((reply.status_code, reply.json(), seconds, reply.headers))
        text = wait_for_shadows(url, shadows)
    return answers, text


def without_route(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "route"}


@pytest.mark.parametrize("shadow", [RAISING, SLEEPY], ids=["raises", "sleeps_1s"])
def test_a_failing_or_slow_shadow_leaves_the_champion_answers_and_latency_alone(
    tmp_path: Path, shadow: int
) -> None:
    plain, _ = serve(rollout_store(tmp_path / "plain"), None)
    store = rollout_store(tmp_path / "shadowed")
    routes = trips_routes(0.0, shadows=(Shadow(shadow),))
    shadowed, text = serve(store, routes, shadow_timeout_s=0.3)
    for (status, body, _, _), (s_status, s_body, seconds, headers) in zip(
        plain, shadowed, strict=True
    ):
        assert (s_status, status) == (200, 200)
        assert without_route(s_body) == without_route(body)  # identical answers
        assert s_body["route"] == "champion" and headers["x-parity-route"] == "champion"
        assert seconds < 0.9, seconds  # never waited for the 1 s shadow (a correctness bound)
    for driver, (_, body, _, _) in zip(DRIVERS, shadowed, strict=True):
        assert body["predictions"] == [expected_trips(driver, 0.25, 10)]
    status = "error" if shadow == RAISING else "timeout"
    assert metric(text, "parity_shadow_requests_total", version=str(shadow), status=status) == len(
        DRIVERS
    )
    rows = logged_rows(store)
    champion = [r for r in rows if r["role"] == "champion"]
    shadows = [r for r in rows if r["role"] == "shadow"]
    assert [r["request_id"] for r in champion] == [f"req-{d}" for d in sorted(DRIVERS, key=str)]
    assert sorted(r["request_id"] for r in shadows) == sorted(r["request_id"] for r in champion)
    assert {(r["version"], r["status"], r["prediction"]) for r in shadows} == {
        (shadow, status, "null")
    }


def test_shadow_rows_pair_with_the_champion_by_request_id_and_reuse_its_features(
    store: FeatureStore,
) -> None:
    routes = trips_routes(0.0, shadows=(Shadow(CANDIDATE), Shadow(OTHER_SERVICE)))
    answers, text = serve(store, routes)
    assert all(a[0] == 200 and a[1]["model_version"] == CHAMPION for a in answers)
    assert metric(text, "parity_shadow_requests_total", status="ok") == 2 * len(DRIVERS)
    rows = logged_rows(store)
    by_request: dict[str, dict[int, dict[str, Any]]] = {}
    for row in rows:
        by_request.setdefault(row["request_id"], {})[row["version"]] = row
    assert sorted(by_request) == sorted(f"req-{d}" for d in DRIVERS)
    for driver in DRIVERS:
        pair = by_request[f"req-{driver}"]
        champion, same, other = pair[CHAMPION], pair[CANDIDATE], pair[OTHER_SERVICE]
        assert (champion["role"], same["role"], other["role"]) == ("champion", "shadow", "shadow")
        assert json.loads(champion["prediction"]) == expected_trips(driver, 0.25, 10)
        assert json.loads(same["prediction"]) == expected_trips(driver, 0.25, 100)
        assert same["features"] == champion["features"]  # the champion's values, reused
        assert json.loads(same["entities"]) == {"driver_id": driver, "bonus": 0.25}
        # v5 reads rate_service itself: conv_rate 0.5 for known drivers (1-3), else unknown
        rate = 0.5 if driver <= 3 else None
        assert json.loads(other["features"]) == {"conv_rate": rate}
        if rate is not None:
            assert json.loads(other["prediction"]) == rate * 1000 + 0.25
        assert {r["status"] for r in pair.values()} == {"ok"}
        assert same["latency_ms"] > 0 and other["latency_ms"] > 0


def test_a_fraction_of_requests_is_mirrored_by_routing_key(store: FeatureStore) -> None:
    routes = trips_routes(0.0, shadows=(Shadow(CANDIDATE, fraction=0.5),))
    app = create_model_app(store, prediction_log=prediction_logger(store), routes=lambda: {
        "trips": routes})  # fmt: skip
    drivers = range(1, 201)
    from parity.inference.routing import mirrored

    chosen = [d for d in drivers if mirrored(routes, routes.shadows[0], str(d), "")]
    with running(app) as url:
        for driver in drivers:
            httpx.post(f"http://{url}/v1/models/trips/predict", json=body_for(driver))
        wait_for_shadows(url, len(chosen))
    shadowed = sorted(int(r["request_id"][4:]) for r in logged_rows(store) if r["role"] == "shadow")
    assert shadowed == chosen
    assert 60 < len(chosen) < 140


async def _post_all(url: str, bodies: list[dict[str, Any]]) -> list[int]:
    async with httpx.AsyncClient() as client:
        replies = await asyncio.gather(
            *(client.post(f"http://{url}/v1/models/trips/predict", json=b) for b in bodies)
        )
    return [r.status_code for r in replies]


def test_a_full_shadow_queue_drops_copies_and_counts_them(store: FeatureStore) -> None:
    routes = trips_routes(0.0, shadows=(Shadow(GATED),))
    app = create_model_app(
        store,
        prediction_log=prediction_logger(store),
        routes=lambda: {"trips": routes},
        shadow_queue_size=1,
        shadow_timeout_s=120.0,  # none may time out (and free its worker) while the gate is shut
        shadow_executor="inline",  # GATE is an Event of this process
    )
    requests = 40
    GATE.clear()  # every shadow prediction blocks until the gate opens
    try:
        with running(app) as url:
            statuses = asyncio.run(_post_all(url, [body_for(n) for n in range(requests)]))
            text = httpx.get(f"http://{url}/metrics").text
            dropped = metric(text, "parity_shadow_dropped_total", model="trips", version="6")
            GATE.set()
            done = wait_for_shadows(url, requests - dropped)
    finally:
        GATE.set()
    assert statuses == [200] * requests  # the champion answered every one
    # at most 8 workers + 1 queued copy were taken while the gate was shut
    assert requests - 9 <= dropped < requests
    assert metric(done, "parity_shadow_requests_total", status="ok") == requests - dropped
    shadows = [r for r in logged_rows(store) if r["role"] == "shadow"]
    assert len(shadows) == requests - dropped  # a dropped copy leaves no row


def test_a_rollout_started_through_the_control_plane_is_served_from_its_routes(
    store: FeatureStore,
) -> None:
    """No fake provider: the app reads store.rollouts.routes, as `parity serve-models` does."""
    state = store.rollouts.start(model="trips", candidate=CANDIDATE, actor="test")
    assert state.in_shadow
    answers, text = [], ""
    app = create_model_app(store, prediction_log=prediction_logger(store))
    with running(app) as url:
        for driver in DRIVERS:
            reply = httpx.post(f"http://{url}/v1/models/trips/predict", json=body_for(driver))
            answers.append(reply)
        text = wait_for_shadows(url, len(DRIVERS))
        store.rollouts.abort("trips", reason="test over", actor="test")
        deadline = time.monotonic() + 10  # routes are re-read in the background at each request
        while True:  # here (alias_refresh_seconds: 0): a request or two later, none route
            late = {**body_for(1), "id": "after-abort"}  # mirrored until the routes are re-read
            after = httpx.post(f"http://{url}/v1/models/trips/predict", json=late)
            if after.json()["route"] is None or time.monotonic() > deadline:
                break
            time.sleep(0.02)
    assert {(r.json()["model_version"], r.json()["route"]) for r in answers} == {
        (CHAMPION, "champion")
    }
    assert metric(text, "parity_shadow_requests_total", version="2", status="ok") == len(DRIVERS)
    assert after.json()["route"] is None and "x-parity-route" not in after.headers
    shadows = [r for r in logged_rows(store) if r["role"] == "shadow"]
    before_abort = [r["request_id"] for r in shadows if r["request_id"].startswith("req-")]
    assert sorted(before_abort) == sorted(f"req-{d}" for d in DRIVERS)
    assert {r["version"] for r in shadows} == {CANDIDATE}
