"""`store.monitoring.performance`: the fraud template's monitor over a real prediction log and
label file, its history on SQLite and PostgreSQL, and the user metric bound from the repo."""

from __future__ import annotations

import importlib.util
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from parity import FeatureStore
from parity.errors import (
    AliasNotFound,
    LabelSourceError,
    ModelNotFound,
    ModelVersionNotFound,
    MonitorNotFound,
    PredictionLogUnreadable,
)
from parity.examples.fraud import scaffold
from parity.monitoring.service import bind_metrics
from tests.conftest import DRIVER_REPO, write_repo
from tests.monitoring.test_perf_labels import AMOUNTS, DAY, SCORES, T0, _record, label_table

TEMPLATE = Path(scaffold.__file__).parent / "template" / "monitors.py"
# r1 (score 0.2, $15.50) is fraud the model missed; r0 ($120) and r2 ($300) it caught
FRAUD = {0: 1, 1: 1, 2: 1, 3: 0, 4: 0, 5: 0, 8: 0, 9: 1}


def template_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fraud_template_monitors", TEMPLATE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dollar_weighted_recall_by_hand() -> None:
    metric = template_module().dollar_weighted_recall
    labels = np.array([True, True, True, False])
    scores = np.array([0.9, 0.3, 0.5, 0.8])
    rows = pa.table({"amount": [100.0, 50.0, 25.0, 1000.0]})
    assert metric(labels, scores, rows) == pytest.approx(125.0 / 175.0)  # 0.5 counts as caught
    assert metric(np.zeros(2, dtype=bool), np.array([0.1, 0.9]), rows.slice(0, 2)) is None


def fraud_repo(root: Path, *, project: str = "demo", extra: str = "") -> Path:
    repo = write_repo(
        root, {**DRIVER_REPO, "monitors.py": TEMPLATE.read_text()}, project=project, extra=extra
    )
    from parity.inference.predlog import ParquetLogSink

    sink = ParquetLogSink(repo / "data" / "prediction_log")
    sink.write([_record(i, request_id=f"txn-{i}") for i in range(12)])
    sink.close()
    pq.write_table(label_table(FRAUD), repo / "data" / "chargebacks.parquet")
    return repo


def register(store: FeatureStore) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    store.models.register_model("fraud", LogisticRegression().fit(x, y), alias="champion")


def run_and_check_history(store: FeatureStore) -> None:
    store.apply()
    register(store)
    early = store.monitoring.performance(
        "fraud@champion", since=T0, until=T0 + 2 * DAY, window=DAY, as_of=T0 + 10 * DAY
    )
    assert (early.model, early.version, early.window) == ("fraud", 1, DAY)
    assert [(w.labelled, w.status) for w in early.windows] == [
        (4, "provisional"),
        (2, "provisional"),
    ]
    late = store.monitoring.performance(
        "fraud@champion", since=T0, until=T0 + 2 * DAY, window=DAY, as_of=T0 + 40 * DAY
    )
    day1 = late.windows[0]
    assert (day1.labelled, day1.coverage, day1.status) == (6, 0.75, "final")
    y = [FRAUD[i] for i in range(6)]
    assert day1.metrics["auc"] == pytest.approx(roc_auc_score(y, SCORES[:6]))
    caught, fraud = AMOUNTS[0] + AMOUNTS[2], AMOUNTS[0] + AMOUNTS[1] + AMOUNTS[2]
    assert day1.metrics["dollar_weighted_recall"] == pytest.approx(caught / fraud)
    latest = store.monitoring.performance_history("fraud")
    assert [(r["window_start"], r["labelled"], r["status"]) for r in latest] == [
        (T0, 6, "final"),
        (T0 + DAY, 2, "final"),
    ]
    assert latest[0]["metrics"]["dollar_weighted_recall"] == pytest.approx(caught / fraud)
    assert latest[0]["as_of"] == T0 + 40 * DAY and latest[0]["coverage"] == 0.75
    assert len(store.monitoring.performance_history("fraud", 1, latest=False)) == 4
    assert store.monitoring.performance_history("fraud", 2) == []


def test_performance_over_the_fraud_template_monitor_on_sqlite(tmp_path: Path) -> None:
    with FeatureStore(fraud_repo(tmp_path / "repo")) as store:
        run_and_check_history(store)


@pytest.mark.postgres
def test_performance_history_on_postgres(
    tmp_path: Path, postgres_url: str, project_name: str
) -> None:
    extra = f"registry:\n  type: postgres\n  url: {postgres_url}\n"
    repo = fraud_repo(tmp_path / "repo", project=project_name, extra=extra)
    with FeatureStore(repo) as store:
        run_and_check_history(store)


def test_a_changed_metric_function_is_null_with_the_reason(tmp_path: Path) -> None:
    repo = fraud_repo(tmp_path / "repo")
    with FeatureStore(repo) as store:
        store.apply()
        register(store)
    text = (repo / "monitors.py").read_text()
    (repo / "monitors.py").write_text(text.replace("caught / fraud", "caught / fraud / 2"))
    with FeatureStore(repo) as store:
        report = store.monitoring.performance(
            "fraud/1", since=T0, until=T0 + DAY, as_of=T0 + 40 * DAY, record=False
        )
        (day1,) = report.windows
        assert day1.metrics["dollar_weighted_recall"] is None
        assert "differs from the applied one" in day1.reasons["dollar_weighted_recall"]
        assert day1.metrics["auc"] is not None


