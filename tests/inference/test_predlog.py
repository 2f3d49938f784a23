"""Prediction log: Parquet round trip (read back with pyarrow and DuckDB), rotation, draining,
drops when full, sink failures, crashed files and concurrent callers.

Rotation by age runs on a fake clock; the logger's threads are synchronised with flush() and
events, never with sleeps. Every logger is closed by the `start` fixture.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parity.errors import ParityError, PredictionLogError
from parity.inference.predlog import (
    MemoryLogSink,
    ParquetLogSink,
    PredictionLogger,
    PredictionRecord,
    records_to_table,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LOGGER_NAME = "parity.inference.predlog"
EXPECTED_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("model", pa.string()),
        ("version", pa.int64()),
        ("alias", pa.string()),
        ("entities", pa.string()),
        ("features", pa.string()),
        ("prediction", pa.string()),
        ("latency_ms", pa.float64()),
        ("status", pa.string()),
        ("role", pa.string()),
    ]
)


def record(i: int, at: datetime = T0) -> PredictionRecord:
    return PredictionRecord(
        request_id=f"r{i:05d}",
        at=at + timedelta(milliseconds=i),
        model="fraud",
        version=3,
        entities={"user_id": i},
        features={"amount": i * 0.5},
        prediction=i % 2,
        latency_ms=1.25,
    )


def epoch_us(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


def parquet_files(directory: Path) -> list[Path]:
    """Complete files in name order (the order the names promise is time order)."""
    return sorted(directory.rglob("*.parquet"), key=lambda path: path.name)


def duckdb_rows(
    directory: Path, columns: str, tail: str = "order by request_id"
) -> list[tuple[Any, ...]]:
    with duckdb.connect() as con:
        query = f"select {columns} from read_parquet('{directory}/**/*.parquet') {tail}"
        return con.sql(query).fetchall()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class BlockingSink(MemoryLogSink):
    """Blocks every non-empty write until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, records: Sequence[PredictionRecord]) -> None:
        if records:
            self.entered.set()
            self.release.wait(10)
        super().write(records)


class FailingSink(MemoryLogSink):
    """Raises on a write holding a poisoned request id, `failures` times per id (-1: always)."""

    def __init__(self, failures: dict[str, int]) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    def write(self, records: Sequence[PredictionRecord]) -> None:
        if records:
            self.attempts += 1
        for item in records:
            left = self.failures.get(item.request_id, 0)
            if left != 0:
                self.failures[item.request_id] = left - 1
                raise OSError("disk full")
        super().write(records)


@pytest.fixture
def start() -> Iterator[Callable[..., PredictionLogger]]:
    made: list[PredictionLogger] = []

    def make(sink: Any, **settings: Any) -> PredictionLogger:
        made.append(PredictionLogger(sink, **settings))
        return made[-1]

    yield make
    for item in made:
        item.close()
    assert not [t for t in threading.enumerate() if t.name == "parity-predlog"]


