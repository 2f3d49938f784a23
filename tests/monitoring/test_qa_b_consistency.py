"""QA (issue 13, helper B): online/offline consistency edges found by replaying the issue as a
user would, each a regression test of a fixed defect."""

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


def test_a_prediction_logged_without_entity_keys_is_skipped_and_counted(tmp_path: Path) -> None:
    # The model server's V2 tensor path (/v2/models/.../infer) logs `entities: {}` for a model
    # registered with a feature service: one such row made the whole replay fail with
    # invalid_entity_frame ("row N has a null join key ... drop the row"), which no user can do.
    root = write_repo(tmp_path / "repo", REPO, extra="models: {trusted: true}\n")
    pq.write_table(stats_rows(), root / "data" / "driver_stats.parquet")
    clock = Clock(T)
    store = FeatureStore(root, clock=clock)
    store.apply()
    store.push("live", speeds(T - timedelta(hours=5), 10.0), to="both")
    store.materialize(T - timedelta(days=3), T)
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
    features[1]["trips"] = -1  # a skewed value the model saw
    records = [
        PredictionRecord("r", at, "eta", 1, {"driver_id": d}, f, 0.5, 0.0)
        for d, f in zip([1, 2], features, strict=True)
    ]
    records.append(PredictionRecord("t", at, "eta", 1, {}, {"conv_rate": 0.3}, 0.5, 0.0))
    sink = ParquetLogSink(root / "data" / "prediction_log")
    sink.write(records)
    sink.close()
    report = store.monitoring.consistency("driver_all", until=T + timedelta(hours=1))
    assert (report.rows, report.rows_without_keys) == (2, 1)
    assert "1 logged row without entity keys skipped" in report.message
    assert sum(f.counts.mismatch for f in report.features) == 1  # the skewed trips, still caught
    assert report.to_dict()["rows_without_keys"] == 1
    store.close()


def test_rows_still_in_an_open_log_segment_are_pointed_out(tmp_path: Path) -> None:
    # Right after serving, the served log's rows sit in a hidden `.inprogress` segment (Parquet
    # within 5 minutes or when the server stops); the CLI said "turn the served log on or
    # widen --since", which sent users after the wrong cause.
    from typer.testing import CliRunner

    from parity.cli.main import app

    root = write_repo(tmp_path / "repo", REPO, extra="feature_server:\n  log_sample_percent: 100\n")
    pq.write_table(stats_rows(), root / "data" / "driver_stats.parquet")
    with FeatureStore(root) as store:
        store.apply()
    sink = ParquetLogSink(root / "data" / "served_log")
    at = T + timedelta(minutes=5)
    sink.write([PredictionRecord("r", at, "driver_all", 0, {"driver_id": 1}, {}, {}, 0.0)])
    try:
        args = ["monitor", "consistency", "--service", "driver_all", "--repo", str(root)]
        result = CliRunner().invoke(app, [*args, "--since", T.isoformat()])
        assert result.exit_code == 0, result.output
        text = " ".join(result.output.split())
        assert "1 log segment still being written" in text, text
    finally:
        sink.close()
