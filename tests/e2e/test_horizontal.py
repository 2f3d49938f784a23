"""Horizontal serving: two `parity serve` and two `parity serve-models` processes share one project
(registry on PostgreSQL, online store on Redis) and see applies, materializations, alias moves and
rollouts within their refresh intervals; one process killed, the other keeps answering."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pandas as pd
import pyarrow as pa
import pytest

from parity import FeatureStore, Phase
from parity.inference.routing import BUCKETS, bucket
from tests.conftest import DRIVER_REPO, write_parquet, write_repo
from tests.inference.serving_helpers import TripsModel, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

REFRESH = 1.0  # registry cache_ttl_seconds and models alias_refresh_seconds of the repo below
# What a propagation may take beyond its interval: the poll period (50 ms), one request and the
# registry query on a 2-core machine shared with other test runs (seconds at worst under load).
SLACK = 2.0
DRIVERS = [1, 2, 3, 4, 5]
SCALES = {1: 10.0, 2: 100.0, 3: 1000.0}  # model version -> TripsModel's scale
EXTRA_VIEW = """
from datetime import timedelta
from entities import driver
from parity import FeatureView, Field, FileSource, Float64

driver_extra = FeatureView(
    name="driver_extra",
    entities=[driver],
    schema=[Field(name="rating", dtype=Float64)],
    source=FileSource(path="data/driver_extra.parquet"),
    ttl=timedelta(days=1),
)
"""


@dataclass
class Fleet:
    store: FeatureStore
    features: list[str]  # base URLs of the two feature servers
    models: list[str]  # base URLs of the two model servers
    processes: dict[str, subprocess.Popen[bytes]]
    now: datetime  # event times of the data are shortly before this
    delays: dict[str, list[float]] = field(default_factory=dict)


def _stats(now: datetime, trips_per_driver: int) -> dict[str, Any]:
    return {
        "driver_id": pa.array(DRIVERS, pa.int64()),
        "event_timestamp": pa.array(
            [now - timedelta(minutes=30)] * len(DRIVERS), pa.timestamp("us", tz="UTC")
        ),
        "conv_rate": pa.array([d / 10 for d in DRIVERS], pa.float64()),
        "trips": pa.array([d * trips_per_driver for d in DRIVERS], pa.int64()),
        "city": pa.array(["x"] * len(DRIVERS), pa.string()),
    }


def _repo(root: Path, postgres_url: str, redis_url: str, project: str, now: datetime) -> Path:
    settings = (
        f"registry: {{type: postgres, url: '{postgres_url}', cache_ttl_seconds: {REFRESH}}}\n"
        f"online: {{type: redis, connection_string: '{redis_url}'}}\n"
        f"models: {{trusted: true, serving: {{alias_refresh_seconds: {REFRESH}}}}}\n"
    )
    path = write_repo(root, DRIVER_REPO, project=project, extra=settings)
    write_parquet(path / "data" / "driver_stats.parquet", _stats(now, 1))
    return path


def _register_models(store: FeatureStore) -> None:
    sample = pd.DataFrame({"trips": [1.0, 2.0], "bonus": [0.0, 1.0]})
    for version, scale in SCALES.items():
        store.models.register_model(
            "ranker",
            TripsModel(scale),
            flavor="pyfunc",
            feature_service="driver_service",
            sample_input=sample,
            alias="champion" if version == 1 else None,
        )


def _start(kind: str, repo: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    flags = ["--no-rollout-controller"] if kind == "serve-models" else []
    command = [sys.executable, "-m", "parity.cli.main", kind, "--repo", str(repo)]
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [*command, "--port", str(port), *flags], stderr=stderr, stdout=subprocess.DEVNULL
        )
    return process, f"http://127.0.0.1:{port}"


def _ready(url: str) -> bool:
    try:
        for path in ("/health", "/v2/health/ready"):
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return True
    except httpx.HTTPError:
        pass
    return False


def wait_for(condition: Callable[[], bool], seconds: float = 60, period: float = 0.05) -> float:
    """Seconds until `condition` held, polling every `period`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "the condition never held"
        time.sleep(period)
    return time.monotonic() - started


