"""Delta Lake sources: a table written with deltalake (appends, overwrite, delete, a version pin)
retrieves exactly what the reference join computes from the same rows; unreadable tables refused.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity import (
    Bool,
    Catalog,
    DeltaSource,
    Entity,
    FeatureStore,
    FeatureView,
    Field,
    Float64,
    Int64,
    String,
)
from parity.errors import BackendNotInstalled, DeltaSourceError, SourceSchemaError
from parity.offline.duckdb_engine import DuckDBEngine
from parity.offline.engine import OfflineEngine
from parity.offline.request import resolve
from parity.offline.retrieval import historical_features
from parity.offline.sources import read_source_schema, source_files, source_layout
from parity.registry.catalog import Catalog as RegistryCatalog
from parity.testing import reference_historical_features
from tests.conftest import write_repo

deltalake = pytest.importorskip("deltalake")

T0 = datetime(2026, 3, 1, tzinfo=UTC)
US = pa.timestamp("us", tz="UTC")
ENGINES = ["duckdb", pytest.param("spark", marks=pytest.mark.spark)]


def engine_for(name: str, root: Path) -> OfflineEngine:
    """DuckDB, or a Spark engine on the process's small test session."""
    if name == "duckdb":
        return DuckDBEngine(root)
    pytest.importorskip("pyspark")
    from tests.spark_support import spark_engine

    return cast(OfflineEngine, spark_engine(root))


REFS = ["stats:x", "stats:n"]

account = Entity(name="account", join_keys=["account_id"])


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def stats_view(path: str, *, version: int | None = None, created: bool = False) -> FeatureView:
    return FeatureView(
        name="stats",
        entities=[account],
        schema=[Field(name="x", dtype=Float64), Field(name="n", dtype=Int64)],
        source=DeltaSource(
            path=path,
            version=version,
            timestamp_field="ts",
            created_timestamp_column="created" if created else None,
            field_mapping={"amount": "x"},
        ),
        ttl=timedelta(hours=3),
    )


def table_of(rows: list[tuple[int, float, float | None, int | None, float | None]]) -> pa.Table:
    """Rows of (account, event hour, amount, n, created hour)."""
    return pa.table(
        {
            "account_id": pa.array([r[0] for r in rows], pa.int64()),
            "ts": pa.array([at(r[1]) for r in rows], US),
            "amount": pa.array([r[2] for r in rows], pa.float64()),
            "n": pa.array([r[3] for r in rows], pa.int64()),
            "created": pa.array([None if r[4] is None else at(r[4]) for r in rows], US),
        }
    )


def retrieve(
    engine: OfflineEngine, view: FeatureView, entity_df: pd.DataFrame
) -> list[list[object]]:
    catalog = Catalog.build("p", [account, view])
    return comparable(historical_features(engine, catalog, entity_df, REFS).to_pandas())


def expected(view: FeatureView, entity_df: pd.DataFrame, rows: pa.Table) -> list[list[object]]:
    """The reference join over `rows` (in ingestion order) as plain Parquet data would give."""
    request = resolve(Catalog.build("p", [account, view]), REFS)
    return comparable(
        reference_historical_features(entity_df, request, {"stats": rows.to_pandas()})
    )


def comparable(frame: pd.DataFrame) -> list[list[object]]:
    return [
        [None if (not isinstance(v, str) and pd.isna(v)) else v for v in row]
        for row in frame.astype(object).itertuples(index=False)
    ]


def entities(hours: list[float], accounts: range = range(1, 5)) -> pd.DataFrame:
    rows = [(a, at(h)) for a in accounts for h in hours]
    return pd.DataFrame(rows, columns=["account_id", "event_timestamp"])


FIRST = [(1, 0, 1.0, 1, None), (2, 0, 2.0, 2, None), (1, 1, 3.0, 3, None), (3, 2, None, 4, None)]
# Same (account, event time) as rows of FIRST and no created time: the later commit wins.
SECOND = [(1, 0, 10.0, 10, None), (2, 1, 20.0, None, None), (3, 2, 30.0, 30, None)]


