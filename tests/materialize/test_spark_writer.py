"""Materialization written from Spark executors into Redis and Redis Cluster: the same online rows
as DuckDB through the driver, idempotent re-runs, newer stored rows kept, and a stopped Redis
failing the run (typed) until a re-run converges."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity import (
    Entity,
    FeatureStore,
    FeatureView,
    Field,
    FileSource,
    Float64,
    Int64,
    String,
    UnixTimestamp,
)
from parity.definitions import Array, Bool, Float32
from parity.errors import MaterializationFailed
from parity.materialize.batch import ParallelMaterialize, materialize_view
from parity.materialize.spark_writer import spark_cause, write_frame
from parity.offline.duckdb_engine import DuckDBEngine
from parity.online.encoding import OnlineRow, entity_key
from parity.online.open import open_online_store
from parity.online.store import OnlineStore
from parity.repo.config import OnlineConfig
from parity.testing import InMemoryRegistryStore
from tests.conftest import write_repo
from tests.private_redis import private_redis_server

pytestmark = [pytest.mark.spark, pytest.mark.redis]

T0 = datetime(2026, 5, 1, tzinfo=UTC)
US = pa.timestamp("us", tz="UTC")
ENTITIES = 300
PORTS = range(17310, 17390)

account = Entity(name="account", join_keys=["account_id"])
stats = FeatureView(
    name="stats",
    entities=[account],
    schema=[
        Field(name="amount", dtype=Float64),
        Field(name="ratio", dtype=Float32),
        Field(name="n", dtype=Int64),
        Field(name="city", dtype=String),
        Field(name="flag", dtype=Bool),
        Field(name="seen", dtype=UnixTimestamp),
        Field(name="recent", dtype=Array(Int64)),
    ],
    source=FileSource(path="stats", created_timestamp_column="created"),
    ttl=timedelta(days=2),
)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def write_source(root: Path) -> None:
    """Three rows per account over two files (rows i, i + 300, i + 600 of account i; the first
    and last share an event time, the created time breaks the tie)."""
    rows = 3 * ENTITIES
    ids = [i % ENTITIES for i in range(rows)]
    hours = [(i // ENTITIES) % 2 for i in range(rows)]  # rows 2 and 3 share an event time
    table = pa.table(
        {
            "account_id": pa.array(ids, pa.int64()),
            "event_timestamp": pa.array([at(h) for h in hours], US),
            "created": pa.array([at(i / rows) for i in range(rows)], US),
            "amount": pa.array([None if i % 7 == 0 else i * 0.5 for i in range(rows)]),
            "ratio": pa.array([i / 3 for i in range(rows)], pa.float32()),
            "n": pa.array([None if i % 5 == 0 else i for i in range(rows)], pa.int64()),
            "city": pa.array([f"c{i % 11}" if i % 4 else None for i in range(rows)]),
            "flag": pa.array([i % 3 == 0 for i in range(rows)]),
            "seen": pa.array([at(i % 9) for i in range(rows)], US),
            "recent": pa.array([[i, i + 1] if i % 6 else [] for i in range(rows)]),
        }
    )
    (root / "stats").mkdir(parents=True)
    pq.write_table(table.slice(0, 2 * ENTITIES), root / "stats" / "a.parquet")
    pq.write_table(table.slice(2 * ENTITIES), root / "stats" / "b.parquet")


@pytest.fixture(scope="module")
def spark_engine_of() -> Any:
    pytest.importorskip("pyspark")
    from tests.spark_support import spark_engine

    return spark_engine


def materialize(
    engine: Any, settings: OnlineConfig, project: str, root: Path, **options: Any
) -> tuple[int, InMemoryRegistryStore]:
    history = InMemoryRegistryStore()
    store = open_online_store(settings, root)
    try:
        result = materialize_view(
            engine, store, history, project, stats, at(-1), at(3), now=lambda: at(3), **options
        )
    finally:
        store.close()
    return result.entities, history


def online_rows(store: OnlineStore, project: str) -> list[OnlineRow | None]:
    keys = [("stats", entity_key(["account_id"], [i])) for i in range(ENTITIES + 1)]
    return store.read(project, keys)


@pytest.fixture(params=["redis", "redis_cluster"])
def settings(request: pytest.FixtureRequest) -> OnlineConfig:
    """The shared Redis, or the session's local Redis Cluster."""
    url = request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url")
    return OnlineConfig(type=request.param, connection_string=url)


def test_the_spark_engine_offers_the_parallel_ability(tmp_path: Path, spark_engine_of: Any) -> None:
    assert isinstance(spark_engine_of(tmp_path), ParallelMaterialize)
    assert not isinstance(DuckDBEngine(tmp_path), ParallelMaterialize)


