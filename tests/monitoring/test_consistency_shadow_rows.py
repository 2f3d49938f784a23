"""Consistency replay and rollouts: a shadow's rows repeat the champion's request (the same
features, or a read made after it) and must not be replayed as served traffic of their own."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from parity import FeatureStore
from parity.inference.predlog import ParquetLogSink, PredictionRecord
from tests.conftest import write_repo
from tests.inference.serving_helpers import Affine
from tests.monitoring.test_consistency_replay import REPO, Clock, T, speeds, stats_rows


def test_shadow_rows_are_not_replayed_as_served_traffic(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "repo", REPO, extra="models: {trusted: true}\n")
    pq.write_table(stats_rows(), root / "data" / "driver_stats.parquet")
    clock = Clock(T)
    store = FeatureStore(root, clock=clock)
    store.apply()
    store.push("live", speeds(T - timedelta(hours=5), 10.0), to="both")
    store.materialize(T - timedelta(days=3), T)
    for _ in range(2):
        store.models.register_model(
            "eta",
            Affine([1.0], 0.0),
            flavor="pyfunc",
            sample_input=np.ones((2, 1)),
            feature_service="driver_all",
        )
    at = T + timedelta(minutes=30)
    clock.now = at
    served = store.get_online_features("driver_all", {"driver_id": [1, 2]})
    features = [{n: v[row] for n, v in served.values.items()} for row in range(2)]
    champion = [
        PredictionRecord(f"r{d}", at, "eta", 1, {"driver_id": d}, f, 0.5, 0.0, role="champion")
        for d, f in zip([1, 2], features, strict=True)
    ]
    skewed = [{**f, "trips": -1} for f in features]  # a shadow's own (later) read differed
    shadow = [
        PredictionRecord(f"r{d}", at, "eta", 2, {"driver_id": d}, f, 0.4, 0.0, role="shadow")
        for d, f in zip([1, 2], skewed, strict=True)
    ]
    sink = ParquetLogSink(root / "data" / "prediction_log")
    sink.write(champion + shadow)
    sink.close()
    report = store.monitoring.consistency("driver_all", until=T + timedelta(hours=1))
    assert report.rows == 2  # the champion's two rows; the shadow's two are not served traffic
    assert sum(f.counts.mismatch for f in report.features) == 0
    store.close()
