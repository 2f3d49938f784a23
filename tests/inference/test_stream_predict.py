"""`parity predict stream`: each event's score equals the model on its point-in-time features
(read 1 µs before the event, as offline), bad events are dead-lettered naming the field, and the
prediction log gets one row per score."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis

from parity import FeatureStore
from parity.inference.predlog import MemoryLogSink, PredictionLogger
from parity.inference.stream_predict import StreamPredictor
from parity.ingest.stream import StreamWorker, publish
from parity.timeutil import to_micros
from tests.inference.test_stream_predict_support import (
    VelocityModel,
    close,
    expected_scores,
    history,
    make_repo,
    offline_features,
    register,
)

pytestmark = pytest.mark.redis
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SINK_PREFIX = "parity:test:scores:"


@pytest.fixture(params=["sqlite", "redis"])
def world(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str
) -> Iterator[dict[str, Any]]:
    extra = ""
    if request.param == "redis":
        extra = f"online:\n  type: redis\n  connection_string: {redis_url}\n"
    root, stream = make_repo(tmp_path / "repo", extra)
    store = FeatureStore(root, clock=lambda: NOW)
    store.apply()
    register(store)
    client = redis.Redis.from_url(redis_url)
    sink = f"{SINK_PREFIX}{stream.rsplit(':', 1)[1]}"
    yield {"store": store, "client": client, "stream": stream, "sink": sink}
    client.delete(stream, sink, f"{sink}:dead")
    for key in client.scan_iter(match=f"parity:v1:{store.project}:*", count=1000):
        client.delete(key)
    client.close()


def ingest(world: dict[str, Any]) -> StreamWorker:
    worker = StreamWorker(world["store"], "txns", block_ms=1, client=world["client"])
    while worker.run_once():
        pass
    return worker


def send(world: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    source = world["store"].get_feature_view("velocity").source
    return publish(world["client"], source, rows, project=world["store"].project)


def predictor(world: dict[str, Any], **options: Any) -> StreamPredictor:
    return StreamPredictor(
        world["store"], "velo@champion", "txns", world["sink"], block_ms=1,
        client=world["client"], **options,
    )  # fmt: skip


def drain(worker: StreamPredictor) -> None:
    while worker.run_once():
        pass


def scores(world: dict[str, Any], key: str | None = None) -> dict[str, dict[str, str]]:
    entries = world["client"].xrange(key or world["sink"])
    return {
        fields[b"source_id"].decode(): {
            k.decode(): v.decode() for k, v in fields.items() if k != b"e"
        }
        for _, fields in entries
    }


def test_a_score_reads_features_just_before_its_event_as_offline(world: dict[str, Any]) -> None:
    """History ingested; then one new event per account is scored before ingest applies it.
    Each score equals the model on get_historical_features 1 µs before the event, and the
    event's own contribution is not in it (offline AT the event, count_5m is one more)."""
    send(world, history(NOW, [1, 2, 3], 12))
    ingest(world)
    worker = predictor(world)  # its group starts at the stream's beginning: history too
    drain(worker)
    world["client"].delete(world["sink"])
    fresh: list[dict[str, Any]] = [
        {"account_id": a, "event_timestamp": NOW - timedelta(seconds=10 - a), "amount": 5.0 * a}
        for a in (1, 2, 3)
    ]
    ids = send(world, fresh)
    drain(worker)
    ingest(world)  # the events are now in the store and offline: the rule must exclude them
    got = scores(world)
    assert sorted(got) == sorted(ids)
    want = expected_scores(world["store"], fresh)
    assert close([float(got[i]["score"]) for i in ids], want)
    before = offline_features(
        world["store"], fresh, [e["event_timestamp"] - timedelta(microseconds=1) for e in fresh]
    )
    at = offline_features(world["store"], fresh, [e["event_timestamp"] for e in fresh])
    assert (at["amount_count_5m"] - before["amount_count_5m"]).tolist() == [1, 1, 1]
    assert [got[i]["account_id"] for i in ids] == ["1", "2", "3"]
    assert {got[i]["model"] for i in ids} == {"velo"} and {got[i]["version"] for i in ids} == {"1"}
    assert got[ids[0]]["event_timestamp"] == fresh[0]["event_timestamp"].isoformat()
    assert [got[i]["ingest_ahead"] for i in ids] == ["0", "0", "0"]


