"""The model server's Prometheus metrics: request latency per model/version, batch sizes, predict
time, rows predicted, errors by code, the prediction log's written/dropped counts, shadow
predictions run and dropped, and the latest
stored drift per model version and column (read from the registry database in the background).

Label children are resolved once per deployment (`for_version`), not per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from parity.background import BackgroundRead

logger = logging.getLogger(__name__)

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
        self._denied = Counter(
            "parity_auth_denied",
            "Requests refused by the auth gate, by the scope the route needs (`authenticated`: "
            "any valid token) and reason (unauthenticated, forbidden, rate_limited)",
            ["scope", "reason"],
            registry=self.registry,
        )
        self._shadow_dropped = Counter(
            "parity_shadow_dropped",
            "Mirrored requests dropped because the shadow queue was full, by shadow model/version",
            ["model", "version"],
            registry=self.registry,
        )
        self._shadow_requests = Counter(
            "parity_shadow_requests",
            "Shadow predictions run, by shadow model, version and status (ok, error, timeout)",
            ["model", "version", "status"],
            registry=self.registry,
        )
        self._shadow_lost = Counter(
            "parity_shadow_lost",
            "Mirrored requests lost with a shadow process that died (queued or being predicted)",
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

    def denied(self, scope: str, reason: str) -> None:
        """The auth gate refused a request (`parity_auth_denied_total{scope,reason}`)."""
        self._denied.labels(scope, reason).inc()

    def error(self, code: str, model: str = "") -> None:
        self._errors.labels(model, code).inc()

    def shadow_dropped(self, model: str, version: int) -> None:
        self._shadow_dropped.labels(model, str(version)).inc()

    def shadow_request(self, model: str, version: int, status: str) -> None:
        self._shadow_requests.labels(model, str(version), status).inc()

    def shadow_lost(self, count: int) -> None:
        self._shadow_lost.inc(count)

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


DRIFT_REFRESH_SECONDS = 60.0  # drift runs are hourly or rarer: a minute-old reading is current


class DriftGauges(Collector):
    """`parity_feature_drift{model,version,feature,test}` (the statistic of each column's latest
    stored drift run) and `parity_dataset_drift_share{model,version}`.

    `read()` returns the monitoring history's latest rows (objects with model, version, column,
    kind, test and statistic). A scrape never waits on the database: it shows the last rows read
    and, when they are older than `refresh_seconds`, starts one read in the background (`spawn`;
    a thread by default). A failed read keeps the previous values and is logged."""

    def __init__(
        self,
        read: Callable[[], Sequence[Any]],
        *,
        refresh_seconds: float = DRIFT_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        spawn: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self._rows = BackgroundRead(
            read,
            what="drift gauges: reading the drift history",
            refresh_seconds=refresh_seconds,
            clock=clock,
            spawn=spawn,
        )

    def refresh(self) -> None:
        """Read the latest rows now (on the calling thread)."""
        self._rows.refresh()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        features = GaugeMetricFamily(
            "parity_feature_drift",
            "Drift statistic of each logged feature and model output in its latest stored drift "
            "run (parity monitor drift), by model, version, column and test",
            labels=["model", "version", "feature", "test"],
        )
        shares = GaugeMetricFamily(
            "parity_dataset_drift_share",
            "Share of drifted columns in the latest window of the latest stored drift run",
            labels=["model", "version"],
        )
        for row in self._rows.current():
            if row.statistic is None:
                continue
            if row.kind == "dataset":
                shares.add_metric([row.model, str(row.version)], row.statistic)
            else:
                labels = [row.model, str(row.version), row.column, row.test]
                features.add_metric(labels, row.statistic)
        yield features
        yield shares
