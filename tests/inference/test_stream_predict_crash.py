"""Exactly once for real: a `parity predict stream` subprocess SIGKILLed mid-stream, several times,
and restarted. Every source event has exactly one score in the output stream, each equal to the
model on the event's point-in-time features; the prediction log never holds a score twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import redis

from parity import FeatureStore
from parity.ingest.stream import StreamWorker, publish
from tests.inference.test_stream_predict_support import (
    close,
    expected_scores,
    history,
    make_repo,
    register,
)

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]  # the checkout: workers import the test model


@pytest.fixture
def world(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    root, stream = make_repo(tmp_path / "repo")
    now = datetime.now(UTC)
    store = FeatureStore(root)
    store.apply()
    register(store)
    client = redis.Redis.from_url(redis_url)
    source = store.get_feature_view("velocity").source
    old = history(now - timedelta(minutes=25), [1, 2, 3], 8)  # before every scored event
    publish(client, source, old, project=store.project)  # type: ignore[arg-type]
    ingest = StreamWorker(store, "txns", block_ms=1, client=client)
    while ingest.run_once():
        pass
    sink = f"parity:test:scores:{stream.rsplit(':', 1)[1]}"
    group = f"parity:{store.project}:predict:{sink}"
    client.xgroup_create(stream, group, id="$")  # score what is published from here on
    sent = [
        {
            "account_id": 1 + i % 3,
            "event_timestamp": now - timedelta(minutes=43) + timedelta(seconds=21 * i),
            "amount": float(1 + i % 17),
        }
        for i in range(120)
    ]
    ids = publish(client, source, sent, project=store.project)  # type: ignore[arg-type]
    while ingest.run_once():  # `parity ingest` ahead of the scorers, as usual: their scores
        pass  # include their own events; one account's events are 63 s apart (never in one tile)
    yield {"root": root, "store": store, "client": client, "sink": sink, "group": group,
           "stream": stream, "sent": sent, "ids": ids}  # fmt: skip
    client.delete(stream, sink, f"{sink}:dead")
    client.close()


def command(world: dict[str, Any], consumer: str = "c1") -> list[str]:
    claim = ["--claim-idle-ms", "0"] if consumer != "c1" else []
    return [
        sys.executable, "-m", "parity.cli.main", "predict", "stream", *claim,
        "--model", "velo@champion", "--source", "txns", "--sink", world["sink"],
        "--repo", str(world["root"]), "--batch", "4", "--consumer", consumer, "--until-idle",
    ]  # fmt: skip


def environment(crash: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PARITY_STREAM_PREDICT_CRASH"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if crash:
        env["PARITY_STREAM_PREDICT_CRASH"] = crash
    return env


def run(world: dict[str, Any], crash: str | None = None, consumer: str = "c1") -> int:
    done = subprocess.run(
        command(world, consumer), env=environment(crash), capture_output=True, timeout=120, cwd=ROOT
    )
    assert done.returncode in (0, -9), done.stderr.decode()[-2000:]
    return done.returncode


def kill_when(world: dict[str, Any], published: int) -> None:
    """Start a worker and SIGKILL it once the output stream holds `published` scores."""
    process = subprocess.Popen(
        command(world), env=environment(), cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while world["client"].xlen(world["sink"]) < published:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the worker published nothing"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    process.stderr.close()  # type: ignore[union-attr]


def assert_exactly_once(world: dict[str, Any]) -> None:
    entries = world["client"].xrange(world["sink"])
    published = [fields[b"source_id"].decode() for _, fields in entries]
    assert len(published) == len(set(published)) == len(world["ids"])  # none twice, none lost
    assert set(published) == set(world["ids"])
    by_id = {fields[b"source_id"].decode(): float(fields[b"score"]) for _, fields in entries}
    want = expected_scores(world["store"], world["sent"])
    assert close([by_id[i] for i in world["ids"]], want)
    assert world["client"].xpending(world["stream"], world["group"])["pending"] == 0
    assert world["client"].xlen(f"{world['sink']}:dead") == 0
    files = f"{world['root']}/data/prediction_log/**/*.parquet"
    logged = duckdb.connect().execute(f"SELECT request_id FROM read_parquet('{files}')").fetchall()
    requests = [row[0] for row in logged]
    assert len(requests) == len(set(requests))  # a SIGKILL may lose queued rows, never double
    assert set(requests) <= {f"stream-{i}" for i in world["ids"]}


@pytest.mark.parametrize("crash", ["before_publish", "after_publish"])
def test_a_worker_killed_at_each_crash_point_publishes_every_score_once(
    world: dict[str, Any], crash: str
) -> None:
    assert run(world, crash) == -9  # killed in its first batch
    assert world["client"].xlen(world["sink"]) == (4 if crash == "after_publish" else 0)
    assert run(world) == 0
    assert_exactly_once(world)


def test_a_worker_killed_mid_stream_three_times_publishes_every_score_once(
    world: dict[str, Any],
) -> None:
    for published in (10, 45, 80):
        kill_when(world, published)
    assert world["client"].xlen(world["sink"]) < len(world["ids"])  # the last kill left work
    assert run(world) == 0
    assert_exactly_once(world)


def test_a_dead_consumers_messages_are_claimed_and_published_once(world: dict[str, Any]) -> None:
    """c1 dies holding its first batch, unpublished; c2 (another name: a restart elsewhere)
    claims it and finishes the stream."""
    assert run(world, "before_publish") == -9
    assert world["client"].xpending(world["stream"], world["group"])["pending"] == 4
    assert run(world, None, consumer="c2") == 0
    assert_exactly_once(world)


def test_a_redis_that_stops_answering_is_waited_for_and_nothing_is_lost_or_doubled(
    tmp_path: Path,
) -> None:
    """The worker's Redis (a private redis-server) is SIGSTOPped for 1.5 s while the worker runs:
    its calls time out, it retries with backoff, and once Redis answers again every event has
    exactly one score."""
    import threading

    from parity.inference.stream_predict import StreamPredictor
    from tests.private_redis import private_redis_server

    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    root, stream = make_repo(tmp_path / "repo")
    store = FeatureStore(root, clock=lambda: now)
    store.apply()
    register(store)
    with private_redis_server(range(6440, 6445)) as (port, server):
        admin: Any = redis.Redis(port=port)
        source = store.get_feature_view("velocity").source
        sent = [
            {"account_id": i, "event_timestamp": now - timedelta(seconds=5), "amount": 1.0 + i}
            for i in range(30)
        ]
        ids = publish(admin, source, sent, project=store.project)  # type: ignore[arg-type]
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # no retries inside redis-py: the worker's own retry is what is tested
        client = redis.Redis(port=port, socket_timeout=0.3, retry=Retry(NoBackoff(), 0))
        worker = StreamPredictor(
            store, "velo", "txns", "scores", batch_size=5, block_ms=50,
            score_unknown=True, client=client,
        )  # fmt: skip
        server.send_signal(signal.SIGSTOP)
        done = threading.Event()
        thread = threading.Thread(target=worker.run, args=(done.is_set,), daemon=True)
        thread.start()
        time.sleep(1.5)
        server.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 30
        while admin.xlen("scores") < len(ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        done.set()
        thread.join(10)
        published = [f[b"source_id"].decode() for _, f in admin.xrange("scores")]
        assert sorted(published) == sorted(ids)  # each once
        assert worker.stats.retries >= 1
        assert admin.xpending(stream, worker.group)["pending"] == 0
