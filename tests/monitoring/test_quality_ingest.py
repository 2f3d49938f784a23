"""Quality of ingestion: a stream worker's batches (Redis Streams, SQLite online store) are
counted and recorded; the quality table on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from parity import FeatureStore
from parity.ingest.stream import StreamWorker, publish
from parity.monitoring.quality import Reference, check_batch, count_column, judge
from parity.monitoring.quality_store import QualityRecord, SqlQualityStore
from parity.registry.sql import create_registry_engine
from tests.conftest import write_repo

T = datetime(2026, 7, 1, tzinfo=UTC)


def stream_repo(stream: str) -> dict[str, str]:
    return {
        "defs.py": f"""
            from datetime import timedelta
            from parity import (Aggregation, Entity, FeatureView, Field, FileSource, Float64,
                                StreamSource)

            account = Entity(name="account", join_keys=["account_id"])
            txns = StreamSource(
                name="txns", stream="{stream}", lateness=timedelta(hours=1),
                batch_source=FileSource(path="data/txns/"),
            )
            spend = FeatureView(
                name="spend", entities=[account], schema=[Field(name="amount", dtype=Float64)],
                source=txns, tile_interval=timedelta(minutes=1),
                aggregations=[Aggregation(column="amount", function="sum",
                                          window=timedelta(hours=1))],
            )
        """
    }


@pytest.fixture
def stream_store(tmp_path: Path, redis_url: str) -> Iterator[tuple[FeatureStore, redis.Redis]]:
    stream = f"parity:test:quality:{uuid.uuid4().hex}"
    root = write_repo(tmp_path / "repo", stream_repo(stream), project=f"q{uuid.uuid4().hex[:10]}")
    store = FeatureStore(root, clock=lambda: T)
    store.apply()
    client = redis.Redis.from_url(redis_url)
    yield store, client
    client.delete(stream)
    client.close()


@pytest.mark.redis
def test_stream_batches_record_rows_and_nulls_of_the_aggregated_column(
    stream_store: tuple[FeatureStore, redis.Redis],
) -> None:
    store, client = stream_store
    source = store.get_feature_view("spend").source
    amounts = [1.0, None, 3.0, None, None, 6.0, 7.0, 8.0]  # 3 of 8 null
    rows = [
        {"account_id": i % 3 + 1, "event_timestamp": T - timedelta(minutes=i), "amount": a}
        for i, a in enumerate(amounts)
    ]
    publish(client, source, rows, project=store.project)  # type: ignore[arg-type]
    worker = StreamWorker(store, "txns", client=client, block_ms=1)
    worker.run(stop=lambda: worker.stats.batches >= 1)  # one batch, then written on exit
    (record,) = store.monitoring.quality("spend", since=T - timedelta(days=1))
    assert (record.source, record.feature) == ("ingest", "amount")
    assert (record.quality.rows, record.quality.counts.nulls) == (8, 3)
    assert record.quality.null_rate == pytest.approx(0.375)


def test_reference_checks_agree_when_counted_in_batches() -> None:
    ref = Reference(rows=10, nulls=0, minimum=0.0, maximum=5.0, categories=None)
    (one,) = check_batch({"x": [1.0, 6.0, None, -1.0]}, {"x": ref})
    split = count_column("x", [1.0, 6.0], ref) + count_column("x", [None, -1.0], ref)
    assert judge("x", split, ref) == one


@pytest.mark.postgres
def test_quality_table_on_postgresql(postgres_url: str) -> None:
    engine = create_registry_engine(postgres_url)
    project = f"q{uuid.uuid4().hex[:10]}"
    try:
        table = SqlQualityStore(engine)
        (q,) = check_batch({"amount": [1.0, None, 3.0, None]})
        record = QualityRecord("served", "fraud", "amount", T, T + timedelta(hours=1), q, 3)
        table.record(project, [record], T)
        table.record(project, [record], T, replace=True)  # the same window checked again
        (back,) = table.read(project, "fraud", since=T)
        assert back.quality == q and back.version == 3
        assert back.quality.null_rate == 0.5
        assert back.window_end == T + timedelta(hours=1)
        assert table.read(project, "fraud", since=T + timedelta(hours=2)) == []
        assert table.newest(project, "served", ["fraud", "other"]) == {
            "fraud": T + timedelta(hours=1)
        }
    finally:
        with engine.begin() as conn:
            conn.execute(
                sa.text("DELETE FROM parity_monitor_quality WHERE project = :p"), {"p": project}
            )
        engine.dispose()


def test_a_quality_table_from_before_newest_event_gets_the_column(tmp_path: Path) -> None:
    """Tables created by an earlier build lack `newest_event`: opening the store adds it, and
    the old rows read back with no newest event."""
    import sqlalchemy as sa

    from parity.monitoring.quality_store import SqlQualityStore

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE parity_monitor_quality (id INTEGER PRIMARY KEY, project VARCHAR, "
                "run VARCHAR, source VARCHAR, subject VARCHAR, version INTEGER, feature VARCHAR, "
                "window_start VARCHAR, window_end VARCHAR, recorded_at VARCHAR, rows BIGINT, "
                "nulls BIGINT, null_rate FLOAT, verdict VARCHAR, detail TEXT)"
            )
        )
    store = SqlQualityStore(engine)
    columns = {c["name"] for c in sa.inspect(engine).get_columns("parity_monitor_quality")}
    assert "newest_event" in columns
    assert store.newest_values("p", ["v"]) == {}
    SqlQualityStore(engine)  # a second open finds the column and changes nothing
    engine.dispose()
