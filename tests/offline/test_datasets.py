"""Training sets: written to Parquet, recorded with lineage, fingerprinted by content."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity import FeatureStore
from parity.errors import BackendNotInstalled, DatasetExists, DatasetNotFound
from parity.offline.fingerprint import BATCH_ROWS, fingerprint_parquet
from parity.registry.store import RegistryStore
from parity.testing import InMemoryRegistryStore
from tests.conftest import DRIVER_REPO, write_repo


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    feature_store = FeatureStore(
        write_repo(tmp_path / "repo", DRIVER_REPO), clock=lambda: datetime(2026, 3, 3, tzinfo=UTC)
    )
    feature_store.apply()
    return feature_store


def entity_file(tmp_path: Path) -> Path:
    path = tmp_path / "entities.parquet"
    frame = pd.DataFrame(
        {
            "driver_id": [1, 2, 3, 3],
            "event_timestamp": pd.to_datetime(["2026-01-01 05:00"] * 4, utc=True),
            "label": [0, 1, 0, 1],
        }
    )
    frame.to_parquet(path)
    return path


def test_dataset_is_written_and_recorded_with_lineage(store: FeatureStore, tmp_path: Path) -> None:
    out = tmp_path / "sets" / "drivers.parquet"
    seen: list[float] = []
    record = store.datasets.create(
        "drivers_v1", str(entity_file(tmp_path)), "driver_service", out, progress=seen.append
    )
    assert (record.row_count, record.registry_version) == (4, 1)
    assert record.feature_refs == ("driver_stats:trips",)
    assert record.feature_service == "driver_service"
    assert record.fingerprint == fingerprint_parquet(out)
    assert record.created_at == datetime(2026, 3, 3, tzinfo=UTC)
    assert pq.read_table(out).column_names == ["driver_id", "event_timestamp", "label", "trips"]
    assert seen and seen[-1] == 1.0
    assert store.datasets.get("drivers_v1") == record
    assert store.datasets.list() == [record]


def test_dataset_names_and_files_are_never_reused(store: FeatureStore, tmp_path: Path) -> None:
    entities = str(entity_file(tmp_path))
    store.datasets.create("a", entities, ["driver_stats:trips"], tmp_path / "a.parquet")
    with pytest.raises(DatasetExists, match="already exists in project"):
        store.datasets.create("a", entities, ["driver_stats:trips"], tmp_path / "b.parquet")
    with pytest.raises(DatasetExists, match=r"a\.parquet already exists"):
        store.datasets.create("b", entities, ["driver_stats:trips"], tmp_path / "a.parquet")
    with pytest.raises(DatasetNotFound):
        store.datasets.get("b")


def test_teardown_forgets_datasets(store: FeatureStore, tmp_path: Path) -> None:
    store.datasets.create(
        "a", str(entity_file(tmp_path)), ["driver_stats:trips"], tmp_path / "a.pq"
    )
    store.registry.teardown()
    assert store.datasets.list() == []


class VersionsOnly:
    """A registry store that keeps versions only (no `record_dataset`): it cannot record
    datasets. It lends the reference store's version methods."""

    def __init__(self) -> None:
        inner = InMemoryRegistryStore()
        self.head, self.head_info, self.read = inner.head, inner.head_info, inner.read
        self.commit, self.history, self.projects = inner.commit, inner.history, inner.projects
        self.delete_project, self.close = inner.delete_project, inner.close


def test_datasets_need_a_registry_store_that_records_them(tmp_path: Path) -> None:
    backend = VersionsOnly()
    assert isinstance(backend, RegistryStore)
    store = FeatureStore(write_repo(tmp_path / "repo", DRIVER_REPO), registry_store=backend)
    with pytest.raises(BackendNotInstalled, match="VersionsOnly cannot record datasets"):
        store.datasets.list()


def test_fingerprint_depends_on_rows_not_on_row_groups(tmp_path: Path) -> None:
    n = BATCH_ROWS * 2 + 17
    table = pa.table({"x": pa.array(range(n), pa.int64()), "s": [str(i % 7) for i in range(n)]})
    pq.write_table(table, tmp_path / "one.parquet", row_group_size=n)
    pq.write_table(table, tmp_path / "many.parquet", row_group_size=1_000)
    pq.write_table(table.slice(0, n - 1), tmp_path / "short.parquet")
    swapped = pa.concat_tables([table.slice(1, 1), table.slice(0, 1), table.slice(2)])
    pq.write_table(swapped, tmp_path / "swapped.parquet")
    one = fingerprint_parquet(tmp_path / "one.parquet")
    assert fingerprint_parquet(tmp_path / "many.parquet") == one
    assert fingerprint_parquet(tmp_path / "short.parquet") != one
    assert fingerprint_parquet(tmp_path / "swapped.parquet") != one
