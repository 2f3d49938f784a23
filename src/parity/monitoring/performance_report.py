"""A delayed-label performance run: windows of prediction time, each with its status (final or
provisional), label coverage, built-in and user metrics; its JSON form; binding user metrics
from the repo. Reads through monitoring.labels; must not import the CLI or the model server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity.errors import (
    InvalidLabelValue,
    InvalidTime,
    LabelSourceError,
    MonitorNotFound,
    PredictionLogError,
    ScoreOutputNotFound,
)
from parity.monitoring.performance import (
    CalibrationBin,
    MetricFunction,
    Window,
    compute_metrics,
    custom_metrics,
    window_status,
)
from parity.repo.loader import load_repo

if TYPE_CHECKING:
    import pyarrow as pa

    from parity.definitions.monitor import Monitor
    from parity.feature_store import FeatureStore
    from parity.models.store import ModelVersion
    from parity.monitoring.labels import Joined


MAX_WINDOWS = 100_000
"""Windows per run at most, as for drift: a far --since with a narrow --window would otherwise
build millions of windows (and history rows) before reading anything."""


@dataclass(frozen=True)
class BoundMetrics:
    """A monitor's user metrics as found in the repo; `errors` names those that could not be
    bound (missing, or changed since apply): they are reported null with that reason."""

    functions: dict[str, MetricFunction] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def bind_metrics(monitor: Monitor, load: Callable[[], Mapping[str, Monitor]]) -> BoundMetrics:
    """The applied monitor's metric functions from `load()` (the repo's monitors), each checked
    against the code hash kept at apply (as on-demand functions are)."""
    if not monitor.metrics:
        return BoundMetrics()
    bound = monitor.metric_functions
    if all(ref.name in bound for ref in monitor.metrics):
        return BoundMetrics(functions=bound)
    found = load().get(monitor.name)
    repo = {} if found is None else {m.name: m for m in found.metrics}
    functions = {} if found is None else found.metric_functions
    result = BoundMetrics()
    for ref in monitor.metrics:
        mine = repo.get(ref.name)
        if mine is None or ref.name not in functions:
            result.errors[ref.name] = (
                f"metric function '{ref.name}' is not in the repo's monitor '{monitor.name}'; "
                "restore it or run 'parity apply'"
            )
        elif mine.code_hash != ref.code_hash:
            result.errors[ref.name] = (
                f"metric function '{ref.name}' differs from the applied one; run 'parity apply' "
                "(or check out the applied version)"
            )
        else:
            result.functions[ref.name] = functions[ref.name]
    return result


@dataclass(frozen=True)
class WindowPerformance:
    """One window of prediction time. `coverage` = labelled / predictions (None without
    predictions); metrics use the labelled predictions only: an unlabelled one is never a
    negative. `insufficient` when fewer than the monitor's min_samples are labelled."""

    start: datetime
    end: datetime
    status: str  # "final" or "provisional"
    predictions: int
    labelled: int
    coverage: float | None
    positives: int
    dropped_scores: int
    insufficient: bool
    k: int
    metrics: dict[str, float | None]
    reasons: dict[str, str]
    reliability: tuple[CalibrationBin, ...]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["start"], data["end"] = self.start.isoformat(), self.end.isoformat()
        return data


@dataclass(frozen=True)
class PerformanceReport:
    """Delayed-label performance of one model version, window by window, as known at `as_of`."""

    monitor: str
    model: str
    version: int
    since: datetime
    until: datetime
    window: timedelta
    as_of: datetime
    label_delay: timedelta
    decision_threshold: float
    top_k: int
    windows: tuple[WindowPerformance, ...]
    label_rows: int  # label source rows known at as_of
    matched: int  # predictions in the range that found a label
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "model": self.model,
            "version": self.version,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "window_seconds": self.window.total_seconds(),
            "as_of": self.as_of.isoformat(),
            "label_delay_seconds": self.label_delay.total_seconds(),
            "decision_threshold": self.decision_threshold,
            "top_k": self.top_k,
            "label_rows": self.label_rows,
            "matched": self.matched,
            "warnings": list(self.warnings),
            "windows": [w.to_dict() for w in self.windows],
        }


