"""OfflineEngine conformance: every engine must equal the reference join on generated data.

Hypothesis draws tables with duplicate event times, equal event and created times, ttl edges,
null values and created times, entities with no rows and out-of-order input, split over files.
Spark runs fewer examples (SPARK_EXAMPLES: each costs a few Spark jobs, ~1-3 s on 2 cores).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity import Catalog, Entity, FeatureView, Field, FileSource, Float64, Int64, String
from parity.offline.duckdb_engine import DuckDBEngine
from parity.offline.engine import OfflineEngine
from parity.offline.request import resolve
from parity.offline.retrieval import historical_features
from parity.testing import reference_historical_features
from parity.timeutil import NO_CREATED, from_micros, to_micros
from tests.spark_support import spark_engine

T0 = datetime(2026, 2, 1, tzinfo=UTC)
US = pa.timestamp("us", tz="UTC")
ENGINES: dict[str, Callable[[Path], OfflineEngine]] = {
    "duckdb": DuckDBEngine,
    "spark": spark_engine,
}
MARKS = {"spark": [pytest.mark.spark]}
ENGINE_NAMES = [pytest.param(name, marks=MARKS.get(name, [])) for name in sorted(ENGINES)]
# Hypothesis examples per test: Spark's are 20-50x slower than DuckDB's (JVM jobs per example),
# so it runs fewer to keep `make test` within budget on two cores.
SPARK_EXAMPLES = {"reference": 20, "latest": 15, "same": 15}


def examples(engine_name: str, duckdb: int, test: str) -> settings:
    count = SPARK_EXAMPLES[test] if engine_name == "spark" else duckdb
    return settings(max_examples=count, deadline=None, suppress_health_check=[HealthCheck.too_slow])


account = Entity(name="account", join_keys=["account_id"])
device = Entity(name="device", join_keys=["device_id"], value_type=String)


def moment(step: int, micro: int = 0) -> datetime:
    return T0 + timedelta(hours=step, microseconds=micro)


times = st.builds(moment, st.integers(0, 6), st.sampled_from([0, 0, 0, 1]))
# Source rows crowd onto few times so equal (key, event time) pairs and created ties are common.
source_times = st.builds(moment, st.integers(0, 3), st.just(0))
maybe_created = st.one_of(st.none(), st.builds(moment, st.integers(0, 3), st.just(0)))
ttls = st.sampled_from([None, timedelta(hours=1), timedelta(hours=2), timedelta(minutes=90)])


@st.composite
def view_rows(draw: st.DrawFn, composite: bool) -> list[dict[str, Any]]:
    row = st.fixed_dictionaries(
        {
            "account_id": st.integers(1, 3),
            "device_id": st.sampled_from(["a", "b"]) if composite else st.just(None),
            "ts": source_times,
            "created": maybe_created,
            "x": st.one_of(st.none(), st.floats(-5, 5, allow_nan=False).map(lambda v: round(v, 2))),
            "n": st.one_of(st.none(), st.integers(-3, 3)),
        }
    )
    return draw(st.lists(row, min_size=0, max_size=14))


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    entity_rows = draw(
        st.lists(
            st.tuples(st.integers(1, 4), st.sampled_from(["a", "b", "c"]), times),
            min_size=1,
            max_size=12,
        )
    )
    return {
        "single": draw(view_rows(False)),
        "pair": draw(view_rows(True)),
        "single_ttl": draw(ttls),
        "pair_ttl": draw(ttls),
        "split": draw(st.integers(0, 14)),
        "created_column": draw(st.booleans()),
        "entities": entity_rows,
    }


def build_views(s: dict[str, Any]) -> tuple[FeatureView, FeatureView]:
    created = "created" if s["created_column"] else None
    single = FeatureView(
        name="single",
        entities=[account],
        schema=[Field(name="x", dtype=Float64), Field(name="n", dtype=Int64)],
        source=FileSource(path="single", timestamp_field="ts", created_timestamp_column=created),
        ttl=s["single_ttl"],
    )
    pair = FeatureView(
        name="pair",
        entities=[account, device],
        schema=[Field(name="y", dtype=Float64), Field(name="m", dtype=Int64)],
        source=FileSource(
            path="pair/*.parquet",
            timestamp_field="ts",
            created_timestamp_column="created",
            field_mapping={"x": "y", "n": "m"},
        ),
        ttl=s["pair_ttl"],
    )
    return single, pair


def source_table(rows: list[dict[str, Any]], composite: bool) -> pa.Table:
    columns: dict[str, pa.Array] = {
        "account_id": pa.array([r["account_id"] for r in rows], pa.int64()),
        "ts": pa.array([r["ts"] for r in rows], US),
        "created": pa.array([r["created"] for r in rows], US),
        "x": pa.array([r["x"] for r in rows], pa.float64()),
        "n": pa.array([r["n"] for r in rows], pa.int64()),
    }
    if composite:
        columns["device_id"] = pa.array([r["device_id"] for r in rows], pa.string())
    return pa.table(columns)


def write_split(table: pa.Table, folder: Path, split: int) -> None:
    """Two files, so ingestion order spans files (sorted by name)."""
    folder.mkdir(parents=True, exist_ok=True)
    cut = min(split, table.num_rows)
    pq.write_table(table.slice(0, cut), folder / "part-0.parquet")
    pq.write_table(table.slice(cut), folder / "part-1.parquet")


def comparable(frame: pd.DataFrame) -> list[list[object]]:
    return [
        [None if (not isinstance(v, str) and pd.isna(v)) else v for v in row]
        for row in frame.astype(object).itertuples(index=False)
    ]


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_engine_equals_the_reference_join(engine_name: str) -> None:
    examples(engine_name, 120, "reference")(given(s=scenarios())(check_reference_join))(engine_name)


def check_reference_join(engine_name: str, s: dict[str, Any]) -> None:
    single, pair = build_views(s)
    catalog = Catalog.build("p", [account, device, single, pair])
    refs = ["single:x", "single:n", "pair:m", "pair:y"]
    single_table, pair_table = source_table(s["single"], False), source_table(s["pair"], True)
    entity_df = pd.DataFrame(s["entities"], columns=["account_id", "device_id", "event_timestamp"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_split(single_table, root / "single", s["split"])
        write_split(pair_table, root / "pair", s["split"])
        engine = ENGINES[engine_name](root)
        actual = historical_features(engine, catalog, entity_df, refs).to_pandas()
    expected = reference_historical_features(
        entity_df,
        resolve(catalog, refs),
        {"single": single_table.to_pandas(), "pair": pair_table.to_pandas()},
    )
    assert list(actual.columns) == list(expected.columns)
    assert comparable(actual) == comparable(expected)


def reference_latest(
    rows: list[dict[str, Any]], keys: list[str], features: dict[str, str], start: int, end: int
) -> list[tuple[object, ...]]:
    """Per entity, the row with the largest (event, created, ingestion order) in [start, end];
    a missing created time ranks below any real one. Plain Python, independent of the engine."""
    newest: dict[tuple[object, ...], tuple[tuple[int, int, int], dict[str, Any]]] = {}
    for order, row in enumerate(rows):
        event = to_micros(row["ts"])
        if not start <= event <= end:
            continue
        created = NO_CREATED if row["created"] is None else to_micros(row["created"])
        rank = (event, created, order)
        key = tuple(row[k] for k in keys)
        if key not in newest or rank > newest[key][0]:
            newest[key] = (rank, row)
    return sorted(
        (*key, rank[0], rank[1], *(row[source] for source in features.values()))
        for key, (rank, row) in newest.items()
    )


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_latest_equals_the_reference(engine_name: str) -> None:
    """What materialization reads: the newest row per entity in an interval."""
    check = given(s=scenarios(), bounds=st.tuples(times, times))(check_latest)
    examples(engine_name, 80, "latest")(check)(engine_name)


def check_latest(engine_name: str, s: dict[str, Any], bounds: tuple[datetime, datetime]) -> None:
    single, pair = build_views(s)
    start, end = (to_micros(b) for b in sorted(bounds))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_split(source_table(s["single"], False), root / "single", s["split"])
        write_split(source_table(s["pair"], True), root / "pair", s["split"])
        engine = ENGINES[engine_name](root)
        for view, rows, mapping in [
            (single, s["single"], {"x": "x", "n": "n"}),
            (pair, s["pair"], {"y": "x", "m": "n"}),
        ]:
            if view is single and not s["created_column"]:
                rows = [{**r, "created": None} for r in rows]
            batches = list(engine.latest(view, from_micros(start), from_micros(end)))
            table = pa.Table.from_batches(batches) if batches else None
            got = (
                []
                if table is None
                else sorted(
                    zip(
                        *(table.column(c).to_pylist() for c in view.join_keys),
                        table.column("__ts").to_pylist(),
                        table.column("__created").to_pylist(),
                        *(table.column(f).to_pylist() for f in mapping),
                        strict=True,
                    )
                )
            )
            assert got == reference_latest(rows, list(view.join_keys), mapping, start, end)


@pytest.mark.spark
@settings(
    max_examples=SPARK_EXAMPLES["same"],
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(s=scenarios(), bounds=st.tuples(times, times))
def test_spark_and_duckdb_answer_the_same_scenarios_identically(
    s: dict[str, Any], bounds: tuple[datetime, datetime]
) -> None:
    """Arrow results compared directly (names, types, row order, nulls): the point-in-time join,
    the rows of an interval, and the newest row per entity."""
    single, pair = build_views(s)
    catalog = Catalog.build("p", [account, device, single, pair])
    refs = ["single:x", "single:n", "pair:m", "pair:y"]
    entity_df = pd.DataFrame(s["entities"], columns=["account_id", "device_id", "event_timestamp"])
    start, end = sorted(bounds)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_split(source_table(s["single"], False), root / "single", s["split"])
        write_split(source_table(s["pair"], True), root / "pair", s["split"])
        answers = []
        for engine in (DuckDBEngine(root), spark_engine(root)):
            joined = historical_features(engine, catalog, entity_df, refs).to_arrow()
            rows = historical_features(
                engine, catalog, None, ["single:x", "single:n"], start=start, end=end
            ).to_arrow()
            newest = [newest_rows(engine.latest(v, start, end)) for v in (single, pair)]
            answers.append((joined, rows, newest))
    (duck_joined, duck_rows, duck_newest), (spark_joined, spark_rows, spark_newest) = answers
    assert spark_joined.equals(duck_joined), (spark_joined, duck_joined)
    assert spark_rows.equals(duck_rows), (spark_rows, duck_rows)
    assert spark_newest == duck_newest


def newest_rows(batches: Any) -> tuple[set[str], list[dict[str, Any]]]:
    """latest()'s schemas (of non-empty batches) and rows, sorted (its row order is free)."""
    batches = [b for b in batches if b.num_rows]
    rows = [row for b in batches for row in b.to_pylist()]
    return {str(b.schema) for b in batches}, sorted(rows, key=lambda r: list(map(str, r.values())))
