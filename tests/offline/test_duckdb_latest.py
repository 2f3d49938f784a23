"""DuckDB's two-pass newest row per entity (offline/duckdb_latest.py) against two oracles: the
one-query `latest_sql` it replaced, and pandas on the raw rows. The data is split over files and
small row groups, so that pass 2's row-group skipping is exercised, with every awkward input."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity import Entity, FeatureView, Field, FileSource, Float64, Int64, UnixTimestamp
from parity.offline.duckdb_engine import DuckDBEngine
from parity.offline.duckdb_latest import Packing, packing, rows_filter
from parity.offline.duckdb_sql import SourceScan, latest_sql
from parity.timeutil import NO_CREATED, to_micros

T0 = datetime(2026, 3, 1, tzinfo=UTC)
US = pa.timestamp("us", tz="UTC")
account = Entity(name="account", join_keys=["account_id"])


def view(ttl: timedelta | None = None, created: str | None = "created") -> FeatureView:
    return FeatureView(
        name="v",
        entities=[account],
        schema=[
            Field(name="x", dtype=Float64),
            Field(name="n", dtype=Int64),
            Field(name="seen", dtype=UnixTimestamp),
        ],
        source=FileSource(
            path="data/*.parquet", timestamp_field="ts", created_timestamp_column=created
        ),
        ttl=ttl,
    )


def awkward_rows(seed: int, count: int, created_days: int = 0) -> pd.DataFrame:
    """Times crowd onto few hours (exact (key, event, created) ties), created times are often
    null, values are NaN, inf or null, some keys only ever have null features, some rows come
    after the end, keys are out of order."""
    rng = np.random.default_rng(seed)
    hours = rng.integers(0, 6, count)
    x = rng.choice([1.5, -0.0, math.nan, math.inf, -math.inf, 2.25], count)
    frame = pd.DataFrame(
        {
            "account_id": rng.integers(0, 60, count),
            "ts": [T0 + timedelta(hours=int(h)) for h in hours],
            "created": pd.Series(
                [
                    None
                    if rng.random() < 0.3
                    else T0 + timedelta(hours=int(h) + int(c), days=created_days * int(c))
                    for h, c in zip(hours, rng.integers(-1, 2, count), strict=True)
                ],
                dtype=object,
            ),
            "x": pd.Series([None if rng.random() < 0.2 else float(v) for v in x], dtype=object),
            "n": pd.Series(
                [None if rng.random() < 0.2 else int(v) for v in rng.integers(-5, 5, count)],
                dtype=object,
            ),
            "seen": [T0 + timedelta(minutes=int(m)) for m in rng.integers(0, 600, count)],
        }
    )
    only_null = frame["account_id"] >= 55
    frame.loc[only_null, ["x", "n"]] = None
    return frame


def write_files(root: Path, frame: pd.DataFrame, cuts: list[int], group: int) -> None:
    folder = root / "data"
    folder.mkdir(parents=True)
    schema = pa.schema(
        [
            ("account_id", pa.int64()),
            ("ts", US),
            ("created", US),
            ("x", pa.float64()),
            ("n", pa.int64()),
            ("seen", US),
        ]
    )
    bounds = [0, *cuts, len(frame)]
    for index, (start, stop) in enumerate(itertools.pairwise(bounds)):
        rows = frame.iloc[start:stop]
        # From Python lists, not from_pandas: NaN stays NaN and None becomes null.
        arrays = [pa.array(list(rows[f.name].astype(object)), f.type) for f in schema]
        part = pa.Table.from_arrays(arrays, schema=schema)
        pq.write_table(part, folder / f"part-{index:02d}.parquet", row_group_size=group)


def pandas_newest(frame: pd.DataFrame, start: datetime, end: datetime) -> list[tuple[Any, ...]]:
    """Per key, the row with the largest (event, created, ingestion order) in [start, end]."""
    rows = frame.assign(order=range(len(frame)))
    rows = rows[(rows["ts"] >= start) & (rows["ts"] <= end)]
    stamp = rows["created"].map(lambda c: NO_CREATED if c is None or pd.isna(c) else to_micros(c))
    rows = rows.assign(created_us=stamp, ts_us=rows["ts"].map(to_micros))
    newest = rows.sort_values(["ts_us", "created_us", "order"]).groupby("account_id").tail(1)
    return sorted(
        normal(
            (
                int(r.account_id),
                r.ts_us,
                r.created_us,
                r.x,
                r.n,
                to_micros(r.seen),
            )
        )
        for r in newest.itertuples()
    )


def normal(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """NaN as a string and None kept, so that rows compare equal and sort."""
    out = []
    for value in row:
        if isinstance(value, float) and math.isnan(value):
            out.append("nan")
        elif value is None or (not isinstance(value, str | int | float) and pd.isna(value)):
            out.append(None)
        else:
            out.append(value)
    return tuple(out)


def table_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    names = ["account_id", "__ts", "__created", "x", "n", "seen"]
    columns = [table.column(name).to_pylist() for name in names]
    return sorted((normal(row) for row in zip(*columns, strict=True)), key=repr)


def two_pass(engine: DuckDBEngine, v: FeatureView, start: datetime, end: datetime) -> pa.Table:
    batches = list(engine.latest(v, start, end, batch_size=37))
    return pa.Table.from_batches(batches) if batches else pa.table({})


@pytest.mark.parametrize("seed", range(6))
def test_two_passes_equal_the_one_query_and_pandas(tmp_path: Path, seed: int) -> None:
    frame = awkward_rows(seed, 900)
    cuts = [[], [450], [100, 101, 700]][seed % 3]
    write_files(tmp_path, frame, cuts, group=[50, 7, 1000][seed % 3])
    engine = DuckDBEngine(tmp_path)
    v = view()
    files = tuple(str(p) for p in sorted((tmp_path / "data").glob("*.parquet")))
    for start, end in [(T0, T0 + timedelta(hours=3)), (T0 - timedelta(days=1), T0 + timedelta(1))]:
        got = two_pass(engine, v, start, end)
        with engine.connect() as connection:
            one_query = latest_sql(v, SourceScan(files), to_micros(start), to_micros(end))
            expected = connection.sql(one_query).to_arrow_table()
        assert got.schema == expected.schema
        assert table_rows(got) == table_rows(expected)
        by_pandas = sorted(pandas_newest(frame, start, end), key=repr)
        assert table_rows(got) == by_pandas


def test_no_row_in_the_interval_gives_no_batch(tmp_path: Path) -> None:
    write_files(tmp_path, awkward_rows(1, 50), [], group=10)
    engine = DuckDBEngine(tmp_path)
    later = T0 + timedelta(days=30)
    assert list(engine.latest(view(), later, later + timedelta(hours=1))) == []


def test_the_newest_row_of_a_key_in_an_early_row_group_is_found(tmp_path: Path) -> None:
    """A key seen only at the start of the first file and the rest at the end of the last: pass
    2's spans cover both files, and every row group between is skipped or filtered."""
    early = pd.DataFrame(
        {
            "account_id": [7, 8],
            "ts": [T0, T0],
            "created": pd.Series([None, None], dtype=object),
            "x": pd.Series([1.0, 2.0], dtype=object),
            "n": pd.Series([1, 2], dtype=object),
            "seen": [T0, T0],
        }
    )
    frame = pd.concat([early, awkward_rows(3, 500)], ignore_index=True)
    frame.loc[frame.index >= 2, "account_id"] += 100  # no other row of keys 7 and 8
    write_files(tmp_path, frame, [250], group=20)
    rows = table_rows(two_pass(DuckDBEngine(tmp_path), view(), T0, T0 + timedelta(days=1)))
    assert {r[0] for r in rows} >= {7, 8}
    assert rows == sorted(pandas_newest(frame, T0, T0 + timedelta(days=1)), key=repr)


