"""Data quality where it is checked: a real materialization into SQLite, pushes, and the
prediction log; rows land in parity_monitor_quality with hand-computed rates."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from parity import FeatureStore
from parity.errors import QualitySubjectNotFound
from tests.conftest import write_parquet, write_repo

T = datetime(2026, 5, 1, tzinfo=UTC)
US = pa.timestamp("us", tz="UTC")
REPO = {
    "defs.py": """
        from datetime import timedelta
        from parity import Entity, FeatureView, Field, FileSource, Float64, Int64, PushSource, String

        account = Entity(name="account", join_keys=["account_id"])
        stats = FeatureView(
            name="stats", entities=[account],
            schema=[Field(name="amount", dtype=Float64), Field(name="n", dtype=Int64),
                    Field(name="country", dtype=String)],
            source=FileSource(path="data/stats.parquet"), ttl=timedelta(days=30),
        )
        clicks = PushSource(name="clicks", batch_source=FileSource(path="data/clicks/"))
        click_stats = FeatureView(
            name="click_stats", entities=[account],
            schema=[Field(name="spend", dtype=Float64), Field(name="kind", dtype=String)],
            source=clicks, ttl=timedelta(days=1),
        )
    """
}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make_store(root: Path, clock: Clock) -> FeatureStore:
    write_repo(root, REPO)
    # 8 accounts, one row each, so materialization writes every row: hand-counted below.
    write_parquet(
        root / "data" / "stats.parquet",
        {
            "account_id": pa.array(range(1, 9), pa.int64()),
            "event_timestamp": pa.array([T - timedelta(hours=h) for h in range(1, 9)], US),
            "amount": pa.array(
                [0.5, None, math.nan, 0.2, None, 900.0, math.inf, 0.1], pa.float64()
            ),
            "n": pa.array([1, 2, None, 4, 5, 6, 7, 8], pa.int64()),
            "country": pa.array(["US", None, "FR", "US", "US", "FR", "US", "US"]),
        },
    )
    store = FeatureStore(root, clock=clock)
    store.apply()
    return store


def table_rows(store: FeatureStore, subject: str) -> list[dict[str, object]]:
    engine = store.registry.store.engine  # type: ignore[attr-defined]
    if not sa.inspect(engine).has_table("parity_monitor_quality"):
        return []
    with engine.connect() as conn:
        result = conn.execute(
            sa.text(
                "SELECT source, feature, rows, nulls, null_rate, verdict, window_start, "
                "window_end FROM parity_monitor_quality WHERE subject = :s ORDER BY id"
            ),
            {"s": subject},
        )
        return [dict(r._mapping) for r in result]


def test_materialization_records_rows_and_null_rate_per_feature(tmp_path: Path) -> None:
    clock = Clock(T)
    store = make_store(tmp_path / "repo", clock)
    store.materialize(T - timedelta(days=2), T, ["stats"])
    rows = {r["feature"]: r for r in table_rows(store, "stats")}
    assert set(rows) == {"amount", "n", "country"}
    assert {r["source"] for r in rows.values()} == {"materialize"}
    # amount: None, NaN, None are null (3 of 8); inf is counted apart, not as null
    assert (rows["amount"]["rows"], rows["amount"]["nulls"]) == (8, 3)
    assert rows["amount"]["null_rate"] == pytest.approx(0.375)
    assert rows["n"]["null_rate"] == pytest.approx(0.125)
    assert rows["country"]["null_rate"] == pytest.approx(0.125)
    assert {r["verdict"] for r in rows.values()} == {"breach"}  # all over 0 + 0.05
    assert rows["amount"]["window_end"].startswith("2026-05-01T00:00:00")

    records = store.monitoring.quality("stats", since=T - timedelta(hours=1))
    amount = next(r for r in records if r.feature == "amount")
    assert amount.quality.counts.infinite == 1
    assert amount.quality.checks["infinite"] == "breach"
    assert store.monitoring.quality("stats", since=T + timedelta(seconds=1)) == []


def test_pushes_are_counted_and_written_once_the_flush_interval_passed(tmp_path: Path) -> None:
    clock = Clock(T)
    store = make_store(tmp_path / "repo", clock)
    push = {"account_id": [1, 2, 3, 4], "event_timestamp": [T] * 4}
    store.push("clicks", {**push, "spend": [1.0, None, 3.0, None], "kind": ["a", "b", None, "c"]})
    assert table_rows(store, "click_stats") == []  # counted in memory
    clock.now = T + timedelta(seconds=61)
    store.push("clicks", {**push, "spend": [1.0] * 4, "kind": ["a"] * 4})
    rows = {r["feature"]: r for r in table_rows(store, "click_stats")}
    assert (rows["spend"]["rows"], rows["spend"]["nulls"]) == (8, 2)  # both pushes, one record
    assert rows["spend"]["null_rate"] == pytest.approx(0.25)
    assert rows["kind"]["null_rate"] == pytest.approx(0.125)
    assert {r["source"] for r in rows.values()} == {"ingest"}
    # a read writes what this process counted since
    store.push("clicks", {**push, "spend": [None] * 4, "kind": ["a"] * 4})
    records = store.monitoring.quality("click_stats", since=T + timedelta(seconds=61))
    spend = [r for r in records if r.feature == "spend"]
    assert [r.quality.null_rate for r in spend] == [0.25, 1.0]


def test_unknown_subject_is_a_typed_error_naming_it(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo", Clock(T))
    with pytest.raises(
        QualitySubjectNotFound, match="'nope' is neither a feature view nor a model"
    ):
        store.monitoring.quality("nope", since=T)


def test_a_run_that_wrote_nothing_is_no_data(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo", Clock(T))
    store.materialize(T - timedelta(days=400), T - timedelta(days=300), ["stats"])
    records = store.monitoring.quality("stats", since=T - timedelta(days=301))
    assert {
        r.feature: (r.quality.rows, r.quality.null_rate, r.quality.verdict) for r in records
    } == {
        "amount": (0, None, "no_data"),
        "n": (0, None, "no_data"),
        "country": (0, None, "no_data"),
    }
    assert store.monitoring.quality_signals("stats", since=T - timedelta(days=301)) == {}


def test_quality_signals_are_the_newest_null_rates(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo", Clock(T))
    store.materialize(T - timedelta(days=2), T, ["stats"])
    assert store.monitoring.quality_signals("stats", since=T) == {
        "null_rate:amount": 0.375,
        "null_rate:n": 0.125,
        "null_rate:country": 0.125,
    }
