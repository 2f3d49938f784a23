"""`parity predict stream`: each event's score equals the model on its point-in-time features
(at the event's own time, the event included, as offline and as TrainingJob's training rows,
once `parity ingest` has applied it), bad events are dead-lettered naming the field, and the
prediction log gets one row per score."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest

from parity.inference.predlog import MemoryLogSink, PredictionLogger
from parity.inference.stream_predict import StreamPredictor
from parity.ingest.stream import StreamWorker, publish
from parity.timeutil import to_micros
from tests.inference.test_stream_predict_support import (
    VelocityModel,
    close,
    expected_scores,
    history,
    offline_features,
    stream_world,
)

pytestmark = pytest.mark.redis
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SINK_PREFIX = "parity:test:scores:"


@pytest.fixture(params=["sqlite", "redis", "redis_cluster"])
def world(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str
) -> Iterator[dict[str, Any]]:
    if request.param == "redis_cluster":  # scores in the source stream's slot: {<stream>}:scores
        redis_url = request.getfixturevalue("redis_cluster_url")
    with stream_world(request.param, tmp_path / "repo", redis_url, SINK_PREFIX, NOW) as world:
        yield world


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


def test_a_score_includes_its_own_event_as_offline_at_the_event(world: dict[str, Any]) -> None:
    """History ingested; then one new event per account, applied by `parity ingest` first (as
    it usually is). Each score equals the model on get_historical_features AT the event (its
    own contribution counted: one more than just before it), and is not marked."""
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
    ingest(world)
    drain(worker)
    got = scores(world)
    assert sorted(got) == sorted(ids)
    want = expected_scores(world["store"], fresh)
    assert close([float(got[i]["score"]) for i in ids], want)
    before = offline_features(
        world["store"], fresh, [e["event_timestamp"] - timedelta(microseconds=1) for e in fresh]
    )
    at = offline_features(world["store"], fresh, [e["event_timestamp"] for e in fresh])
    assert (at["amount_count_5m"] - before["amount_count_5m"]).tolist() == [1, 1, 1]
    assert not close([float(got[i]["score"]) for i in ids], list(VelocityModel().predict(before)))
    assert [got[i]["account_id"] for i in ids] == ["1", "2", "3"]
    assert {got[i]["model"] for i in ids} == {"velo"} and {got[i]["version"] for i in ids} == {"1"}
    assert got[ids[0]]["event_timestamp"] == fresh[0]["event_timestamp"].isoformat()
    assert [got[i]["ingest_behind"] for i in ids] == ["0", "0", "0"]
    assert worker.stats.ingest_behind == 0


def test_with_ingest_running_alongside_every_score_equals_offline(world: dict[str, Any]) -> None:
    """`parity ingest` runs in a thread (a real StreamWorker) while events of two accounts
    arrive one by one; the scorer waits for it before each read. Every score sees all earlier
    events and its own, exactly as offline at the event's time, and none is marked."""
    send(world, history(NOW, [1, 2], 3))
    ingest(world)
    world["client"].xgroup_create(
        world["stream"], f"parity:{world['store'].project}:predict:{world['sink']}", id="$"
    )
    worker = predictor(world)
    stop = threading.Event()
    ingester = StreamWorker(world["store"], "txns", block_ms=5, client=world["client"])
    thread = threading.Thread(target=ingester.run, args=(stop.is_set,))
    thread.start()
    sent, ids = [], []
    try:
        for i in range(12):
            event = {
                "account_id": 1 + i % 2,
                "event_timestamp": NOW - timedelta(seconds=200) + timedelta(seconds=15 * i),
                "amount": float(7 + 3 * i),
            }
            ids += send(world, [event])
            sent.append(event)
            drain(worker)
    finally:
        stop.set()
        thread.join(10)
    got = scores(world)
    assert sorted(got) == sorted(ids)
    assert close([float(got[i]["score"]) for i in ids], expected_scores(world["store"], sent))
    assert {got[i]["ingest_behind"] for i in ids} == {"0"} and worker.stats.ingest_behind == 0


def test_without_an_ingest_group_scores_are_marked_behind_at_once(world: dict[str, Any]) -> None:
    """No `parity ingest` on the source (its group does not exist): nothing will apply the
    events, so the scorer does not wait for it (not even its 5 s), and marks every score
    `ingest_behind`: each misses its own event (offline just before it, here)."""
    send(world, history(NOW, [1, 2], 4))
    ingest(world)
    world["client"].xgroup_destroy(world["stream"], f"parity:{world['store'].project}")
    world["client"].xgroup_create(
        world["stream"], f"parity:{world['store'].project}:predict:{world['sink']}", id="$"
    )
    fresh: list[dict[str, Any]] = [
        {"account_id": a, "event_timestamp": NOW - timedelta(seconds=4 - a), "amount": 2.0 * a}
        for a in (1, 2)
    ]
    ids = send(world, fresh)
    worker = predictor(world, ingest_wait_ms=5_000)
    started = time.monotonic()
    drain(worker)
    assert time.monotonic() - started < 2.5
    got = scores(world)
    assert [got[i]["ingest_behind"] for i in ids] == ["1", "1"]
    assert worker.stats.ingest_behind == 2
    before = offline_features(
        world["store"], fresh, [e["event_timestamp"] - timedelta(microseconds=1) for e in fresh]
    )
    assert close([float(got[i]["score"]) for i in ids], list(VelocityModel().predict(before)))


