"""The pruned window passes of offline/duckdb_windows.py (each window length reads only the
events some entity row's window can hold) against two oracles: the plain-Python reference
(parity.testing) and the unpruned single pass they replaced, kept here. Events spread far
beyond the windows, on and around tile edges, with ties, nulls, NaN and inf; entity rows for
keys without events, before every event and after the last; subsets of the features."""

from __future__ import annotations

import math
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parity.offline.duckdb_windows as duckdb_windows
from parity import Aggregation, Catalog, Entity, FeatureView, Field, FileSource, Float64, String
from parity.definitions import FeatureView as View
from parity.offline.duckdb_engine import DuckDBEngine
from parity.offline.duckdb_sql import SourceScan, quote, source_sql
from parity.offline.request import ViewRequest, resolve
from parity.offline.retrieval import historical_features
from parity.testing import reference_historical_features
from tests.offline.test_windows import drawn_aggregations

US = pa.timestamp("us", tz="UTC")
account = Entity(name="account", join_keys=["account_id"])
BASE = datetime.fromisoformat("2026-03-01T10:00:00+00:00")


def unpruned_window_ctes(
    index: int, request: ViewRequest, scan: SourceScan, left: str
) -> list[str]:
    """The single pass over every event that the pruned passes replaced (the oracle)."""
    view = request.view
    tile = view.tile_us
    keys = [quote(k) for k in view.join_keys]
    key_list = ", ".join(keys)
    by_output = {a.output_name: a for a in view.aggregations}
    wanted = [by_output[name] for name in request.features]
    columns = list(dict.fromkeys(a.column for a in wanted))
    values = []
    for number, aggregation in enumerate(wanted):
        back = f"(((__ts % {tile}) + {tile}) % {tile} + {aggregation.window_us - tile})"
        over = f"OVER (PARTITION BY {key_list} ORDER BY __ts RANGE BETWEEN {back} PRECEDING AND CURRENT ROW)"
        values.append(f"{duckdb_windows._value_sql(aggregation, view, over)} AS __a{number}")
    longest = max(a.window_us for a in view.aggregations)
    back = f"(((__ts % {tile}) + {tile}) % {tile} + {longest - tile})"
    values.append(
        f"count(CASE WHEN NOT __mark THEN 1 END) OVER (PARTITION BY {key_list} ORDER BY __ts "
        f"RANGE BETWEEN {back} PRECEDING AND CURRENT ROW) AS __seen"
    )
    on = " AND ".join(f"l.{k} = w.{k}" for k in keys)
    outputs = ", ".join(
        f"CASE WHEN w.__seen > 0 THEN {duckdb_windows._empty_value(a, f'w.__a{n}')} END AS "
        f"{quote(output)}"
        for n, (a, output) in enumerate(zip(wanted, request.output_names, strict=True))
    )
    events = source_sql(view, columns, scan)
    return [
        f"marks_{index} AS (SELECT DISTINCT {key_list}, __ts FROM {left})",
        f"win_{index} AS (SELECT * FROM (SELECT {key_list}, __ts, __mark, {', '.join(values)} "
        f"FROM (SELECT {key_list}, __ts, __ord, {', '.join(quote(c) for c in columns)}, "
        f"FALSE AS __mark FROM ({events}) UNION ALL BY NAME "
        f"SELECT {key_list}, __ts, TRUE AS __mark FROM marks_{index})) WHERE __mark)",
        f"view_{index} AS (SELECT l.*, {outputs} FROM {left} l LEFT JOIN win_{index} w "
        f"ON {on} AND l.__ts = w.__ts)",
    ]


def view_of(aggregations: list[Aggregation], tile: timedelta) -> View:
    return FeatureView(
        name="velocity",
        entities=[account],
        schema=[Field(name="amount", dtype=Float64), Field(name="device", dtype=String)],
        source=FileSource(path="events", timestamp_field="ts"),
        aggregations=aggregations,
        tile_interval=tile,
    )


def moments(tile_minutes: int) -> st.SearchStrategy[datetime]:
    """Times over days around BASE, crowding onto tile edges (+- 1 µs) and repeating."""
    edge = st.builds(
        lambda k, d: BASE + timedelta(minutes=k * tile_minutes, microseconds=d),
        st.integers(-40, 40),
        st.sampled_from([0, 0, 1, -1]),
    )
    far = st.builds(lambda m: BASE + timedelta(minutes=m), st.integers(-6_000, 6_000))
    return st.one_of(edge, edge, far)