def test_unknown_model_and_unmonitored_model_are_typed_errors(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", DRIVER_REPO)
    with FeatureStore(repo) as store:
        store.apply()
        with pytest.raises(ModelNotFound, match="'nope'"):
            store.monitoring.performance("nope", since=T0)
        with pytest.raises(AliasNotFound, match="model 'nope' has no alias 'champion'"):
            store.monitoring.performance("nope@champion", since=T0)
        register(store)
        with pytest.raises(ModelVersionNotFound, match="fraud"):
            store.monitoring.performance("fraud/9", since=T0)
        with pytest.raises(MonitorNotFound, match="no monitor watches model 'fraud'"):
            store.monitoring.performance("fraud@champion", since=T0)


def test_bind_metrics_loads_the_applied_functions_from_the_repo(tmp_path: Path) -> None:
    repo = fraud_repo(tmp_path / "repo")
    with FeatureStore(repo) as store:
        store.apply()
    with FeatureStore(repo) as store:
        applied = store.monitoring.get_monitor("fraud_monitor")  # from the registry: no code
        assert applied.metric_functions == {}
        functions = bind_metrics(store, applied)
    metric = functions["dollar_weighted_recall"]
    rows = pa.table({"amount": [10.0, 30.0]})
    assert metric(np.array([True, True]), np.array([0.9, 0.1]), rows) == pytest.approx(0.25)


def test_a_monitor_without_labels_is_a_typed_error(tmp_path: Path) -> None:
    text = 'from parity import Monitor\n\nm = Monitor(name="m", model="fraud")\n'
    repo = write_repo(tmp_path / "repo", {**DRIVER_REPO, "monitors.py": text})
    with FeatureStore(repo) as store:
        store.apply()
        register(store)
        with pytest.raises(LabelSourceError, match="monitor 'm' declares no labels"):
            store.monitoring.performance("fraud@champion", since=T0, until=T0 + DAY)


def test_keys_matching_no_prediction_say_so_with_counts(tmp_path: Path) -> None:
    repo = fraud_repo(tmp_path / "repo")
    shifted = label_table(FRAUD).set_column(1, "transaction_id", pa.array([100 + i for i in FRAUD]))
    pq.write_table(shifted, repo / "data" / "chargebacks.parquet")
    with FeatureStore(repo) as store:
        store.apply()
        register(store)
        report = store.monitoring.performance(
            "fraud@champion",
            since=T0,
            until=T0 + 2 * DAY,
            window=timedelta(hours=12),
            as_of=T0 + 40 * DAY,
        )
    assert len(report.windows) == 4 and report.matched == 0 and report.label_rows == 8
    (warning,) = report.warnings
    assert "8 labels known" in warning and "12 predictions of fraud/1" in warning


def test_a_recorded_performance_run_steps_metric_alerts_on_final_windows_only(
    tmp_path: Path,
) -> None:
    repo = fraud_repo(tmp_path / "repo")
    monitors = repo / "monitors.py"
    text = monitors.read_text()
    assert "fire_at=0.6" in text and "clear_at=0.7" in text
    monitors.write_text(
        text.replace("fire_at=0.6", "fire_at=0.99").replace("clear_at=0.7", "clear_at=0.995")
    )
    with FeatureStore(repo) as store:
        store.apply()
        register(store)
        store.monitoring.performance(
            "fraud@champion", since=T0, until=T0 + 2 * DAY, window=DAY, as_of=T0 + 10 * DAY
        )
        assert store.monitoring.alerts() == []  # provisional windows: no evidence yet
        late = store.monitoring.performance(
            "fraud@champion", since=T0, until=T0 + 2 * DAY, window=DAY, as_of=T0 + 40 * DAY
        )
        # The template's rule, thresholds moved: dollar_weighted_recall at or below 0.99 fires
        # (sustain 1), at or above 0.995 clears. Walk the final windows by hand.
        expected, firing = [], False
        for window in late.windows:
            value = window.metrics["dollar_weighted_recall"]
            if value is None:
                continue
            if not firing and value <= 0.99:
                firing = True
                expected.append(("fraud_dollars_missed", "fired", window.end))
            elif firing and value >= 0.995:
                firing = False
                expected.append(("fraud_dollars_missed", "cleared", window.end))
        assert expected, "the fixture should breach the rule in a final window"
        got = [(e.rule, e.state, e.at) for e in reversed(store.monitoring.alerts())]
        assert got == expected


@pytest.mark.parametrize("damage", ["garbage", "foreign"])
def test_a_damaged_log_file_is_a_typed_error_for_performance_too(
    tmp_path: Path, damage: str
) -> None:
    """As for drift (test_qa_a_damaged_log): a truncated or foreign file in the log folder is
    PredictionLogUnreadable naming the fix, not DuckDB's own exception."""
    repo = fraud_repo(tmp_path / "repo")
    folder = next((repo / "data" / "prediction_log").glob("date=*"))
    bad = folder / "zz-bad.parquet"
    if damage == "garbage":
        bad.write_bytes(b"not parquet")
    else:
        pq.write_table(pa.table({"x": [1, 2]}), bad)
    with FeatureStore(repo) as store:
        store.apply()
        register(store)
        with pytest.raises(PredictionLogUnreadable, match=r"could not be read.*move the damaged"):
            store.monitoring.performance(
                "fraud@champion", since=T0, until=T0 + DAY, as_of=T0 + 40 * DAY, record=False
            )