def test_rows_filter_names_each_file_s_span_of_rows() -> None:
    scan = SourceScan(("a.parquet", "b'.parquet", "c.parquet"))
    ords = np.array([(2 << 40) + 9, (1 << 40) + 5, (1 << 40) + 2, (2 << 40) + 4], dtype=np.int64)
    assert rows_filter(scan, ords) == (
        "(filename = 'a.parquet' AND file_row_number BETWEEN 2 AND 5) OR "
        "(filename = 'b''.parquet' AND file_row_number BETWEEN 4 AND 9)"
    )
    assert rows_filter(SourceScan(("a",)), np.array([7, 3], dtype=np.int64)) == (
        "file_row_number BETWEEN 3 AND 7"
    )
    assert rows_filter(scan, np.array([], dtype=np.int64)) == "false"


@pytest.mark.parametrize("created_days", [1_000, -1_000])
def test_created_times_too_far_to_pack_fall_back_to_structs(
    tmp_path: Path, created_days: int, caplog: pytest.LogCaptureFixture
) -> None:
    """From the epoch, 2 files leave 42 bits (±25 days) for created - event: rows 1,000 days
    apart do not fit, and pass 1 runs again unpacked, with the same answer as pandas."""
    frame = awkward_rows(5, 600, created_days)
    write_files(tmp_path, frame, [300], group=25)
    start, end = datetime(1970, 1, 1, tzinfo=UTC), T0 + timedelta(days=1)
    how = packing(SourceScan(("a", "b")), 0, to_micros(end))
    assert how == Packing(0, 42, 2)
    with caplog.at_level("INFO", logger="parity.offline.duckdb_engine"):
        rows = table_rows(two_pass(DuckDBEngine(tmp_path), view(), start, end))
    assert "pass 1 again" in caplog.text
    assert rows == sorted(pandas_newest(frame, start, end), key=repr)