@st.composite
def cases(draw: st.DrawFn, odd_floats: bool) -> dict[str, Any]:
    tile_minutes = draw(st.sampled_from([1, 5, 60]))
    tile = timedelta(minutes=tile_minutes)
    windows = st.sampled_from([1, 2, 3, 24, 200]).map(lambda k: k * tile)
    aggregations = drawn_aggregations(draw, windows)
    plain = st.integers(-5, 5).map(float)
    amount = st.one_of(st.none(), plain, st.sampled_from([math.nan, math.inf, -math.inf]))
    event = st.fixed_dictionaries(
        {
            "account_id": st.integers(1, 3),
            "ts": moments(tile_minutes),
            "amount": amount if odd_floats else st.one_of(st.none(), plain),
            "device": st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
        }
    )
    events = draw(st.lists(event, max_size=40))
    # Entity rows: account 4 never has events; some rows sit exactly on an event's time.
    row_time = st.one_of(
        moments(tile_minutes), st.sampled_from([e["ts"] for e in events] or [BASE])
    )
    rows = draw(st.lists(st.tuples(st.integers(1, 4), row_time), min_size=1, max_size=12))
    names = [a.output_name for a in aggregations]
    wanted = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True))
    return {"view": view_of(aggregations, tile), "events": events, "rows": rows, "wanted": wanted}


def retrieve(case: dict[str, Any], *, pruned: bool = True) -> tuple[pd.DataFrame, pa.Table]:
    view = case["view"]
    catalog = Catalog.build("p", [account, view])
    refs = [f"velocity:{name}" for name in case["wanted"]]
    events = pa.table(
        {
            "account_id": pa.array([e["account_id"] for e in case["events"]], pa.int64()),
            "ts": pa.array([e["ts"] for e in case["events"]], US),
            "amount": pa.array([e["amount"] for e in case["events"]], pa.float64()),
            "device": pa.array([e["device"] for e in case["events"]], pa.string()),
        }
    )
    entity_df = pd.DataFrame(case["rows"], columns=["account_id", "event_timestamp"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "events").mkdir()
        pq.write_table(events, root / "events" / "part-0.parquet")
        with pytest.MonkeyPatch.context() as patch:
            if not pruned:
                patch.setattr(duckdb_windows, "window_ctes", unpruned_window_ctes)
            frame = historical_features(DuckDBEngine(root), catalog, entity_df, refs).to_pandas()
    return frame, events


def same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) or hasattr(a, "tolist"):
        return list(a) == list(b)
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if isinstance(a, float) or isinstance(b, float):
        if b is None or (isinstance(b, float) and math.isnan(b)):
            return False
        return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame, names: list[str]) -> None:
    assert list(actual.columns) == list(expected.columns)
    for name in names:
        got, want = actual[name].tolist(), expected[name].tolist()
        assert all(same(a, b) for a, b in zip(got, want, strict=True)), (name, got, want)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(odd_floats=False))
def test_pruned_windows_equal_the_reference(case: dict[str, Any]) -> None:
    actual, events = retrieve(case)
    catalog = Catalog.build("p", [account, case["view"]])
    request = resolve(catalog, [f"velocity:{name}" for name in case["wanted"]])
    entity_df = pd.DataFrame(case["rows"], columns=["account_id", "event_timestamp"])
    expected = reference_historical_features(entity_df, request, {"velocity": events.to_pandas()})
    assert_same(actual, expected, case["wanted"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(odd_floats=True))
def test_pruned_windows_equal_the_unpruned_pass_with_nan_and_inf(case: dict[str, Any]) -> None:
    # The reference skips NaN as missing; DuckDB (and the online tiles) count it as a value.
    actual, _ = retrieve(case)
    expected, _ = retrieve(case, pruned=False)
    assert_same(actual, expected, case["wanted"])


def test_an_event_after_every_row_and_one_before_every_window_count_nowhere() -> None:
    """Hand-worked: 1-minute tiles, windows of 2 minutes and 1 day; rows at 10:05:30."""
    view = view_of(
        [
            Aggregation(column="amount", function="sum", window=timedelta(minutes=2), name="s2"),
            Aggregation(
                column="device", function="count_distinct", window=timedelta(days=1), name="d"
            ),
        ],
        timedelta(minutes=1),
    )
    events = [  # 2-minute window at 10:05:30 starts at 10:04:00; the day window at 10:06 - 1 d
        {
            "account_id": 1,
            "ts": BASE + timedelta(minutes=3, seconds=59),
            "amount": 1.0,
            "device": "a",
        },
        {"account_id": 1, "ts": BASE + timedelta(minutes=4), "amount": 2.0, "device": "a"},
        {
            "account_id": 1,
            "ts": BASE + timedelta(minutes=5, seconds=30),
            "amount": 4.0,
            "device": "b",
        },
        {
            "account_id": 1,
            "ts": BASE + timedelta(minutes=5, seconds=31),
            "amount": 8.0,
            "device": "c",
        },
        {"account_id": 1, "ts": BASE - timedelta(days=1), "amount": 16.0, "device": "d"},
        {"account_id": 2, "ts": BASE - timedelta(days=1, minutes=1), "amount": 32.0, "device": "e"},
    ]
    rows = [(1, BASE + timedelta(minutes=5, seconds=30)), (2, BASE), (3, BASE)]
    actual, _ = retrieve({"view": view, "events": events, "rows": rows, "wanted": ["s2", "d"]})
    assert [None if pd.isna(v) else v for v in actual["s2"]] == [6.0, None, None]
    assert [None if pd.isna(v) else v for v in actual["d"]] == [2, None, None]
