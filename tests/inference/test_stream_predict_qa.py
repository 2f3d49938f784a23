"""Streaming predictions replayed as a user would (QA of issue 15): each test is a defect found by
running `parity predict stream` against a real repo, and fails without its fix."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from parity.errors import BadRequest
from parity.inference.stream_predict import StreamPredictor
from parity.ingest.stream import StreamWorker, publish
from tests.conftest import write_parquet, write_repo
from tests.inference.test_stream_predict_support import (
    DEFS,
    SERVICE,
    close,
    expected_scores,
    history,
    make_repo,
    register,
    stream_world,
)

pytestmark = pytest.mark.redis
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "redis"])
def world(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str
) -> Iterator[dict[str, Any]]:
    with stream_world(
        request.param, tmp_path / "repo", redis_url, "parity:test:qa-scores:", NOW
    ) as world:
        yield world


def send(world: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    source = world["store"].get_feature_view("velocity").source
    return publish(world["client"], source, rows, project=world["store"].project)


def ingest(world: dict[str, Any]) -> None:
    worker = StreamWorker(world["store"], "txns", block_ms=1, client=world["client"])
    while worker.run_once():
        pass


def entries(world: dict[str, Any], key: str) -> dict[str, dict[str, str]]:
    return {
        fields[b"source_id"].decode(): {
            k.decode(): v.decode() for k, v in fields.items() if k != b"e"
        }
        for _, fields in world["client"].xrange(key)
    }


def test_an_event_before_the_last_materialization_is_dead_lettered_not_scored_on_nulls(
    world: dict[str, Any],
) -> None:
    # The fraud repo's flow: history ingested, `parity materialize-incremental now`, then events.
    # An event stamped before that run (within the source's lateness) reads its windows at its
    # own time, before the run's end: the tiles refuse them (OUTSIDE_MAX_AGE, null). It was
    # scored on those nulls, a score that the offline oracle (which has the windows) disagrees
    # with and that nothing flagged. Now it is a `late` dead letter; one after the run is scored.
    store, client = world["store"], world["client"]
    send(world, history(NOW, [1, 2], 6))
    ingest(world)
    store.materialize_incremental(NOW)
    group = f"parity:{store.project}:predict:{world['sink']}"
    client.xgroup_create(world["stream"], group, id="$")
    before = {"account_id": 1, "event_timestamp": NOW - timedelta(minutes=3), "amount": 9.0}
    after = {"account_id": 2, "event_timestamp": NOW + timedelta(seconds=1), "amount": 4.0}
    old_id, new_id = send(world, [before, after])
    ingest(world)
    worker = StreamPredictor(
        store, "velo@champion", "txns", world["sink"], block_ms=1, client=client
    )
    while worker.run_once():
        pass
    scores = entries(world, world["sink"])
    dead = entries(world, f"{world['sink']}:dead")
    assert sorted(scores) == [new_id] and sorted(dead) == [old_id]
    assert dead[old_id]["reason"] == "late" and dead[old_id]["field"] == "event_timestamp"
    assert "materialization of view 'velocity'" in dead[old_id]["error"]
    assert close([float(scores[new_id]["score"])], expected_scores(store, [after]))
    assert worker.stats.by_reason == {"late": 1} and worker.stats.scored == 1


class PickyModel:
    """amount / 1000, but a RuntimeError on the amount 13.37: a model bug on one event."""

    def predict(self, frame: Any) -> Any:
        amounts = frame["amount"].to_numpy(float)
        if (amounts == 13.37).any():
            raise RuntimeError("cannot score 13.37")
        return amounts / 1000


def test_a_model_raising_any_exception_dead_letters_its_row_and_never_crashes_the_worker(
    world: dict[str, Any],
) -> None:
    # A pyfunc raising RuntimeError (not ValueError/TypeError) ended the worker with a
    # traceback, its batch left pending: every restart re-read the batch and crashed again.
    store, client = world["store"], world["client"]
    sample = pd.DataFrame(
        {"amount_count_5m": [1.0], "amount_sum_1h": [2.0], "amount_to_mean": [1.0], "amount": [3.0]}
    )
    store.models.register_model(
        "picky", PickyModel(), flavor="pyfunc", feature_service=SERVICE, sample_input=sample,
        alias="champion",
    )  # fmt: skip
    send(world, history(NOW, [1], 3))
    ingest(world)
    group = f"parity:{store.project}:predict:{world['sink']}"
    client.xgroup_create(world["stream"], group, id="$")
    at = NOW - timedelta(seconds=5)
    ids = send(
        world, [{"account_id": 1, "event_timestamp": at, "amount": a} for a in (1.0, 13.37, 2.0)]
    )
    worker = StreamPredictor(
        store, "picky@champion", "txns", world["sink"], block_ms=1, client=client
    )
    while worker.run_once():
        pass
    scores = entries(world, world["sink"])
    dead = entries(world, f"{world['sink']}:dead")
    assert {i: scores[i]["score"] for i in scores} == {ids[0]: "0.001", ids[2]: "0.002"}
    assert sorted(dead) == [ids[1]] and dead[ids[1]]["reason"] == "predict_failed"
    assert "RuntimeError: cannot score 13.37" in dead[ids[1]]["error"]
    assert client.xpending(world["stream"], group)["pending"] == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("options", "code", "names"),
    [
        # Redis not there at start: a traceback before; now one typed line, no password
        (("--redis-url", "redis://:s3cret@127.0.0.1:{port}/0"), "online_store_unavailable", ""),
        (("--redis-url", "nota://:s3cret@host"), "invalid_option", "--redis-url"),
        # an empty key, and the source's own stream (a dead letter keeps its event `e`: added
        # to the source it was read back and dead-lettered again, forever)
        (("--sink", ""), "bad_request", "--sink is empty"),
        (("--sink", "{stream}"), "bad_request", "--sink '"),
        (("--dead-letter", "{stream}"), "bad_request", "--dead-letter '"),
    ],
)
def test_start_up_errors_are_one_typed_line_without_credentials(
    world: dict[str, Any], options: tuple[str, ...], code: str, names: str
) -> None:
    args = {"--sink": world["sink"]}
    given = [o.format(port=free_port(), stream=world["stream"]) for o in options]
    args.update(zip(given[::2], given[1::2], strict=True))
    result = CliRunner().invoke(
        app,
        ["predict", "stream", "--model", "velo@champion", "--source", "txns", "--until-idle",
         "--repo", str(world["store"].repo_path), *[x for kv in args.items() for x in kv]],
        env={"COLUMNS": "300"},
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert f"Error [{code}]" in result.output and names in result.output
    assert "Traceback" not in result.output and "s3cret" not in result.output
    assert world["client"].xlen(world["stream"]) == 0  # nothing written to the source


def test_a_group_lost_under_a_running_worker_is_created_again_not_a_crash(
    world: dict[str, Any],
) -> None:
    # Redis restarted without its data (or the group deleted) under a running worker: every
    # read said NOGROUP and the worker ended with a traceback. Now it creates the group again,
    # as a new worker would, and scores what arrives.
    store, client = world["store"], world["client"]
    send(world, history(NOW, [1], 3))
    ingest(world)
    worker = StreamPredictor(
        store, "velo@champion", "txns", world["sink"], block_ms=1, client=client
    )
    client.xgroup_destroy(world["stream"], worker.group)
    event = {"account_id": 1, "event_timestamp": NOW - timedelta(seconds=1), "amount": 3.0}
    [new] = send(world, [event])
    ingest(world)
    stats = worker.run(until_idle=True)
    scores = entries(world, world["sink"])
    assert new in scores and len(scores) == 4  # the history (the group starts at 0) and it
    assert close([float(scores[new]["score"])], expected_scores(store, [event]))
    assert stats.retries == 1 and client.xpending(world["stream"], worker.group)["pending"] == 0


def test_an_on_demand_function_raising_on_one_event_dead_letters_it_not_the_worker(
    tmp_path: Path, redis_url: str
) -> None:
    # The repo's on-demand function raises on one event's request data (a bug for amount
    # 13.37): OnDemandError left run_once, the worker ended and its batch stayed pending, so
    # every restart re-read the same batch and ended again. Now that event is a dead letter
    # (`transform_failed`, field: the view) and the rest of its batch is scored.
    stream = f"parity:test:{uuid.uuid4().hex}"
    defs = DEFS.format(stream=stream).replace(
        'mean = row["amount_mean_1h"]',
        'mean = row["amount_mean_1h"]\n        assert row["amount"] != 13.37, "no 13.37"',
    )
    root = write_repo(
        tmp_path / "repo", {"defs.py": defs}, project=f"p{uuid.uuid4().hex[:10]}",
        extra="models: {trusted: true}\n",
    )  # fmt: skip
    store = FeatureStore(root, clock=lambda: NOW)
    store.apply()
    register(store)
    client = redis.Redis.from_url(redis_url)
    sink = f"parity:test:qa-scores:{stream.rsplit(':', 1)[1]}"
    world = {"store": store, "client": client, "stream": stream, "sink": sink}
    try:
        send(world, history(NOW, [1], 3))
        ingest(world)
        client.xgroup_create(stream, f"parity:{store.project}:predict:{sink}", id="$")
        at = NOW - timedelta(seconds=2)
        rows = [{"account_id": 1, "event_timestamp": at, "amount": a} for a in (1.0, 13.37, 2.0)]
        ids = send(world, rows)
        ingest(world)
        worker = StreamPredictor(store, "velo@champion", "txns", sink, block_ms=1, client=client)
        while worker.run_once():
            pass
        scores, dead = entries(world, sink), entries(world, f"{sink}:dead")
        assert sorted(scores) == sorted([ids[0], ids[2]])
        assert close([float(scores[i]["score"]) for i in (ids[0], ids[2])],
                     expected_scores(store, [rows[0], rows[2]]))  # fmt: skip
        assert sorted(dead) == [ids[1]] and dead[ids[1]]["reason"] == "transform_failed"
        assert dead[ids[1]]["field"] == "ratio" and "no 13.37" in dead[ids[1]]["error"]
    finally:
        client.delete(stream, sink, f"{sink}:dead")
        client.close()
        store.close()


PROFILE_DEFS = """
    profile = FeatureView(
        name="profile", entities=[account], schema=[Field(name="limit", dtype=Float64)],
        source=FileSource(path="data/profile.parquet"), ttl=timedelta(days=30),
    )
    with_profile = FeatureService(name="with_profile", features=[profile])
