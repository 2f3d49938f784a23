"""Delayed-label performance metrics of a binary classifier: pure numpy over labelled rows (AUC,
average precision, precision@k, precision/recall at the threshold, Brier, log loss, calibration),
user-defined metrics, and the window/status rules. Must not import duckdb or the registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

LOG_LOSS_EPS = 1e-15
"""Scores are clipped to [eps, 1 - eps] for log loss: a confidently wrong 0 or 1 costs
-ln(1e-15) = 34.5 nats instead of infinity."""
CALIBRATION_BINS = 10
"""Equal-width bins over [0, 1]: bin k holds scores in (k/10, (k+1)/10], the first also 0
(scikit-learn's `calibration_curve(strategy="uniform")` rule)."""

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]
MetricFunction = Callable[[Any, Any, Any], float]

BUILTIN_METRICS = (
    "auc",
    "average_precision",
    "precision_at_k",
    "precision",
    "recall",
    "brier",
    "log_loss",
    "ece",
)


@dataclass(frozen=True)
class CalibrationBin:
    """One bin of the reliability curve; `mean_score`/`observed_rate` are None when empty."""

    lower: float
    upper: float
    count: int
    mean_score: float | None
    observed_rate: float | None


@dataclass(frozen=True)
class Metrics:
    """Metric values over the labelled rows of one window. A value is None when it is undefined
    for these rows (one class only, no rows, a function that failed); `reasons` says why."""

    values: dict[str, float | None]
    reasons: dict[str, str]
    reliability: tuple[CalibrationBin, ...]
    labelled: int
    positives: int
    dropped_scores: int  # labelled rows whose score was null or NaN: left out of every metric
    k: int  # rows precision@k was computed over: min(top_k, labelled)


def roc_auc(labels: BoolArray, scores: FloatArray) -> float | None:
    """Area under the ROC curve: the probability a positive outranks a negative, ties counting
    one half (Mann-Whitney U over average ranks). None with one class only."""
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = average_ranks(scores)
    u = float(ranks[labels].sum()) - positives * (positives + 1) / 2.0
    return u / (positives * negatives)


def average_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks, tied values sharing the mean of their ranks. The sort need not be stable:
    tied values get the same rank whatever their order (NaNs, each a tie of its own, aside)."""
    order = np.argsort(values)
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]
    mean_rank = (starts + ends + 1) / 2.0  # ranks start+1 .. end, averaged
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def average_precision(labels: BoolArray, scores: FloatArray) -> float | None:
    """Sum over distinct score thresholds (high to low) of precision times the recall gained;
    tied scores form one step. None without positives."""
    positives = int(labels.sum())
    if positives == 0:
        return None
    order = np.argsort(-scores, kind="mergesort")
    ordered, hits = scores[order], labels[order]
    last_of_tie = np.r_[ordered[1:] != ordered[:-1], True]
    true_positives = np.cumsum(hits)[last_of_tie]
    predicted = (np.flatnonzero(last_of_tie) + 1).astype(np.float64)
    precision = true_positives / predicted
    recall_gained = np.diff(np.r_[0, true_positives]) / positives
    return float(np.sum(precision * recall_gained))


def precision_at_k(labels: BoolArray, scores: FloatArray, k: int) -> float | None:
    """Share of positives among the k highest scores (k = min(k, rows)). Rows tied with the k-th
    score count in proportion (the expected value under a random tie-break). None without rows."""
    k = min(k, labels.size)
    if k <= 0:
        return None
    cutoff = np.sort(scores)[::-1][k - 1]
    above = scores > cutoff
    tied = scores == cutoff
    from_tied = k - int(above.sum())
    hits = float(labels[above].sum()) + from_tied * float(labels[tied].mean())
    return hits / k


def precision_recall(
    labels: BoolArray, scores: FloatArray, threshold: float
) -> tuple[float | None, float | None]:
    """Precision and recall when score >= threshold is predicted positive; precision is None when
    nothing is predicted positive, recall None without positives."""
    predicted = scores >= threshold
    caught = int((predicted & labels).sum())
    flagged, positives = int(predicted.sum()), int(labels.sum())
    return (
        caught / flagged if flagged else None,
        caught / positives if positives else None,
    )


def brier(labels: BoolArray, scores: FloatArray) -> float:
    """Mean squared difference between score and outcome."""
    return float(np.mean((scores - labels) ** 2))


def log_loss(labels: BoolArray, scores: FloatArray, eps: float = LOG_LOSS_EPS) -> float:
    """Mean negative log-likelihood of the outcomes, scores clipped to [eps, 1 - eps]."""
    clipped = np.clip(scores, eps, 1.0 - eps)
    return float(-np.mean(np.where(labels, np.log(clipped), np.log1p(-clipped))))


def reliability(
    labels: BoolArray, scores: FloatArray, bins: int = CALIBRATION_BINS
) -> tuple[CalibrationBin, ...]:
    """Per equal-width bin of [0, 1]: its edges, rows, mean score and observed positive rate."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], scores)
    counts = np.bincount(ids, minlength=bins)
    sums = np.bincount(ids, weights=scores, minlength=bins)
    hits = np.bincount(ids, weights=labels.astype(np.float64), minlength=bins)
    return tuple(
        CalibrationBin(
            lower=float(edges[b]),
            upper=float(edges[b + 1]),
            count=int(counts[b]),
            mean_score=float(sums[b] / counts[b]) if counts[b] else None,
            observed_rate=float(hits[b] / counts[b]) if counts[b] else None,
        )
        for b in range(bins)
    )


