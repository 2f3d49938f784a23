"""Entity rows without a time or a join key are refused naming the row (QA finding 7 after issue
12): a null time used to give all-null features silently, a null key a float key column."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity import FeatureStore
from parity.errors import EntityFrameError
from tests.conftest import BASE_TIME, DRIVER_REPO, write_repo

LATER = BASE_TIME + timedelta(hours=5)
FEATURES = ["driver_stats:conv_rate", "driver_stats:trips"]


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    feature_store = FeatureStore(write_repo(tmp_path / "repo", DRIVER_REPO))
    feature_store.apply()
    return feature_store


def frames(keys: list[Any], times: list[Any]) -> dict[str, Any]:
    """The same entity rows as a pandas frame (nullable Int64 keys) and as an Arrow table."""
    return {
        "pandas": pd.DataFrame(
            {
                "driver_id": pd.array(keys, dtype="Int64"),
                "event_timestamp": pd.to_datetime(pd.Series(times), utc=True),
                "label": [1, None, 0][: len(keys)],
            }
        ),
        "arrow": pa.table(
            {
                "driver_id": pa.array(keys, pa.int64()),
                "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
            }
        ),
    }


@pytest.mark.parametrize("shape", ["pandas", "arrow"])
def test_a_row_without_a_time_is_refused_naming_the_row(store: FeatureStore, shape: str) -> None:
    entity = frames([1, 2, 3], [LATER, LATER, None])[shape]
    with pytest.raises(EntityFrameError, match=r"'event_timestamp' row 2 .*no time"):
        store.get_historical_features(entity, FEATURES)


def test_text_times_with_a_blank_are_refused_naming_the_row(store: FeatureStore) -> None:
    entity = pd.DataFrame({"driver_id": [1, 2], "event_timestamp": [None, LATER.isoformat()]})
    with pytest.raises(EntityFrameError, match=r"'event_timestamp' row 0 .*no time"):
        store.get_historical_features(entity, FEATURES)


@pytest.mark.parametrize("shape", ["pandas", "arrow"])
def test_a_row_without_a_join_key_is_refused_naming_the_row(
    store: FeatureStore, shape: str
) -> None:
    entity = frames([1, None, 3], [LATER] * 3)[shape]
    with pytest.raises(EntityFrameError, match=r"'driver_id' row 1 .*null join key"):
        store.get_historical_features(entity, FEATURES)


def test_complete_rows_keep_integer_keys_and_nulls_in_other_columns(store: FeatureStore) -> None:
    entity = frames([1, 2, 3], [LATER] * 3)["pandas"]
    table = store.get_historical_features(entity, FEATURES).to_arrow()
    assert table.schema.field("driver_id").type == pa.int64()
    assert table.column("driver_id").to_pylist() == [1, 2, 3]
    assert table.column("label").to_pylist() == [1, None, 0]  # a null label passes through
    assert table.column("conv_rate").to_pylist() == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("given", ["path", "sql"])
@pytest.mark.parametrize(
    ("keys", "times", "said"),
    [
        ([1, 2, 3], [LATER, None, LATER], r"'event_timestamp' row 1 .*no time"),
        ([1, 2, None], [LATER] * 3, r"'driver_id' row 2 .*null join key"),
    ],
)
def test_parquet_and_sql_entity_frames_are_refused_the_same_way(
    store: FeatureStore, tmp_path: Path, given: str, keys: list[Any], times: list[Any], said: str
) -> None:
    path = tmp_path / "entities.parquet"
    pq.write_table(frames(keys, times)["arrow"], path)
    entity = str(path) if given == "path" else f"SELECT * FROM read_parquet('{path}')"
    job = store.get_historical_features(entity, FEATURES)
    with pytest.raises(EntityFrameError, match=said):
        job.to_arrow()
    with pytest.raises(EntityFrameError, match=said):
        job.to_parquet(tmp_path / "out.parquet")