def _cleanup(store: FeatureStore, postgres_url: str, redis_url: str) -> None:
    """Leave the shared PostgreSQL and Redis as they were: this project's rows and keys only."""
    import redis
    import sqlalchemy as sa

    from parity.registry.sql import normalize_url

    engine = sa.create_engine(normalize_url(postgres_url))
    try:
        tables = sa.MetaData()
        tables.reflect(engine)
        with engine.begin() as conn:
            for table in tables.sorted_tables[::-1]:  # children before the tables they reference
                if "project" in table.c:
                    conn.execute(table.delete().where(table.c.project == store.project))
    finally:
        engine.dispose()
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"parity:v1:{store.project}:*", count=1000):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str
) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("horizontal")
    now = datetime.now(UTC).replace(microsecond=0)
    project = f"t_{uuid.uuid4().hex[:12]}"
    print(f"horizontal serving project: {project}")
    store = FeatureStore(_repo(root / "repo", postgres_url, redis_url, project, now))
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        store.apply()
        store.materialize(now - timedelta(days=1), now)
        _register_models(store)
        urls: dict[str, list[str]] = {"serve": [], "serve-models": []}
        for kind, n in [(k, n) for k in urls for n in (1, 2)]:
            process, url = _start(kind, store.repo_path, root / f"{kind}-{n}.log")
            processes[url] = process
            urls[kind].append(url)
        for url, process in processes.items():
            wait_for(lambda u=url, p=process: _ready(u) or p.poll() is not None)  # type: ignore[misc]
            assert process.poll() is None, f"{url} exited; see its log under {root}"
        yield Fleet(store, urls["serve"], urls["serve-models"], processes, now)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        _cleanup(store, postgres_url, redis_url)
        store.close()


def _features(url: str, refs: list[str], drivers: list[int]) -> httpx.Response:
    body = {"features": refs, "entities": {"driver_id": drivers}}
    return httpx.post(f"{url}/get-online-features", json=body, timeout=10)


def _values(url: str, refs: list[str], drivers: list[int]) -> list[list[Any]]:
    reply = _features(url, refs, drivers)
    assert reply.status_code == 200, reply.text
    return [result["values"] for result in reply.json()["results"][1:]]


def _predict(url: str, driver: int) -> dict[str, Any]:
    body = {"entities": {"driver_id": [driver], "bonus": [0.5]}}
    reply = httpx.post(f"{url}/v1/models/ranker/predict", json=body, timeout=10)
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


def _trips(fleet: Fleet, driver: int) -> int:
    """Driver's trips as the test process reads them (the store API, not the servers)."""
    found = fleet.store.get_online_features(["driver_stats:trips"], {"driver_id": [driver]})
    return int(found.to_dict()["trips"][0])


def _champion(fleet: Fleet) -> int:
    return fleet.store.models.aliases("ranker")["champion"]


def _record(fleet: Fleet, what: str, seconds: float) -> None:
    fleet.delays.setdefault(what, []).append(seconds)
    print(f"propagation {what}: {seconds:.3f} s (interval {REFRESH} s)")


def test_both_feature_servers_answer_the_same_values(fleet: Fleet) -> None:
    refs = ["driver_stats:trips", "driver_stats:conv_rate"]
    drivers = [*DRIVERS, 99]
    by_hand = [[1, 2, 3, 4, 5, None], [0.1, 0.2, 0.3, 0.4, 0.5, None]]
    answers = [_values(url, refs, drivers) for url in fleet.features]
    assert answers == [by_hand, by_hand]


def test_an_apply_adding_a_feature_is_served_by_both_within_the_refresh_interval(
    fleet: Fleet,
) -> None:
    repo = fleet.store.repo_path
    ratings = {
        "driver_id": pa.array(DRIVERS, pa.int64()),
        "event_timestamp": pa.array(
            [fleet.now - timedelta(minutes=20)] * len(DRIVERS), pa.timestamp("us", tz="UTC")
        ),
        "rating": pa.array([4.0 + d / 10 for d in DRIVERS], pa.float64()),
    }
    write_parquet(repo / "data" / "driver_extra.parquet", ratings)
    (repo / "extra.py").write_text(EXTRA_VIEW)
    refs = ["driver_extra:rating"]
    before = [_features(url, refs, [1]).status_code for url in fleet.features]
    assert before == [404, 404]  # neither server knows the view yet
    fleet.store.apply()
    applied = time.monotonic()
    for url in fleet.features:
        wait_for(lambda u=url: _features(u, refs, [1]).status_code == 200, 30)  # type: ignore[misc]
        _record(fleet, "apply -> feature server", time.monotonic() - applied)
    assert max(fleet.delays["apply -> feature server"]) <= REFRESH + SLACK
    fleet.store.materialize(fleet.now - timedelta(days=1), fleet.now, ["driver_extra"])
    by_hand = [[4.1, 4.2, 4.3, 4.4, 4.5]]
    assert [_values(url, refs, DRIVERS) for url in fleet.features] == [by_hand, by_hand]