def test_executors_write_the_same_online_rows_as_the_driver(
    tmp_path: Path, spark_engine_of: Any, settings: OnlineConfig, project_name: str
) -> None:
    write_source(tmp_path)
    driver_project, spark_project = project_name + "_d", project_name + "_s"
    seen: dict[str, list[pa.RecordBatch]] = {"driver": [], "spark": []}
    progress: list[tuple[str, int, int | None]] = []
    written, _ = materialize(
        DuckDBEngine(tmp_path),
        settings,
        driver_project,
        tmp_path,
        observe=seen["driver"].append,
    )
    parallel, history = materialize(
        spark_engine_of(tmp_path),
        settings,
        spark_project,
        tmp_path,
        observe=seen["spark"].append,
        online_settings=settings,
        progress=lambda *a: progress.append(a),
    )
    assert written == parallel == ENTITIES
    assert progress == [("rows", ENTITIES, None)]
    assert history.watermark(spark_project, "stats") == at(3)
    store = open_online_store(settings, tmp_path)
    try:
        expected, actual = online_rows(store, driver_project), online_rows(store, spark_project)
    finally:
        store.close()
    assert actual == expected
    assert actual[-1] is None and all(row is not None for row in actual[:-1])
    # hand-checked: account 0's rows are 0 and 600 (hour 0) and 300 (hour 1, the newest)
    assert actual[0] is not None and actual[0].values["amount"] == 150.0
    assert sorted_rows(seen["spark"]) == sorted_rows(seen["driver"])


def sorted_rows(batches: list[pa.RecordBatch]) -> list[dict[str, Any]]:
    rows = pa.Table.from_batches(batches).to_pylist()
    return sorted(rows, key=lambda row: row["account_id"])


def test_a_rerun_is_idempotent_and_newer_stored_rows_win(
    tmp_path: Path, spark_engine_of: Any, settings: OnlineConfig, project_name: str
) -> None:
    write_source(tmp_path)
    engine = spark_engine_of(tmp_path)
    materialize(engine, settings, project_name, tmp_path, online_settings=settings)
    store = open_online_store(settings, tmp_path)
    try:
        first = online_rows(store, project_name)
        newer = OnlineRow("stats", entity_key(["account_id"], [7]), to_us(at(2)), 0, {"n": -1})
        store.write(project_name, [newer])
        materialize(engine, settings, project_name, tmp_path, online_settings=settings)
        again = online_rows(store, project_name)
    finally:
        store.close()
    assert again[:7] == first[:7] and again[8:] == first[8:]
    assert again[7] == newer  # the stored row is newer than the source's: it stays


def to_us(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)


def test_a_stopped_redis_fails_the_run_typed_and_a_rerun_converges(
    tmp_path: Path, spark_engine_of: Any, redis_url: str, project_name: str
) -> None:
    write_source(tmp_path)
    shared = OnlineConfig(type="redis", connection_string=redis_url)
    materialize(DuckDBEngine(tmp_path), shared, project_name, tmp_path)
    store = open_online_store(shared, tmp_path)
    try:
        expected = online_rows(store, project_name)
    finally:
        store.close()
    engine = spark_engine_of(tmp_path)
    with private_redis_server(PORTS) as (port, server):
        settings = OnlineConfig(type="redis", connection_string=f"redis://127.0.0.1:{port}/0")
        server.terminate()
        server.wait(10)
        with pytest.raises(
            MaterializationFailed,
            match=r"view 'stats'.* (\d+) of \1 partitions failed.*OnlineStoreUnavailable",
        ):
            materialize(engine, settings, project_name, tmp_path, online_settings=settings)
    with private_redis_server([port]) as _:
        written, history = materialize(
            engine, settings, project_name, tmp_path, online_settings=settings
        )
        store = open_online_store(settings, tmp_path)
        try:
            assert online_rows(store, project_name) == expected
        finally:
            store.close()
    assert written == ENTITIES and history.watermark(project_name, "stats") == at(3)


def test_sqlite_stays_on_the_driver_path(
    tmp_path: Path, spark_engine_of: Any, project_name: str
) -> None:
    write_source(tmp_path)
    settings = OnlineConfig(type="sqlite", path=str(tmp_path / "online.db"))
    written, _ = materialize(
        spark_engine_of(tmp_path), settings, project_name, tmp_path, online_settings=settings
    )
    store = open_online_store(settings, tmp_path)
    try:
        rows = online_rows(store, project_name)
    finally:
        store.close()
    assert written == ENTITIES and rows[0] is not None and rows[0].values["amount"] == 150.0


