"""Reading a training job's labels: which rows are matured, and the counts of what was left out
and why, against hand-worked rows; unreadable and ill-typed sources are typed errors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity import LabelSource
from parity.errors import LabelColumnNotFound, LabelSourceError
from parity.jobs.training import LabelCounts, read_labels

NOW = datetime(2026, 3, 1, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=5)
SOURCE = LabelSource(
    path="labels.parquet",
    label="y",
    join_keys=("k",),
    timestamp_field="ts",
    label_timestamp_field="known",
)


def write(
    root: Path, rows: Sequence[tuple[object, ...]], ts_type: pa.DataType | None = None
) -> None:
    k, ts, y, known = zip(*rows, strict=True) if rows else ((), (), (), ())
    pq.write_table(
        pa.table(
            {
                "k": pa.array(k, pa.int64()),
                "ts": pa.array(ts, ts_type or pa.timestamp("us", "UTC")),
                "y": pa.array(y, pa.float64()),
                "known": pa.array(known, pa.timestamp("us", "UTC")),
            }
        ),
        root / "labels.parquet",
    )


def test_rows_are_kept_or_counted_by_why_they_were_left_out(tmp_path: Path) -> None:
    day = timedelta(days=1)
    rows = [
        (1, CUTOFF, 1.0, CUTOFF + day),  # at the cutoff exactly: kept
        (2, CUTOFF + timedelta(microseconds=1), 0.0, CUTOFF),  # just after: too recent
        (3, NOW + 30 * day, 1.0, NOW),  # in the future: too recent
        (4, CUTOFF - 3 * day, 0.0, NOW + day),  # label known only after now
        (5, CUTOFF - 3 * day, 0.0, NOW),  # known exactly at now: kept
        (6, CUTOFF - 3 * day, None, CUTOFF),  # no label
        (7, None, 1.0, CUTOFF),  # no time
        (8, CUTOFF - 3 * day, math.nan, CUTOFF),  # NaN is no label
        (9, CUTOFF - 3 * day, math.inf, CUTOFF),  # nor is infinity
        (10, CUTOFF - 3 * day, 1.0, None),  # label present, time it became known unrecorded
        (11, datetime(1900, 1, 1, tzinfo=UTC), 1.0, datetime(1900, 2, 1, tzinfo=UTC)),
    ]
    write(tmp_path, rows)
    kept, counts = read_labels(tmp_path, SOURCE, NOW, CUTOFF, None)
    assert sorted(kept.column("k").to_pylist()) == [1, 5, 10, 11]
    assert counts == LabelCounts(
        read=11, kept=4, too_recent=2, before_lookback=0, label_unknown=1, missing=4
    )
    assert kept.column_names == ["k", "ts", "y", "known"]
    _, windowed = read_labels(tmp_path, SOURCE, NOW, CUTOFF, CUTOFF - 10 * day)
    assert windowed.kept == 3 and windowed.before_lookback == 1  # 1900 is before the lookback


def test_an_empty_source_reads_as_nothing_kept(tmp_path: Path) -> None:
    write(tmp_path, [])
    kept, counts = read_labels(tmp_path, SOURCE, NOW, CUTOFF, None)
    assert kept.num_rows == 0 and counts == LabelCounts()


def test_a_query_source_runs_in_the_repo_root(tmp_path: Path) -> None:
    write(tmp_path, [(1, CUTOFF, 1.0, CUTOFF), (2, NOW, 0.0, NOW)])
    source = SOURCE.model_copy(
        update={"path": None, "query": "SELECT * FROM 'labels.parquet' WHERE k > 0"}
    )
    kept, counts = read_labels(tmp_path, source, NOW, CUTOFF, None)
    assert kept.column("k").to_pylist() == [1] and counts.too_recent == 1


def test_string_times_are_read_as_times(tmp_path: Path) -> None:
    rows = [(1, "2026-02-01T00:00:00Z", 1.0, CUTOFF), (2, "2026-02-28T00:00:00Z", 0.0, CUTOFF)]
    write(tmp_path, rows, pa.string())
    kept, _ = read_labels(tmp_path, SOURCE, NOW, CUTOFF, None)
    assert kept.column("k").to_pylist() == [1]


@pytest.mark.parametrize(
    ("ts_type", "value"), [(pa.string(), "yesterday"), (pa.float64(), 1.5)], ids=["text", "float"]
)
def test_a_time_column_that_holds_no_times_is_a_typed_error(
    tmp_path: Path, ts_type: pa.DataType, value: object
) -> None:
    write(tmp_path, [(1, value, 1.0, CUTOFF)], ts_type)
    with pytest.raises(LabelSourceError, match="'ts'"):
        read_labels(tmp_path, SOURCE, NOW, CUTOFF, None)


@pytest.mark.parametrize("field", ["label", "timestamp_field", "label_timestamp_field"])
def test_a_missing_declared_column_is_named(tmp_path: Path, field: str) -> None:
    write(tmp_path, [(1, CUTOFF, 1.0, CUTOFF)])
    source = SOURCE.model_copy(update={field: "absent"})
    with pytest.raises(LabelColumnNotFound, match=rf"no column 'absent' \(LabelSource {field}\)"):
        read_labels(tmp_path, source, NOW, CUTOFF, None)


def test_a_missing_file_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(LabelSourceError, match="matches no file"):
        read_labels(tmp_path, SOURCE, NOW, CUTOFF, None)
