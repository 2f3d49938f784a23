from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from parity import Entity, FeatureView, Field, FileSource, Float64, Int64, String
from parity.errors import SourceSchemaError
from parity.offline.sources import check_sources, source_files
from tests.conftest import driver_stats_columns, write_parquet

driver = Entity(name="driver", join_keys=["driver_id"])


def stats(source: FileSource, *fields: Field) -> FeatureView:
    return FeatureView(
        name="stats",
        entities=[driver],
        schema=list(fields) or [Field(name="conv_rate", dtype=Float64)],
        source=source,
        ttl=timedelta(days=1),
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_parquet(tmp_path / "data" / "stats.parquet", driver_stats_columns())
    return tmp_path


def test_matching_schema_passes(root: Path) -> None:
    view = stats(
        FileSource(path="data/stats.parquet"),
        Field(name="conv_rate", dtype=Float64),
        Field(name="trips", dtype=Int64),
        Field(name="city", dtype=String),
    )
    check_sources([view], root)


def test_missing_column_names_view_field_and_the_source_columns(root: Path) -> None:
    view = stats(FileSource(path="data/stats.parquet"), Field(name="speed", dtype=Float64))
    with pytest.raises(SourceSchemaError) as caught:
        check_sources([view], root)
    message = str(caught.value)
    assert "feature view 'stats'" in message
    assert "'speed' is not a column" in message
    assert "'conv_rate'" in message
    assert "field_mapping" in message


def test_field_mapping_reads_the_renamed_column(root: Path) -> None:
    source = FileSource(path="data/stats.parquet", field_mapping={"conv_rate": "rate"})
    check_sources([stats(source, Field(name="rate", dtype=Float64))], root)


def test_wrong_type_is_reported_with_both_types(root: Path) -> None:
    view = stats(FileSource(path="data/stats.parquet"), Field(name="city", dtype=Int64))
    with pytest.raises(SourceSchemaError, match="declared Int64 but the source column is string"):
        check_sources([view], root)


def test_missing_join_key_is_reported(root: Path) -> None:
    other = Entity(name="rider", join_keys=["rider_id"])
    view = FeatureView(
        name="stats",
        entities=[other],
        schema=[Field(name="conv_rate", dtype=Float64)],
        source=FileSource(path="data/stats.parquet"),
    )
    with pytest.raises(SourceSchemaError, match="'rider_id' is not a column"):
        check_sources([view], root)


def test_timestamp_column_must_exist_and_be_a_timestamp(root: Path) -> None:
    with pytest.raises(SourceSchemaError, match="timestamp column 'ts'"):
        check_sources([stats(FileSource(path="data/stats.parquet", timestamp_field="ts"))], root)
    with pytest.raises(SourceSchemaError, match="'city' is string, not a timestamp"):
        check_sources([stats(FileSource(path="data/stats.parquet", timestamp_field="city"))], root)


def test_path_matching_nothing_says_to_generate_data(root: Path) -> None:
    with pytest.raises(SourceSchemaError, match="matches no Parquet files"):
        check_sources([stats(FileSource(path="data/none.parquet"))], root)


def test_folders_and_globs_resolve_to_their_parquet_files(root: Path) -> None:
    for part in ("a", "b"):
        write_parquet(root / "parts" / f"{part}.parquet", {"x": pa.array([1])})
    (root / "parts" / "notes.txt").write_text("not data")
    assert [p.name for p in source_files(FileSource(path="parts"), root)] == [
        "a.parquet",
        "b.parquet",
    ]
    assert [p.name for p in source_files(FileSource(path="parts/b*"), root)] == ["b.parquet"]
    assert source_files(FileSource(path="s3://bucket/x.parquet"), root) == []
