"""Windowed aggregations on Spark (offline/spark_windows.py): the hand-worked example of
tests/offline/test_windows.py, then `add_windows` against the plain-Python reference
(parity.testing) on generated event streams, every function, on a local Spark session."""

from __future__ import annotations

import importlib.util
import math
import os
import random
import sys
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from parity import (
    Aggregation,
    Catalog,
    Entity,
    FeatureView,
    Field,
    FileSource,
    Float64,
    Int64,
    String,
)
from parity.offline.duckdb_engine import DuckDBEngine
from parity.offline.engine import OfflineEngine
from parity.offline.request import resolve
from parity.offline.retrieval import historical_features
from parity.testing import reference_historical_features
from parity.timeutil import to_micros

pytestmark = [
    # pyspark's collect leaves its result socket to the garbage collector (a ResourceWarning).
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <socket\.socket:pytest.PytestUnraisableExceptionWarning"
    ),
]

US = pa.timestamp("us", tz="UTC")
# Arrow -> pandas with nullable types, so a null stays a null on the way into Spark.
NULLABLE = {
    pa.int64(): pd.Int64Dtype(),
    pa.float64(): pd.Float64Dtype(),
    pa.string(): pd.StringDtype(),
}
MINUTE = timedelta(minutes=1)
account = Entity(name="account", join_keys=["account_id"])


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """The process's one small local session (never stopped: other modules reuse it)."""
    try:
        from parity.offline.spark_session import spark_session
        from tests.spark_support import SPARK_TEST_CONFIG
    except ImportError:  # the Spark engine (issue 16, part A) not merged here yet
        session = _own_session()
    else:
        session = spark_session(SPARK_TEST_CONFIG)
    # Test frames come from Arrow, decoded in the JVM (rows from Python would start Python workers).
    session.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    session.conf.set("spark.sql.execution.arrow.pyspark.fallback.enabled", "false")
    yield session


def _own_session() -> Any:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def at(text: str) -> datetime:
    return datetime.fromisoformat(f"2026-03-01T{text}+00:00")


def velocity_view(aggregations: list[Aggregation], tile: timedelta) -> FeatureView:
    return FeatureView(
        name="velocity",
        entities=[account],
        schema=[
            Field(name="amount", dtype=Float64),
            Field(name="qty", dtype=Int64),
            Field(name="device", dtype=String),
        ],
        source=FileSource(path="events", timestamp_field="ts"),
        aggregations=aggregations,
        tile_interval=tile,
    )


def from_pandas(spark: Any, frame: pd.DataFrame, schema: str) -> Any:
    """A Spark frame of `frame`, through Arrow (decoded in the JVM: rows from Python are slower)."""
    with warnings.catch_warnings():
        # pyspark 3.5 calls APIs that pandas and Python deprecate (is_categorical_dtype,
        # distutils' LooseVersion).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", "is_categorical_dtype is deprecated")
        return spark.createDataFrame(frame, schema)


def spark_windows(
    spark: Any, view: FeatureView, events: pa.Table, entity_df: pd.DataFrame, split: int
) -> list[dict[str, Any]]:
    """`add_windows` over frames built from the Arrow events (ingestion order: two files cut at
    `split`, as the engine numbers them) and the entity rows; rows in entity-frame order."""
    from parity.offline.spark_windows import add_windows

    cut = min(split, events.num_rows)
    order = [i if i < cut else (1 << 40) + i - cut for i in range(events.num_rows)]
    frame = events.drop_columns(["ts"]).to_pandas(types_mapper=NULLABLE.get)
    frame.insert(1, "__ts", pd.array([to_micros(t) for t in events["ts"].to_pylist()], "Int64"))
    frame.insert(2, "__created", pd.array([0] * len(frame), "Int64"))
    frame.insert(3, "__ord", pd.array(order, "Int64"))
    frame = from_pandas(
        spark,
        frame,
        "account_id long, __ts long, __created long, __ord long, "
        "amount double, qty long, device string",
    )
    left = pd.DataFrame(
        {
            "account_id": pd.array(entity_df["account_id"], "Int64"),
            "__rid": pd.array(range(len(entity_df)), "Int64"),
            "__ts": pd.array([to_micros(t) for t in entity_df["event_timestamp"]], "Int64"),
            "tag": [f"row{rid}" for rid in range(len(entity_df))],
        }
    )
    left = from_pandas(spark, left, "account_id long, __rid long, __ts long, tag string")
    catalog = Catalog.build("p", [account, view])
    request = resolve(catalog, [f"velocity:{name}" for name in view.feature_names])
    result = add_windows(left, frame, request.views[0])
    assert result.columns == ["account_id", "__rid", "__ts", "tag", *view.feature_names]
    got = sorted((row.asDict() for row in result.collect()), key=lambda r: r["__rid"])
    assert [r["tag"] for r in got] == [f"row{rid}" for rid in range(len(entity_df))]
    return got