def test_a_materialization_written_once_is_seen_by_both_at_once(fleet: Fleet) -> None:
    later = fleet.now + timedelta(seconds=1)
    newer = {
        **_stats(later, 7),
        "event_timestamp": pa.array([later] * 5, pa.timestamp("us", "UTC")),
    }
    write_parquet(fleet.store.repo_path / "data" / "driver_stats.parquet", newer)
    fleet.store.materialize(fleet.now - timedelta(days=1), later, ["driver_stats"])
    # no server caches values: the first read after the write already sees it, on both
    trips = [_values(url, ["driver_stats:trips"], DRIVERS) for url in fleet.features]
    assert trips == [[[7, 14, 21, 28, 35]]] * 2


def test_moving_the_champion_alias_reaches_both_model_servers_within_alias_refresh(
    fleet: Fleet,
) -> None:
    trips, before = _trips(fleet, 1), _champion(fleet)
    for url in fleet.models:
        answer = _predict(url, 1)
        expected = [trips * SCALES[before] + 0.5]
        assert (answer["model_version"], answer["predictions"]) == (before, expected)
    after = 2 if before == 1 else 1
    fleet.store.models.set_alias("ranker", "champion", after, reason="horizontal test")
    moved = time.monotonic()
    for url in fleet.models:
        wait_for(lambda u=url: _predict(u, 1)["model_version"] == after, 30)  # type: ignore[misc]
        _record(fleet, "alias -> model server", time.monotonic() - moved)
    assert max(fleet.delays["alias -> model server"]) <= REFRESH + SLACK
    answers = [_predict(url, 1)["predictions"] for url in fleet.models]
    assert answers == [[trips * SCALES[after] + 0.5]] * 2


def test_a_rollout_routes_each_key_to_the_same_arm_on_both_model_servers(fleet: Fleet) -> None:
    weight = 50.0
    state = fleet.store.rollouts.start(
        model="ranker",
        candidate=3,
        shadow=None,
        steps=[Phase(weight=weight, duration=timedelta(hours=1))],
        actor="horizontal test",
    )
    try:
        keys = list(range(1, 41))
        canary = {k for k in keys if bucket(state.id, str(k)) < weight / 100 * BUCKETS}
        assert 0 < len(canary) < len(keys)  # both arms are exercised
        first = min(canary)
        started = time.monotonic()
        for url in fleet.models:  # each server routes once it has read the routes
            wait_for(lambda u=url: _predict(u, first)["route"] == "canary", 30)  # type: ignore[misc]
            _record(fleet, "rollout -> model server", time.monotonic() - started)
        assert max(fleet.delays["rollout -> model server"]) <= REFRESH + SLACK
        arms = [{k: _predict(url, k)["model_version"] for k in keys} for url in fleet.models]
        by_hand = {k: 3 if k in canary else state.champion for k in keys}
        assert arms == [by_hand, by_hand]
    finally:
        fleet.store.rollouts.abort("ranker", reason="horizontal test done")


@dataclass
class Hammer:
    """Requests in a loop on its own thread until stopped; counts answers and failures."""

    call: Callable[[], bool]
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                if self.call():
                    self.ok += 1
                else:
                    self.failed.append("bad answer")
            except httpx.HTTPError as error:
                self.failed.append(repr(error))


def _kill_one_and_hammer_the_other(
    fleet: Fleet, urls: list[str], call: Callable[[str], bool]
) -> Hammer:
    victim, survivor = urls
    hammer = Hammer(lambda: call(survivor))
    thread = threading.Thread(target=hammer.run, daemon=True)
    thread.start()
    time.sleep(1.0)
    before = hammer.ok
    os.kill(fleet.processes[victim].pid, signal.SIGKILL)
    fleet.processes[victim].wait(10)
    time.sleep(2.0)
    hammer.stop.set()
    thread.join(15)
    assert hammer.ok > before  # the survivor answered after the kill
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{victim}/health", timeout=2)
    return hammer


def test_sigkill_one_feature_server_and_the_other_keeps_answering(fleet: Fleet) -> None:
    trips = _trips(fleet, 1)

    def call(url: str) -> bool:
        reply = _features(url, ["driver_stats:trips"], [1])
        return reply.status_code == 200 and reply.json()["results"][1]["values"] == [trips]

    hammer = _kill_one_and_hammer_the_other(fleet, fleet.features, call)
    assert hammer.failed == [], hammer.failed[:3]


def test_sigkill_one_model_server_and_the_other_keeps_answering(fleet: Fleet) -> None:
    expected = [_trips(fleet, 1) * SCALES[_champion(fleet)] + 0.5]

    def call(url: str) -> bool:
        body = {"entities": {"driver_id": [1], "bonus": [0.5]}}
        reply = httpx.post(f"{url}/v1/models/ranker/predict", json=body, timeout=10)
        return reply.status_code == 200 and reply.json()["predictions"] == expected

    hammer = _kill_one_and_hammer_the_other(fleet, fleet.models, call)
    assert hammer.failed == [], hammer.failed[:3]