@pytest.mark.parametrize("engine_name", ENGINES)
def test_appended_commits_read_like_the_same_rows_as_parquet(
    engine_name: str, tmp_path: Path
) -> None:
    deltalake.write_deltalake(tmp_path / "t", table_of(FIRST))
    deltalake.write_deltalake(tmp_path / "t", table_of(SECOND), mode="append")
    view = stats_view("t")
    frame = entities([0, 0.5, 1, 2, 4.5, 6])
    actual = retrieve(engine_for(engine_name, tmp_path), view, frame)
    assert actual == expected(view, frame, table_of(FIRST + SECOND))
    # hand-worked: account 1 at hour 0 has two rows; the second commit's (10.0) wins
    assert actual[0][2:] == [10.0, 10]


@pytest.mark.parametrize("engine_name", ENGINES)
def test_a_version_pin_reads_the_table_as_it_was(engine_name: str, tmp_path: Path) -> None:
    deltalake.write_deltalake(tmp_path / "t", table_of(FIRST))
    deltalake.write_deltalake(tmp_path / "t", table_of(SECOND), mode="append")
    deltalake.write_deltalake(tmp_path / "t", table_of([(4, 0, 9.0, 9, None)]), mode="overwrite")
    frame = entities([0.5, 2.5])
    engine = engine_for(engine_name, tmp_path)
    for version, rows in [(0, FIRST), (1, FIRST + SECOND), (2, [(4, 0, 9.0, 9, None)])]:
        view = stats_view("t", version=version)
        assert retrieve(engine, view, frame) == expected(view, frame, table_of(rows)), version
    latest = stats_view("t")
    assert retrieve(engine, latest, frame) == expected(
        latest, frame, table_of([(4, 0, 9, 9, None)])
    )


@pytest.mark.parametrize("engine_name", ENGINES)
def test_a_delete_rewrites_files_and_the_surviving_rows_still_join(
    engine_name: str, tmp_path: Path
) -> None:
    # created times break every tie: a rewrite reorders rows, so ingestion order is not kept
    first = [(1, 0, 1.0, 1, 0), (2, 0, 2.0, 2, 0), (1, 1, 3.0, 3, 1), (3, 2, 5.0, 4, 2)]
    second = [(1, 0, 10.0, 10, 3), (2, 1, 20.0, 5, 1), (3, 2, 30.0, 30, 1)]
    deltalake.write_deltalake(tmp_path / "t", table_of(first))
    deltalake.write_deltalake(tmp_path / "t", table_of(second), mode="append")
    deltalake.DeltaTable(str(tmp_path / "t")).delete("amount = 10.0 OR n = 4")
    survivors = [r for r in first + second if r[2] != 10.0 and r[3] != 4]
    view = stats_view("t", created=True)
    frame = entities([0, 0.5, 1, 2, 4.5])
    actual = retrieve(engine_for(engine_name, tmp_path), view, frame)
    assert actual == expected(view, frame, table_of(survivors))
    assert actual[0][2:] == [1.0, 1]  # account 1 at hour 0: the deleted 10.0 is gone


def test_files_come_in_the_order_the_log_added_them(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    added: list[Path] = []
    for index in range(4):
        mode = "append" if index else "error"
        before = set(folder.glob("*.parquet"))
        deltalake.write_deltalake(folder, table_of([(index, index, 1.0, 1, None)]), mode=mode)
        added.extend(sorted(set(folder.glob("*.parquet")) - before))
    assert source_files(DeltaSource(path="t"), tmp_path) == added
    assert source_files(DeltaSource(path=str(folder), version=1), Path("/elsewhere")) == added[:2]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    commits=st.lists(
        st.lists(
            st.tuples(
                st.integers(1, 3),
                st.integers(0, 3),
                st.one_of(st.none(), st.floats(-5, 5, allow_nan=False)),
                st.one_of(st.none(), st.integers(-3, 3)),
                st.one_of(st.none(), st.integers(0, 2)),
            ),
            min_size=1,
            max_size=6,
        ),
        min_size=1,
        max_size=4,
    ),
    created=st.booleans(),
)
def test_random_appends_equal_the_reference_join(commits: list[list[Any]], created: bool) -> None:
    view = stats_view("t", created=created)
    frame = entities([0, 1, 2, 3, 3.5, 5])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for index, rows in enumerate(commits):
            mode = "append" if index else "error"
            deltalake.write_deltalake(root / "t", table_of(rows), mode=mode)
        actual = retrieve(DuckDBEngine(root), view, frame)
    everything = [row for rows in commits for row in rows]
    assert actual == expected(view, frame, table_of(everything))


