"""QA (issue 13, helper B): data quality and freshness edges found by replaying the issue as a
user would, each a regression test of a fixed defect."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from parity.ingest.stream import publish
from tests.conftest import DRIVER_REPO, write_repo
from tests.monitoring.test_quality_ingest import stream_repo


@pytest.mark.redis
def test_parity_ingest_until_idle_records_what_it_ingested(tmp_path: Path, redis_url: str) -> None:
    # `parity ingest --until-idle` applied the events but never wrote its quality counts (the
    # CLI loops run_once itself and skipped the worker's flush on exit): nothing under
    # `parity monitor quality <view>`, and `parity monitor freshness` never saw the writes.
    stream = f"parity:test:qa-b:{uuid.uuid4().hex}"
    root = write_repo(tmp_path / "repo", stream_repo(stream), project=f"q{uuid.uuid4().hex[:10]}")
    client = redis.Redis.from_url(redis_url)
    try:
        with FeatureStore(root) as store:
            store.apply()
            source = store.get_feature_view("spend").source
            now = datetime.now(UTC)
            amounts = [1.0, None, 3.0, None]
            rows = [
                {"account_id": 1, "event_timestamp": now - timedelta(minutes=i), "amount": a}
                for i, a in enumerate(amounts)
            ]
            publish(client, source, rows, project=store.project)  # type: ignore[arg-type]
        result = CliRunner().invoke(
            app, ["ingest", "--source", "txns", "--until-idle", "--repo", str(root)]
        )
        assert result.exit_code == 0, result.output
        with FeatureStore(root) as store:
            (record,) = store.monitoring.quality("spend", since=now - timedelta(hours=1))
            assert (record.source, record.quality.rows, record.quality.counts.nulls) == (
                "ingest",
                4,
                2,
            )
            (fresh,) = store.monitoring.freshness_slo()
            assert fresh.newest is not None and fresh.newest >= now - timedelta(seconds=1)
    finally:
        client.delete(stream)
        client.close()


def test_quality_with_nothing_recorded_says_so(tmp_path: Path) -> None:
    # `parity monitor quality <view or model>` over a time with nothing recorded printed an empty
    # table and nothing else: a user could not tell "nothing checked" from a broken command.
    repo = write_repo(tmp_path / "repo", DRIVER_REPO)
    with FeatureStore(repo) as store:
        store.apply()
    args = ["monitor", "quality", "driver_stats", "--since", "2030-01-01", "--until", "2030-01-02"]
    result = CliRunner().invoke(app, [*args, "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    assert "No quality records for 'driver_stats'" in " ".join(result.output.split())


def test_pushes_counted_in_memory_are_written_when_the_store_closes(tmp_path: Path) -> None:
    # A script that pushes and exits (or a feature server that shuts down) lost the counts of
    # its pushes since the last write: never in `parity monitor quality`, and other processes'
    # freshness never saw those pushes.
    from tests.monitoring.test_quality_recorded import Clock, T, make_store, table_rows

    clock = Clock(T)
    store = make_store(tmp_path / "repo", clock)
    push = {"account_id": [1, 2], "event_timestamp": [T] * 2}
    store.push("clicks", {**push, "spend": [1.0, None], "kind": ["a", "b"]})
    assert table_rows(store, "click_stats") == []  # counted in memory (written every 60 s)
    store.close()
    with FeatureStore(tmp_path / "repo", clock=clock) as other:
        rows = {r["feature"]: r for r in table_rows(other, "click_stats")}
        assert (rows["spend"]["rows"], rows["spend"]["nulls"]) == (2, 1)
        fresh = {f.view: f.newest for f in other.monitoring.freshness_slo()}
        assert fresh["click_stats"] == T
