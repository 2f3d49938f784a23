"""The out-of-process shadow executor over real HTTP: shadows predicted, timed and logged by a child
process (its own Parquet files, named with its pid), a raising or sleeping shadow never reaching
the champion's answers, the child SIGKILLed mid-traffic and restarted, a full queue counted, and
no child left after shutdown."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import yaml

from parity import FeatureStore
from parity.errors import ConfigError
from parity.inference.app import create_model_app, prediction_logger
from parity.inference.routing import Shadow
from parity.inference.shadow_process import ShadowProcess, ShadowTask, lower_priority_of
from parity.inference.shadow_worker import take
from parity.repo.config import ServingConfig
from tests.inference.rollout_helpers import (
    CANDIDATE,
    CHAMPION,
    GATED,
    RAISING,
    SLEEPY,
    expected_trips,
    logged_rows,
    rollout_store,
    trips_routes,
)
from tests.inference.serving_helpers import running
from tests.inference.test_shadow_http import body_for, metric, wait_for_shadows

DRIVERS = [1, 2, 3, 5, 8]


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return rollout_store(tmp_path)


def shadow_process_of(app: Any) -> ShadowProcess:
    found = app.app.server.shadow_process
    assert isinstance(found, ShadowProcess), "the app runs shadows inline"
    return found


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def log_files_by_pid(store: FeatureStore) -> dict[int, int]:
    """Parquet log files per writer pid (the file name's `-<pid>-<seq>.parquet`)."""
    found: dict[int, int] = {}
    for path in (store.repo_path / "data" / "predictions").rglob("*.parquet"):
        pid = int(path.stem.split("-")[-2])
        found[pid] = found.get(pid, 0) + 1
    return found


def test_shadows_run_in_a_child_that_writes_its_own_log_rows_paired_by_request_id(
    store: FeatureStore,
) -> None:
    routes = trips_routes(0.0, shadows=(Shadow(CANDIDATE),))
    app = create_model_app(
        store, prediction_log=prediction_logger(store), routes=lambda: {"trips": routes}
    )
    with running(app) as url:
        child = shadow_process_of(app)
        replies = [
            httpx.post(f"http://{url}/v1/models/trips/predict", json=body_for(d)) for d in DRIVERS
        ]
        text = wait_for_shadows(url, len(DRIVERS))
        pid = child.pid
    assert pid is not None and pid != os.getpid()
    assert [r.json()["predictions"] for r in replies] == [
        [expected_trips(d, 0.25, 10)] for d in DRIVERS
    ]
    assert metric(text, "parity_shadow_requests_total", version="2", status="ok") == len(DRIVERS)
    writers = log_files_by_pid(store)
    assert set(writers) == {os.getpid(), pid}  # the server's rows and the child's, apart
    rows = logged_rows(store)
    shadows = {r["request_id"]: r for r in rows if r["role"] == "shadow"}
    champions = {r["request_id"]: r for r in rows if r["role"] == "champion"}
    assert sorted(shadows) == sorted(champions) == sorted(f"req-{d}" for d in DRIVERS)
    for driver in DRIVERS:
        shadow, champion = shadows[f"req-{driver}"], champions[f"req-{driver}"]
        assert (shadow["version"], shadow["status"]) == (CANDIDATE, "ok")
        assert json.loads(shadow["prediction"]) == expected_trips(driver, 0.25, 100)
        assert shadow["features"] == champion["features"]  # the champion's values, reused
        assert json.loads(shadow["entities"]) == {"driver_id": driver, "bonus": 0.25}
        assert shadow["latency_ms"] > 0


@pytest.mark.parametrize("shadow", [RAISING, SLEEPY], ids=["raises", "sleeps_1s"])
def test_a_raising_or_sleeping_shadow_in_the_child_leaves_the_champion_alone(
    tmp_path: Path, shadow: int
) -> None:
    store = rollout_store(tmp_path)
    routes = trips_routes(0.0, shadows=(Shadow(shadow),))
    app = create_model_app(
        store,
        prediction_log=prediction_logger(store),
        routes=lambda: {"trips": routes},
        shadow_timeout_s=0.3,
        shadow_executor="process",
    )
    timings = []
    with running(app) as url:
        shadow_process_of(app)
        replies = []
        for driver in DRIVERS * 2:
            started = time.perf_counter()
            body = {**body_for(driver), "id": f"req-{len(replies)}"}
            replies.append(httpx.post(f"http://{url}/v1/models/trips/predict", json=body))
            timings.append(time.perf_counter() - started)
        text = wait_for_shadows(url, len(replies))
    assert [(r.status_code, r.json()["predictions"]) for r in replies] == [
        (200, [expected_trips(d, 0.25, 10)]) for d in DRIVERS * 2
    ]
    assert max(timings) < 0.5, timings  # never waited for a 1 s shadow (a correctness bound)
    status = "error" if shadow == RAISING else "timeout"
    counted = metric(text, "parity_shadow_requests_total", version=str(shadow), status=status)
    assert counted == len(replies)
    shadows = [r for r in logged_rows(store) if r["role"] == "shadow"]
    assert sorted(r["request_id"] for r in shadows) == sorted(f"req-{n}" for n in range(10))
    assert {(r["version"], r["status"], r["prediction"]) for r in shadows} == {
        (shadow, status, "null")
    }


def test_a_child_killed_mid_traffic_is_restarted_and_the_champion_never_notices(
    store: FeatureStore,
) -> None:
    routes = trips_routes(0.0, shadows=(Shadow(CANDIDATE),))
    app = create_model_app(
        store, prediction_log=prediction_logger(store), routes=lambda: {"trips": routes}
    )
    replies: list[httpx.Response] = []
    stop = threading.Event()

    def traffic(url: str) -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                driver = DRIVERS[len(replies) % len(DRIVERS)]
                body = {**body_for(driver), "id": f"req-{len(replies)}"}
                replies.append(client.post(f"http://{url}/v1/models/trips/predict", json=body))

    with running(app) as url:
        child = shadow_process_of(app)
        sender = threading.Thread(target=traffic, args=(url,))
        sender.start()
        try:
            wait_until(lambda: child.done >= 20)  # the first child is up and predicting
            first = child.pid
            assert first is not None
            os.kill(first, signal.SIGKILL)
            wait_until(lambda: child.restarts == 1)
            done = child.done
            wait_until(lambda: child.done >= done + 20)  # the new child predicts the traffic
        finally:
            stop.set()
            sender.join(30)
        assert child.drain(30)
        second = child.pid
        text = httpx.get(f"http://{url}/metrics").text
    assert second is not None and second != first and not alive(first)
    assert all(r.status_code == 200 for r in replies)
    expected = [[expected_trips(DRIVERS[n % len(DRIVERS)], 0.25, 10)] for n in range(len(replies))]
    assert [r.json()["predictions"] for r in replies] == expected
    ok = metric(text, "parity_shadow_requests_total", version="2", status="ok")
    # every mirrored request is either predicted (ok) or lost with the killed child
    assert ok + child.lost == child.submitted == len(replies)
    assert child.lost < child.size  # only what the dead child held
    lost = re.search(r"^parity_shadow_lost_total (\S+)$", text, re.MULTILINE)
    assert lost is not None and float(lost.group(1)) == child.lost
    shadow_ids = {r["request_id"] for r in logged_rows(store) if r["role"] == "shadow"}
    # rows the killed child had fsynced are recovered: at least every counted one is there
    assert len(shadow_ids) >= ok
    assert shadow_ids <= {f"req-{n}" for n in range(len(replies))}


def test_a_child_stuck_in_a_model_call_is_killed_and_restarted(store: FeatureStore) -> None:
    """GatedModel waits 10 s for an event the child never sees: a call that does not return
    within the child's `stuck_s` (here 2 s) gets the child killed and replaced."""
    routes = trips_routes(0.0, shadows=(Shadow(GATED),))
    app = create_model_app(
        store, prediction_log=prediction_logger(store), routes=lambda: {"trips": routes}
    )
    with running(app) as url:
        child = shadow_process_of(app)
        child.settings = dataclasses.replace(child.settings, stuck_s=2.0)
        replies = [
            httpx.post(f"http://{url}/v1/models/trips/predict", json={**body_for(1), "id": f"r{n}"})
            for n in range(5)
        ]
        first = child.pid
        wait_until(lambda: child.restarts >= 1, timeout=60)
        text = httpx.get(f"http://{url}/metrics").text
    assert [r.status_code for r in replies] == [200] * 5
    assert first is not None and not alive(first)
    assert child.lost == 5 and child.done == 0  # every task was held by the stuck child
    assert re.search(r"^parity_shadow_lost_total 5\.0$", text, re.MULTILINE)


def test_a_full_queue_drops_and_counts_mirrored_requests(store: FeatureStore) -> None:
    routes = trips_routes(0.0, shadows=(Shadow(SLEEPY),))
    app = create_model_app(
        store,
        prediction_log=prediction_logger(store),
        routes=lambda: {"trips": routes},
        shadow_queue_size=2,
        shadow_timeout_s=5.0,
    )
    requests = 30
    with running(app) as url:
        child = shadow_process_of(app)
        replies = [
            httpx.post(f"http://{url}/v1/models/trips/predict", json={**body_for(1), "id": f"r{n}"})
            for n in range(requests)
        ]
        dropped = metric(httpx.get(f"http://{url}/metrics").text, "parity_shadow_dropped_total")
        assert child.drain(60)
        text = httpx.get(f"http://{url}/metrics").text
    assert [r.status_code for r in replies] == [200] * requests
    # the child sleeps 1 s per model call: most copies found the 2-slot queue full
    assert dropped >= requests // 2
    assert dropped == child.dropped
    ran = metric(text, "parity_shadow_requests_total", version=str(SLEEPY), status="ok")
    assert ran + dropped == requests
    shadows = [r for r in logged_rows(store) if r["role"] == "shadow"]
    assert len(shadows) == ran  # a dropped copy leaves no row


def test_shutdown_leaves_no_child_process(store: FeatureStore) -> None:
    routes = trips_routes(0.0, shadows=(Shadow(CANDIDATE),))
    app = create_model_app(store, routes=lambda: {"trips": routes})  # and no prediction log
    with running(app) as url:
        child = shadow_process_of(app)
        wait_until(lambda: child.pid is not None)  # started at start-up: the routes mirror
        pid = child.pid
        assert pid is not None and alive(pid)
        wait_until(lambda: os.sched_getscheduler(pid) == os.SCHED_IDLE)  # lowered by itself
        httpx.post(f"http://{url}/v1/models/trips/predict", json=body_for(1))
        wait_for_shadows(url, 1)
    assert not alive(pid)
    assert child.pid is None


def test_the_parent_lowers_a_new_child_before_it_runs_any_of_its_own_code() -> None:
    """A spawned interpreter's imports take a second of CPU; they must not compete with live
    requests, so the parent moves the child to the idle class as soon as it has a pid."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert os.sched_getscheduler(child.pid) != os.SCHED_IDLE
        lower_priority_of(child.pid, 10)
        assert os.sched_getscheduler(child.pid) == os.SCHED_IDLE  # at once, no waiting
        lower_priority_of(None, 10)  # no pid yet: nothing to do, no error
    finally:
        child.kill()
        child.wait()
    lower_priority_of(child.pid, 10)  # already gone: best effort, no error


def test_without_mirroring_routes_no_child_starts(store: FeatureStore) -> None:
    app = create_model_app(store, routes=lambda: {"trips": trips_routes(0.0)})
    with running(app) as url:
        reply = httpx.post(f"http://{url}/v1/models/trips/predict", json=body_for(1))
        assert reply.json()["model_version"] == CHAMPION
        assert shadow_process_of(app).pid is None


def test_the_executor_is_refused_unless_process_or_inline(store: FeatureStore) -> None:
    with pytest.raises(ValueError, match="shadow_executor must be 'process' or 'inline'"):
        create_model_app(store, shadow_executor="thread")
    app = create_model_app(store, shadow_executor="inline")
    assert app.app.server.shadow_process is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["thread", "", 1, None])
def test_the_config_refuses_an_unknown_shadow_executor(value: Any) -> None:
    assert ServingConfig().shadow_executor == "process"
    with pytest.raises((ValueError, ConfigError)):
        ServingConfig.model_validate({"shadow_executor": value})


def test_parity_yaml_inline_keeps_shadows_in_the_serving_process(tmp_path: Path) -> None:
    store = rollout_store(tmp_path)
    config = yaml.safe_load((store.repo_path / "parity.yaml").read_text())
    config["models"]["serving"]["shadow_executor"] = "inline"
    (store.repo_path / "parity.yaml").write_text(yaml.safe_dump(config))
    app = create_model_app(FeatureStore(store.repo_path))
    assert app.app.server.shadow_process is None  # type: ignore[attr-defined]


def test_take_returns_a_batch_and_stops_at_the_sentinel() -> None:
    import queue
    from datetime import UTC, datetime

    jobs: Any = queue.Queue()  # the same get/put interface as the multiprocessing queue
    at = datetime(2026, 1, 1, tzinfo=UTC)
    tasks = [ShadowTask("m", 1, f"r{n}", at, None) for n in range(5)]
    jobs.put(tasks[:2])  # the server sends lists of tasks
    jobs.put(tasks[2:3])
    jobs.put(None)
    jobs.put(tasks[3:4])
    assert take(jobs, 10, 1.0) == tasks[:3]  # up to the sentinel, put back behind the rest
    assert take(jobs, 10, 1.0) == [tasks[3]]
    assert take(jobs, 10, 1.0) is None  # then the sentinel itself
    assert take(jobs, 10, 0.01) == []
