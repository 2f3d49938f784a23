"""A hung Redis (issue 12, item 16): a redis-server of the test's own is stopped with SIGSTOP while
the feature server reads rows and tiles from it. /health stays fast, reads fail fast with a 503 in
the standard error shape (at the read timeout, then at once while the circuit is open), and reads
recover after SIGCONT. The shared Redis on 6379 is never touched."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity import FeatureStore
from parity.errors import OnlineStoreUnavailable
from parity.serving.app import create_app
from parity.serving.guard import ASGIApp
from tests.private_redis import private_redis_server

PORTS = range(6395, 6400)  # this suite's private redis-servers
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
TIMEOUT = 0.3
COOL_DOWN = 0.5
DEFINITIONS = """
from datetime import timedelta
from parity import Aggregation, Entity, FeatureView, Field, FileSource, Float64

account = Entity(name="account", join_keys=["account_id"])
balance = FeatureView(
    name="balance", entities=[account], schema=[Field(name="balance", dtype=Float64)],
    source=FileSource(path="data/balance.parquet"),
)
velocity = FeatureView(
    name="velocity", entities=[account], schema=[Field(name="amount", dtype=Float64)],
    source=FileSource(path="data/events", timestamp_field="ts"),
    tile_interval=timedelta(minutes=5),
    aggregations=[Aggregation(column="amount", function="sum", window=timedelta(hours=1),
                              name="amount_1h")],
)
"""
LOOKUP = json.dumps(
    {"features": ["balance:balance", "velocity:amount_1h"], "entities": {"account_id": [1, 2]}}
).encode()


@pytest.fixture
def private_redis() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    with private_redis_server(PORTS) as server:
        yield server


@pytest.fixture
def redis_repo(tmp_path: Path, private_redis: tuple[int, Any]) -> FeatureStore:
    port, _ = private_redis
    root = tmp_path / "repo"
    (root / "data" / "events").mkdir(parents=True)
    (root / "parity.yaml").write_text(
        "project: hung\n"
        "online:\n"
        "  type: redis\n"
        f"  connection_string: redis://127.0.0.1:{port}/0\n"
        f"  timeout_seconds: {TIMEOUT}\n"
        "  breaker_failures: 2\n"
        f"  breaker_cool_down_seconds: {COOL_DOWN}\n"
    )
    (root / "defs.py").write_text(DEFINITIONS)
    stamp = pa.timestamp("us", tz="UTC")
    pq.write_table(
        pa.table(
            {
                "account_id": pa.array([1, 2], pa.int64()),
                "event_timestamp": pa.array([NOW - timedelta(hours=1)] * 2, stamp),
                "balance": pa.array([10.0, 20.0]),
            }
        ),
        root / "data" / "balance.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "account_id": pa.array([1, 1, 2], pa.int64()),
                "ts": pa.array([NOW - timedelta(minutes=m) for m in (10, 20, 30)], stamp),
                "amount": pa.array([1.5, 2.5, 4.0]),
            }
        ),
        root / "data" / "events" / "part-0.parquet",
    )
    store = FeatureStore(root, clock=lambda: NOW)
    store.apply()
    store.materialize(NOW - timedelta(days=1), NOW)
    return store


async def call(app: ASGIApp, method: str, path: str, body: bytes = b"") -> tuple[int, Any, float]:
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await asyncio.Event().wait()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(b"content-length", str(len(body)).encode())],
        "query_string": b"",
    }
    started = time.perf_counter()
    await app(scope, receive, send)
    elapsed = time.perf_counter() - started
    headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
    payload = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    return sent[0]["status"], (headers, payload), elapsed


def test_a_stopped_redis_gives_fast_503s_a_fast_health_and_reads_recover(
    redis_repo: FeatureStore, private_redis: tuple[int, subprocess.Popen[bytes]]
) -> None:
    _, redis_process = private_redis
    app = create_app(redis_repo)

    async def health_while(reads: asyncio.Future[Any]) -> list[float]:
        """Seconds from each /health answer to the next, polling every 20 ms (a loop blocked
        in between shows here, not only in a call's own time)."""
        gaps = []
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.02)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
            if reads.done():
                return gaps
            status, _, _ = await call(app, "GET", "/health")
            assert status == 200

    async def scenario() -> None:
        status, (_, body), _ = await call(app, "POST", "/get-online-features", LOOKUP)
        assert status == 200
        assert [r["values"] for r in body["results"][1:]] == [[10.0, 20.0], [4.0, 4.0]]

        os.kill(redis_process.pid, signal.SIGSTOP)
        reads = asyncio.gather(
            *(call(app, "POST", "/get-online-features", LOOKUP) for _ in range(2))
        )
        health = await health_while(reads)
        assert health and max(health) < 0.25, health  # the loop never waited for Redis
        for status, (headers, body), elapsed in await reads:
            assert status == 503
            assert body["error"]["code"] == "online_store_unavailable"
            assert elapsed < TIMEOUT + 1.5
            assert int(headers["retry-after"]) >= 1

        # Two failures in a row opened the circuit: refused at once, without waiting on Redis.
        status, (headers, body), elapsed = await call(app, "POST", "/get-online-features", LOOKUP)
        assert status == 503 and elapsed < TIMEOUT / 2, elapsed
        assert body["error"]["code"] == "online_store_circuit_open"
        assert "circuit" in body["error"]["message"]
        assert headers["retry-after"] == "1"

        os.kill(redis_process.pid, signal.SIGCONT)
        deadline = time.monotonic() + 5
        while True:
            await asyncio.sleep(COOL_DOWN / 2)
            status, (_, body), _ = await call(app, "POST", "/get-online-features", LOOKUP)
            if status == 200 or time.monotonic() > deadline:
                break
        assert status == 200, body
        assert [r["values"] for r in body["results"][1:]] == [[10.0, 20.0], [4.0, 4.0]]

    asyncio.run(scenario())


def test_the_async_read_the_model_server_uses_never_blocks_the_loop_on_a_stopped_redis(
    redis_repo: FeatureStore, private_redis: tuple[int, subprocess.Popen[bytes]]
) -> None:
    """get_online_features_async (entity-based predictions) reads rows with redis.asyncio and
    tiles on a thread: while Redis is stopped the loop keeps ticking, and the read fails at
    the timeout with OnlineStoreUnavailable."""
    _, redis_process = private_redis
    refs = ["balance:balance", "velocity:amount_1h"]

    async def ticker(stop: asyncio.Event) -> float:
        loop = asyncio.get_running_loop()
        worst, last = 0.0, loop.time()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = loop.time()
            worst, last = max(worst, now - last), now
        return worst

    async def scenario() -> tuple[float, float]:
        assert (await redis_repo.get_online_features_async(refs, {"account_id": [1]})).values[
            "amount_1h"
        ] == [4.0]
        os.kill(redis_process.pid, signal.SIGSTOP)
        stop = asyncio.Event()
        ticking = asyncio.create_task(ticker(stop))
        started = time.perf_counter()
        with pytest.raises(OnlineStoreUnavailable):
            await redis_repo.get_online_features_async(refs, {"account_id": [1]})
        elapsed = time.perf_counter() - started
        stop.set()
        worst_gap = await ticking
        await redis_repo.close_async()
        return elapsed, worst_gap

    elapsed, worst_gap = asyncio.run(scenario())
    assert elapsed < TIMEOUT + 1.5
    assert worst_gap < 0.15, worst_gap
