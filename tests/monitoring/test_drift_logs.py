"""Reading the prediction log: a real log written by ParquetLogSink, windows, versions, typed
columns from the JSON (NaN, inf, null, wrong types), unfinished segments left out."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from parity.errors import InvalidWindow, PredictionLogNotFound
from parity.inference.predlog import ParquetLogSink, PredictionRecord
from parity.monitoring.logs import (
    ENTITIES,
    FEATURES,
    PREDICTION,
    LogColumn,
    PredictionLogReader,
    log_files,
    make_windows,
)

T0 = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
COLUMNS = [
    LogColumn("x", FEATURES, "DOUBLE", "x"),
    LogColumn("city", FEATURES, "VARCHAR", "city"),
    LogColumn("amount", ENTITIES, "DOUBLE", "amount"),
    LogColumn("score", PREDICTION, "DOUBLE", None),
]


def record(
    at: datetime, version: int = 1, model: str = "fraud", **features: object
) -> PredictionRecord:
    return PredictionRecord(
        request_id="r",
        at=at,
        model=model,
        version=version,
        entities={"account_id": 1, "amount": features.pop("amount", 10.0)},
        features=features,
        prediction=features.pop("score", 0.5) if "score" in features else 0.5,
        latency_ms=1.0,
    )


def write(directory: Path, records: list[PredictionRecord]) -> None:
    sink = ParquetLogSink(directory, max_rows_per_file=3)
    sink.write(records)
    sink.close()


def test_rows_land_in_their_windows_per_version(tmp_path: Path) -> None:
    log = tmp_path / "log"
    write(
        log,
        [
            record(T0 + timedelta(minutes=10), x=1.0, city="a"),
            record(T0 + timedelta(minutes=50), x=2.0, city="b"),
            record(T0 + timedelta(minutes=70), x=3.0, city="a"),  # window 1
            record(T0 + timedelta(minutes=130), x=4.0, city="c"),  # next day (UTC), window 2
            record(T0 + timedelta(minutes=20), version=2, x=9.0, city="z"),
            record(T0 + timedelta(minutes=30), model="other", x=8.0, city="q"),
            record(T0 - timedelta(minutes=1), x=7.0, city="early"),  # before since
            record(T0 + 3 * HOUR, x=6.0, city="late"),  # at until: excluded
        ],
    )
    windows = make_windows(T0, T0 + 3 * HOUR, HOUR)
    read = PredictionLogReader(log).read("fraud", None, windows, COLUMNS)
    groups = [(v, w, rows.column("x").to_pylist()) for v, w, rows in read.groups()]
    assert groups == [(1, 0, [1.0, 2.0]), (1, 1, [3.0]), (1, 2, [4.0]), (2, 0, [9.0])]
    only_two = PredictionLogReader(log).read("fraud", [2], windows, COLUMNS)
    assert [(v, w) for v, w, _ in only_two.groups()] == [(2, 0)]
    assert PredictionLogReader(log).versions("fraud", windows) == {1: 4, 2: 1}
    assert PredictionLogReader(log).versions("nobody", windows) == {}


def test_json_values_become_typed_columns_and_bad_ones_null(tmp_path: Path) -> None:
    log = tmp_path / "log"
    write(
        log,
        [
            record(T0, x=1.5, city="a", amount=12.5, score=0.25),
            record(T0, x=math.nan, city=None, amount=math.inf, score=0.75),  # NaN/inf log as null
            record(T0, x="not a number", city=3, amount=None),  # wrong types
            record(T0, city="b"),  # x missing
            record(T0, x=True, city=True),
        ],
    )
    read = PredictionLogReader(log).read("fraud", None, make_windows(T0, T0 + HOUR, HOUR), COLUMNS)
    table = read.table
    assert table.column("x").to_pylist() == [1.5, None, None, None, 1.0]
    assert table.column("city").to_pylist() == ["a", None, "3", "b", "true"]
    assert table.column("amount").to_pylist() == [12.5, None, None, 10.0, 10.0]
    assert table.column("score").to_pylist() == [0.25, 0.75, 0.5, 0.5, 0.5]


def test_a_several_output_prediction_is_read_by_output_name(tmp_path: Path) -> None:
    log = tmp_path / "log"
    rows = [record(T0, x=1.0) for _ in range(2)]
    rows[0].prediction = {"label": 1, "probability": 0.9}
    rows[1].prediction = {"label": 0, "probability": 0.2}
    write(log, rows)
    columns = [
        LogColumn("label", PREDICTION, "VARCHAR", "label"),
        LogColumn("probability", PREDICTION, "DOUBLE", "probability"),
    ]
    table = (
        PredictionLogReader(log)
        .read("fraud", None, make_windows(T0, T0 + HOUR, HOUR), columns)
        .table
    )
    assert table.column("label").to_pylist() == ["1", "0"]
    assert table.column("probability").to_pylist() == [0.9, 0.2]


def test_unfinished_segments_are_not_read(tmp_path: Path) -> None:
    log = tmp_path / "log"
    write(log, [record(T0, x=1.0)])
    sink = ParquetLogSink(log, max_rows_per_file=100)
    sink.write([record(T0, x=2.0)])  # open segment: a hidden .inprogress file
    try:
        (folder,) = log.glob("date=*")
        assert any(p.name.endswith(".inprogress") for p in folder.iterdir())
        read = PredictionLogReader(log).read(
            "fraud", None, make_windows(T0, T0 + HOUR, HOUR), COLUMNS
        )
        assert read.table.column("x").to_pylist() == [1.0]
    finally:
        sink.close()


def test_only_the_days_of_the_range_are_listed(tmp_path: Path) -> None:
    log = tmp_path / "log"
    write(log, [record(T0 - timedelta(days=3)), record(T0), record(T0 + 2 * HOUR)])
    (tmp_path / "log" / "date=junk").mkdir()
    days = {Path(f).parent.name for f in log_files(log, T0, T0 + HOUR)}
    assert days == {"date=2026-03-01"}
    assert len(log_files(log, T0, T0 + 3 * HOUR)) == 2


def test_an_empty_or_missing_log(tmp_path: Path) -> None:
    windows = make_windows(T0, T0 + HOUR, HOUR)
    (tmp_path / "empty").mkdir()
    read = PredictionLogReader(tmp_path / "empty").read("fraud", None, windows, COLUMNS)
    assert read.groups() == []
    with pytest.raises(PredictionLogNotFound, match=r"models\.serving\.prediction_log"):
        PredictionLogReader(tmp_path / "nowhere").read("fraud", None, windows, COLUMNS)


def test_windows_are_checked() -> None:
    with pytest.raises(InvalidWindow, match="positive"):
        make_windows(T0, T0 + HOUR, timedelta(0))
    with pytest.raises(InvalidWindow, match="not before"):
        make_windows(T0, T0, HOUR)
    windows = make_windows(T0, T0 + timedelta(minutes=150), HOUR)
    assert windows.count == 3
    assert windows.bounds(2) == (T0 + 2 * HOUR, T0 + timedelta(minutes=150))


def test_files_of_several_writers_interleaved_in_time_are_grouped(tmp_path: Path) -> None:
    log = tmp_path / "log"
    first = [record(T0 + timedelta(minutes=m), x=float(m)) for m in (1, 61, 121)]
    second = [record(T0 + timedelta(minutes=m), x=float(m)) for m in (2, 62, 3)]
    write(log, first)  # one file per writer: their windows interleave
    write(log, second)
    read = PredictionLogReader(log).read(
        "fraud", None, make_windows(T0, T0 + 3 * HOUR, HOUR), COLUMNS
    )
    got = {w: sorted(rows.column("x").to_pylist()) for _, w, rows in read.groups()}
    assert got == {0: [1.0, 2.0, 3.0], 1: [61.0, 62.0], 2: [121.0]}


def test_window_widths_are_parsed_from_text() -> None:
    from parity.monitoring.drift import parse_window

    assert parse_window("90s") == timedelta(seconds=90)
    assert parse_window("30m") == timedelta(minutes=30)
    assert parse_window("1h") == HOUR
    assert parse_window("7d") == timedelta(days=7)
    assert parse_window("2w") == timedelta(days=14)
    assert parse_window("PT1H") == HOUR and parse_window("p7d") == timedelta(days=7)
    for bad in ("soon", "0h", "-1h", "h", "P", ""):
        with pytest.raises(InvalidWindow, match="not a positive duration"):
            parse_window(bad)