"""


class LimitModel:
    """limit + amount / 1000 (a missing limit counts -1)."""

    def predict(self, frame: Any) -> Any:
        limit = pd.to_numeric(frame["limit"], errors="coerce").fillna(-1).to_numpy(float)
        return limit + frame["amount"].to_numpy(float) / 1000


@pytest.mark.parametrize("online", ["sqlite", "redis"])
def test_an_event_before_its_entitys_stored_plain_row_is_dead_lettered_not_scored_on_null(
    tmp_path: Path, redis_url: str, online: str
) -> None:
    # A profile row re-stamped after the event (the limit raised 5 s later) and materialized:
    # the online store keeps only that newest row, so the event's read at its own time got
    # null (OUTSIDE_MAX_AGE) and was scored on it (-1 + amount), while offline, and the truth,
    # is the older row's 100. Now it is a `late` dead letter; an event after the row is scored.
    stream = f"parity:test:{uuid.uuid4().hex}"
    defs = DEFS.format(stream=stream) + PROFILE_DEFS
    extra = "models: {trusted: true}\n"
    if online == "redis":
        extra += f"online:\n  type: redis\n  connection_string: {redis_url}\n"
    project = f"p{uuid.uuid4().hex[:10]}"
    root = write_repo(tmp_path / "repo", {"defs.py": defs}, project=project, extra=extra)
    rows = {"account_id": [1, 1], "limit": [100.0, 250.0]}
    stamps = [NOW - timedelta(hours=1), NOW - timedelta(seconds=5)]
    write_parquet(root / "data" / "profile.parquet", {**rows, "event_timestamp": stamps})
    store = FeatureStore(root, clock=lambda: NOW)
    store.apply()
    store.materialize_incremental(NOW, ["profile"])
    sample = pd.DataFrame({"limit": [1.0], "amount": [2.0]})
    store.models.register_model(
        "limits", LimitModel(), flavor="pyfunc", feature_service="with_profile",
        sample_input=sample, alias="champion",
    )  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    sink = f"parity:test:qa-scores:{stream.rsplit(':', 1)[1]}"
    world = {"store": store, "client": client, "stream": stream, "sink": sink}
    try:
        before = {"account_id": 1, "event_timestamp": NOW - timedelta(seconds=10), "amount": 3.0}
        after = {"account_id": 1, "event_timestamp": NOW - timedelta(seconds=1), "amount": 4.0}
        old_id, new_id = send(world, [before, after])
        worker = StreamPredictor(store, "limits@champion", "txns", sink, block_ms=1, client=client)
        while worker.run_once():
            pass
        scores, dead = entries(world, sink), entries(world, f"{sink}:dead")
        assert sorted(scores) == [new_id] and float(scores[new_id]["score"]) == 250.004
        assert sorted(dead) == [old_id] and dead[old_id]["reason"] == "late"
        assert "row of view 'profile'" in dead[old_id]["error"]
    finally:
        client.delete(stream, sink, f"{sink}:dead")
        for key in client.scan_iter(match=f"parity:v1:{project}:*", count=1000):
            client.delete(key)
        client.close()
        store.close()


def test_sigterm_stops_the_worker_with_its_prediction_log_flushed(
    tmp_path: Path, redis_url: str
) -> None:
    # SIGTERM is how a process manager stops a worker (systemd, docker stop, Kubernetes). It
    # ended the process at once, like SIGKILL: the scores were published, but the prediction
    # log rows still queued were lost (here: all 40), so monitoring missed every stop's last
    # moments. Now SIGTERM ends it as Ctrl-C does: exit 0, every score logged.
    root, stream = make_repo(tmp_path / "repo")
    store = FeatureStore(root)
    store.apply()
    register(store)
    client = redis.Redis.from_url(redis_url)
    sink = f"parity:test:qa-scores:{stream.rsplit(':', 1)[1]}"
    world = {"store": store, "client": client, "stream": stream, "sink": sink}
    now = datetime.now(UTC)
    try:
        send(world, history(now, [1, 2], 4))
        ingest(world)
        client.xgroup_create(stream, f"parity:{store.project}:predict:{sink}", id="$")
        events = [
            {"account_id": 1 + i % 2, "event_timestamp": now - timedelta(seconds=40 - i),
             "amount": float(i + 1)}
            for i in range(40)
        ]  # fmt: skip
        ids = send(world, events)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "parity.cli.main", "predict", "stream", "--model",
             "velo@champion", "--source", "txns", "--sink", sink, "--repo", str(root)],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while client.xlen(sink) < len(ids):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, process.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]
        files = f"{root}/data/prediction_log/**/*.parquet"
        logged = duckdb.connect().execute(f"SELECT request_id FROM read_parquet('{files}')")
        assert sorted(row[0] for row in logged.fetchall()) == sorted(f"stream-{i}" for i in ids)
    finally:
        client.delete(stream, sink, f"{sink}:dead")
        client.close()
        store.close()


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "options",
    [
        {"claim_idle_ms": -5},
        {"claim_idle_ms": 1.5},
        {"group": ""},
        {"consumer": ""},
        {"ingest_wait_ms": -1},
        {"ingest_wait_ms": 0.5},
        {"ingest_wait_ms": True},
        {"ingest_wait_ms": None},
    ],
)
def test_the_api_refuses_options_the_cli_refuses(
    world: dict[str, Any], options: dict[str, Any]
) -> None:
    # StreamPredictor(claim_idle_ms=-5) was accepted (XPENDING IDLE -5 later), and an empty
    # group or consumer silently became the default one.
    with pytest.raises(BadRequest):
        StreamPredictor(
            world["store"], "velo@champion", "txns", world["sink"], client=world["client"],
            **options,
        )  # fmt: skip


def test_a_stop_while_waiting_for_an_unreachable_redis_is_not_delayed_by_the_backoff(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wait for an unreachable Redis (doubling up to 30 s) was one sleep: a SIGTERM (stop)
    # arriving in it waited for the rest, past a process manager's grace period (Kubernetes:
    # 30 s), which then SIGKILLs the worker and loses its queued log rows.
    import parity.inference.stream_predict as module

    worker = StreamPredictor(
        world["store"], "velo@champion", "txns", world["sink"], client=world["client"]
    )
    nothing = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    worker.client = nothing  # nothing listens there
    monkeypatch.setattr(module, "RETRY_FIRST_S", 20.0)
    started = time.monotonic()
    stats = worker.run(stop=lambda: time.monotonic() - started > 0.5)
    assert time.monotonic() - started < 3.0 and stats.retries >= 1