ROUND_TRIP = [
    PredictionRecord(
        request_id="a",
        at=datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        model="fraud",
        version=3,
        entities={"user_id": 7, "merchant": "m1"},
        features={"country": "FR", "amount": 12.5, "tags": ["x", "y"]},
        prediction=0.75,
        latency_ms=4.5,
        alias="prod",
    ),
    PredictionRecord(
        request_id="b",
        at=datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
        model="fraud",
        version=4,
        entities={},
        features={},
        prediction=[1, 0],
        latency_ms=0.5,
        status="error",
        role="canary",
    ),
    PredictionRecord(
        request_id="c",
        at=datetime(2026, 3, 1, 12, 30),  # naive: taken as UTC
        model="fraud",
        version=3,
        entities={"user_id": np.int64(9)},
        features={
            "vec": np.array([1.5, 2.5]),
            "n": np.int32(4),
            "ok": np.bool_(True),
            "raw": b"\x00\x01",
            "missing": float("nan"),
        },
        prediction=np.array([[0.25, 0.75]]),
        latency_ms=float(np.float64(2.0)),
    ),
]
# Hand-written: sorted keys, numpy as numbers and lists, bytes as base64, NaN as null.
ROUND_TRIP_EXPECTED: list[dict[str, Any]] = [
    {
        "request_id": "a",
        "event_timestamp": datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        "model": "fraud",
        "version": 3,
        "alias": "prod",
        "entities": '{"merchant":"m1","user_id":7}',
        "features": '{"amount":12.5,"country":"FR","tags":["x","y"]}',
        "prediction": "0.75",
        "latency_ms": 4.5,
        "status": "ok",
        "role": None,
    },
    {
        "request_id": "b",
        "event_timestamp": datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        "model": "fraud",
        "version": 4,
        "alias": None,
        "entities": "{}",
        "features": "{}",
        "prediction": "[1,0]",
        "latency_ms": 0.5,
        "status": "error",
        "role": "canary",
    },
    {
        "request_id": "c",
        "event_timestamp": datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
        "model": "fraud",
        "version": 3,
        "alias": None,
        "entities": '{"user_id":9}',
        "features": '{"missing":null,"n":4,"ok":true,"raw":"AAE=","vec":[1.5,2.5]}',
        "prediction": "[[0.25,0.75]]",
        "latency_ms": 2.0,
        "status": "ok",
        "role": None,
    },
]


def test_records_round_trip_through_parquet_with_pyarrow(tmp_path: Path) -> None:
    sink = ParquetLogSink(tmp_path)
    sink.write(ROUND_TRIP)
    sink.close()

    table = pq.read_table(tmp_path)  # the folder, as a hive-partitioned dataset
    assert table.column("date").to_pylist() == ["2026-03-01"] * 3
    rows = table.select(EXPECTED_SCHEMA.names).sort_by("request_id").to_pylist()
    assert rows == ROUND_TRIP_EXPECTED
    assert json.loads(rows[0]["features"]) == {"country": "FR", "amount": 12.5, "tags": ["x", "y"]}
    assert json.loads(rows[2]["prediction"]) == [[0.25, 0.75]]
    [path] = parquet_files(tmp_path)
    assert pq.read_schema(path).equals(EXPECTED_SCHEMA, check_metadata=False)


def test_records_round_trip_through_parquet_with_duckdb(tmp_path: Path) -> None:
    sink = ParquetLogSink(tmp_path)
    sink.write(ROUND_TRIP)
    sink.close()

    columns = (
        "request_id, epoch_us(event_timestamp), model, version, alias, entities, features, prediction,"
        " latency_ms, status, role"
    )
    expected = [
        tuple({**row, "event_timestamp": epoch_us(row["event_timestamp"])}.values())
        for row in ROUND_TRIP_EXPECTED
    ]
    assert duckdb_rows(tmp_path, columns) == expected
    extracted = duckdb_rows(
        tmp_path,
        "request_id, json_extract_string(entities, '$.merchant'),"
        " json_extract(features, '$.vec[1]')::double",
    )
    assert extracted == [("a", "m1", None), ("b", None, None), ("c", None, 2.5)]


@given(
    st.dictionaries(
        st.text(),
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
    )
)
def test_features_json_decodes_to_the_logged_dict_with_sorted_keys(
    features: dict[str, Any],
) -> None:
    item = PredictionRecord("r", T0, "m", 1, {}, features, None, 0.0)
    text = records_to_table([item]).column("features")[0].as_py()
    assert json.loads(text) == features
    assert list(json.loads(text)) == sorted(features)


def test_value_json_cannot_hold_is_stored_as_its_repr() -> None:
    item = PredictionRecord("r", T0, "m", 1, {}, {"n": 2**70}, None, 0.0)
    text = records_to_table([item]).column("features")[0].as_py()
    assert json.loads(text) == "{'n': 1180591620717411303424}"


