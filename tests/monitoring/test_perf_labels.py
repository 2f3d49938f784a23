"""Labels joined to a real Parquet prediction log with DuckDB: windows, coverage, as_of, keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from parity import LabelSource, Monitor
from parity.errors import InvalidLabelValue, LabelColumnNotFound, LabelSourceError
from parity.inference.predlog import ParquetLogSink, PredictionRecord
from parity.monitoring import labels
from parity.monitoring.performance import windows
from parity.monitoring.performance_report import (
    BoundMetrics,
    WindowPerformance,
    evaluate,
    join_warnings,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
# Day 1: eight predictions r0..r7 an hour apart; day 2: four more r8..r11
SCORES = [0.9, 0.2, 0.7, 0.4, 0.8, 0.1, 0.6, 0.3, 0.35, 0.75, 0.5, 0.05]
AMOUNTS = [120.0, 15.5, 300.0, 42.0, 80.0, 9.99, 55.0, 70.0, 10.0, 999.0, 64.0, 5.0]


def _at(i: int) -> datetime:
    return T0 + timedelta(hours=i) if i < 8 else T0 + DAY + timedelta(hours=i - 8)


def _record(i: int, **changes: Any) -> PredictionRecord:
    fields: dict[str, Any] = {
        "request_id": f"r{i}",
        "at": _at(i),
        "model": "fraud",
        "version": 1,
        "entities": {"account_id": i, "device_id": 100 + i},
        "features": {"amount": AMOUNTS[i]},
        "prediction": SCORES[i],
        "latency_ms": 1.0,
        "alias": "champion",
    }
    fields.update(changes)
    return PredictionRecord(**fields)


def write_log(folder: Path, extra: list[PredictionRecord] = ()) -> Path:  # type: ignore[assignment]
    sink = ParquetLogSink(folder)
    sink.write([_record(i) for i in range(12)] + list(extra))
    sink.close()
    return folder


# Labels: is_fraud, known (label_timestamp) 5 days after the prediction for r0..r3 and r8..r9,
# 15 days after for r4, r5; r6, r7, r10, r11 never labelled.
FRAUD = {0: 1, 1: 0, 2: 1, 3: 0, 4: 0, 5: 0, 8: 0, 9: 1}
KNOWN_AFTER = {0: 5, 1: 5, 2: 5, 3: 5, 4: 15, 5: 15, 8: 5, 9: 5}


def label_table(rows: dict[int, int] = FRAUD) -> pa.Table:
    return pa.table(
        {
            "request_id": [f"r{i}" for i in rows],
            "transaction_id": list(rows),
            "account_id": pa.array(list(rows), pa.int64()),
            "device_id": pa.array([100 + i for i in rows], pa.int64()),
            "event_timestamp": pa.array([_at(i) for i in rows], pa.timestamp("us", tz="UTC")),
            "amount": [AMOUNTS[i] for i in rows],
            "is_fraud": [bool(v) for v in rows.values()],
            "label_timestamp": pa.array(
                [_at(i) + timedelta(days=KNOWN_AFTER[i]) for i in rows],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write_log(tmp_path / "data" / "prediction_log")
    pq.write_table(label_table(), tmp_path / "data" / "chargebacks.parquet")
    return tmp_path


def monitor(source: LabelSource, **changes: Any) -> Monitor:
    return Monitor(
        name="fraud_monitor",
        model="fraud",
        window=DAY,
        labels=source,
        label_delay=timedelta(days=20),
        min_samples=4,
        top_k=2,
        **changes,
    )


BY_REQUEST = LabelSource(
    path="data/chargebacks.parquet",
    label="is_fraud",
    label_timestamp_field="label_timestamp",
)


def report(
    repo: Path, source: LabelSource, as_of: datetime, **changes: Any
) -> tuple[labels.Joined, tuple[WindowPerformance, ...]]:
    the_monitor = monitor(source, **changes)
    spans = windows(T0, T0 + 2 * DAY, DAY)
    scope = labels.LogScope(repo / "data" / "prediction_log", "fraud", 1)
    connection = labels.connect(repo)
    try:
        sql = labels.source_sql(source, repo)
        joined = labels.join(connection, scope, source, sql, spans, as_of)
    finally:
        connection.close()
    bound = BoundMetrics(functions=the_monitor.metric_functions)
    return joined, evaluate(the_monitor, joined, spans, as_of, bound)


def test_unlabelled_predictions_are_never_negatives(repo: Path) -> None:
    as_of = T0 + timedelta(days=30)
    _, (day1, day2) = report(repo, BY_REQUEST, as_of)
    assert (day1.predictions, day1.labelled, day1.coverage) == (8, 6, 0.75)
    assert (day2.predictions, day2.labelled, day2.coverage) == (4, 2, 0.5)
    labelled = [0, 1, 2, 3, 4, 5]
    y = [FRAUD[i] for i in labelled]
    s = [SCORES[i] for i in labelled]
    assert day1.metrics["auc"] == pytest.approx(roc_auc_score(y, s))
    assert day1.metrics["average_precision"] == pytest.approx(average_precision_score(y, s))
    assert day1.metrics["brier"] == pytest.approx(brier_score_loss(y, s))
    # r6 (0.6) and r7 (0.3) unlabelled: as negatives they would change the AUC
    as_negatives = roc_auc_score([*y, 0, 0], [*s, 0.6, 0.3])
    assert day1.metrics["auc"] != pytest.approx(as_negatives)
    assert day1.metrics["precision"] == pytest.approx(2 / 3)  # 0.9, 0.7 fraud; 0.8 not
    assert day1.metrics["recall"] == 1.0
    assert day1.metrics["precision_at_k"] == 0.5  # top 2 labelled: 0.9 fraud, 0.8 not
    assert day2.metrics["auc"] == 1.0  # r9 (0.75) fraud above r8 (0.35)
    assert day1.status == day2.status == "final"  # day 30 is past each end + 20 days


def test_a_window_is_final_after_its_label_delay(repo: Path) -> None:
    _, (day1, day2) = report(repo, BY_REQUEST, T0 + timedelta(days=21, hours=12))
    assert (day1.status, day2.status) == ("final", "provisional")


def test_labels_known_after_as_of_are_not_used_so_reruns_reproduce(repo: Path) -> None:
    early = T0 + timedelta(days=10)  # r0..r3 known (day 5), r4, r5 not yet (day 15)
    _, (day1, _) = report(repo, BY_REQUEST, early)
    assert (day1.labelled, day1.coverage) == (4, 0.5)
    y, s = [1, 0, 1, 0], [0.9, 0.2, 0.7, 0.4]
    assert day1.metrics["auc"] == pytest.approx(roc_auc_score(y, s))
    assert day1.metrics["brier"] == pytest.approx(brier_score_loss(y, s))
    _, later = report(repo, BY_REQUEST, T0 + timedelta(days=40))
    _, again = report(repo, BY_REQUEST, early)
    assert later[0].labelled == 6
    assert again[0] == day1


def test_predictions_after_as_of_are_not_counted(repo: Path) -> None:
    _, (day1, day2) = report(repo, BY_REQUEST, T0 + timedelta(hours=3, minutes=30))
    assert (day1.predictions, day1.labelled, day2.predictions) == (4, 0, 0)
    assert day1.metrics["auc"] is None
    assert day1.reasons["auc"] == "no labelled predictions in the window"


def test_a_sql_query_can_rename_keys_and_cast_labels(repo: Path) -> None:
    source = LabelSource(
        query="SELECT 'r' || transaction_id AS request_id, CAST(is_fraud AS INTEGER) AS fraud, "
        "label_timestamp FROM 'data/chargebacks.parquet'",
        label="fraud",
        label_timestamp_field="label_timestamp",
    )
    _, by_query = report(repo, source, T0 + timedelta(days=30))
    _, by_path = report(repo, BY_REQUEST, T0 + timedelta(days=30))
    assert [w.metrics["auc"] for w in by_query] == [w.metrics["auc"] for w in by_path]
    assert [w.labelled for w in by_query] == [6, 2]


def test_entity_keys_and_event_time_join(repo: Path) -> None:
    source = LabelSource(
        path="data/chargebacks.parquet",
        label="is_fraud",
        join_keys=("account_id", "device_id"),
        timestamp_field="event_timestamp",
        label_timestamp_field="label_timestamp",
    )
    _, (day1, day2) = report(repo, source, T0 + timedelta(days=30))
    assert (day1.labelled, day2.labelled) == (6, 2)
    _, by_request = report(repo, BY_REQUEST, T0 + timedelta(days=30))
    assert day1.metrics == by_request[0].metrics


def test_entity_keys_at_another_time_do_not_match(tmp_path: Path) -> None:
    write_log(tmp_path / "data" / "prediction_log")
    shifted = label_table().set_column(
        4,
        "event_timestamp",
        pa.array([_at(i) + timedelta(seconds=1) for i in FRAUD], pa.timestamp("us", tz="UTC")),
    )
    pq.write_table(shifted, tmp_path / "data" / "chargebacks.parquet")
    source = LabelSource(
        path="data/chargebacks.parquet",
        label="is_fraud",
        join_keys=("account_id", "device_id"),
        timestamp_field="event_timestamp",
    )
    joined, found = report(tmp_path, source, T0 + timedelta(days=30))
    assert [w.labelled for w in found] == [0, 0]
    (warning,) = join_warnings(joined, "path 'data/chargebacks.parquet'", "fraud/1", T0)
    assert warning.startswith("no label matches a prediction: 8 labels known")
    assert "12 predictions of fraud/1" in warning


def test_the_latest_known_label_of_a_key_wins(tmp_path: Path) -> None:
    write_log(tmp_path / "data" / "prediction_log")
    table = label_table({0: 1, 1: 0})
    flipped = pa.table(  # r1 re-labelled fraud on day 12 (a late chargeback)
        {
            "request_id": ["r1"],
            "is_fraud": [True],
            "label_timestamp": pa.array([T0 + timedelta(days=12)], pa.timestamp("us", tz="UTC")),
        }
    )
    both = pa.concat_tables([table.select(["request_id", "is_fraud", "label_timestamp"]), flipped])
    pq.write_table(both, tmp_path / "data" / "chargebacks.parquet")
    _, before = report(tmp_path, BY_REQUEST, T0 + timedelta(days=10))
    _, after = report(tmp_path, BY_REQUEST, T0 + timedelta(days=13))
    assert (before[0].positives, before[0].labelled) == (1, 2)
    assert (after[0].positives, after[0].labelled) == (2, 2)


def test_other_models_versions_and_failed_requests_are_left_out(tmp_path: Path) -> None:
    extra = [
        _record(0, request_id="r0", version=2, prediction=0.0),
        _record(1, request_id="r1", model="other", prediction=1.0),
        _record(2, request_id="r2", status="error", prediction=None),
    ]
    write_log(tmp_path / "data" / "prediction_log", extra)
    pq.write_table(label_table(), tmp_path / "data" / "chargebacks.parquet")
    _, (day1, _) = report(tmp_path, BY_REQUEST, T0 + timedelta(days=30))
    assert (day1.predictions, day1.labelled) == (8, 6)


def test_null_scores_are_dropped_and_counted(tmp_path: Path) -> None:
    extra = [_record(0, request_id="r0", at=_at(0), prediction=float("nan"))]
    write_log(tmp_path / "data" / "prediction_log", extra)
    pq.write_table(label_table(), tmp_path / "data" / "chargebacks.parquet")
    _, (day1, _) = report(tmp_path, BY_REQUEST, T0 + timedelta(days=30))
    # the NaN row (logged as null) also matches r0's label: counted, dropped, not scored
    assert (day1.predictions, day1.labelled, day1.dropped_scores) == (9, 7, 1)
    y = [FRAUD[i] for i in range(6)]
    assert day1.metrics["auc"] == pytest.approx(roc_auc_score(y, SCORES[:6]))


def test_a_missing_log_is_empty_windows_with_a_warning(tmp_path: Path) -> None:
    pq.write_table(label_table(), tmp_path / "labels.parquet")
    source = LabelSource(path="labels.parquet", label="is_fraud")
    joined, found = report(tmp_path, source, T0 + timedelta(days=30))
    assert [w.predictions for w in found] == [0, 0]
    assert [w.coverage for w in found] == [None, None]
    (warning,) = join_warnings(joined, "x", "fraud/1", T0)
    assert "no prediction log files" in warning


def test_unknown_label_column_is_a_typed_error_naming_it(repo: Path) -> None:
    source = LabelSource(path="data/chargebacks.parquet", label="is_chargeback")
    with pytest.raises(LabelColumnNotFound, match=r"'is_chargeback'.*LabelSource label"):
        report(repo, source, T0)
    keyed = LabelSource(path="data/chargebacks.parquet", label="is_fraud", join_keys=("txn",))
    with pytest.raises(LabelColumnNotFound, match=r"'txn' \(LabelSource join_keys\[0\]\)"):
        report(repo, keyed, T0)


def test_a_missing_label_file_or_bad_query_is_a_typed_error(repo: Path) -> None:
    with pytest.raises(LabelSourceError, match=r"'data/nope\.parquet' matches no file"):
        report(repo, LabelSource(path="data/nope.parquet", label="y"), T0)
    with pytest.raises(LabelSourceError, match="label source query cannot be read"):
        report(repo, LabelSource(query="SELECT FROM nowhere", label="y"), T0)


def test_labels_other_than_zero_one_are_a_typed_error(repo: Path) -> None:
    source = LabelSource(
        query="SELECT request_id, CASE WHEN is_fraud THEN 2 ELSE 0 END AS y "
        "FROM 'data/chargebacks.parquet'",
        label="y",
    )
    with pytest.raises(InvalidLabelValue, match="label column 'y' holds 2"):
        report(repo, source, T0 + timedelta(days=30))


def test_custom_rows_carry_the_label_source_columns(repo: Path) -> None:
    seen: dict[str, Any] = {}

    def amount_caught(labels: np.ndarray, scores: np.ndarray, rows: pa.Table) -> float:
        seen["columns"] = rows.column_names
        amount = np.asarray(rows.column("amount"))
        return float(amount[labels & (scores >= 0.5)].sum())

    the_monitor = monitor(BY_REQUEST, metrics=[amount_caught])
    spans = windows(T0, T0 + 2 * DAY, DAY)
    scope = labels.LogScope(repo / "data" / "prediction_log", "fraud", 1)
    connection = labels.connect(repo)
    joined = labels.join(
        connection, scope, BY_REQUEST, labels.source_sql(BY_REQUEST, repo), spans, T0 + 30 * DAY
    )
    found = evaluate(
        the_monitor, joined, spans, T0 + 30 * DAY, BoundMetrics(the_monitor.metric_functions)
    )
    assert found[0].metrics["amount_caught"] == 120.0 + 300.0
    assert "amount" in seen["columns"] and "score" in seen["columns"]
    assert "prediction_timestamp" in seen["columns"] and "__label" not in seen["columns"]


def test_a_label_source_column_named_score_does_not_replace_the_prediction(repo: Path) -> None:
    source = LabelSource(
        query="SELECT request_id, is_fraud, 1.0 - 0.0 AS score FROM 'data/chargebacks.parquet'",
        label="is_fraud",
    )
    _, (day1, _) = report(repo, source, T0 + timedelta(days=30))
    y = [FRAUD[i] for i in range(6)]
    assert day1.metrics["auc"] == pytest.approx(roc_auc_score(y, SCORES[:6]))