def test_the_schema_comes_from_the_log_and_is_checked_on_apply(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "repo", {"defs.py": DEFS.replace("Int64)]", "String)]")})
    deltalake.write_deltalake(root / "data" / "t", table_of(FIRST))
    deltalake.write_deltalake(root / "data" / "t", table_of(SECOND), mode="append")
    schema = read_source_schema(DeltaSource(path="data/t"), root)
    assert schema.field("ts").type == US and schema.field("amount").type == pa.float64()
    with pytest.raises(SourceSchemaError, match="field 'n' is declared String"):
        FeatureStore(root).apply()


DEFS = """
    from datetime import timedelta
    from parity import DeltaSource, Entity, FeatureView, Field, Float64, Int64, String

    account = Entity(name="account", join_keys=["account_id"])
    stats = FeatureView(
        name="stats", entities=[account],
        schema=[Field(name="x", dtype=Float64), Field(name="n", dtype=Int64)],
        source=DeltaSource(path="data/t", version=1, timestamp_field="ts",
                           field_mapping={"amount": "x"}),
        ttl=timedelta(hours=3),
    )
"""


def test_a_repo_applies_retrieves_and_materializes_a_delta_view(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "repo", {"defs.py": DEFS})
    deltalake.write_deltalake(root / "data" / "t", table_of(FIRST))
    deltalake.write_deltalake(root / "data" / "t", table_of(SECOND), mode="append")
    deltalake.write_deltalake(
        root / "data" / "t", table_of([(1, 2, 99.0, 99, None)]), mode="append"
    )
    store = FeatureStore(root, clock=lambda: at(2.5))
    store.apply()
    stored = store.get_feature_view("stats").source
    assert stored == DeltaSource(
        path="data/t", version=1, timestamp_field="ts", field_mapping={"amount": "x"}
    )
    frame = entities([2.5], range(1, 4))
    actual = comparable(store.get_historical_features(frame, REFS).to_pandas())
    assert actual == expected(stats_view("data/t"), frame, table_of(FIRST + SECOND))
    store.materialize(at(0), at(2.5))
    online = store.get_online_features(REFS, {"account_id": [1, 2, 3]}).to_dict()
    assert online["x"] == [3.0, 20.0, 30.0]  # version 1: the 99.0 of version 2 is not read


def test_the_catalog_json_round_trips_a_delta_source() -> None:
    view = stats_view("/data/t", version=7, created=True)
    catalog = RegistryCatalog.build("p", [account, view])
    again = RegistryCatalog.from_json(catalog.to_json())
    assert again.feature_views["stats"] == view
    assert again.fingerprint() == catalog.fingerprint()


@pytest.mark.parametrize("engine_name", ENGINES)
def test_partition_values_are_supplied_to_the_rows_of_each_file(
    engine_name: str, tmp_path: Path
) -> None:
    # partitioned by the join key and by a feature with nulls and characters paths escape
    rows = [(1, 0, 1.0, 1, 0), (2, 0, 2.0, None, 0), (1, 1, 3.0, 3, 1), (3, 2, 5.0, 4, 2)]
    more = [(1, 0, 10.0, 10, 3), (2, 1, 20.0, 5, 1), (3, 2, 30.0, 7, 1), (4, 1, 9.0, 3, 0)]
    tables = [with_city(table_of(rows)), with_city(table_of(more))]
    deltalake.write_deltalake(tmp_path / "t", tables[0], partition_by=["account_id", "city"])
    deltalake.write_deltalake(tmp_path / "t", tables[1], mode="append")
    assert len(source_layout(DeltaSource(path="t"), tmp_path)[0]) == 8  # 4 files a commit
    view = FeatureView(
        name="stats",
        entities=[account],
        schema=[
            Field(name="x", dtype=Float64),
            Field(name="n", dtype=Int64),
            Field(name="city", dtype=String),
        ],
        source=DeltaSource(
            path="t",
            timestamp_field="ts",
            created_timestamp_column="created",
            field_mapping={"amount": "x"},
        ),
    )
    frame = entities([0, 1, 2.5])
    catalog = Catalog.build("p", [account, view])
    refs = [*REFS, "stats:city"]
    engine = engine_for(engine_name, tmp_path)
    actual = comparable(historical_features(engine, catalog, frame, refs).to_pandas())
    raw = pa.concat_tables(tables).to_pandas()
    reference = reference_historical_features(frame, resolve(catalog, refs), {"stats": raw})
    assert actual == comparable(reference)
    assert actual[2][2:] == [3.0, 3, "b c/d"]  # account 1 at hour 2.5: hour 1's row