def test_packing_leaves_bits_for_created_times_or_declines() -> None:
    one, many = SourceScan(("a",)), SourceScan(tuple(str(i) for i in range(1000)))
    assert packing(one, 0, (1 << 51) - 1) == Packing(0, 127 - 51 - 32, 0)
    assert packing(many, 5, 5 + (1 << 40)) == Packing(5, 127 - 41 - 10 - 32, 10)
    assert packing(one, -(1 << 62), 1 << 62) is None  # 64 bits of event time
    assert packing(many, 0, 1 << 46) is None  # 47 + 10 + 32 bits: 38 left, too few


def test_only_the_entities_with_rows_too_far_to_pack_are_aggregated_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Keys below 20 have created times 1,000 days off; the others fit: both answers merge."""
    frame = awkward_rows(6, 600, 1_000)
    fitting = frame["account_id"] >= 20
    frame.loc[fitting, "created"] = frame.loc[fitting, "ts"].astype(object)
    write_files(tmp_path, frame, [300], group=25)
    start, end = datetime(1970, 1, 1, tzinfo=UTC), T0 + timedelta(days=1)
    with caplog.at_level("INFO", logger="parity.offline.duckdb_engine"):
        rows = table_rows(two_pass(DuckDBEngine(tmp_path), view(), start, end))
    assert "pass 1 again" in caplog.text
    assert rows == sorted(pandas_newest(frame, start, end), key=repr)


def test_many_files_from_the_epoch_take_the_struct_at_once(tmp_path: Path) -> None:
    """16 files leave too few bits to pack from the epoch: pass 1 runs as structs only."""
    frame = awkward_rows(7, 640)
    write_files(tmp_path, frame, list(range(40, 640, 40)), group=13)
    files = tuple(str(p) for p in sorted((tmp_path / "data").glob("*.parquet")))
    start, end = datetime(1970, 1, 1, tzinfo=UTC), T0 + timedelta(days=1)
    assert len(files) == 16 and packing(SourceScan(files), 0, to_micros(end)) is None
    rows = table_rows(two_pass(DuckDBEngine(tmp_path), view(), start, end))
    assert rows == sorted(pandas_newest(frame, start, end), key=repr)
