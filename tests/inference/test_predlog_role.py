"""The prediction log's `role` column (issue 14): written for rollout rows, null elsewhere; files
and crashed segments from before the column existed still read, next to new files, in every
monitoring reader (DuckDB union_by_name) and through segment recovery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from parity.inference.predlog import ParquetLogSink, PredictionRecord, log_schema
from parity.monitoring.logs import PREDICTION, LogColumn, PredictionLogReader, make_windows

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
OLD_SCHEMA = pa.schema([field for field in log_schema() if field.name != "role"])


def record(n: int, role: str | None, status: str = "ok") -> PredictionRecord:
    return PredictionRecord(
        request_id=f"r{n}",
        at=T0 + timedelta(minutes=n),
        model="fraud",
        version=2 if role in ("canary", "shadow") else 1,
        entities={"account_id": n},
        features={"amount": float(n)},
        prediction=None if status != "ok" else n / 10,
        latency_ms=1.0,
        alias="champion",
        status=status,
        role=role,
    )


def write_old_file(directory: Path) -> None:
    """A log file as a server before issue 14 wrote it: ten columns, no `role`."""
    folder = directory / "date=2026-03-01"
    folder.mkdir(parents=True)
    table = pa.table(
        {
            "request_id": ["old1", "old2"],
            "event_timestamp": [T0 + timedelta(minutes=30), T0 + timedelta(minutes=31)],
            "model": ["fraud", "fraud"],
            "version": [1, 1],
            "alias": [None, None],
            "entities": ['{"account_id":1}', '{"account_id":2}'],
            "features": ['{"amount":1.0}', '{"amount":2.0}'],
            "prediction": ["0.7", "0.8"],
            "latency_ms": [1.0, 1.0],
            "status": ["ok", "ok"],
        },
        schema=OLD_SCHEMA,
    )
    pq.write_table(table, folder / "predictions-20260301T123000000000Z-1-000000.parquet")


def test_old_and_new_files_read_together_role_null_for_the_old(tmp_path: Path) -> None:
    write_old_file(tmp_path)
    sink = ParquetLogSink(tmp_path)
    sink.write([record(1, "champion"), record(2, "shadow"), record(3, "canary", "error")])
    sink.write([record(4, None)])
    sink.close()
    rows = duckdb.sql(
        f"SELECT request_id, version, role, status, prediction FROM read_parquet("
        f"'{tmp_path}/**/*.parquet', union_by_name = true) ORDER BY request_id"
    ).fetchall()
    assert rows == [
        ("old1", 1, None, "ok", "0.7"),
        ("old2", 1, None, "ok", "0.8"),
        ("r1", 1, "champion", "ok", "0.1"),
        ("r2", 2, "shadow", "ok", "0.2"),
        ("r3", 2, "canary", "error", "null"),
        ("r4", 1, None, "ok", "0.4"),
    ]
    windows = make_windows(T0, T0 + timedelta(hours=1), timedelta(hours=1))
    reader = PredictionLogReader(tmp_path)
    assert reader.versions("fraud", windows) == {1: 4, 2: 1}  # ok rows only: old ones too
    read = reader.read("fraud", [1], windows, [LogColumn("score", PREDICTION, "DOUBLE")])
    assert sorted(read.table.column("score").to_pylist()) == [0.1, 0.4, 0.7, 0.8]
    assert reader.keys("fraud", 1, windows, "features") == {"amount"}


def test_a_crashed_segment_written_before_the_role_column_is_recovered(tmp_path: Path) -> None:
    folder = tmp_path / "date=2026-03-01"
    folder.mkdir(parents=True)
    epoch_us = int(T0.timestamp() * 1_000_000)
    old_line = ["a", epoch_us, "fraud", 1, None, "{}", "{}", "0.5", 2.0, "ok"]
    new_line = [*old_line[:9], "ok", "shadow"]
    new_line[0] = "b"
    bad_role = [*old_line[:9], "ok", 7]
    segment = folder / ".predictions-20260301T120000000000Z-99999-000001.parquet.inprogress"
    segment.write_bytes(
        b"".join(orjson.dumps(line) + b"\n" for line in (old_line, new_line, bad_role))
    )
    sink = ParquetLogSink(tmp_path)
    sink.close()
    assert (sink.recovered.rows, sink.recovered.unreadable) == (2, 1)
    [path] = list(folder.glob("*.parquet"))
    table = pq.read_table(path)
    assert table.schema.equals(log_schema(), check_metadata=False)
    assert table.select(["request_id", "role"]).to_pylist() == [
        {"request_id": "a", "role": None},
        {"request_id": "b", "role": "shadow"},
    ]