def with_city(table: pa.Table) -> pa.Table:
    cities = ["a", None, "b c/d", "a", "b c/d", None, "a", "z=1"][: table.num_rows]
    return table.append_column("city", pa.array(cities[: table.num_rows], pa.string()))


def test_source_files_alone_refuses_a_partitioned_table(tmp_path: Path) -> None:
    deltalake.write_deltalake(tmp_path / "t", table_of(FIRST), partition_by=["account_id"])
    with pytest.raises(DeltaSourceError, match=r"partitioned by \['account_id'\].*partition_by"):
        source_files(DeltaSource(path="t"), tmp_path)


def test_column_mapping_is_refused_naming_the_feature(tmp_path: Path) -> None:
    config = {"delta.columnMapping.mode": "name"}
    deltalake.write_deltalake(tmp_path / "t", table_of(FIRST), configuration=config)
    with pytest.raises(DeltaSourceError, match=r"'.*t'.*'columnMapping'.*mapping"):
        source_files(DeltaSource(path="t"), tmp_path)


def test_deletion_vectors_are_refused_naming_the_feature(tmp_path: Path) -> None:
    deltalake.write_deltalake(tmp_path / "t", table_of(FIRST))
    protocol = {
        "minReaderVersion": 3,
        "minWriterVersion": 7,
        "readerFeatures": ["deletionVectors"],
        "writerFeatures": ["deletionVectors"],
    }
    commit = tmp_path / "t" / "_delta_log" / "00000000000000000001.json"
    commit.write_text(json.dumps({"protocol": protocol}) + "\n")
    with pytest.raises(DeltaSourceError, match=r"'deletionVectors'.*PURGE"):
        source_files(DeltaSource(path="t"), tmp_path)
    assert len(source_files(DeltaSource(path="t", version=0), tmp_path)) == 1


def test_a_missing_table_or_version_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DeltaSourceError, match=r"no _delta_log.*not a Delta table"):
        source_files(DeltaSource(path="nothing"), tmp_path)
    deltalake.write_deltalake(tmp_path / "t", table_of(FIRST))
    with pytest.raises(DeltaSourceError, match=r"no readable version 5 \(its latest is 0\)"):
        source_files(DeltaSource(path="t", version=5), tmp_path)
    with pytest.raises(DeltaSourceError, match="only local tables"):
        source_files(DeltaSource(path="s3://bucket/t"), tmp_path)


def test_a_negative_version_is_an_invalid_definition() -> None:
    with pytest.raises(Exception, match="version must be a table version >= 0"):
        DeltaSource(path="t", version=-1)


def test_without_deltalake_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deltalake.write_deltalake(tmp_path / "t", table_of(FIRST))
    monkeypatch.setitem(sys.modules, "deltalake", None)
    with pytest.raises(BackendNotInstalled, match=r"pip install 'parity\[delta\]'"):
        source_files(DeltaSource(path="t"), tmp_path)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_boolean_and_timestamp_partition_values_keep_their_types(
    engine_name: str, tmp_path: Path
) -> None:
    rows = [(1, 0, 1.0, 1, 2), (1, 0, 2.0, 2, 1), (2, 1, 3.0, 3, None), (2, 1, 4.0, 4, None)]
    table = table_of(rows).append_column("flag", pa.array([True, False, None, True]))
    deltalake.write_deltalake(tmp_path / "t", table, partition_by=["flag", "created"])
    view = FeatureView(
        name="stats",
        entities=[account],
        schema=[Field(name="x", dtype=Float64), Field(name="flag", dtype=Bool)],
        source=DeltaSource(
            path="t",
            timestamp_field="ts",
            created_timestamp_column="created",
            field_mapping={"amount": "x"},
        ),
    )
    frame = entities([1.5], range(1, 3))
    catalog = Catalog.build("p", [account, view])
    refs = ["stats:x", "stats:flag"]
    engine = engine_for(engine_name, tmp_path)
    actual = comparable(historical_features(engine, catalog, frame, refs).to_pandas())
    # account 1: the created time (a partition value) picks 1.0; account 2: no created times,
    # so the last file the log added wins
    files = source_layout(view.batch_source, tmp_path)[0]
    order = [f"{p.parent.parent.name}/{p.parent.name}" for p in files]
    null = "__HIVE_DEFAULT_PARTITION__"
    later = order.index(f"flag=true/created={null}") > order.index(f"flag={null}/created={null}")
    last = 4.0 if later else 3.0
    assert actual == [[1, at(1.5), 1.0, True], [2, at(1.5), last, last == 4.0 or None]]