def evaluate(
    monitor: Monitor,
    joined: Joined,
    windows: Sequence[Window],
    as_of: datetime,
    metrics: BoundMetrics,
) -> tuple[WindowPerformance, ...]:
    """Every window's metrics from the joined rows (labelled predictions only)."""
    import numpy as np

    from parity.monitoring.labels import label_array

    label_column = monitor.labels.label if monitor.labels is not None else "label"
    order = joined.rows.column("__window").to_numpy()  # rows come oldest first: ascending
    out = []
    for index, window in enumerate(windows):
        first, stop = np.searchsorted(order, [index, index + 1])
        rows = joined.rows.slice(int(first), int(stop - first))
        labels = label_array(rows.column("__label"), label_column)
        scores = np.asarray(rows.column("__score").to_numpy(zero_copy_only=False), dtype=float)
        table = rows.drop_columns(["__window", "__label", "__score"])
        out.append(_window(monitor, window, as_of, joined, index, labels, scores, table, metrics))
    return tuple(out)


def _window(
    monitor: Monitor,
    window: Window,
    as_of: datetime,
    joined: Joined,
    index: int,
    labels: Any,
    scores: Any,
    table: pa.Table,
    bound: BoundMetrics,
) -> WindowPerformance:
    try:
        found = compute_metrics(
            labels, scores, threshold=monitor.decision_threshold, top_k=monitor.top_k
        )
    except ValueError as error:  # labels were checked: only a length mismatch lands here
        raise InvalidLabelValue(str(error)) from None
    values, reasons = dict(found.values), dict(found.reasons)
    if labels.size:
        custom = custom_metrics(bound.functions, labels, scores, table)
        values.update(custom.values)
        reasons.update(custom.errors)
    else:
        for name in bound.functions:
            values[name], reasons[name] = None, "no labelled predictions in the window"
    dropped = joined.dropped_scores[index]
    if not labels.size and dropped:
        why = f"all {dropped} labelled predictions have a null, NaN or infinite score"
        reasons.update({name: why for name, value in values.items() if value is None})
    for name, problem in bound.errors.items():
        values[name], reasons[name] = None, problem
    predictions, labelled = joined.predictions[index], joined.labelled[index]
    return WindowPerformance(
        start=window.start,
        end=window.end,
        status=window_status(window, monitor.label_delay, as_of),
        predictions=predictions,
        labelled=labelled,
        coverage=labelled / predictions if predictions else None,
        positives=found.positives,
        dropped_scores=joined.dropped_scores[index],
        insufficient=found.labelled < monitor.min_samples,
        k=found.k,
        metrics=values,
        reasons=reasons,
        reliability=found.reliability,
    )


def join_warnings(joined: Joined, source: str, model: str, as_of: datetime) -> tuple[str, ...]:
    """What the counts say about the join itself: no log, no labels, or labels matching nothing."""
    predictions, matched = sum(joined.predictions), sum(joined.labelled)
    if joined.log_files == 0:
        return ("no prediction log files for these windows; is the model server logging?",)
    if predictions == 0:
        return (f"no logged predictions of {model} in these windows",)
    if joined.label_rows == 0:
        return (f"the label source ({source}) has no labels known as of {as_of.isoformat()}",)
    if matched == 0:
        return (
            f"no label matches a prediction: {joined.label_rows:,} labels known as of "
            f"{as_of.isoformat()} ({source}), {predictions:,} predictions of {model}; check "
            "LabelSource join_keys and timestamp_field against the logged entities",
        )
    return ()


# --- the run, at the edge: registry, repo, DuckDB ------------------------------------------------