def expected(view: FeatureView, events: pa.Table, entity_df: pd.DataFrame) -> pd.DataFrame:
    catalog = Catalog.build("p", [account, view])
    refs = [f"velocity:{name}" for name in view.feature_names]
    raw = events.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    return reference_historical_features(entity_df, resolve(catalog, refs), {"velocity": raw})


def event_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table(
        {
            "account_id": pa.array([e["account_id"] for e in rows], pa.int64()),
            "ts": pa.array([e["ts"] for e in rows], US),
            "amount": pa.array([e["amount"] for e in rows], pa.float64()),
            "qty": pa.array([e["qty"] for e in rows], pa.int64()),
            "device": pa.array([e["device"] for e in rows], pa.string()),
        }
    )


@pytest.mark.spark
def test_the_hand_worked_example_on_spark(spark: Any) -> None:
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
    events = event_table(
        [
            {"account_id": k, "ts": at(t), "amount": v, "qty": None, "device": d}
            for k, t, v, d in [
                (1, "09:54:59", 100.0, "a"),
                (1, "09:55:00", 10.0, "b"),
                (1, "10:07:00", 20.0, "b"),
                (1, "10:07:00", None, "c"),
                (2, "10:00:00", 7.0, "z"),
            ]
        ]
    )
    entity_df = pd.DataFrame(
        {
            "account_id": [1, 1, 2, 3],
            "event_timestamp": pd.to_datetime(
                [at("10:07:00"), at("10:10:00"), at("10:07:00"), at("10:07:00")], utc=True
            ),
        }
    )
    got = spark_windows(spark, view, events, entity_df, split=2)

    def column(name: str) -> list[Any]:
        return [r[name] for r in got]

    # Account 3 has no event in the longest window: never seen, null (online NOT_FOUND).
    assert column("amount_count_15m") == [2, 1, 1, None]
    assert column("amount_sum_15m") == [30.0, 20.0, 7.0, None]
    # device counts whatever amount is: the 10:07 events used b and c.
    assert column("device_count_distinct_15m") == [2, 2, 1, None]
    assert column("amount_last2_15m") == [[20.0, 10.0], [20.0], [7.0], None]
    # The 10:00 event of account 2 is before the 5-minute window at 10:07 (10:05 .. 10:07).
    assert column("amount_mean_5m") == [20.0, None, None, None]


FUNCTIONS = ["count", "sum", "mean", "min", "max", "stddev", "last", "count_distinct"]


