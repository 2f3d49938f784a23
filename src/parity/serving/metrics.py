"""The feature server's Prometheus metrics: latency by path, errors by code, freshness by view,
window values refused by view, the read-thread queue, and the online store's circuit breaker.

Freshness is computed when scraped: seconds since the newest data the online store received for
each online view, from the registry's materialization watermark, a push seen by this process, or
a push another process recorded (monitoring's quality table, written once a minute), with the
view's freshness SLO and whether that age breaches it.
The queue and the breakers are read when scraped too (see `watch`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from parity.timeutil import EPOCH

if TYPE_CHECKING:
    from parity.online.breaker import CircuitBreaker
    from parity.serving.admission import Admission

CIRCUIT_STATES = ("closed", "open", "half_open")

PATHS = frozenset({"/get-online-features", "/push", "/health", "/metrics"})


class ServerMetrics:
    def __init__(
        self,
        freshness: Callable[[], dict[str, datetime | None]],
        clock: Callable[[], datetime],
        refused: Callable[[], dict[str, int]] | None = None,
        slos: Callable[[], Mapping[str, float]] | None = None,
        values: Callable[[], dict[str, datetime | None]] | None = None,
    ) -> None:
        """`freshness`: each view's newest write; `values`: the event time of its newest value,
        which the SLO gauges judge (default: `freshness`)."""
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
        self._denied = Counter(
            "parity_auth_denied",
            "Requests refused by the auth gate, by the scope the route needs (`authenticated`: "
            "any valid token) and reason (unauthenticated, forbidden, rate_limited)",
            ["scope", "reason"],
            registry=self.registry,
        )
        self.registry.register(_Freshness(freshness, clock, slos or dict, values or freshness))
        if refused is not None:
            self.registry.register(_Refused(refused))
        self._by_path = {path: self._latency.labels(path) for path in PATHS}
        self._other = self._latency.labels("other")
        self._error_counters: dict[str, Any] = {}

    def watch(
        self, admission: Admission, breakers: Callable[[], Mapping[str, CircuitBreaker]]
    ) -> None:
        """Export `admission`'s queue and the state of each breaker `breakers()` names (by
        store), read at each scrape."""
        self.registry.register(_Reads(admission))
        self.registry.register(_Circuits(breakers))

    def observe(self, path: str, seconds: float) -> None:
        self._by_path.get(path, self._other).observe(seconds)

    def denied(self, scope: str, reason: str) -> None:
        """The auth gate refused a request (`parity_auth_denied_total{scope,reason}`)."""
        self._denied.labels(scope, reason).inc()

    def error(self, code: str) -> None:
        counter = self._error_counters.get(code)  # labels() costs more than the increment
        if counter is None:
            counter = self._error_counters[code] = self._errors.labels(code)
        counter.inc()

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class _Freshness(Collector):
    """Age of each online view's newest write; for views with a `freshness_slo`, the SLO and
    whether the age breaches it (the rule of monitoring/freshness.py: breached when age > SLO;
    a view with no known write has no breached sample, as its status there is unknown)."""

    def __init__(
        self,
        freshness: Callable[[], dict[str, datetime | None]],
        clock: Callable[[], datetime],
        slos: Callable[[], Mapping[str, float]],
        values: Callable[[], dict[str, datetime | None]],
    ) -> None:
        self._freshness = freshness
        self._clock = clock
        self._slos = slos
        self._values = values

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "parity_feature_freshness_seconds",
            "Seconds since the newest data written online for the view (materialized or pushed); "
            "since the epoch when none was",
            labels=["view"],
        )
        slo = GaugeMetricFamily(
            "parity_feature_freshness_slo_seconds",
            "The view's freshness_slo: how old its newest online data may be",
            labels=["view"],
        )
        breached = GaugeMetricFamily(
            "parity_feature_freshness_slo_breached",
            "1 when the view's newest online value (its event time) is older than its "
            "freshness_slo, else 0 (no sample while no write is known to this worker)",
            labels=["view"],
        )
        now, slos = self._clock(), self._slos()
        values = self._values() if slos else {}
        for view, written in sorted(self._freshness().items()):
            gauge.add_metric([view], (now - (written or EPOCH)).total_seconds())
            limit = slos.get(view)
            if limit is None:
                continue
            slo.add_metric([view], limit)
            newest = values.get(view, written)
            if newest is not None:
                age = max((now - newest).total_seconds(), 0.0)
                breached.add_metric([view], 1.0 if age > limit else 0.0)
        yield gauge
        yield slo
        yield breached


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


class _Reads(Collector):
    """The read threads of serving/admission.py: busy, waited for, and the 503s of the budget."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        admission = self._admission
        yield GaugeMetricFamily(
            "parity_read_threads_busy",
            f"Read threads running a lookup now (of {admission.threads})",
            value=admission.busy,
        )
        yield GaugeMetricFamily(
            "parity_read_queue_waiting",
            "Lookups waiting for a free read thread now",
            value=admission.waiting,
        )
        yield CounterMetricFamily(
            "parity_read_queue_rejected",
            "Lookups answered 503 because no read thread was free within "
            "feature_server.max_queue_ms",
            value=admission.rejected,
        )


class _Circuits(Collector):
    """Each online store's circuit breaker (online/breaker.py): its state and times opened."""

    def __init__(self, breakers: Callable[[], Mapping[str, CircuitBreaker]]) -> None:
        self._breakers = breakers

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        breakers = self._breakers()
        if not breakers:
            return
        state = GaugeMetricFamily(
            "parity_online_circuit_state",
            "1 for the circuit breaker's current state (closed: reads go through; open: refused "
            "at once; half_open: one probe read is out), 0 for the others",
            labels=["store", "state"],
        )
        opens = CounterMetricFamily(
            "parity_online_circuit_opens",
            "Times the circuit opened (failed reads in a row, or a failed probe)",
            labels=["store"],
        )
        for store, breaker in sorted(breakers.items()):
            now = breaker.state
            for name in CIRCUIT_STATES:
                state.add_metric([store, name], 1.0 if name == now else 0.0)
            opens.add_metric([store], breaker.opens)
        yield state
        yield opens
