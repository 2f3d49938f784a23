"""The Spark offline engine against hand-worked answers and DuckDB's (tests/offline/test_retrieval.py
builds the same repo): composite keys, entity frames of every kind, streaming and Parquet results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity import FeatureStore
from parity.errors import EntityFrameError
from parity.offline.duckdb_engine import DuckDBEngine
from parity.offline.retrieval import historical_features
from parity.offline.spark_session import default_conf
from parity.offline.spark_transfer import collect_rows
from parity.timeutil import to_micros
from tests.conftest import write_parquet, write_repo
from tests.offline.test_retrieval import REPO, US, at, entities, values
from tests.spark_support import SPARK_TEST_CONFIG

ROOT = Path(__file__).resolve().parents[2]


def spark_yaml() -> str:
    conf = "".join(f"    {k}: '{v}'\n" for k, v in SPARK_TEST_CONFIG.conf.items())
    return f"offline:\n  type: spark\n  master: '{SPARK_TEST_CONFIG.master}'\n  conf:\n{conf}"


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    """test_retrieval.py's repo (same rows), its offline engine Spark."""
    root = write_repo(tmp_path / "repo", REPO, extra=spark_yaml())
    write_parquet(
        root / "data" / "stats.parquet",
        {
            "account_id": pa.array([1, 1, 1, 2, 1], pa.int64()),
            "event_timestamp": pa.array([at(0), at(0), at(5), at(1), at(8)], US),
            "created": pa.array([at(1), at(2), at(5), at(1), at(9)], US),
            "amount": pa.array([10.0, 11.0, 50.0, 7.0, None], pa.float64()),
            "n": pa.array([1, 2, 3, 4, 5], pa.int64()),
        },
    )
    for name, devices, ns, counts in [
        ("a", ["d1", "d2"], [100, 200], [1, 2]),
        ("b", ["d1"], [101], [3]),
    ]:
        write_parquet(
            root / "data" / "pair" / f"{name}.parquet",
            {
                "account_id": pa.array([1] * len(devices), pa.int64()),
                "device_id": pa.array(devices),
                "ts": pa.array([at(0)] * len(devices), US),
                "n": pa.array(ns, pa.int64()),
                "cnt": pa.array(counts, pa.int64()),
            },
        )
    feature_store = FeatureStore(root)
    feature_store.apply()
    return feature_store


def duckdb_answer(store: FeatureStore, entity_df: Any, refs: list[str], **kw: Any) -> pa.Table:
    return historical_features(
        DuckDBEngine(store.repo_path), store.registry.catalog, entity_df, refs, **kw
    ).to_arrow()


pytestmark = pytest.mark.spark


def test_the_store_uses_the_spark_engine(store: FeatureStore) -> None:
    from parity.offline.spark_engine import SparkEngine

    assert isinstance(store._offline_engine, SparkEngine)


def test_worked_example_ties_ttl_and_future_rows(store: FeatureStore) -> None:
    frame = entities(
        [
            (1, "d1", at(-1)),
            (1, "d1", at(0)),
            (1, "d1", at(4.5)),
            (1, "d1", at(5)),
            (1, "d1", at(8.5)),
            (1, "d1", at(10)),
            (2, "d1", at(11)),
            (2, "d1", at(11.000001)),
            (3, "d1", at(5)),
        ]
    )
    out = store.get_historical_features(frame, ["stats:amount", "stats:n"]).to_pandas()
    assert values(out, "amount") == [None, 11.0, 11.0, 50.0, None, None, 7.0, None, None]
    assert values(out, "n") == [None, 2, 2, 3, 5, 5, 4, None, None]


def test_composite_keys_and_ties_without_created_time(store: FeatureStore) -> None:
    frame = entities([(1, "d1", at(1)), (1, "d2", at(1)), (1, "d3", at(1))])
    out = store.get_historical_features(frame, ["pair:n", "pair:seen"]).to_pandas()
    assert values(out, "n") == [101, 200, None]  # file b's row is ingested after file a's
    assert values(out, "seen") == [3, 2, None]


def test_output_equals_duckdb_with_passthrough_columns_and_two_views(
    store: FeatureStore,
) -> None:
    frame = entities([(2, "d9", at(3)), (1, "d1", at(6)), (2, "d9", at(3)), (1, "d2", at(0))])
    frame["label"] = [True, False, None, False]
    frame["account_id"] = frame["account_id"].astype("int32")  # an Int64 entity takes int32
    out = store.get_historical_features(frame, "svc").to_arrow()
    assert out.equals(duckdb_answer(store, frame, ["stats:amount", "pair:seen"]))
    assert out.column_names == [
        "account_id",
        "device_id",
        "event_timestamp",
        "label",
        "amount",
        "seen",
    ]
    assert out.schema.field("account_id").type == pa.int32()
    assert values(out.to_pandas(), "amount") == [7.0, 50.0, 7.0, 11.0]


