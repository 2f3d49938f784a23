"""Property: for batch-materialized data, whatever the data, keys and request times, the served
values replay equal (zero mismatches); and the model server's prediction log is replayed too."""

from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity import FeatureStore
from parity.inference.predlog import ParquetLogSink, PredictionRecord
from parity.monitoring.served_log import served_log
from tests.conftest import write_repo
from tests.inference.serving_helpers import Affine
from tests.monitoring.test_consistency_replay import REPO, Clock, T, speeds, stats_rows

SCHEMA = pa.schema(
    [
        ("driver_id", pa.int64()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("conv_rate", pa.float64()),
        ("trips", pa.int64()),
        ("city", pa.string()),
    ]
)
source_rows = st.lists(
    st.tuples(
        st.integers(1, 5),  # driver
        st.integers(1, 60 * 60),  # age in minutes before T (ttl is one day)
        st.one_of(st.none(), st.floats(allow_infinity=False, width=64)),
        st.one_of(st.none(), st.integers(-(2**62), 2**62)),
        st.one_of(st.none(), st.text(max_size=5)),
    ),
    min_size=1,
    max_size=30,
)
lookups = st.lists(
    st.tuples(st.integers(1, 6), st.integers(0, 12 * 60)),  # driver 6 has no data
    min_size=1,
    max_size=20,
)


def make_store(root: Path, rows: list[tuple[Any, ...]], clock: Clock) -> FeatureStore:
    write_repo(root, REPO, extra="feature_server:\n  log_sample_percent: 100\n")
    columns = {
        "driver_id": [r[0] for r in rows],
        "event_timestamp": [T - timedelta(minutes=r[1]) for r in rows],
        "conv_rate": [r[2] for r in rows],
        "trips": [r[3] for r in rows],
        "city": [r[4] for r in rows],
    }
    pq.write_table(pa.table(columns, schema=SCHEMA), root / "data" / "driver_stats.parquet")
    store = FeatureStore(root, clock=clock)
    store.apply()
    store.push("live", speeds(T - timedelta(hours=5), 10.0, range(1, 4)), to="offline")
    store.materialize(T - timedelta(days=5), T)
    return store


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=source_rows, asked=lookups)
def test_batch_materialized_values_replay_equal(
    rows: list[tuple[Any, ...]], asked: list[tuple[int, int]]
) -> None:
    folder = Path(tempfile.mkdtemp())
    try:
        clock = Clock(T)
        store = make_store(folder / "repo", rows, clock)
        log = served_log(store.repo_path, "data/served_log", 100.0)
        assert log is not None
        for driver, minutes in asked:
            clock.now = T + timedelta(minutes=minutes)
            served = store.get_online_features("driver_all", {"driver_id": [driver]})
            log.log_lookup(store.registry.catalog, "driver_all", served, clock.now)
        log.close()
        report = store.monitoring.consistency("driver_all", until=T + timedelta(days=1))
        assert report.rows == len(asked)
        assert [(f.feature, f.counts.mismatch) for f in report.features] == [
            ("conv_rate", 0),
            ("trips", 0),
            ("city", 0),
            ("speed", 0),
        ], [f.examples for f in report.features]
        store.close()
    finally:
        shutil.rmtree(folder)


def test_prediction_log_rows_of_models_using_the_service_are_replayed(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "repo", REPO, extra="models: {trusted: true}\n")
    pq.write_table(stats_rows(), root / "data" / "driver_stats.parquet")
    clock = Clock(T)
    store = FeatureStore(root, clock=clock)
    store.apply()
    store.push("live", speeds(T - timedelta(hours=5), 10.0), to="both")
    store.materialize(T - timedelta(days=3), T)
    sample = np.ones((2, 1))
    store.models.register_model(
        "eta",
        Affine([1.0], 0.0),
        flavor="pyfunc",
        sample_input=sample,
        feature_service="driver_all",
    )
    store.models.register_model("other", Affine([1.0], 0.0), flavor="pyfunc", sample_input=sample)
    at = T + timedelta(minutes=30)
    clock.now = at
    served = store.get_online_features("driver_all", {"driver_id": [1, 2, 3]})
    features = [{n: v[row] for n, v in served.values.items()} for row in range(3)]
    features[2]["trips"] = -1  # a skewed value the model saw
    sink = ParquetLogSink(root / "data" / "prediction_log")
    records = [
        PredictionRecord(
            "r", at + timedelta(milliseconds=4), model, 1, {"driver_id": d}, f, 0.5, 4.0
        )
        for model in ("eta", "other")
        for d, f in zip([1, 2, 3], features, strict=True)
    ]
    sink.write(records)
    sink.close()
    report = store.monitoring.consistency("driver_all", until=T + timedelta(hours=1))
    assert report.rows_by_source == {"model_server": 3}  # "other" has no feature service
    trips = next(f for f in report.features if f.feature == "trips")
    assert trips.counts.mismatch == 1
    (example,) = trips.examples
    assert (example.keys, example.online, example.offline) == ({"driver_id": 3}, -1, 310)
    assert example.at == at and example.source == "model_server"  # logged time - latency
    assert sum(f.counts.mismatch for f in report.features) == 1
    store.close()
