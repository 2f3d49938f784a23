"""QA finding 2: stream keys are per project. Two projects with a StreamSource of the same name
on one (shared) Redis never see each other's events; an explicit `stream` key is kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from parity import FeatureStore, FileSource, StreamSource
from parity.ingest.stream import StreamWorker, publish
from tests.conftest import write_repo
from tests.ingest.test_stream import repo_files

pytestmark = pytest.mark.redis
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_the_default_stream_key_names_the_project_and_an_explicit_key_is_kept() -> None:
    batch = FileSource(path="data/txns/")
    assert StreamSource(name="txns", batch_source=batch).stream_key("shop") == (
        "parity:shop:stream:txns"
    )
    explicit = StreamSource(name="txns", batch_source=batch, stream="my:key")
    assert explicit.stream_key("shop") == "my:key"


def test_two_projects_with_a_stream_source_of_the_same_name_do_not_mix(
    tmp_path: Path, redis_url: str
) -> None:
    names = [f"k{uuid.uuid4().hex[:10]}" for _ in range(2)]
    stores = [
        FeatureStore(write_repo(tmp_path / n, repo_files(""), project=n), clock=lambda: NOW)
        for n in names
    ]
    client = redis.Redis.from_url(redis_url)
    keys = [f"parity:{n}:stream:txns" for n in names]
    try:
        for store in stores:
            store.apply()
        a = stores[0]
        source = a.get_feature_view("velocity").source
        assert isinstance(source, StreamSource) and source.stream_key(a.project) == keys[0]
        rows = [
            {"account_id": 1, "event_timestamp": NOW - timedelta(seconds=i), "amount": 1.0,
             "device": 1}
            for i in range(3)
        ]  # fmt: skip
        publish(client, source, rows, project=a.project)
        workers = [StreamWorker(s, "txns", block_ms=1, client=client) for s in stores]
        handled = [sum(iter(w.run_once, 0)) for w in workers]
        assert handled == [3, 0]
        assert [w.stats.applied for w in workers] == [3, 0]
        ref = ["velocity:amount_count_5m"]
        counts = [s.get_online_features(ref, {"account_id": [1]}).values for s in stores]
        assert counts[0]["amount_count_5m"] == [3]
        assert counts[1]["amount_count_5m"] in ([None], [0])
        assert client.xlen(keys[0]) == 3 and client.xlen(keys[1]) == 0
    finally:
        client.delete(*keys)
        client.close()
