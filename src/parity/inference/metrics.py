"""The model server's Prometheus metrics: request latency per model/version, batch sizes, predict
time, rows predicted, errors by code, and the prediction log's written/dropped counts.

Label children are resolved once per deployment (`for_version`), not per request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class VersionMetrics:
    """The label children of one model version, looked up once."""

    infer: Histogram
    predict: Histogram
    batch_rows: Histogram
    batch_seconds: Histogram
    rows: Counter

    def on_batch(self, rows: int, items: int, seconds: float) -> None:
        """The batcher's hook: one model call of `rows` rows that took `seconds`."""
        self.batch_rows.observe(rows)
        self.batch_seconds.observe(seconds)
        self.rows.inc(rows)


class ModelMetrics:
    def __init__(self, prediction_log: Callable[[], tuple[int, int]] | None = None) -> None:
        self.registry = CollectorRegistry()
        self._latency = Histogram(
            "parity_model_request_seconds",
            "Model server request latency by model, version and route (infer or predict)",
            ["model", "version", "route"],
            registry=self.registry,
            buckets=_LATENCY_BUCKETS,
        )
        self._batch_rows = Histogram(
            "parity_model_batch_rows",
            "Rows per model call (one batch) by model and version",
            ["model", "version"],
            registry=self.registry,
            buckets=_ROW_BUCKETS,
        )
        self._batch_seconds = Histogram(
            "parity_model_batch_seconds",
            "Time of one model call (one batch) by model and version",
            ["model", "version"],
            registry=self.registry,
            buckets=_LATENCY_BUCKETS,
        )
        self._rows = Counter(
            "parity_model_rows",
            "Rows predicted by model and version",
            ["model", "version"],
            registry=self.registry,
        )
        self._errors = Counter(
            "parity_model_errors",
            "Answers with an error, by model (empty when unknown) and error code",
            ["model", "code"],
            registry=self.registry,
        )
        if prediction_log is not None:
            self.registry.register(_LogCounts(prediction_log))

    def for_version(self, model: str, version: int) -> VersionMetrics:
        label = str(version)
        return VersionMetrics(
            infer=self._latency.labels(model, label, "infer"),
            predict=self._latency.labels(model, label, "predict"),
            batch_rows=self._batch_rows.labels(model, label),
            batch_seconds=self._batch_seconds.labels(model, label),
            rows=self._rows.labels(model, label),
        )

    def error(self, code: str, model: str = "") -> None:
        self._errors.labels(model, code).inc()

    def observe(self, path: str, seconds: float) -> None:
        """The admission guard's hook; latency is recorded per model instead."""

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class _LogCounts(Collector):
    def __init__(self, counts: Callable[[], tuple[int, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        written, dropped = self._counts()
        yield CounterMetricFamily(
            "parity_prediction_log_written", "Prediction records written", value=written
        )
        yield CounterMetricFamily(
            "parity_prediction_log_dropped",
            "Prediction records dropped because the log's queue was full",
            value=dropped,
        )