@pytest.mark.parametrize("chunks", [[25], [7, 7, 7, 4], [1] * 25])
def test_files_rotate_after_max_rows_in_time_order(tmp_path: Path, chunks: list[int]) -> None:
    records = [record(i) for i in range(25)]
    sink = ParquetLogSink(tmp_path, max_rows_per_file=10)
    offset = 0
    for size in chunks:
        sink.write(records[offset : offset + size])
        offset += size
    sink.close()

    files = parquet_files(tmp_path)
    tables = [pq.read_table(path) for path in files]
    assert [t.num_rows for t in tables] == [10, 10, 5]
    ids = [i for t in tables for i in t.column("request_id").to_pylist()]
    assert ids == [f"r{i:05d}" for i in range(25)]
    assert all(pq.read_schema(p).equals(EXPECTED_SCHEMA, check_metadata=False) for p in files)


def test_files_rotate_by_age_and_an_empty_write_finishes_an_old_file(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = ParquetLogSink(tmp_path, max_seconds_per_file=300, clock=clock)
    sink.write([record(i) for i in range(3)])
    clock.now = 299.0
    sink.write([record(i) for i in range(3, 5)])
    assert parquet_files(tmp_path) == []  # still in progress
    clock.now = 300.0
    sink.write([record(i) for i in range(5, 9)])
    clock.now = 600.0
    sink.write([])

    assert [pq.read_table(p).num_rows for p in parquet_files(tmp_path)] == [5, 4]
    assert list(tmp_path.rglob("*.inprogress")) == []
    sink.close()


def test_records_are_partitioned_by_their_utc_date(tmp_path: Path) -> None:
    late = PredictionRecord(
        "late", datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC), "m", 1, {}, {}, 1, 0.0
    )
    after = PredictionRecord(
        "after", datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC), "m", 1, {}, {}, 1, 0.0
    )
    # 01:00 at UTC+2 on March 2nd is 23:00 UTC on March 1st.
    shifted = PredictionRecord(
        "shifted",
        datetime(2026, 3, 2, 1, 0, tzinfo=timezone(timedelta(hours=2))),
        "m",
        1,
        {},
        {},
        1,
        0.0,
    )
    sink = ParquetLogSink(tmp_path)
    sink.write([late, after, shifted])
    sink.close()

    by_folder = {
        path.parent.name: pq.read_table(path).column("request_id").to_pylist()
        for path in parquet_files(tmp_path)
    }
    assert by_folder == {"date=2026-03-01": ["late", "shifted"], "date=2026-03-02": ["after"]}
    with duckdb.connect() as con:
        rows = con.sql(
            f"select request_id, date from read_parquet('{tmp_path}/**/*.parquet',"
            " hive_partitioning=true) order by request_id"
        ).fetchall()
    assert rows == [
        ("after", date(2026, 3, 2)),
        ("late", date(2026, 3, 1)),
        ("shifted", date(2026, 3, 1)),
    ]


def test_rows_are_written_in_row_groups_of_the_configured_size(tmp_path: Path) -> None:
    sink = ParquetLogSink(tmp_path, row_group_size=4)
    for start in range(0, 15, 3):
        sink.write([record(i) for i in range(start, start + 3)])
    sink.close()

    [path] = parquet_files(tmp_path)
    metadata = pq.ParquetFile(path).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [4, 4, 4, 3]


def test_close_drains_every_queued_record_into_complete_files(
    tmp_path: Path, start: Callable[..., PredictionLogger]
) -> None:
    log = start(ParquetLogSink(tmp_path), flush_interval_s=60)
    for i in range(10_000):
        log.log(record(i))
    log.close()

    counts = duckdb_rows(tmp_path, "count(*), count(distinct request_id)", tail="")
    assert counts == [(10_000, 10_000)]
    assert list(tmp_path.rglob("*.inprogress")) == []
    assert (log.logged, log.dropped, log.errors, log.running) == (10_000, 0, 0, False)
    with pytest.raises(PredictionLogError):
        log.log(record(10_000))
    log.close()  # a second close is harmless


def test_log_after_close_raises_a_parity_error(start: Callable[..., PredictionLogger]) -> None:
    log = start(MemoryLogSink())
    log.close()
    with pytest.raises(ParityError) as caught:
        log.log(record(0))
    assert caught.value.code == "prediction_log_failed"