REPO = {
    "defs.py": """
        from datetime import timedelta
        from parity import Entity, FeatureStore, FeatureView, Field, FileSource, Float64, Int64

        account = Entity(name="account", join_keys=["account_id"])
        stats = FeatureView(
            name="stats", entities=[account],
            schema=[Field(name="amount", dtype=Float64), Field(name="n", dtype=Int64)],
            source=FileSource(path="stats", created_timestamp_column="created"),
            ttl=timedelta(days=2),
        )
    """
}


def test_a_spark_project_materializes_redis_from_the_executors(
    tmp_path: Path,
    spark_engine_of: Any,
    redis_url: str,
    project_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="parity.materialize.spark_writer")
    spark_engine_of(tmp_path)  # the process's one test session, started with the test config
    conf = "offline: {type: spark, master: 'local[2]'}\n"
    stores = {}
    for engine in ("duckdb", "spark"):
        online = f"online: {{type: redis, connection_string: '{redis_url}'}}\n"
        extra = online + (conf if engine == "spark" else "")
        root = write_repo(tmp_path / engine, REPO, project=f"{project_name}_{engine}", extra=extra)
        write_source(root)
        store = FeatureStore(root, clock=lambda: at(3))
        store.apply()
        results = store.materialize(at(-1), at(3))
        assert [r.entities for r in results] == [ENTITIES]
        stores[engine] = store
    ids = {"account_id": list(range(ENTITIES + 1))}
    refs = ["stats:amount", "stats:n"]
    spark = stores["spark"].get_online_features(refs, ids).to_dict()
    assert spark == stores["duckdb"].get_online_features(refs, ids).to_dict()
    assert spark["amount"][0] == 150.0 and spark["amount"][-1] is None
    wrote = [r.getMessage() for r in caplog.records if r.name.endswith("spark_writer")]
    assert len(wrote) == 1 and wrote[0].startswith(f"wrote {ENTITIES} rows of stats from")


def test_a_job_failing_before_the_writes_is_a_typed_error(
    tmp_path: Path, spark_engine_of: Any, redis_url: str, project_name: str
) -> None:
    from pyspark.sql import functions as F

    write_source(tmp_path)
    frame = spark_engine_of(tmp_path).latest_frame(stats, at(-1), at(3))
    failing = frame.where(F.raise_error(F.lit("the rows' query broke")).isNull())
    settings = OnlineConfig(type="redis", connection_string=redis_url)
    with pytest.raises(MaterializationFailed, match=r"'stats'.*before its partitions.*query broke"):
        write_frame(failing, stats, project_name, settings, tmp_path)
    store = open_online_store(settings, tmp_path)
    try:
        assert online_rows(store, project_name) == [None] * (ENTITIES + 1)
    finally:
        store.close()


def test_the_cause_of_a_spark_failure_is_its_telling_line() -> None:
    java = (
        "An error occurred while calling o49.collectToPython.\n"
        ": org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 failed 1 "
        "times, most recent failure: Lost task 0.0 (TID 0) (host executor driver): "
        "java.lang.RuntimeException: the rows' query broke\n"
        "\tat org.apache.spark.sql.Generated.processNext(Unknown Source)\n"
    )
    assert spark_cause(java) == "java.lang.RuntimeException: the rows' query broke"
    awaited = (
        "An error occurred while calling o52.getResult.\n"
        ": org.apache.spark.SparkException: Exception thrown in awaitResult: \n"
        "\tat org.apache.spark.util.SparkThreadUtils$.awaitResult(SparkThreadUtils.scala:56)\n"
        "Caused by: org.apache.spark.SparkException: Job aborted due to stage failure: Lost "
        "task 0.0 (TID 0) (host executor driver): java.lang.RuntimeException: it broke\n"
        "Driver stacktrace:\n"
        "Caused by: java.lang.RuntimeException: it broke\n"
    )
    assert spark_cause(awaited) == "java.lang.RuntimeException: it broke"
    python = (
        "An error occurred while calling o9.collectToPython.\n"
        ": org.apache.spark.SparkException: Job aborted: "
        "org.apache.spark.api.python.PythonException: Traceback (most recent call last):\n"
        '  File "/worker.py", line 1, in main\n'
        "    import parity\n"
        "ModuleNotFoundError: No module named 'parity'\n"
        "\n\tat org.apache.spark.api.python.BasePythonRunner.handle(PythonRunner.scala:572)\n"
        "Driver stacktrace:\n"
    )
    assert spark_cause(python) == "ModuleNotFoundError: No module named 'parity'"
