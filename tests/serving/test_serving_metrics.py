"""The feature server's /metrics shows the online store's circuit breaker and the read-thread queue
(issue 12 follow-up to items 14 and 16), read over real HTTP after forcing each state with a
redis-server of the test's own stopped by SIGSTOP. The shared Redis on 6379 is never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from parity import FeatureStore
from parity.serving.app import create_app
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import running
from tests.private_redis import private_redis_server

PORTS = (6405, 6406)  # this suite's private redis-servers (6407 is kept free)
LOOKUP = {"features": ["driver_stats:trips"], "entities": {"driver_id": [1]}}
STATES = ("closed", "open", "half_open")


@pytest.fixture
def redis_port() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    with private_redis_server(PORTS) as server:
        yield server


def _store(root: Path, port: int, online: str, server: str = "") -> FeatureStore:
    settings = (
        f"online: {{type: redis, connection_string: 'redis://127.0.0.1:{port}/0', {online}}}\n"
        f"{server}"
    )
    store = FeatureStore(write_repo(root, DRIVER_REPO, project="metrics", extra=settings))
    store.apply()
    return store


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = httpx.get(f"{url}/metrics", timeout=10)
    assert reply.status_code == 200, reply.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def _circuit(url: str) -> tuple[str, float]:
    """The one state whose gauge is 1, and the opens counted so far."""
    samples = _samples(url)
    on = [
        s
        for s in STATES
        if samples[("parity_online_circuit_state", (("state", s), ("store", "redis")))] == 1
    ]
    assert len(on) == 1, samples
    return on[0], samples[("parity_online_circuit_opens_total", (("store", "redis"),))]


def _lookup(url: str) -> int:
    return httpx.post(f"{url}/get-online-features", json=LOOKUP, timeout=10).status_code


def test_metrics_show_the_circuit_breaker_closed_open_half_open_and_opens_counted(
    tmp_path: Path, redis_port: tuple[int, subprocess.Popen[bytes]]
) -> None:
    port, redis = redis_port
    online = "timeout_seconds: 0.6, breaker_failures: 2, breaker_cool_down_seconds: 0.5"
    store = _store(tmp_path / "repo", port, online)
    with running(create_app(store)) as address, ThreadPoolExecutor(2) as pool:
        url = f"http://{address}"
        assert _lookup(url) == 200
        assert _circuit(url) == ("closed", 0)
        os.kill(redis.pid, signal.SIGSTOP)
        try:
            assert [_lookup(url), _lookup(url)] == [503, 503]  # two timeouts open it
            assert _circuit(url) == ("open", 1)
            time.sleep(0.6)  # past the cool-down: the next read is the probe, and it hangs
            probe: Future[int] = pool.submit(_lookup, url)
            time.sleep(0.2)
            assert _circuit(url) == ("half_open", 1)
            assert probe.result() == 503  # the probe timed out: open again, counted
            assert _circuit(url) == ("open", 2)
        finally:
            os.kill(redis.pid, signal.SIGCONT)
        time.sleep(0.6)
        assert _lookup(url) == 200  # a probe that succeeds closes it
        assert _circuit(url) == ("closed", 2)


def test_metrics_show_requests_waiting_for_a_read_thread_and_the_queues_503s(
    tmp_path: Path, redis_port: tuple[int, subprocess.Popen[bytes]]
) -> None:
    port, redis = redis_port
    online = "timeout_seconds: 2.0, breaker_failures: 100"
    server = "feature_server: {read_threads: 1, max_queue_ms: 800}\n"
    store = _store(tmp_path / "repo", port, online, server)
    with running(create_app(store)) as address, ThreadPoolExecutor(3) as pool:
        url = f"http://{address}"
        assert _lookup(url) == 200
        before = _samples(url)
        assert before[("parity_read_queue_waiting", ())] == 0
        assert before[("parity_read_threads_busy", ())] == 0
        assert before[("parity_read_queue_rejected_total", ())] == 0
        os.kill(redis.pid, signal.SIGSTOP)
        try:
            hung = pool.submit(_lookup, url)  # holds the only read thread for 2 s
            time.sleep(0.2)
            queued = [pool.submit(_lookup, url) for _ in range(2)]
            time.sleep(0.3)
            during = _samples(url)
            assert during[("parity_read_threads_busy", ())] == 1
            assert during[("parity_read_queue_waiting", ())] == 2
            assert [f.result() for f in queued] == [503, 503]  # past the 800 ms budget
            after = _samples(url)
            assert after[("parity_read_queue_waiting", ())] == 0
            assert after[("parity_read_queue_rejected_total", ())] == 2
            assert after[("parity_errors_total", (("code", "overloaded"),))] == 2
            assert hung.result() == 503  # the read itself timed out
        finally:
            os.kill(redis.pid, signal.SIGCONT)
        assert _lookup(url) == 200
        assert _samples(url)[("parity_read_threads_busy", ())] == 0


def test_a_store_without_a_breaker_shows_no_circuit(tmp_path: Path) -> None:
    store = FeatureStore(write_repo(tmp_path / "repo", DRIVER_REPO))
    store.apply()
    with running(create_app(store)) as address:
        samples = _samples(f"http://{address}")
    assert not [name for name, _ in samples if name.startswith("parity_online_circuit")]
    assert samples[("parity_read_queue_waiting", ())] == 0
