"""Windowed aggregations offline: a hand-worked example, then DuckDB against the plain-Python
reference (parity.testing) on generated event streams."""

from __future__ import annotations

import math
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity import Aggregation, Catalog, Entity, FeatureView, Field, FileSource, Float64, String
from parity.aggregation.windows import counts, window_start, window_tiles
from parity.offline.duckdb_engine import DuckDBEngine
from parity.offline.request import resolve
from parity.offline.retrieval import historical_features
from parity.testing import reference_historical_features
from parity.timeutil import to_micros

US = pa.timestamp("us", tz="UTC")
account = Entity(name="account", join_keys=["account_id"])
MINUTE = timedelta(minutes=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(f"2026-03-01T{text}+00:00")


def test_the_documented_worked_example() -> None:
    tile, window = 5 * 60_000_000, 15 * 60_000_000
    t = to_micros(at("10:07:00"))
    assert window_start(t, window, tile) == to_micros(at("09:55:00"))
    assert not counts(to_micros(at("09:54:59")), t, window, tile)
    assert counts(to_micros(at("09:55:00")), t, window, tile)
    assert counts(to_micros(at("10:07:00")), t, window, tile)
    assert not counts(to_micros(at("10:07:00")) + 1, t, window, tile)
    assert window_start(to_micros(at("10:10:00")), window, tile) == to_micros(at("10:00:00"))
    assert list(window_tiles(t, window, tile)) == [
        to_micros(at(x)) for x in ("09:55:00", "10:00:00", "10:05:00")
    ]


def velocity_view(aggregations: list[Aggregation], tile: timedelta) -> FeatureView:
    return FeatureView(
        name="velocity",
        entities=[account],
        schema=[Field(name="amount", dtype=Float64), Field(name="device", dtype=String)],
        source=FileSource(path="events", timestamp_field="ts"),
        aggregations=aggregations,
        tile_interval=tile,
    )


def retrieve(view: FeatureView, events: pa.Table, entity_df: pd.DataFrame, split: int) -> Any:
    catalog = Catalog.build("p", [account, view])
    refs = [f"velocity:{name}" for name in view.feature_names]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "events").mkdir()
        cut = min(split, events.num_rows)
        pq.write_table(events.slice(0, cut), root / "events" / "part-0.parquet")
        pq.write_table(events.slice(cut), root / "events" / "part-1.parquet")
        actual = historical_features(DuckDBEngine(root), catalog, entity_df, refs).to_pandas()
    expected = reference_historical_features(
        entity_df, resolve(catalog, refs), {"velocity": events.to_pandas()}
    )
    return actual, expected


def test_hand_worked_values() -> None:
    view = velocity_view(
        [
            Aggregation(column="amount", function="count", window=15 * MINUTE),
            Aggregation(column="amount", function="sum", window=15 * MINUTE),
            Aggregation(column="device", function="count_distinct", window=15 * MINUTE),
            Aggregation(column="amount", function="last_n", n=2, window=15 * MINUTE),
            Aggregation(column="amount", function="mean", window=5 * MINUTE),
        ],
        5 * MINUTE,
    )
    events = pa.table(
        {
            "account_id": pa.array([1, 1, 1, 1, 2], pa.int64()),
            "ts": pa.array(
                [at("09:54:59"), at("09:55:00"), at("10:07:00"), at("10:07:00"), at("10:00:00")],
                US,
            ),
            "amount": [100.0, 10.0, 20.0, None, 7.0],
            "device": ["a", "b", "b", "c", "z"],
        }
    )
    entity_df = pd.DataFrame(
        {
            "account_id": [1, 1, 2, 3],
            "event_timestamp": [at("10:07:00"), at("10:10:00"), at("10:07:00"), at("10:07:00")],
        }
    )
    actual, _ = retrieve(view, events, entity_df, split=2)

    def plain(name: str) -> list[Any]:
        return [None if not isinstance(v, list) and pd.isna(v) else v for v in actual[name]]

    # Account 3 has no event in the longest window: never seen, null (online NOT_FOUND).
    assert plain("amount_count_15m") == [2, 1, 1, None]
    assert plain("amount_sum_15m") == [30.0, 20.0, 7.0, None]
    # device counts whatever amount is: the 10:07 events used b and c.
    assert plain("device_count_distinct_15m") == [2, 2, 1, None]
    lasts = actual["amount_last2_15m"].tolist()
    assert [list(v) for v in lasts[:3]] == [[20.0, 10.0], [20.0], [7.0]] and lasts[3] is None
    means = actual["amount_mean_5m"].tolist()
    assert (means[0] == 20.0 and means[1] is None) or math.isnan(means[1])