@st.composite
def streams(draw: st.DrawFn) -> dict[str, Any]:
    tile = draw(st.sampled_from([1, 5]))  # minutes
    # 2026, or around the epoch (negative times: tiles are floored, not truncated).
    base = draw(st.sampled_from([at("10:00:00"), datetime.fromtimestamp(0, UTC)]))
    # Times crowd onto tile edges (multiples of the tile, +- 1 µs) and repeat.
    moments = st.builds(
        lambda m, d: base + timedelta(minutes=m, microseconds=d),
        st.integers(-12, 12),
        st.sampled_from([0, 0, 1, -1]),
    )
    event = st.fixed_dictionaries(
        {
            "account_id": st.integers(1, 3),
            "ts": moments,
            # -0.0 equals 0.0: one distinct value, as in DuckDB.
            "amount": st.one_of(
                st.none(), st.just(-0.0), st.integers(-5, 5).map(lambda v: v * 1.25)
            ),
            "qty": st.one_of(st.none(), st.integers(-(2**40), 2**40)),
            "device": st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
        }
    )
    windows = st.sampled_from([1, 2, 3, 4]).map(lambda k: k * tile * MINUTE)
    aggregations = [
        Aggregation(column=column, function=f, window=draw(windows), name=f"{column}_{f}")
        for column in ("amount", "qty")
        for f in FUNCTIONS
    ]
    aggregations += [
        Aggregation(column="device", function="last_n", n=2, window=draw(windows), name="d_last"),
        Aggregation(column="qty", function="last_n", n=3, window=draw(windows), name="q_last"),
        Aggregation(column="device", function="count_distinct", window=draw(windows), name="d_cd"),
        Aggregation(column="device", function="min", window=draw(windows), name="d_min"),
    ]
    # Account 4 never has events; a null key matches none.
    marks = st.tuples(
        st.one_of(st.integers(1, 4), st.none()),
        st.builds(
            lambda m, d: base + timedelta(minutes=m, microseconds=d),
            st.integers(-12, 14),
            st.sampled_from([0, 1, -1]),
        ),
    )
    return {
        "tile": tile * MINUTE,
        "aggregations": aggregations,
        "events": draw(st.lists(event, max_size=40)),
        "rows": draw(st.lists(marks, min_size=1, max_size=16)),
        "split": draw(st.integers(0, 40)),
    }


def same(a: Any, b: Any) -> bool:
    """Spark's value `a` against the reference's `b`: exact but for float rounding."""
    if isinstance(a, list) or isinstance(b, list):
        return (
            a is not None
            and b is not None
            and len(a) == len(b)
            and all(same(x, y) for x, y in zip(a, b, strict=True))
        )
    if b is None or (isinstance(b, float) and math.isnan(b)) or b is pd.NA:
        return a is None
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(b, int):  # counts and integer sums: exact, and integers
        return type(a) is int and a == b
    return bool(a == b)


