"""Stream ingestion's fast paths against the paths they skip: times as published (µs, cast per
batch) against ISO text with offsets (the row path) and a batch mixing both; late events far
behind what the tile cache keeps of a hash. Online equals offline in each case."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from parity import FeatureStore
from parity.ingest.stream import StreamWorker, publish
from tests.ingest import test_stream
from tests.ingest.test_stream import compare_online_offline

pytestmark = pytest.mark.redis
setup = test_stream.setup  # its fixture, run here on Redis only
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _events(account: int, seed: int, count: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "account_id": account,
            "event_timestamp": NOW - timedelta(seconds=rng.randrange(0, 3_000, 7)),
            "amount": float(rng.randint(1, 50)),
            "device": rng.randint(1, 4),
        }
        for _ in range(count)
    ]


def _drain(store: FeatureStore, client: Any, batch_size: int) -> StreamWorker:
    worker = StreamWorker(store, "txns", batch_size=batch_size, block_ms=1, client=client)
    while worker.run_once():
        pass
    return worker


@pytest.mark.parametrize("setup", ["redis"], indirect=True)
def test_times_as_micros_as_offset_text_or_mixed_give_the_same_online_values(
    setup: dict[str, Any],
) -> None:
    store = FeatureStore(setup["root"], clock=lambda: NOW)
    store.apply()
    source = store.get_feature_view("velocity").source
    plus_two = timezone(timedelta(hours=2))
    base = _events(1, 7, 12)
    as_text = [
        e
        | {
            "account_id": 2,
            "event_timestamp": e["event_timestamp"].astimezone(plus_two).isoformat(),
        }
        for e in base
    ]
    mixed = [
        e | {"account_id": 3} | ({} if i % 2 else {"event_timestamp": t["event_timestamp"]})
        for i, (e, t) in enumerate(zip(base, as_text, strict=True))
    ]
    for batch in (base, as_text, mixed):  # one read each: the batch path, the row path, mixed
        publish(setup["client"], source, batch, project=store.project)  # type: ignore[arg-type]
    worker = _drain(store, setup["client"], 12)
    assert worker.stats.applied == 36
    values = compare_online_offline(store, NOW)
    for name, got in values.items():
        assert got[0] == got[1] == got[2], name


@pytest.mark.parametrize("setup", ["redis"], indirect=True)
def test_late_events_behind_the_cached_span_of_a_hash_are_merged_once(
    setup: dict[str, Any],
) -> None:
    store = FeatureStore(setup["root"], clock=lambda: NOW)
    store.apply()
    source = store.get_feature_view("velocity").source

    def at(minutes: float, amount: float, device: int) -> dict[str, Any]:
        moment = NOW - timedelta(minutes=minutes)
        return {"account_id": 1, "event_timestamp": moment, "amount": amount, "device": device}

    ordered = [at(55 - m, float(m), m % 5) for m in range(56)]  # one tile a minute, in order
    late = [at(m + 0.5, 100.0 + m, 9) for m in (50, 40, 31, 20, 16, 3)]
    online = store.online_store
    reads, read = [], online._read_for_merge  # type: ignore[attr-defined]
    online._read_for_merge = lambda **kw: reads.append(1) or read(**kw)  # type: ignore[attr-defined]
    for event in [*ordered, *late, at(0, 1.0, 8), *late[:2]]:
        publish(setup["client"], source, [event], project=store.project)  # type: ignore[arg-type]
        _drain(store, setup["client"], 1)
    assert 1 < len(reads) < 20  # the cache answered the in-order merges, not the late ones
    compare_online_offline(store, NOW)


@pytest.mark.parametrize("setup", ["redis"], indirect=True)
def test_an_integer_past_int64_is_refused_not_a_crash_that_stalls_the_stream(
    setup: dict[str, Any],
) -> None:
    """msgpack carries integers up to 2**64 - 1; Arrow refuses them with OverflowError."""
    store = FeatureStore(setup["root"], clock=lambda: NOW)
    store.apply()
    source = store.get_feature_view("velocity").source
    good = {"account_id": 1, "event_timestamp": NOW, "amount": 5.0, "device": 1}
    batch = [good, good | {"event_timestamp": 2**63}, good | {"device": 2**64 - 1}, good]
    publish(setup["client"], source, batch, project=store.project)  # type: ignore[arg-type]
    worker = _drain(store, setup["client"], 10)
    assert (worker.stats.applied, worker.stats.invalid) == (2, 2)
    assert compare_online_offline(store, NOW)["amount_count_5m"] == [2, None, None, None]


_WORKER = """
import sys
from datetime import datetime
from parity import FeatureStore
from parity.ingest.stream import StreamWorker
now = datetime.fromisoformat(sys.argv[2])
store = FeatureStore(sys.argv[1], clock=lambda: now)
worker = StreamWorker(store, "txns", consumer=sys.argv[3], batch_size=5, block_ms=1)
while worker.run_once():
    pass