def test_pandas_columns_of_every_kind_pass_through_as_on_duckdb(store: FeatureStore) -> None:
    frame = pd.DataFrame(
        {
            "account_id": pd.array([1, 2], dtype="Int32"),
            "event_timestamp": [at(6), at(2)],
            "nothing": [None, None],
            "category": pd.Categorical(["a", "b"]),
            "small": pd.array([1, 2], dtype="uint8"),
            "text": ["x", None],
        }
    )
    out = store.get_historical_features(frame, ["stats:amount"]).to_arrow()
    assert out.equals(duckdb_answer(store, frame, ["stats:amount"]))
    assert out.schema.field("category").type == pa.string()
    assert values(out.to_pandas(), "amount") == [50.0, 7.0]


def test_arrow_parquet_sql_and_table_entity_frames_agree(
    store: FeatureStore, tmp_path: Path
) -> None:
    frame = entities([(1, "d1", at(6)), (2, "d1", at(2)), (1, "d1", at(0))])
    expected = [50.0, 7.0, 11.0]
    path = tmp_path / "entities.parquet"
    frame.to_parquet(path)
    engine = store._offline_engine
    engine.session.read.parquet(str(path)).createOrReplaceTempView("parity_test_entities")  # type: ignore[attr-defined]
    frames: list[Any] = [
        pa.Table.from_pandas(frame, preserve_index=False),
        str(path),
        path,
        f"SELECT * FROM parquet.`{path}`",
        "SELECT * FROM parity_test_entities",
    ]
    duck = duckdb_answer(store, frame, ["stats:amount"])
    for entity in frames:
        out = store.get_historical_features(entity, ["stats:amount"]).to_arrow()
        assert values(out.to_pandas(), "amount") == expected, entity
        assert out.select(["amount"]).equals(duck.select(["amount"])), entity


def test_parquet_entity_frame_over_files_keeps_file_order(
    store: FeatureStore, tmp_path: Path
) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    entities([(1, "d1", at(6)), (2, "d1", at(2))]).to_parquet(folder / "0.parquet")
    entities([(1, "d1", at(0))]).to_parquet(folder / "1.parquet")
    glob = str(folder / "*.parquet")
    out = store.get_historical_features(glob, ["stats:amount"]).to_arrow()
    assert out.equals(duckdb_answer(store, glob, ["stats:amount"]))
    assert values(out.to_pandas(), "amount") == [50.0, 7.0, 11.0]


