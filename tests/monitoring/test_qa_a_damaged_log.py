"""QA: a damaged file in the prediction log folder (truncated, not Parquet, or Parquet without
the log's columns) is a typed error naming the folder and what to do, never a DuckDB traceback."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity import FeatureStore
from parity.errors import PredictionLogUnreadable
from parity.inference.predlog import PredictionRecord
from tests.monitoring.test_drift_runs import T0, log_window, register, repo, store, write_log

__all__ = ["repo", "store"]  # the fixtures


@pytest.mark.parametrize("damage", ["garbage", "foreign"])
def test_a_damaged_log_file_is_named(store: FeatureStore, damage: str) -> None:
    register(store)
    records: list[PredictionRecord] = []
    log_window(records, np.random.default_rng(5), T0, 200)
    write_log(store, records)
    folder = store.repo_path / "data" / "prediction_log" / f"date={T0:%Y-%m-%d}"
    bad = folder / "zz-bad.parquet"
    if damage == "garbage":
        bad.write_bytes(b"not parquet")
    else:
        pq.write_table(pa.table({"x": [1, 2]}), bad)
    with pytest.raises(PredictionLogUnreadable, match=r"could not be read.*move the damaged"):
        store.monitoring.drift("scorer", since=T0, until=T0 + timedelta(hours=1))