def test_files_known_only_from_a_checkpoint_come_first_in_write_order(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    added: list[Path] = []
    for index in range(4):
        if index == 3:  # commits 0 and 1 survive only in the checkpoint of version 2
            deltalake.DeltaTable(str(folder)).create_checkpoint()
            for commit in ("00000000000000000000.json", "00000000000000000001.json"):
                (folder / "_delta_log" / commit).unlink()
        before = set(folder.glob("*.parquet"))
        mode = "append" if index else "error"
        deltalake.write_deltalake(folder, table_of([(index, index, 1.0, 1, None)]), mode=mode)
        added.extend(sorted(set(folder.glob("*.parquet")) - before))
        time.sleep(0.01)  # distinct modification times (ms) for the checkpoint's files
    assert source_files(DeltaSource(path="t"), tmp_path) == added


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    commits=st.lists(
        st.lists(
            st.tuples(
                st.integers(1, 3),
                st.integers(0, 3),
                st.one_of(st.none(), st.floats(-5, 5, allow_nan=False)),
                st.one_of(st.none(), st.integers(-3, 3)),
                st.sampled_from(["a", "b/c", "d e", None]),
            ),
            min_size=1,
            max_size=6,
        ),
        min_size=1,
        max_size=3,
    ),
    by=st.sampled_from([["account_id"], ["city"], ["city", "account_id"]]),
)
def test_random_partitioned_appends_equal_the_reference_join(
    commits: list[list[Any]], by: list[str]
) -> None:
    view = FeatureView(
        name="stats",
        entities=[account],
        schema=[
            Field(name="x", dtype=Float64),
            Field(name="n", dtype=Int64),
            Field(name="city", dtype=String),
        ],
        source=DeltaSource(
            path="t",
            timestamp_field="ts",
            created_timestamp_column="created",  # unique per row: file order never decides
            field_mapping={"amount": "x"},
        ),
    )
    tables, number = [], 0
    for rows in commits:
        numbered = [(a, h, x, n, (number := number + 1) / 100) for a, h, x, n, _ in rows]
        cities = pa.array([row[4] for row in rows], pa.string())
        tables.append(table_of(numbered).append_column("city", cities))
    frame = entities([0, 1, 2, 3, 3.5])
    catalog = Catalog.build("p", [account, view])
    refs = [*REFS, "stats:city"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for index, table in enumerate(tables):
            mode = "append" if index else "error"
            deltalake.write_deltalake(root / "t", table, mode=mode, partition_by=by)
        actual = historical_features(DuckDBEngine(root), catalog, frame, refs).to_pandas()
    raw = pa.concat_tables(tables).to_pandas()
    reference = reference_historical_features(frame, resolve(catalog, refs), {"stats": raw})
    assert comparable(actual) == comparable(reference)


def test_a_version_whose_files_were_vacuumed_is_refused(tmp_path: Path) -> None:
    deltalake.write_deltalake(tmp_path / "t", table_of(FIRST))
    deltalake.write_deltalake(tmp_path / "t", table_of(SECOND), mode="overwrite")
    table = deltalake.DeltaTable(str(tmp_path / "t"))
    table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    with pytest.raises(DeltaSourceError, match=r"version 0 lists .*not on disk .*VACUUM"):
        source_files(DeltaSource(path="t", version=0), tmp_path)
    assert len(source_files(DeltaSource(path="t"), tmp_path)) == 1
