"""Retrieval under a DuckDB memory limit far below the data size: it spills and stays exact."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from parity import FeatureStore
from tests.conftest import write_repo

DRIVERS, HOURS = 40_000, 100  # 4M feature rows
REPO = {
    "defs.py": """
        from parity import Entity, FeatureView, Field, FileSource, Int64
        driver = Entity(name="driver", join_keys=["driver_id"])
        stats = FeatureView(name="stats", entities=[driver], schema=[Field(name="v", dtype=Int64)],
                            source=FileSource(path="data/big.parquet"))
    """
}


def test_large_retrieval_under_a_small_memory_limit_is_exact(tmp_path: Path) -> None:
    extra = f"offline:\n  memory_limit: 120MB\n  temp_directory: {tmp_path / 'spill'}\n"
    root = write_repo(tmp_path / "repo", REPO, extra=extra)
    big, entities = root / "data" / "big.parquet", tmp_path / "entities.parquet"
    with duckdb.connect() as con:
        # Row i: driver i % DRIVERS at hour i // DRIVERS, value i; shuffled on disk.
        con.execute(
            f"COPY (SELECT (i % {DRIVERS})::BIGINT AS driver_id, TIMESTAMPTZ '2026-01-01 00:00:00+00' "
            f"+ to_hours(i // {DRIVERS}) AS event_timestamp, i::BIGINT AS v "
            f"FROM range({DRIVERS * HOURS}) t(i) ORDER BY hash(i)) TO '{big}'"
        )
        # Entity j: driver j % DRIVERS, half an hour after hour (j // DRIVERS) -> value j.
        con.execute(
            f"COPY (SELECT (j % {DRIVERS})::BIGINT AS driver_id, TIMESTAMPTZ '2026-01-01 00:30:00+00' "
            f"+ to_hours(j // {DRIVERS}) AS event_timestamp, j AS expected "
            f"FROM range(0, {DRIVERS * HOURS}, 7) t(j)) TO '{entities}'"
        )
    store = FeatureStore(root)
    store.apply()
    out = tmp_path / "train.parquet"
    rows = store.get_historical_features(str(entities), ["stats:v"]).to_parquet(out)
    assert rows == len(range(0, DRIVERS * HOURS, 7))
    table = pq.read_table(out, columns=["expected", "v"])
    assert table["v"].to_pylist() == table["expected"].to_pylist()
