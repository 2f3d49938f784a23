"""Materialization into SQLite and Redis: online values equal offline ones at the same time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from parity import FeatureStore
from parity.online.columns import EncodedRows
from parity.online.encoding import OnlineRow
from parity.online.reads import OnlineResponse, Status
from parity.online.sqlite import SqliteOnlineStore
from tests.conftest import write_parquet, write_repo

T = datetime(2026, 4, 1, tzinfo=UTC)
US = pa.timestamp("us", tz="UTC")
REPO = {
    "defs.py": """
        from datetime import timedelta
        from parity import Entity, FeatureView, Field, FileSource, Float64, Int64, String, UnixTimestamp

        account = Entity(name="account", join_keys=["account_id"])
        device = Entity(name="device", join_keys=["device_id"], value_type=String)
        stats = FeatureView(
            name="stats", entities=[account],
            schema=[Field(name="amount", dtype=Float64), Field(name="n", dtype=Int64),
                    Field(name="seen", dtype=UnixTimestamp)],
            source=FileSource(path="data/stats.parquet", created_timestamp_column="created"),
            ttl=timedelta(hours=10),
        )
        pair = FeatureView(
            name="pair", entities=[account, device], schema=[Field(name="cnt", dtype=Int64)],
            source=FileSource(path="data/pair.parquet"),
        )
    """
}


def at(hours: float) -> datetime:
    return T + timedelta(hours=hours)


def make_store(root: Path, clock_hours: float, extra: str = "") -> FeatureStore:
    write_repo(root, REPO, extra=extra)
    write_parquet(
        root / "data" / "stats.parquet",
        {
            "account_id": pa.array([1, 1, 1, 2, 3, 4], pa.int64()),
            "event_timestamp": pa.array([at(0), at(0), at(5), at(1), at(6), at(-20)], US),
            "created": pa.array([at(1), at(2), at(5), at(1), at(6), at(-20)], US),
            "amount": pa.array([10.0, 11.0, 50.0, 7.0, None, 1.0]),
            "n": pa.array([1, 2, 3, 4, 5, 6], pa.int64()),
            "seen": pa.array([at(0), at(0), at(4), at(1), at(6), at(-20)], US),
        },
    )
    write_parquet(
        root / "data" / "pair.parquet",
        {
            "account_id": pa.array([1, 1], pa.int64()),
            "device_id": pa.array(["a", "b"]),
            "event_timestamp": pa.array([at(2), at(3)], US),
            "cnt": pa.array([5, 6], pa.int64()),
        },
    )
    store = FeatureStore(root, clock=lambda: at(clock_hours))
    store.apply()
    return store


ENTITIES = [(1, "a"), (2, "b"), (3, "a"), (4, "a"), (9, "z"), (1, "b")]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def online_extra(request: pytest.FixtureRequest, project_name: str) -> Iterator[str]:
    if request.param == "sqlite":
        yield ""
        return
    import redis

    url = request.getfixturevalue("redis_url")
    yield f"online:\n  type: redis\n  connection_string: {url}\n"
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=f"parity:v1:{project_name}:*"):
        client.delete(key)
    client.close()


def test_online_values_equal_offline_values_at_the_same_time(
    tmp_path: Path, online_extra: str, project_name: str
) -> None:
    root = tmp_path / "repo"
    store = make_store(root, clock_hours=8, extra=online_extra)
    store.config = store.config.model_copy(update={"project": project_name})
    store.apply()
    results = store.materialize(at(-100), at(8))
    assert {r.view: r.rows for r in results} == {"pair": 2, "stats": 4}
    refs = ["stats:amount", "stats:n", "stats:seen", "pair:cnt"]
    rows = [{"account_id": a, "device_id": d} for a, d in ENTITIES]
    online = store.get_online_features(refs, rows)
    frame = pd.DataFrame(rows).assign(event_timestamp=at(8))
    offline = store.get_historical_features(frame, refs).to_pandas()
    for name in ("amount", "n", "cnt"):
        expected = [None if pd.isna(v) else v for v in offline[name]]
        assert online.values[name] == expected, name
    seen = [None if pd.isna(v) else int(v.timestamp() * 1_000_000) for v in offline["seen"]]
    assert online.values["seen"] == seen
    assert online.statuses["amount"] == [
        Status.PRESENT,  # account 1: the hour-5 row
        Status.PRESENT,  # account 2: hour 1, 7 h old
        Status.NULL_VALUE,  # account 3: its newest row has a null amount
        Status.OUTSIDE_MAX_AGE,  # account 4: 28 h old, ttl 10 h
        Status.NOT_FOUND,
        Status.PRESENT,
    ]
    assert online.event_timestamps["amount"][0] == at(5)
    assert online.to_dict()["account_id"] == [1, 2, 3, 4, 9, 1]

    async def read_async() -> OnlineResponse:
        try:
            return await store.get_online_features_async(refs, rows)
        finally:
            await store.close_async()

    assert asyncio.run(read_async()) == online  # the async variant answers the same


def test_ties_pick_the_same_row_as_offline(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo", clock_hours=0.5)
    store.materialize(at(-1), at(0.5))  # only the two hour-0 rows of account 1 are in range
    online = store.get_online_features(["stats:amount", "stats:n"], {"account_id": [1]})
    assert (online.values["amount"], online.values["n"]) == ([11.0], [2])  # newer created wins


class CrashingStore(SqliteOnlineStore):
    """A real SQLite store that dies after `budget` rows, as a killed process would."""

    def __init__(self, path: Path, budget: int) -> None:
        super().__init__(path)
        self.budget = budget

    def write(self, project: str, rows: Sequence[OnlineRow]) -> int:
        if self.budget < len(rows):
            super().write(project, rows[: self.budget])
            raise RuntimeError("killed")
        self.budget -= len(rows)
        return super().write(project, rows)

    def write_encoded(self, project: str, rows: EncodedRows) -> int:  # materialization's path
        if self.budget < len(rows):
            super().write_encoded(project, rows.head(self.budget))
            raise RuntimeError("killed")
        self.budget -= len(rows)
        return super().write_encoded(project, rows)


def dump(path: Path) -> list[tuple[object, ...]]:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT * FROM parity_online ORDER BY view, entity_key").fetchall()


def test_a_killed_materialization_run_again_converges(tmp_path: Path) -> None:
    clean = make_store(tmp_path / "clean", clock_hours=8)
    clean.materialize(at(-100), at(8))
    crashed_root = tmp_path / "crashed"
    store = make_store(crashed_root, clock_hours=8)
    store._online = CrashingStore(crashed_root / "data" / "online.db", budget=3)
    with pytest.raises(RuntimeError, match="killed"):
        store.materialize(at(-100), at(8))
    assert 0 < len(dump(crashed_root / "data" / "online.db")) < 6
    rerun = FeatureStore(crashed_root, clock=lambda: at(8))
    rerun.materialize(at(-100), at(8))
    assert dump(crashed_root / "data" / "online.db") == dump(
        tmp_path / "clean" / "data" / "online.db"
    )


def test_incremental_runs_start_at_the_watermark(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo", clock_hours=8)
    first = {r.view: (r.start, r.end) for r in store.materialize_incremental(at(2))}
    assert first == {"stats": (at(-8), at(2)), "pair": (datetime(1970, 1, 1, tzinfo=UTC), at(2))}
    online = store.get_online_features(["stats:n"], {"account_id": [1]})
    assert online.values["n"] == [2]
    second = {r.view: (r.start, r.end) for r in store.materialize_incremental(at(8))}
    assert second == {"stats": (at(2), at(8)), "pair": (at(2), at(8))}
    assert store.get_online_features(["stats:n"], {"account_id": [1]}).values["n"] == [3]


def test_missing_join_key_is_named(tmp_path: Path) -> None:
    from parity.errors import EntityFrameError

    store = make_store(tmp_path / "repo", clock_hours=8)
    with pytest.raises(EntityFrameError, match="no 'device_id', needed by feature view 'pair'"):
        store.get_online_features(["pair:cnt"], [{"account_id": 1}])