"""


def _worker(root: Path, now: datetime, crash: str | None, consumer: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PARITY_INGEST_CRASH"}
    env |= {"PARITY_INGEST_CRASH": crash} if crash else {}
    command = [sys.executable, "-c", _WORKER, str(root), now.isoformat(), consumer]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _run_at(root: Path, now: datetime, crash: str | None) -> int:
    return _worker(root, now, crash, "c1").wait(120)


@pytest.mark.parametrize("setup", ["redis"], indirect=True)
def test_a_batch_redone_after_a_kill_replaces_its_offline_file_when_an_event_turned_late(
    setup: dict[str, Any],
) -> None:
    """Killed after the offline append; by the redo the batch's first event is past the
    lateness. The redo's file must replace the first one, not sit beside it."""
    store = FeatureStore(setup["root"], clock=lambda: NOW)
    store.apply()
    first = NOW - timedelta(hours=1) + timedelta(seconds=1)  # in time at NOW only
    sent = [
        {"account_id": 1, "event_timestamp": first, "amount": 1.0, "device": 1},
        *({"account_id": 1, "event_timestamp": NOW, "amount": 10.0, "device": 2} for _ in "abcd"),
    ]
    publish(setup["client"], store.get_feature_view("velocity").source, sent, project=store.project)  # type: ignore[arg-type]
    assert _run_at(setup["root"], NOW, "after_offline") == -9
    later = NOW + timedelta(seconds=2)
    assert _run_at(setup["root"], later, None) == 0
    files = sorted((setup["root"] / "data" / "txns").glob("*.parquet"))
    assert sum(pq.read_metadata(f).num_rows for f in files) == 4
    late = FeatureStore(setup["root"], clock=lambda: later)
    assert compare_online_offline(late, later)["amount_sum_1h"][0] == 40.0


@pytest.mark.parametrize("setup", ["redis"], indirect=True)
def test_a_batch_redone_after_a_kill_with_every_event_turned_late_leaves_no_offline_rows(
    setup: dict[str, Any],
) -> None:
    store = FeatureStore(setup["root"], clock=lambda: NOW)
    store.apply()
    first = NOW - timedelta(hours=1) + timedelta(seconds=1)  # in time at NOW only
    sent = [{"account_id": 1, "event_timestamp": first, "amount": 1.0, "device": 1} for _ in "abc"]
    publish(setup["client"], store.get_feature_view("velocity").source, sent, project=store.project)  # type: ignore[arg-type]
    assert _run_at(setup["root"], NOW, "after_offline") == -9
    later = NOW + timedelta(seconds=2)
    assert _run_at(setup["root"], later, None) == 0
    files = sorted((setup["root"] / "data" / "txns").glob("*.parquet"))
    assert sum(pq.read_metadata(f).num_rows for f in files) == 0
    late = FeatureStore(setup["root"], clock=lambda: later)
    assert compare_online_offline(late, later)["amount_sum_1h"] == [None] * 4


@pytest.mark.parametrize("setup", ["redis"], indirect=True)
def test_two_worker_processes_on_one_stream_apply_every_event_once(
    setup: dict[str, Any],
) -> None:
    store = FeatureStore(setup["root"], clock=lambda: NOW)
    store.apply()
    sent = [e | {"account_id": 1 + i % 2} for i, e in enumerate(_events(1, 3, 300))]
    publish(setup["client"], store.get_feature_view("velocity").source, sent, project=store.project)  # type: ignore[arg-type]
    workers = [_worker(setup["root"], NOW, None, name) for name in ("c1", "c2")]
    assert [w.wait(120) for w in workers] == [0, 0]
    files = sorted((setup["root"] / "data" / "txns").glob("*.parquet"))
    assert sum(pq.read_metadata(f).num_rows for f in files) == 300
    values = compare_online_offline(store, NOW)
    sums = [sum(e["amount"] for e in sent if e["account_id"] == a) for a in (1, 2)]
    assert values["amount_sum_1h"][:2] == pytest.approx(sums)
