"""The Redis serving read's own connection per read thread (issue 19) after Redis restarts: the
first read on a connection Redis closed must answer (as redis-py's pool, which reconnects a
closed connection before use, always did), not fail and count against the circuit breaker.
A redis-server of the test's own; the shared Redis on 6379 is never touched."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from parity import FeatureStore
from parity.online.breaker import CircuitBreaker
from parity.online.encoding import OnlineRow, entity_key
from parity.online.redis_store import RedisOnlineStore
from parity.serving.app import create_app
from tests.conftest import DRIVER_REPO, write_repo
from tests.private_redis import private_redis_server, wait_for_pong

PORTS = range(6410, 6414)  # this suite's private redis-servers
NOW_US = 1_767_268_800_000_000
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


@pytest.fixture
def restartable() -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A private redis-server; the test may kill it and start another on the same port (added
    to the list, stopped at the end)."""
    with private_redis_server(PORTS) as (port, process):
        started = [process]
        yield port, started
        for later in started[1:]:
            if later.poll() is None:
                os.kill(later.pid, signal.SIGCONT)
                later.terminate()
            later.wait(10)


def restart(port: int, started: list[subprocess.Popen[bytes]]) -> None:
    started[-1].kill()
    started[-1].wait(10)
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    started.append(
        subprocess.Popen(
            [*command, "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    wait_for_pong(port)


def rows(*ids: int) -> list[OnlineRow]:
    return [OnlineRow("v", entity_key(["id"], [i]), NOW_US, NOW_US, {"x": float(i)}) for i in ids]


def values(found: list[list[Any]]) -> list[list[Any]]:
    return [[None if row is None else row[1]["x"] for row in view] for view in found]


@pytest.mark.parametrize("entities", [[1], [1, 2]], ids=["hmget", "script"])
def test_a_read_after_redis_restarted_answers_and_leaves_the_breaker_closed(
    restartable: tuple[int, list[subprocess.Popen[bytes]]], entities: list[int]
) -> None:
    port, started = restartable
    store = RedisOnlineStore(
        f"redis://127.0.0.1:{port}/0", breaker=CircuitBreaker(failures=1, cool_down_seconds=60)
    )
    try:
        keys = [entity_key(["id"], [i]) for i in entities]
        store.write("p", rows(*entities))
        assert values(store.read_views("p", [("v", keys)])) == [[float(i) for i in entities]]

        restart(port, started)  # a fresh Redis: no data, no scripts, the old connection closed
        store.write("p", rows(*entities))
        assert values(store.read_views("p", [("v", keys)])) == [[float(i) for i in entities]]
        assert values(store.read_views("p", [("v", keys)])) == [[float(i) for i in entities]]
    finally:
        store.close()


def test_the_feature_server_answers_every_lookup_after_redis_restarted(
    restartable: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    port, started = restartable
    root = write_repo(
        tmp_path / "repo",
        DRIVER_REPO,
        extra=(
            f"online:\n  type: redis\n  connection_string: redis://127.0.0.1:{port}/0\n"
            "  breaker_failures: 2\n"
        ),
    )
    store = FeatureStore(root, clock=lambda: NOW)
    store.apply()
    client = TestClient(create_app(store, read_threads=4))
    body = {"features": ["driver_stats:trips"], "entities": {"driver_id": [1, 2]}}
    try:
        store.materialize(NOW - timedelta(days=1), NOW)
        trips = client.post("/get-online-features", json=body).json()["results"][1]["values"]
        for _ in range(8):  # every read thread has its connection
            assert client.post("/get-online-features", json=body).status_code == 200

        restart(port, started)
        store.materialize(NOW - timedelta(days=1), NOW)
        for _ in range(8):
            reply = client.post("/get-online-features", json=body)
            assert reply.status_code == 200, reply.text
            assert reply.json()["results"][1]["values"] == trips
    finally:
        client.close()
        store.close()
