"""QA findings 5 and 21 for services with on-demand views: `dataset create` into a folder that
does not exist creates it (as the plain path does), and its progress moves while it runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from parity.transform.job import OnDemandJob
from tests.transform.test_on_demand import NOW, make_store


def _entities() -> pd.DataFrame:
    return pd.DataFrame(
        {"driver_id": [1, 2, 99, 1], "fare": [12.0, 1.5, 5.0, 3.0], "event_timestamp": [NOW] * 4}
    )


def test_an_on_demand_dataset_into_a_missing_folder_creates_it(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo")
    out = tmp_path / "training" / "nested" / "x.parquet"
    record = store.datasets.create("x", _entities(), ["fare_ratio:fare_per_trip"], out)
    # drivers 1 and 2 made 3 trips each (tests/conftest.py); driver 99 is unknown
    assert pq.read_table(out).column("fare_per_trip").to_pylist() == [4.0, 0.5, None, 1.0]
    assert record.row_count == 4
    assert not [p for p in out.parent.iterdir() if p != out]  # no temporary files left


def test_on_demand_dataset_progress_moves_before_the_end(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo")
    seen: list[float] = []
    out = tmp_path / "y.parquet"
    store.datasets.create("y", _entities(), ["fare_ratio:fare_per_trip"], out, progress=seen.append)
    assert seen[-1] == 1.0
    assert any(0.0 < share < 1.0 for share in seen), seen  # it jumped from 0 to 100%
    assert seen == sorted(seen)


def test_on_demand_progress_advances_per_batch_and_the_file_equals_to_arrow(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path / "repo")
    job = store.get_historical_features(
        _entities(), ["fare_ratio:fare_per_trip", "driver_stats:city"]
    )
    assert isinstance(job, OnDemandJob)
    seen: list[float] = []
    rows = job.to_parquet(tmp_path / "z.parquet", seen.append, batch_size=1)
    assert rows == 4
    assert len([s for s in seen if 0.5 < s < 1.0]) == 3, seen  # after batches 1, 2 and 3 of 4
    assert pq.read_table(tmp_path / "z.parquet").equals(job.to_arrow())


def test_an_on_demand_dataset_of_no_rows_is_a_file_with_the_columns(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo")
    out = tmp_path / "new" / "empty.parquet"
    record = store.datasets.create("e", _entities().head(0), ["fare_ratio:fare_per_trip"], out)
    assert record.row_count == 0
    table = pq.read_table(out)
    assert table.num_rows == 0 and "fare_per_trip" in table.column_names
