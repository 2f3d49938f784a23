"""The feature server's Prometheus metrics: latency by path, errors by code, freshness by view,
window values refused by view.

Freshness is computed when scraped: seconds since the newest data the online store received for
each online view, from the registry's materialization watermark or a push seen by this process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from parity.timeutil import EPOCH

PATHS = frozenset({"/get-online-features", "/push", "/health", "/metrics"})


class ServerMetrics:
    def __init__(
        self,
        freshness: Callable[[], dict[str, datetime | None]],
        clock: Callable[[], datetime],
        refused: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self._latency = Histogram(
            "parity_request_seconds",
            "Request latency by path",
            ["path"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self._errors = Counter(
            "parity_errors_total",
            "Answers with an error, by code",
            ["code"],
            registry=self.registry,
        )
        self.registry.register(_Freshness(freshness, clock))
        if refused is not None:
            self.registry.register(_Refused(refused))
        self._by_path = {path: self._latency.labels(path) for path in PATHS}
        self._other = self._latency.labels("other")
        self._error_counters: dict[str, Any] = {}

    def observe(self, path: str, seconds: float) -> None:
        self._by_path.get(path, self._other).observe(seconds)

    def error(self, code: str) -> None:
        counter = self._error_counters.get(code)  # labels() costs more than the increment
        if counter is None:
            counter = self._error_counters[code] = self._errors.labels(code)
        counter.inc()

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class _Freshness(Collector):
    def __init__(
        self,
        freshness: Callable[[], dict[str, datetime | None]],
        clock: Callable[[], datetime],
    ) -> None:
        self._freshness = freshness
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "parity_feature_freshness_seconds",
            "Seconds since the newest data written online for the view (materialized or pushed); "
            "since the epoch when none was",
            labels=["view"],
        )
        now = self._clock()
        for view, newest in sorted(self._freshness().items()):
            gauge.add_metric([view], (now - (newest or EPOCH)).total_seconds())
        yield gauge


class _Refused(Collector):
    """Window values answered OUTSIDE_MAX_AGE because the view's last materialization did not
    write the tiles they need (docs/aggregations.md): materialize more often or widen the slack."""

    def __init__(self, refused: Callable[[], dict[str, int]]) -> None:
        self._refused = refused

    def collect(self) -> Iterator[CounterMetricFamily]:
        counter = CounterMetricFamily(
            "parity_window_reads_refused",
            "Window values answered OUTSIDE_MAX_AGE: read later than materialize.read_slack "
            "after the view's last materialization, in a window starting before it",
            labels=["view"],
        )
        for view, count in sorted(self._refused().items()):
            counter.add_metric([view], count)
        yield counter