def expected_calibration_error(curve: Sequence[CalibrationBin]) -> float | None:
    """Row-weighted mean over bins of |mean score - observed rate|; None without rows."""
    total = sum(b.count for b in curve)
    if total == 0:
        return None
    return sum(
        b.count / total * abs(b.mean_score - b.observed_rate)
        for b in curve
        if b.mean_score is not None and b.observed_rate is not None
    )


def compute_metrics(
    labels: Any,
    scores: Any,
    *,
    threshold: float,
    top_k: int,
    bins: int = CALIBRATION_BINS,
) -> Metrics:
    """Every built-in metric over labelled rows: `labels` 0/1 or booleans, `scores` floats (null
    or NaN scores are dropped and counted). Undefined values are None with a reason."""
    y, s, dropped = clean(labels, scores)
    values: dict[str, float | None] = dict.fromkeys(BUILTIN_METRICS)
    reasons: dict[str, str] = {}
    positives = int(y.sum())
    if y.size == 0:
        reasons.update(dict.fromkeys(BUILTIN_METRICS, "no labelled predictions in the window"))
        return Metrics(values, reasons, reliability(y, s, bins), 0, 0, dropped, 0)
    values["auc"] = roc_auc(y, s)
    values["average_precision"] = average_precision(y, s)
    values["precision_at_k"] = precision_at_k(y, s, top_k)
    values["precision"], values["recall"] = precision_recall(y, s, threshold)
    one_class = "only negative labels" if positives == 0 else "only positive labels"
    if values["auc"] is None:
        reasons["auc"] = f"{one_class}: AUC needs both classes"
    if values["average_precision"] is None:
        reasons["average_precision"] = "no positive labels"
    if values["recall"] is None:
        reasons["recall"] = "no positive labels"
    if values["precision"] is None:
        reasons["precision"] = f"no score >= the decision threshold {threshold}"
    curve = reliability(y, s, bins)
    if s.min() < 0.0 or s.max() > 1.0:
        outside = "scores outside [0, 1] are not probabilities"
        reasons.update({"brier": outside, "log_loss": outside, "ece": outside})
        curve = ()
    else:
        values["brier"] = brier(y, s)
        values["log_loss"] = log_loss(y, s)
        values["ece"] = expected_calibration_error(curve)
    k = min(top_k, y.size)
    return Metrics(values, reasons, curve, int(y.size), positives, dropped, k)


def clean(labels: Any, scores: Any) -> tuple[BoolArray, FloatArray, int]:
    """Labels as booleans and scores as float64, rows whose score is null/NaN/inf dropped (their
    count returned). Labels must be 0/1 or booleans: raises ValueError otherwise."""
    s = np.asarray(
        [np.nan if v is None else v for v in scores] if _has_none(scores) else scores,
        dtype=np.float64,
    )
    raw = np.asarray(labels)
    if raw.size != s.size:
        raise ValueError(f"{raw.size} labels but {s.size} scores")
    if raw.dtype != np.bool_:
        numeric = np.asarray(raw, dtype=np.float64)
        if not np.all((numeric == 0.0) | (numeric == 1.0)):
            bad = numeric[~((numeric == 0.0) | (numeric == 1.0))][0]
            raise ValueError(f"labels must be 0/1 or true/false; found {float(bad)!r}")
        raw = numeric == 1.0
    keep = np.isfinite(s)
    return raw[keep].astype(np.bool_), s[keep], int((~keep).sum())


def _has_none(values: Any) -> bool:
    return isinstance(values, list | tuple) and any(v is None for v in values)


# --- user-defined metrics -----------------------------------------------------------------------


@dataclass(frozen=True)
class CustomResult:
    values: dict[str, float | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def custom_metrics(
    functions: Mapping[str, MetricFunction],
    labels: BoolArray,
    scores: FloatArray,
    rows: pa.Table,
) -> CustomResult:
    """Call each f(labels, scores, rows) -> float (or None: undefined for these rows); one that
    raises or returns a non-finite or non-numeric value is None with the reason, and the others
    are still computed."""
    result = CustomResult()
    for name, function in functions.items():
        try:
            value = function(labels, scores, rows)
        except Exception as error:  # a user's function: any failure becomes its reason
            result.values[name] = None
            result.errors[name] = f"{type(error).__name__}: {error}"
            continue
        number = _finite(value)
        result.values[name] = number
        if value is None:
            result.errors[name] = "undefined for these rows (the function returned None)"
        elif number is None:
            result.errors[name] = f"returned {value!r}; a metric must return a finite number"
    return result


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# --- windows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


def windows(since: datetime, until: datetime, width: timedelta) -> list[Window]:
    """Windows of `width` aligned to multiples of it from the Unix epoch (hours on the hour,
    days at 00:00 UTC) covering [since, until): the first holds `since`, the last `until - 1us`."""
    if width <= timedelta(0):
        raise ValueError(f"window must be positive, got {width}")
    if until <= since:
        return []
    # edges in UTC whatever offset the times were written with (a naive time is UTC)
    since, until = (
        t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC) for t in (since, until)
    )
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = epoch + ((since - epoch) // width) * width
    out: list[Window] = []
    start = first
    while start < until:
        out.append(Window(start, start + width))
        start += width
    return out


def window_status(window: Window, label_delay: timedelta, as_of: datetime) -> str:
    """ "final" once `as_of` has reached the window's end plus the label delay (every label of its
    predictions should have arrived), else "provisional"."""
    return "final" if as_of >= window.end + label_delay else "provisional"