def test_full_queue_drops_and_counts_without_blocking(
    start: Callable[..., PredictionLogger], caplog: pytest.LogCaptureFixture
) -> None:
    sink = BlockingSink()
    log = start(sink, max_queue=4, max_batch=1, flush_interval_s=60)
    try:
        assert log.log(record(0))
        assert sink.entered.wait(5)  # the writer holds record 0 inside the blocked sink
        with caplog.at_level(logging.WARNING, LOGGER_NAME):
            queued = [log.log(record(i)) for i in range(1, 8)]
        assert queued == [True] * 4 + [False] * 3
        assert log.dropped == 3
        assert log.flush(timeout=0.01) is False
    finally:
        sink.release.set()
    assert log.flush(timeout=5)
    assert [r.request_id for r in sink.records] == [f"r{i:05d}" for i in range(5)]
    assert (log.logged, log.dropped) == (5, 3)
    assert len(caplog.records) == 2  # warned at the 1st and 2nd drop, not the 3rd


def test_failing_sink_is_retried_once_then_counted_and_the_writer_lives_on(
    start: Callable[..., PredictionLogger], caplog: pytest.LogCaptureFixture
) -> None:
    sink = FailingSink({"r00000": -1})
    log = start(sink)
    with caplog.at_level(logging.WARNING, LOGGER_NAME):
        log.log(record(0))
        assert log.flush(timeout=5)
    assert (sink.attempts, log.errors, log.logged, log.running) == (2, 1, 0, True)
    assert [r.levelname for r in caplog.records] == ["WARNING", "ERROR"]
    assert caplog.records[-1].exc_info is not None

    log.log(record(1))
    assert log.flush(timeout=5)
    assert [r.request_id for r in sink.records] == ["r00001"]
    assert (log.errors, log.logged) == (1, 1)


def test_a_write_that_fails_once_is_written_by_the_retry(
    start: Callable[..., PredictionLogger],
) -> None:
    sink = FailingSink({"r00000": 1})
    log = start(sink)
    log.log(record(0))
    assert log.flush(timeout=5)
    assert [r.request_id for r in sink.records] == ["r00000"]
    assert (sink.attempts, log.errors, log.logged) == (2, 0, 1)


def test_sink_close_failure_is_raised_by_close(start: Callable[..., PredictionLogger]) -> None:
    class BadClose(MemoryLogSink):
        def close(self) -> None:
            raise OSError("fsync failed")

    log = start(BadClose())
    with pytest.raises(PredictionLogError, match="fsync failed"):
        log.close()
    log.close()


def test_idle_writer_ticks_the_sink_with_empty_writes(
    start: Callable[..., PredictionLogger],
) -> None:
    ticked = threading.Event()

    class TickSink(MemoryLogSink):
        def write(self, records: Sequence[PredictionRecord]) -> None:
            if not records:
                ticked.set()
            super().write(records)

    start(TickSink(), flush_interval_s=0.01)
    assert ticked.wait(5)


def test_logger_is_a_context_manager_that_drains_on_exit() -> None:
    sink = MemoryLogSink()
    with PredictionLogger(sink, flush_interval_s=60) as log:
        log.log(record(0))
    assert [r.request_id for r in sink.records] == ["r00000"]
    assert sink.closed
    assert not log.running


def crashed_segment(sink: ParquetLogSink, records: list[PredictionRecord]) -> Path:
    """Write `records` and leave the segment as a killed process would (lock released)."""
    sink.write(records)
    [segment] = list(sink.directory.rglob("*.inprogress"))
    sink._abandon()  # what SIGKILL does to the open segment: closed, not converted
    return segment