def run(
    store: FeatureStore,
    model_ref: str,
    *,
    since: datetime,
    until: datetime,
    window: timedelta | None,
    as_of: datetime,
) -> PerformanceReport:
    """Resolve the model version and its monitor, join its logged predictions to the labels
    known at `as_of`, and compute every window between `since` and `until`."""
    from parity.monitoring import labels
    from parity.monitoring.performance import windows as windows_of

    version = store.models.resolve(model_ref)
    monitor = monitor_of(store, version.name)
    source = monitor.labels
    if source is None:
        raise LabelSourceError(
            f"monitor '{monitor.name}' declares no labels: add labels=LabelSource(path=... or "
            "query=..., label=...) to it and run 'parity apply'"
        )
    width = window or monitor.window
    if as_of > store.now():
        raise InvalidTime(
            f"as_of ({as_of.isoformat()}) is after now ({store.now().isoformat()}): labels known "
            "then are not known yet, and its windows would shadow every real run in the history; "
            "leave --as-of out for now"
        )
    if until <= since:
        raise InvalidTime(f"until ({until.isoformat()}) must be after since ({since.isoformat()})")
    if width <= timedelta(0):
        raise InvalidTime(f"window must be positive, got {width}")
    if (until - since) / width > MAX_WINDOWS:
        raise InvalidTime(
            f"{(until - since) / width:,.0f} windows of {width} between {since.isoformat()} and "
            f"{until.isoformat()}: use a wider --window or a later --since (at most "
            f"{MAX_WINDOWS:,})"
        )
    spans = windows_of(since, until, width)
    scope = labels.LogScope(
        log_dir(store), version.name, version.version, score_output(monitor, version)
    )
    connection = labels.connect(store.repo_path)
    try:
        sql = labels.source_sql(source, store.repo_path)
        joined = labels.join(connection, scope, source, sql, spans, as_of)
    finally:
        connection.close()
    bound = bind_metrics(
        monitor, lambda: load_repo(store.repo_path, store.project).catalog.monitors
    )
    return PerformanceReport(
        monitor=monitor.name,
        model=version.name,
        version=version.version,
        since=since,
        until=until,
        window=width,
        as_of=as_of,
        label_delay=monitor.label_delay,
        decision_threshold=monitor.decision_threshold,
        top_k=monitor.top_k,
        windows=evaluate(monitor, joined, spans, as_of, bound),
        label_rows=joined.label_rows,
        matched=sum(joined.labelled),
        warnings=join_warnings(joined, labels.describe(source), version.ref, as_of),
    )


def monitor_of(store: FeatureStore, model: str) -> Monitor:
    """The applied monitor watching `model`; MonitorNotFound naming the model otherwise."""
    monitor = store.monitoring.monitor_for(model)
    if monitor is None:
        raise MonitorNotFound(
            f"no monitor watches model '{model}'; declare Monitor(model='{model}', "
            "labels=LabelSource(...)) in the repo and run 'parity apply'"
        )
    return monitor


def log_dir(store: FeatureStore) -> Path:
    folder = store.config.models.serving.prediction_log
    if folder is None:
        raise PredictionLogError(
            "the prediction log is off (models.serving.prediction_log: null in parity.yaml), so "
            "there are no predictions to join labels to; turn it on and serve the model"
        )
    path = Path(folder)
    return path if path.is_absolute() else store.repo_path / path


def score_output(monitor: Monitor, version: ModelVersion) -> str | None:
    """The output read as the score: the monitor's `score_output`, else None (the logged
    prediction is the number) for a one-output model, else the signature's first output."""
    outputs = [str(o["name"]) for o in (version.signature or {}).get("outputs") or []]
    wanted = monitor.score_output
    if wanted is not None and outputs and wanted not in outputs:
        raise ScoreOutputNotFound(
            f"monitor '{monitor.name}' reads score_output '{wanted}', but model {version.ref} "
            f"has the outputs {outputs}; fix Monitor(score_output=...) and run 'parity apply'"
        )
    if len(outputs) == 1:
        return None  # a one-output model logs its value as a bare number
    return wanted if wanted is not None or not outputs else outputs[0]