# Each example is a few Spark jobs (seconds on 2 cores): few examples, many cases in each, and
# no shrinking (minutes); a failure names the feature and both columns.
@pytest.mark.spark
@settings(
    max_examples=15,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
@given(s=streams())
def test_spark_windows_equal_the_reference(spark: Any, s: dict[str, Any]) -> None:
    view = velocity_view(s["aggregations"], s["tile"])
    events = event_table(s["events"])
    entity_df = pd.DataFrame(s["rows"], columns=["account_id", "event_timestamp"])
    entity_df["account_id"] = entity_df["account_id"].astype("Int64")
    got = spark_windows(spark, view, events, entity_df, s["split"])
    want = expected(view, events, entity_df)
    for name in view.feature_names:
        values = [r[name] for r in got]
        wanted = want[name].tolist()
        assert all(same(a, b) for a, b in zip(values, wanted, strict=True)), (name, values, wanted)


merchant = Entity(name="merchant", join_keys=["merchant"], value_type=String)
HAS_SPARK_ENGINE = importlib.util.find_spec("tests.spark_support") is not None


def engine(name: str, root: Path) -> OfflineEngine:
    if name == "duckdb":
        return DuckDBEngine(root)
    from tests.spark_support import spark_engine  # type: ignore[import-not-found,unused-ignore]

    return spark_engine(root)  # type: ignore[no-any-return,unused-ignore]


def spending_view() -> FeatureView:
    """Composite keys (account, merchant), every function, windows of 1 to 6 tiles of 5 min."""
    window = [5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE]
    aggregations = [
        Aggregation(column=c, function=f, window=window[n % 4], name=f"{c}_{f}_{n}")
        for n, (c, f) in enumerate(
            [(c, f) for c in ("amount", "qty") for f in FUNCTIONS]
            + [("device", "count_distinct"), ("device", "last"), ("device", "max")]
        )
    ]
    aggregations += [
        Aggregation(column="amount", function="last_n", n=3, window=30 * MINUTE, name="a_last3"),
        Aggregation(column="device", function="last_n", n=2, window=10 * MINUTE, name="d_last2"),
    ]
    return FeatureView(
        name="spending",
        entities=[account, merchant],
        schema=[
            Field(name="amount", dtype=Float64),
            Field(name="qty", dtype=Int64),
            Field(name="device", dtype=String),
        ],
        source=FileSource(path="events", timestamp_field="ts"),
        aggregations=aggregations,
        tile_interval=5 * MINUTE,
    )


def spending_data() -> tuple[pa.Table, pd.DataFrame]:
    """Seeded events crowding tile edges (3 accounts x 2 merchants), and entity rows, some of
    entities without events."""
    rng = random.Random(16)

    def moment() -> datetime:
        step = rng.choice([0, 0, 1, -1, 7])
        return at("10:00:00") + timedelta(minutes=5 * rng.randint(-8, 8), microseconds=step)

    rows = [
        {
            "account_id": rng.randint(1, 3),
            "merchant": rng.choice(["m1", "m2"]),
            "ts": moment(),
            "amount": rng.choice([None, -0.0, *[v * 0.5 for v in range(-6, 7)]]),
            "qty": rng.choice([None, *range(-4, 5), 2**40]),
            "device": rng.choice([None, "a", "b", "c"]),
        }
        for _ in range(240)
    ]
    events = pa.Table.from_pylist(
        rows,
        pa.schema(
            [
                ("account_id", pa.int64()),
                ("merchant", pa.string()),
                ("ts", US),
                ("amount", pa.float64()),
                ("qty", pa.int64()),
                ("device", pa.string()),
            ]
        ),
    )
    entity_df = pd.DataFrame(
        {
            "account_id": [rng.randint(1, 4) for _ in range(60)],
            "merchant": [rng.choice(["m1", "m2", "m3"]) for _ in range(60)],
            "event_timestamp": pd.to_datetime([moment() for _ in range(60)], utc=True),
            "label": range(60),
        }
    )
    return events, entity_df


ENGINE_PARAMS = [
    "duckdb",
    pytest.param(
        "spark",
        marks=[
            pytest.mark.spark,
            pytest.mark.skipif(
                not HAS_SPARK_ENGINE,
                reason="the Spark engine (issue 16, part A) is not merged here",
            ),
        ],
    ),
]


@pytest.mark.parametrize("engine_name", ENGINE_PARAMS)
def test_historical_windows_equal_the_reference_on_each_engine(
    engine_name: str, tmp_path: Path
) -> None:
    view = spending_view()
    catalog = Catalog.build("p", [account, merchant, view])
    refs = [f"spending:{name}" for name in view.feature_names]
    events, entity_df = spending_data()
    (tmp_path / "events").mkdir()
    for part, start in enumerate(range(0, events.num_rows, 100)):  # ingestion order over files
        pq.write_table(events.slice(start, 100), tmp_path / "events" / f"part-{part}.parquet")
    got = historical_features(engine(engine_name, tmp_path), catalog, entity_df, refs).to_pandas()
    raw = events.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    want = reference_historical_features(entity_df, resolve(catalog, refs), {"spending": raw})
    assert list(got.columns) == list(want.columns)
    assert got["label"].tolist() == list(range(60))
    for name in view.feature_names:
        values = [plain(v) for v in got[name].tolist()]
        wanted = want[name].tolist()
        assert all(same(a, b) for a, b in zip(values, wanted, strict=True)), (name, values, wanted)
    if engine_name == "spark":  # and the same frame as DuckDB's, column for column
        duck = historical_features(DuckDBEngine(tmp_path), catalog, entity_df, refs).to_pandas()
        assert got.dtypes.tolist() == duck.dtypes.tolist()
        for name in view.feature_names:
            pairs = zip(got[name].tolist(), duck[name].tolist(), strict=True)
            assert all(same(plain(a), plain(b)) for a, b in pairs), name


def plain(value: Any) -> Any:
    """A pandas cell as Python: lists for arrays, None for missing, ints for integers."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value