def test_a_crashed_segment_is_recovered_at_start_and_a_torn_line_is_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    segment = crashed_segment(ParquetLogSink(tmp_path), [record(i) for i in range(5)])
    assert parquet_files(tmp_path) == []  # readers skip the hidden segment
    with segment.open("ab") as torn:  # the kill came in the middle of a line
        torn.write(b'["r00005",17722')
    half = segment.with_name(f".{segment.name[1 : -len('.inprogress')]}.converting")
    half.write_bytes(b"PAR1 half a file")  # a conversion the crash interrupted

    with caplog.at_level(logging.WARNING):
        second = ParquetLogSink(tmp_path)
    second.close()

    recovered = second.recovered
    assert (recovered.segments, recovered.rows, recovered.unreadable) == (1, 5, 1)
    assert duckdb_rows(tmp_path, "request_id") == [(f"r{i:05d}",) for i in range(5)]
    assert [p.name for p in parquet_files(tmp_path)] == [segment.name[1 : -len(".inprogress")]]
    assert list(tmp_path.rglob("*.inprogress")) == [] and not half.exists()
    unreadable = segment.with_name(segment.name + ".unreadable")
    assert unreadable.exists()  # kept for inspection, hidden from readers
    assert any("5 rows kept, 1 unreadable" in r.getMessage() for r in caplog.records)


def test_recovered_rows_read_back_like_rows_of_a_finished_file(tmp_path: Path) -> None:
    crashed_segment(ParquetLogSink(tmp_path), ROUND_TRIP)
    ParquetLogSink(tmp_path).close()

    table = pq.read_table(tmp_path)
    assert table.select(EXPECTED_SCHEMA.names).sort_by("request_id").to_pylist() == (
        ROUND_TRIP_EXPECTED
    )


def test_a_segment_converted_just_before_the_crash_is_not_recovered_twice(tmp_path: Path) -> None:
    sink = ParquetLogSink(tmp_path)
    segment = crashed_segment(sink, [record(0), record(1)])
    kept = segment.read_bytes()
    ParquetLogSink(tmp_path).close()  # converts it
    segment.write_bytes(kept)  # as if the crash came between the rename and the unlink

    again = ParquetLogSink(tmp_path)
    again.close()

    assert duckdb_rows(tmp_path, "request_id") == [("r00000",), ("r00001",)]
    assert (again.recovered.segments, again.recovered.rows) == (1, 0)
    assert not segment.exists()


def test_a_running_writers_segment_is_left_alone(tmp_path: Path) -> None:
    running = ParquetLogSink(tmp_path)
    running.write([record(0)])

    other = ParquetLogSink(tmp_path)  # e.g. a second worker starting on the same folder
    other.close()

    assert (other.recovered.segments, other.recovered.live) == (0, 1)
    running.write([record(1)])
    running.close()
    assert duckdb_rows(tmp_path, "request_id") == [("r00000",), ("r00001",)]


def test_every_write_is_on_disk_before_write_returns(tmp_path: Path) -> None:
    sink = ParquetLogSink(tmp_path)
    sink.write([record(0), record(1)])
    [segment] = list(tmp_path.rglob("*.inprogress"))
    lines = segment.read_bytes().splitlines()
    assert [json.loads(line)[0] for line in lines] == ["r00000", "r00001"]
    sink.close()


def test_log_from_many_threads_at_once_writes_every_record(
    tmp_path: Path, start: Callable[..., PredictionLogger]
) -> None:
    log = start(ParquetLogSink(tmp_path))
    barrier = threading.Barrier(8)

    def worker(thread: int) -> None:
        barrier.wait()
        for i in range(1000):
            log.log(record(thread * 1000 + i))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()

    assert duckdb_rows(tmp_path, "request_id") == [(f"r{i:05d}",) for i in range(8000)]
    assert (log.logged, log.dropped) == (8000, 0)


def test_unwritable_folder_is_a_prediction_log_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PredictionLogError, match="cannot create"):
        ParquetLogSink(blocker / "log")


@pytest.mark.parametrize(
    "settings",
    [{"max_queue": 0}, {"max_batch": 0}, {"flush_interval_s": 0}, {"max_queue": True}],
)
def test_impossible_logger_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(PredictionLogError):
        PredictionLogger(MemoryLogSink(), **settings)


@pytest.mark.parametrize(
    "settings",
    [{"max_rows_per_file": 0}, {"row_group_size": 0}, {"max_seconds_per_file": float("inf")}],
)
def test_impossible_sink_settings_are_refused(tmp_path: Path, settings: dict[str, Any]) -> None:
    with pytest.raises(PredictionLogError):
        ParquetLogSink(tmp_path, **settings)