def test_ingest_stopped_mid_way_marks_what_it_had_not_applied_after_the_wait(
    world: dict[str, Any],
) -> None:
    """Ingest applied the first two of four events, was delivered the third and stopped
    before acknowledging it (pending), and never read the fourth. After waiting its 300 ms the
    scorer scores all four: the first two exact (as offline at their time), the last two marked
    `ingest_behind`. A second batch for the same stuck ingest waits again, bounded."""
    send(world, history(NOW, [1, 2], 4))
    ingest(world)
    group = f"parity:{world['store'].project}"
    world["client"].xgroup_create(world["stream"], f"{group}:predict:{world['sink']}", id="$")
    fresh: list[dict[str, Any]] = [
        {"account_id": a, "event_timestamp": NOW - timedelta(seconds=60 * (4 - i)), "amount": a}
        for i, a in enumerate((1, 2, 1, 2))
    ]
    ids = send(world, fresh)
    applied = StreamWorker(world["store"], "txns", batch_size=2, block_ms=1, client=world["client"])
    assert applied.run_once() == 2
    stuck = world["client"].xreadgroup(group, "stuck", {world["stream"]: ">"}, count=1)
    assert stuck[0][1][0][0].decode() == ids[2]
    worker = predictor(world, ingest_wait_ms=300)
    started = time.monotonic()
    drain(worker)
    waited = time.monotonic() - started
    assert 0.3 <= waited < 3
    got = scores(world)
    assert [got[i]["ingest_behind"] for i in ids] == ["0", "0", "1", "1"]
    assert worker.stats.ingest_behind == 2
    assert close(
        [float(got[i]["score"]) for i in ids[:2]], expected_scores(world["store"], fresh[:2])
    )
    claimer = StreamWorker(
        world["store"], "txns", block_ms=1, claim_idle_ms=0, client=world["client"]
    )
    while claimer.run_once():
        pass  # the rest applied now, the stuck one claimed: the marked scores missed them
    assert not close(
        [float(got[i]["score"]) for i in ids[2:]], expected_scores(world["store"], fresh[2:])
    )


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


def test_a_later_event_of_the_entity_in_the_same_tile_applied_first_is_counted_too(
    world: dict[str, Any],
) -> None:
    """What still differs from offline, made visible: two events of one account in one tile,
    both applied by ingest before the first is scored. The online tile merges them, so the
    first score counts the second too (= offline at the second's time, not at its own)."""
    send(world, history(NOW, [1], 4))
    ingest(world)
    group = f"parity:{world['store'].project}:predict:{world['sink']}"
    world["client"].xgroup_create(world["stream"], group, id="$")
    first: dict[str, Any] = {
        "account_id": 1,
        "event_timestamp": NOW - timedelta(seconds=40),
        "amount": 3.0,
    }
    second = {**first, "event_timestamp": NOW - timedelta(seconds=30), "amount": 8.0}
    ids = send(world, [first, second])
    ingest(world)
    drain(predictor(world))
    got = scores(world)
    assert [got[i]["ingest_behind"] for i in ids] == ["0", "0"]
    both = offline_features(world["store"], [first], [second["event_timestamp"]])
    assert close([float(got[ids[0]]["score"])], list(VelocityModel().predict(both)))
    assert not close([float(got[ids[0]]["score"])], expected_scores(world["store"], [first]))
    assert close([float(got[ids[1]]["score"])], expected_scores(world["store"], [second]))


def test_a_stream_score_equals_the_v1_score_for_the_same_features(world: dict[str, Any]) -> None:
    """The model server's `/v1` path (ModelServer.predict_entities) reads at the store's clock;
    an event stamped at that time, once ingested, is read at that same time: the scores are
    equal."""
    import asyncio

    from parity.inference.metrics import ModelMetrics
    from parity.inference.server import ModelServer, ModelTarget

    send(world, history(NOW, [1, 2, 3], 6))
    ingest(world)
    group = f"parity:{world['store'].project}:predict:{world['sink']}"
    world["client"].xgroup_create(world["stream"], group, id="$")
    rows = [{"account_id": a, "amount": 4.5 * a} for a in (1, 2, 3)]
    ids = send(world, [{**row, "event_timestamp": NOW} for row in rows])
    ingest(world)
    drain(predictor(world))
    got = scores(world)
    server = ModelServer(world["store"].models, metrics=ModelMetrics(), features=world["store"])

    async def v1() -> list[Any]:
        answer = await server.predict_entities(ModelTarget.parse("velo@champion"), rows)
        await server.close()
        return answer.predictions

    assert [float(got[i]["score"]) for i in ids] == asyncio.run(v1())