def test_interleaved_with_ingest_every_score_equals_offline(world: dict[str, Any]) -> None:
    """Events of two accounts one by one, each scored and then ingested: every score sees all
    earlier events and not its own, exactly as offline at 1 µs before it."""
    send(world, history(NOW, [1, 2], 3))
    ingest(world)
    world["client"].xgroup_create(
        world["stream"], f"parity:{world['store'].project}:predict:{world['sink']}", id="$"
    )
    worker = predictor(world)
    sent, ids = [], []
    for i in range(12):
        event = {
            "account_id": 1 + i % 2,
            "event_timestamp": NOW - timedelta(seconds=200) + timedelta(seconds=15 * i),
            "amount": float(7 + 3 * i),
        }
        ids += send(world, [event])
        sent.append(event)
        drain(worker)
        ingest(world)
    got = scores(world)
    assert sorted(got) == sorted(ids)
    assert close([float(got[i]["score"]) for i in ids], expected_scores(world["store"], sent))


def test_bad_events_are_dead_lettered_naming_the_field_and_the_rest_scored(
    world: dict[str, Any],
) -> None:
    send(world, history(NOW, [1], 3))
    ingest(world)
    world["client"].xgroup_create(
        world["stream"], f"parity:{world['store'].project}:predict:{world['sink']}", id="$"
    )
    good = {"account_id": 1, "event_timestamp": NOW - timedelta(seconds=5), "amount": 4.0}
    bad = {
        "missing amount": (
            {k: v for k, v in good.items() if k != "amount"},
            "missing_field",
            "amount",
        ),
        "amount text": ({**good, "amount": "abc"}, "wrong_type", "amount"),
        "amount nan": ({**good, "amount": float("nan")}, "wrong_type", "amount"),
        "amount inf": ({**good, "amount": float("inf")}, "wrong_type", "amount"),
        "amount null": ({**good, "amount": None}, "wrong_type", "amount"),
        "key text": ({**good, "account_id": "one"}, "wrong_type", "account_id"),
        "key float": ({**good, "account_id": 1.0}, "wrong_type", "account_id"),
        "key missing": (
            {k: v for k, v in good.items() if k != "account_id"},
            "missing_field",
            "account_id",
        ),
        "future": (
            {**good, "event_timestamp": NOW + timedelta(hours=1)},
            "future",
            "event_timestamp",
        ),
        "ancient": (
            {**good, "event_timestamp": NOW - timedelta(days=400)},
            "late",
            "event_timestamp",
        ),
        "no time": (
            {k: v for k, v in good.items() if k != "event_timestamp"},
            "missing_field",
            "event_timestamp",
        ),
        "time text": ({**good, "event_timestamp": "yesterday"}, "wrong_type", "event_timestamp"),
        "unknown": ({**good, "account_id": 999}, "unknown_entity", "account_id"),
    }
    ids = send(world, [good, *[row for row, _, _ in bad.values()], good])
    raw = [
        world["client"].xadd(world["stream"], {b"e": b"\xc1 not msgpack"}).decode(),
        world["client"].xadd(world["stream"], {b"e": msgpack.packb([1, 2])}).decode(),
        world["client"].xadd(world["stream"], {b"x": b"1"}).decode(),
    ]
    sink = MemoryLogSink()
    log = PredictionLogger(sink, flush_interval_s=0.05)
    worker = predictor(world, prediction_log=log)
    drain(worker)
    log.close()
    got = scores(world)
    assert sorted(got) == sorted([ids[0], ids[-1]])  # both good ones, around the bad ones
    dead = scores(world, f"{world['sink']}:dead")
    for message_id, (name, (_, reason, field)) in zip(ids[1:-1], bad.items(), strict=True):
        assert (dead[message_id]["reason"], dead[message_id]["field"]) == (reason, field), name
        assert field in dead[message_id]["error"], name
        assert dead[message_id]["code"] == "invalid_prediction_input"
    for message_id in raw:
        assert (dead[message_id]["reason"], dead[message_id]["field"]) == ("undecodable", "e")
    assert worker.stats.dead_lettered == len(bad) + len(raw) == len(dead)
    assert worker.stats.scored == 2
    assert sorted(r.request_id for r in sink.records) == sorted(
        f"stream-{i}" for i in (ids[0], ids[-1])
    )
    assert {r.role for r in sink.records} == {"stream"}
    assert world["client"].xpending(world["stream"], worker.group)["pending"] == 0