FUNCTIONS = ["count", "sum", "mean", "min", "max", "stddev", "last", "count_distinct"]


def drawn_aggregations(draw: st.DrawFn, windows: st.SearchStrategy[timedelta]) -> list[Aggregation]:
    """Every function over `amount`, and `last_n`/`count_distinct` over `device`, each with a
    window drawn from `windows`."""
    aggregations = [
        Aggregation(column="amount", function=f, window=draw(windows), name=f"a_{f}")
        for f in FUNCTIONS
    ]
    aggregations.append(
        Aggregation(column="device", function="last_n", n=2, window=draw(windows), name="d_last")
    )
    aggregations.append(
        Aggregation(column="device", function="count_distinct", window=draw(windows), name="d_cd")
    )
    return aggregations


@st.composite
def streams(draw: st.DrawFn) -> dict[str, Any]:
    tile = draw(st.sampled_from([1, 5]))  # minutes
    event = st.fixed_dictionaries(
        {
            "account_id": st.integers(1, 3),
            # Times crowd onto tile edges (multiples of the tile, +- 1 µs) and repeat.
            "ts": st.builds(
                lambda m, d: at("10:00:00") + timedelta(minutes=m, microseconds=d),
                st.integers(-12, 12),
                st.sampled_from([0, 0, 1, -1]),
            ),
            "amount": st.one_of(st.none(), st.integers(-5, 5).map(float)),
            "device": st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
        }
    )
    windows = st.sampled_from([1, 2, 3]).map(lambda k: k * tile * MINUTE)
    aggregations = drawn_aggregations(draw, windows)
    rows = st.tuples(
        st.integers(1, 4),
        st.builds(
            lambda m, d: at("10:00:00") + timedelta(minutes=m, microseconds=d),
            st.integers(-12, 14),
            st.sampled_from([0, 1, -1]),
        ),
    )
    return {
        "tile": tile * MINUTE,
        "aggregations": aggregations,
        "events": draw(st.lists(event, max_size=25)),
        "rows": draw(st.lists(rows, min_size=1, max_size=10)),
        "split": draw(st.integers(0, 25)),
    }


def same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) or hasattr(a, "tolist"):
        return list(a) == list(b)
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if isinstance(a, float) or isinstance(b, float):
        return b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s=streams())
def test_duckdb_windows_equal_the_reference(s: dict[str, Any]) -> None:
    view = velocity_view(s["aggregations"], s["tile"])
    events = pa.table(
        {
            "account_id": pa.array([e["account_id"] for e in s["events"]], pa.int64()),
            "ts": pa.array([e["ts"] for e in s["events"]], US),
            "amount": pa.array([e["amount"] for e in s["events"]], pa.float64()),
            "device": pa.array([e["device"] for e in s["events"]], pa.string()),
        }
    )
    entity_df = pd.DataFrame(s["rows"], columns=["account_id", "event_timestamp"])
    actual, expected = retrieve(view, events, entity_df, s["split"])
    assert list(actual.columns) == list(expected.columns)
    for name in view.feature_names:
        got, want = actual[name].tolist(), expected[name].tolist()
        assert all(same(a, b) for a, b in zip(got, want, strict=True)), (name, got, want)
