"""Delayed-label metrics (pure) against scikit-learn and hand-worked numbers."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.metrics import log_loss as sk_log_loss

from parity.monitoring.performance import (
    LOG_LOSS_EPS,
    Window,
    compute_metrics,
    custom_metrics,
    precision_at_k,
    window_status,
    windows,
)


def _sample(rows: int, seed: int, *, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.random(rows) < 0.3
    scores = np.clip(0.35 * labels + rng.normal(0.3, 0.2, rows), 0.0, 1.0)
    if ties:
        scores = np.round(scores, 1)  # many ties, many on bin edges, some exactly 0 and 1
    return labels, scores


@pytest.mark.parametrize(("rows", "seed", "ties"), [(500, 1, False), (500, 2, True), (37, 3, True)])
def test_metrics_agree_with_sklearn(rows: int, seed: int, ties: bool) -> None:
    labels, scores = _sample(rows, seed, ties=ties)
    got = compute_metrics(labels, scores, threshold=0.5, top_k=50)
    v = got.values
    assert v["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert v["average_precision"] == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12
    )
    assert v["brier"] == pytest.approx(brier_score_loss(labels, scores), abs=1e-12)
    clipped = np.clip(scores, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    assert v["log_loss"] == pytest.approx(sk_log_loss(labels, clipped, labels=[0, 1]), rel=1e-9)
    predicted = scores >= 0.5
    assert v["precision"] == pytest.approx(precision_score(labels, predicted), abs=1e-12)
    assert v["recall"] == pytest.approx(recall_score(labels, predicted), abs=1e-12)
    prob_true, prob_pred = calibration_curve(labels, scores, n_bins=10, strategy="uniform")
    filled = [b for b in got.reliability if b.count]
    assert [b.observed_rate for b in filled] == pytest.approx(list(prob_true), abs=1e-12)
    assert [b.mean_score for b in filled] == pytest.approx(list(prob_pred), abs=1e-12)
    assert sum(b.count for b in got.reliability) == rows
    # ECE by hand from sklearn's curve: counts per non-empty bin weight |mean score - rate|
    counts = np.array([b.count for b in filled])
    ece = float(np.sum(counts / rows * np.abs(prob_pred - prob_true)))
    assert v["ece"] == pytest.approx(ece, abs=1e-12)
    assert got.labelled == rows and got.positives == int(labels.sum())


def test_one_class_only_gives_no_auc_with_a_reason_never_half() -> None:
    got = compute_metrics([0, 0, 0], [0.1, 0.7, 0.2], threshold=0.5, top_k=10)
    assert got.values["auc"] is None
    assert got.reasons["auc"] == "only negative labels: AUC needs both classes"
    assert got.values["average_precision"] is None and got.values["recall"] is None
    assert got.values["precision"] == 0.0  # one flagged, none fraud
    assert got.values["brier"] == pytest.approx((0.01 + 0.49 + 0.04) / 3)
    positives = compute_metrics([1, 1], [0.2, 0.9], threshold=0.5, top_k=10)
    assert positives.values["auc"] is None
    assert positives.reasons["auc"].startswith("only positive labels")
    assert positives.values["recall"] == 0.5


def test_empty_window_has_every_metric_none_with_a_reason() -> None:
    got = compute_metrics([], [], threshold=0.5, top_k=10)
    assert all(value is None for value in got.values.values())
    assert set(got.reasons) == set(got.values)
    assert got.labelled == 0 and got.k == 0
    assert all(b.count == 0 and b.mean_score is None for b in got.reliability)


def test_nan_and_null_scores_are_dropped_and_counted() -> None:
    got = compute_metrics(
        [1, 0, 1, 0, 1], [0.9, float("nan"), None, 0.2, 0.4], threshold=0.5, top_k=3
    )
    assert got.dropped_scores == 2 and got.labelled == 3
    assert got.values["auc"] == pytest.approx(roc_auc_score([1, 0, 1], [0.9, 0.2, 0.4]))


def test_all_scores_nan_is_an_empty_window() -> None:
    got = compute_metrics([1, 0], [float("nan"), float("inf")], threshold=0.5, top_k=3)
    assert got.dropped_scores == 2 and got.values["auc"] is None


def test_labels_other_than_zero_and_one_are_refused() -> None:
    with pytest.raises(ValueError, match=r"found 2\.0"):
        compute_metrics([0, 2], [0.1, 0.2], threshold=0.5, top_k=3)


def test_scores_outside_unit_interval_skip_probability_metrics() -> None:
    got = compute_metrics([0, 1, 1], [-2.0, 3.0, 0.5], threshold=0.5, top_k=3)
    assert got.values["auc"] == pytest.approx(1.0)
    assert got.values["brier"] is None and got.values["log_loss"] is None
    assert "not probabilities" in got.reasons["ece"]


def test_log_loss_of_a_confident_mistake_is_clipped_not_infinite() -> None:
    got = compute_metrics([1, 0], [0.0, 0.0], threshold=0.5, top_k=3)
    assert got.values["log_loss"] == pytest.approx(-math.log(LOG_LOSS_EPS) / 2, rel=1e-6)


def test_precision_at_k_by_hand_with_ties_at_the_cutoff() -> None:
    labels = np.array([1, 0, 1, 0, 0], dtype=bool)
    scores = np.array([0.9, 0.8, 0.5, 0.5, 0.1])
    assert precision_at_k(labels, scores, 2) == pytest.approx(0.5)  # 0.9 yes, 0.8 no
    # k=3: 0.9, 0.8, then one of the two rows tied at 0.5 (one fraud of two): (1 + 0.5) / 3
    assert precision_at_k(labels, scores, 3) == pytest.approx(1.5 / 3)
    assert precision_at_k(labels, scores, 100) == pytest.approx(2 / 5)  # k capped at the rows


def test_threshold_is_inclusive() -> None:
    got = compute_metrics([1, 0], [0.5, 0.49], threshold=0.5, top_k=3)
    assert got.values["precision"] == 1.0 and got.values["recall"] == 1.0


def test_custom_metric_failures_are_null_with_their_message_others_computed() -> None:
    def fine(labels: np.ndarray, scores: np.ndarray, rows: pa.Table) -> float:
        return float(labels.sum()) + rows.num_rows

    def broken(labels: np.ndarray, scores: np.ndarray, rows: pa.Table) -> float:
        raise KeyError("amount")

    def infinite(labels: np.ndarray, scores: np.ndarray, rows: pa.Table) -> float:
        return float("inf")

    def undefined(labels: np.ndarray, scores: np.ndarray, rows: pa.Table) -> float | None:
        return None

    table = pa.table({"amount": [1.0, 2.0]})
    got = custom_metrics(
        {"fine": fine, "broken": broken, "infinite": infinite, "undefined": undefined},
        np.array([True, False]),
        np.array([0.1, 0.2]),
        table,
    )
    assert got.values == {"fine": 3.0, "broken": None, "infinite": None, "undefined": None}
    assert got.errors["undefined"] == "undefined for these rows (the function returned None)"
    assert got.errors["broken"] == "KeyError: 'amount'"
    assert "finite number" in got.errors["infinite"]


def test_windows_are_aligned_to_the_epoch() -> None:
    since = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
    until = datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    got = windows(since, until, timedelta(hours=1))
    assert [w.start.hour for w in got] == [10, 11, 12]
    days = windows(since, datetime(2026, 3, 3, 0, 0, 1, tzinfo=UTC), timedelta(days=1))
    assert [w.start.day for w in days] == [1, 2, 3]
    assert days[0].start == datetime(2026, 3, 1, tzinfo=UTC)
    assert windows(until, since, timedelta(hours=1)) == []


def test_a_window_is_final_only_after_its_end_plus_the_label_delay() -> None:
    window = Window(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))
    delay = timedelta(days=20)
    assert window_status(window, delay, datetime(2026, 3, 21, 23, 59, tzinfo=UTC)) == "provisional"
    assert window_status(window, delay, datetime(2026, 3, 22, tzinfo=UTC)) == "final"


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 1.0])),
        min_size=2,
        max_size=40,
    )
)
def test_ranking_and_calibration_agree_with_sklearn_on_heavy_ties(
    pairs: list[tuple[bool, float]],
) -> None:
    labels = np.array([p[0] for p in pairs])
    scores = np.array([p[1] for p in pairs])
    got = compute_metrics(labels, scores, threshold=0.5, top_k=5)
    if labels.all() or not labels.any():
        assert got.values["auc"] is None
    else:
        assert got.values["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    if labels.any():
        expected = average_precision_score(labels, scores)
        assert got.values["average_precision"] == pytest.approx(expected, abs=1e-12)
    prob_true, prob_pred = calibration_curve(labels, scores, n_bins=10, strategy="uniform")
    filled = [b for b in got.reliability if b.count]
    assert [b.observed_rate for b in filled] == pytest.approx(list(prob_true), abs=1e-12)
    assert [b.mean_score for b in filled] == pytest.approx(list(prob_pred), abs=1e-12)