def test_an_unknown_entity_is_scored_when_asked(world: dict[str, Any]) -> None:
    event = {"account_id": 77, "event_timestamp": NOW - timedelta(seconds=5), "amount": 4.0}
    [message_id] = send(world, [event])
    worker = predictor(world, score_unknown=True)
    drain(worker)
    # no features: count, sum and ratio are missing (-1 each), amount 4 -> -1 - 0.01 - 0.1 + 0.004
    assert float(scores(world)[message_id]["score"]) == pytest.approx(-1.106)


def test_a_slow_owner_and_a_claimer_publish_a_message_once(world: dict[str, Any]) -> None:
    """Worker a reads a batch and stalls; b claims it (idle 0 ms) and publishes it. When a
    resumes, its publish finds the messages no longer pending and adds nothing."""
    send(world, history(NOW, [1], 3))
    ingest(world)
    group = f"parity:{world['store'].project}:predict:{world['sink']}"
    world["client"].xgroup_create(world["stream"], group, id="$")
    event = {"account_id": 1, "event_timestamp": NOW - timedelta(seconds=5), "amount": 4.0}
    ids = send(world, [event, {**event, "amount": 6.0}, {**event, "amount": "bad"}])
    slow = predictor(world, consumer="a")
    claimer = predictor(world, consumer="b", claim_idle_ms=0)
    messages = slow._read()
    assert [m for m, _ in messages] == ids
    assert claimer.run_once() == 3 and claimer.stats.scored == 2
    events, rejected = slow._checked(messages, to_micros(NOW))
    scored, failed = slow._score(events)
    assert slow._publish(messages, scored, rejected + failed) == set()
    assert slow.stats.duplicates == 3 and slow.stats.scored == slow.stats.dead_lettered == 0
    assert world["client"].xlen(world["sink"]) == 2
    assert world["client"].xlen(f"{world['sink']}:dead") == 1


def test_an_event_ingest_applied_first_is_marked_and_its_score_includes_it(
    world: dict[str, Any],
) -> None:
    """The rule's one leak, made visible: `parity ingest` applied the events before their scores
    read features, so the current tile holds them. Each score is marked `ingest_ahead` 1, and
    equals the model on the features AT the event (its own contribution counted)."""
    send(world, history(NOW, [1, 2, 3], 4))
    ingest(world)
    group = f"parity:{world['store'].project}:predict:{world['sink']}"
    world["client"].xgroup_create(world["stream"], group, id="$")
    fresh: list[dict[str, Any]] = [
        {"account_id": a, "event_timestamp": NOW - timedelta(seconds=10 - a), "amount": 3.0 * a}
        for a in (1, 2, 3)
    ]
    ids = send(world, fresh)
    ingest(world)  # ingest first
    worker = predictor(world)
    drain(worker)
    got = scores(world)
    assert [got[i]["ingest_ahead"] for i in ids] == ["1", "1", "1"]
    assert worker.stats.ingest_ahead == 3
    at = offline_features(world["store"], fresh, [e["event_timestamp"] for e in fresh])
    assert close([float(got[i]["score"]) for i in ids], list(VelocityModel().predict(at)))
    assert not close([float(got[i]["score"]) for i in ids], expected_scores(world["store"], fresh))


def test_a_stream_score_equals_the_v1_score_for_the_same_features(world: dict[str, Any]) -> None:
    """The model server's `/v1` path (ModelServer.predict_entities) reads at the store's clock;
    an event stamped 1 µs after it is read at that same time: the scores are equal."""
    import asyncio

    from parity.inference.metrics import ModelMetrics
    from parity.inference.server import ModelServer, ModelTarget

    send(world, history(NOW, [1, 2, 3], 6))
    ingest(world)
    group = f"parity:{world['store'].project}:predict:{world['sink']}"
    world["client"].xgroup_create(world["stream"], group, id="$")
    rows = [{"account_id": a, "amount": 4.5 * a} for a in (1, 2, 3)]
    moment = NOW + timedelta(microseconds=1)
    ids = send(world, [{**row, "event_timestamp": moment} for row in rows])
    drain(predictor(world))
    got = scores(world)
    server = ModelServer(world["store"].models, metrics=ModelMetrics(), features=world["store"])

    async def v1() -> list[Any]:
        answer = await server.predict_entities(ModelTarget.parse("velo@champion"), rows)
        await server.close()
        return answer.predictions

    assert [float(got[i]["score"]) for i in ids] == asyncio.run(v1())