@pytest.mark.parametrize("column", ["event_timestamp", "account_id"])
def test_parquet_and_sql_frames_with_a_null_time_or_key_are_refused_naming_the_row(
    store: FeatureStore, tmp_path: Path, column: str
) -> None:
    frame = pd.DataFrame(
        {"account_id": [1, 2, 1], "event_timestamp": [at(1), at(2), at(3)]}
    ).astype({"account_id": "Int64"})
    frame.loc[1, column] = None
    path = tmp_path / "nulls.parquet"
    frame.to_parquet(path)
    for entity in (str(path), f"SELECT * FROM parquet.`{path}`"):
        job = store.get_historical_features(entity, ["stats:amount"])
        with pytest.raises(EntityFrameError, match=rf"column '{column}' row 1 has "):
            job.to_arrow()
        with pytest.raises(EntityFrameError, match=rf"column '{column}' row 1 has "):
            job.to_parquet(tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nulls.parquet", "repo"]  # no parts


def test_unreadable_entity_query_or_path_is_an_entity_frame_error(store: FeatureStore) -> None:
    with pytest.raises(EntityFrameError, match="SQL entity query cannot be read"):
        store.get_historical_features("SELECT * FROM no_such_table", ["stats:amount"])
    with pytest.raises(EntityFrameError, match=r"entity Parquet path 'nowhere/x\.parquet'"):
        store.get_historical_features("nowhere/x.parquet", ["stats:amount"])


def test_to_parquet_batches_and_arrow_are_the_same_rows(
    store: FeatureStore, tmp_path: Path
) -> None:
    frame = entities([(1 + h % 2, "d1", at(h)) for h in range(24)] * 50)
    job = store.get_historical_features(frame, ["stats:n", "stats:amount", "pair:seen"])
    arrow = job.to_arrow()
    shares: list[float] = []
    target = tmp_path / "out" / "train.parquet"
    assert job.to_parquet(target, progress=shares.append) == 1200
    written = pq.read_table(target)
    assert written.equals(arrow)
    assert written.schema.field("event_timestamp").type == US
    assert shares[-1] == 1.0 and all(0 <= s <= 1 for s in shares)
    assert sorted(p.name for p in target.parent.iterdir()) == ["train.parquet"]
    batches = list(job.to_batches(batch_size=500))
    assert [b.num_rows for b in batches] == [500, 500, 200]
    assert pa.Table.from_batches(batches).equals(arrow)
    assert arrow.equals(duckdb_answer(store, frame, ["stats:n", "stats:amount", "pair:seen"]))


def test_interval_equals_duckdb(store: FeatureStore) -> None:
    refs = ["stats:amount", "stats:n"]
    job = store.get_historical_features(features=refs, start=at(0), end=at(5))
    out = job.to_arrow()
    assert out.equals(duckdb_answer(store, None, refs, start=at(0), end=at(5)))
    rows = list(zip(out["account_id"].to_pylist(), values(out.to_pandas(), "amount"), strict=True))
    assert rows == [(1, 11.0), (2, 7.0), (1, 50.0)]
    assert pa.Table.from_batches(list(job.to_batches(batch_size=2))).equals(out)


def test_events_and_latest_equal_duckdb(store: FeatureStore) -> None:
    spark, duck = store._offline_engine, DuckDBEngine(store.repo_path)
    for name in ("stats", "pair"):
        view = store.registry.catalog.feature_views[name]
        got = pa.Table.from_batches(list(spark.events(view, at(-1), at(9))))
        assert got.equals(pa.Table.from_batches(list(duck.events(view, at(-1), at(9)))))
        newest = pa.Table.from_batches(list(spark.latest(view, at(-1), at(6))))
        expected = pa.Table.from_batches(list(duck.latest(view, at(-1), at(6))))
        order = [(k, "ascending") for k in view.join_keys]
        assert newest.sort_by(order).equals(expected.sort_by(order))


def test_source_frame_orders_rows_as_duckdb_ingestion_order(store: FeatureStore) -> None:
    engine = store._offline_engine
    view = store.registry.catalog.feature_views["pair"]
    rows = collect_rows(engine.source_frame(view, ["seen"]).orderBy("__ord"))  # type: ignore[attr-defined]
    assert [(r["device_id"], r["seen"], r["__ord"]) for r in rows] == [
        ("d1", 1, 1 << 40),  # DuckDB counts files from 1 when there are several
        ("d2", 2, (1 << 40) + 1),
        ("d1", 3, 2 << 40),
    ]


def test_latest_frame_keeps_the_newest_row_per_entity(store: FeatureStore) -> None:
    view = store.registry.catalog.feature_views["stats"]
    frame = store._offline_engine.latest_frame(view, at(0), at(4))  # type: ignore[attr-defined]
    rows = sorted(tuple(r) for r in collect_rows(frame))
    assert frame.columns == ["account_id", "__ts", "__created", "amount", "n"]
    assert rows == [
        (1, to_micros(at(0)), to_micros(at(2)), 11.0, 2),  # of two at hour 0, created later
        (2, to_micros(at(1)), to_micros(at(1)), 7.0, 4),
    ]


def test_describe_gives_the_frame_schema(store: FeatureStore, tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    entities([(1, "d1", at(0))]).to_parquet(path)
    schema = store._offline_engine.describe(str(path), sql=False)
    assert schema.names == ["account_id", "device_id", "event_timestamp"]
    assert schema.field("account_id").type == pa.int64()
    assert schema.field("event_timestamp").type == US


def test_aggregated_views_get_their_window_values(tmp_path: Path) -> None:
    pytest.importorskip("parity.offline.spark_windows")  # Part B's module, merged separately
    repo = {
        "defs.py": """
            from datetime import timedelta
            from parity import Aggregation, Entity, FeatureView, Field, FileSource, Float64

            account = Entity(name="account", join_keys=["account_id"])
            spend = FeatureView(
                name="spend", entities=[account], schema=[Field(name="amount", dtype=Float64)],
                source=FileSource(path="data/spend.parquet"),
                aggregations=[
                    Aggregation(column="amount", function="sum", window=timedelta(hours=2)),
                    Aggregation(column="amount", function="count", window=timedelta(hours=2)),
                ],
            )
        """
    }
    root = write_repo(tmp_path / "repo", repo, extra=spark_yaml())
    write_parquet(
        root / "data" / "spend.parquet",
        {
            "account_id": pa.array([1, 1, 1, 2], pa.int64()),
            "event_timestamp": pa.array([at(0), at(1), at(3), at(1)], US),
            "amount": pa.array([1.0, 2.0, 4.0, 8.0], pa.float64()),
        },
    )
    store = FeatureStore(root)
    store.apply()
    frame = entities([(1, "d", at(1.5)), (1, "d", at(3)), (2, "d", at(9)), (3, "d", at(1))])
    refs = [
        f"spend:{a.output_name}" for a in store.registry.catalog.feature_views["spend"].aggregations
    ]
    out = store.get_historical_features(frame, refs).to_arrow()
    assert out.equals(duckdb_answer(store, frame, refs))


def test_default_conf_suits_local_masters_and_leaves_clusters_alone() -> None:
    local = default_conf("local[2]")
    assert local["spark.sql.shuffle.partitions"] == "4"
    assert local["spark.sql.session.timeZone"] == "UTC"
    assert default_conf("local[*]")["spark.sql.shuffle.partitions"] == str(
        2 * (os.cpu_count() or 2)
    )
    cluster = default_conf("spark://head:7077")
    assert "spark.sql.shuffle.partitions" not in cluster
    assert "spark.driver.host" not in cluster


def run_python(code: str, env: dict[str, str]) -> dict[str, str]:
    """Run `code` in a fresh interpreter; it prints one JSON object."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


OPEN_ENGINE = """
import json, sys
from pathlib import Path
{prelude}
from parity.errors import ParityError
from parity.offline.engines import open_engine
from parity.repo.config import OfflineConfig
try:
    open_engine(Path("."), OfflineConfig(type="spark"))
except ParityError as error:
    print(json.dumps({{"type": type(error).__name__, "code": error.code, "message": str(error)}}))
"""


def test_missing_pyspark_names_the_extra_and_java() -> None:
    block = """
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name == "pyspark" or name.startswith("pyspark."):
                raise ImportError("no pyspark here")
    sys.meta_path.insert(0, Block())
    """
    got = run_python(OPEN_ENGINE.format(prelude=textwrap.dedent(block)), dict(os.environ))
    assert got["type"] == "BackendNotInstalled"
    assert "pip install 'parity[spark]'" in got["message"] and "Java 17" in got["message"]
    assert "\n" not in got["message"]


def test_missing_java_is_spark_unavailable_naming_java_17() -> None:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(Path(sys.executable).parent)  # python, but no java
    got = run_python(OPEN_ENGINE.format(prelude=""), env)
    assert got == {
        "type": "SparkUnavailable",
        "code": "spark_unavailable",
        "message": got["message"],
    }
    assert "Java 17" in got["message"] and "JAVA_HOME" in got["message"]
    assert "pip install 'parity[spark]'" in got["message"] and "\n" not in got["message"]


def test_a_java_home_without_java_is_spark_unavailable(tmp_path: Path) -> None:
    env = {**os.environ, "JAVA_HOME": str(tmp_path)}
    got = run_python(OPEN_ENGINE.format(prelude=""), env)
    assert got["type"] == "SparkUnavailable"
    assert f"JAVA_HOME={tmp_path}" in got["message"]


def test_ttl_cut_is_exact_to_the_microsecond(store: FeatureStore) -> None:
    ttl = timedelta(hours=10)
    frame = entities([(2, "d1", at(1) + ttl), (2, "d1", at(1) + ttl + timedelta(microseconds=1))])
    out = store.get_historical_features(frame, ["stats:amount"]).to_pandas()
    assert values(out, "amount") == [7.0, None]


def test_nanosecond_source_times_are_floored_to_microseconds_as_on_duckdb(
    store: FeatureStore,
) -> None:
    # pandas writes timestamp[ns, UTC]; Spark 3.5 has no such type. 999 ns past hour 0 is hour 0
    # (floored, as entity times are); 1 ns before hour 5 is 1 µs before it, so at hour 5 minus
    # 1 µs that row already counts, and 1 µs earlier still it does not.
    ns = pa.timestamp("ns", tz="UTC")
    stamps = [to_micros(at(h)) * 1000 for h in (0, 0, 5, 1, 8)]
    stamps[1] += 999
    stamps[2] -= 1
    path = store.repo_path / "data" / "stats.parquet"
    table = pq.read_table(path)
    index = table.schema.get_field_index("event_timestamp")
    table = table.set_column(index, pa.field("event_timestamp", ns), pa.array(stamps, ns))
    pq.write_table(table, path)
    five = at(5) - timedelta(microseconds=1)
    frame = pd.DataFrame(
        {
            "account_id": [1, 1, 1],
            "event_timestamp": [at(0), five, five - timedelta(microseconds=1)],
        }
    ).astype({"event_timestamp": "datetime64[us, UTC]"})
    out = store.get_historical_features(frame, ["stats:amount"]).to_arrow()
    assert out.column("amount").to_pylist() == [11.0, 50.0, 11.0]
    assert out.equals(duckdb_answer(store, frame, ["stats:amount"]))
