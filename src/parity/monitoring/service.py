"""`store.monitoring`: the monitoring layer's one entry point (profiles, drift, performance,
quality, freshness, consistency, alerts). It wires the layer's functions to the store it was given;
the statistics live in the modules it calls. Signals only: it starts nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from parity.errors import BackendNotInstalled, MonitorNotFound

if TYPE_CHECKING:
    from parity.definitions.monitor import MetricFunction, Monitor
    from parity.feature_store import FeatureStore
    from parity.monitoring.performance_history import PerformanceHistory
    from parity.monitoring.performance_report import PerformanceReport
    from parity.timeutil import TimeLike


class Monitoring:
    """Monitoring for one FeatureStore: `store.monitoring` (see docs/monitoring.md)."""

    def __init__(self, store: FeatureStore) -> None:
        self._store = store

    # --- online side -----------------------------------------------------------------------------

    def freshness(self) -> dict[str, datetime | None]:
        """Per online view, the newest data written online: its materialization watermark or
        this process's last push to it, whichever is later; None when neither happened."""
        return self._store._online_freshness()

    def refused_window_reads(self) -> dict[str, int]:
        """Per aggregated view, how many window values this process answered OUTSIDE_MAX_AGE
        because the view's last materialization did not write the tiles they need (read
        later than materialize.read_slack after its END; see docs/aggregations.md)."""
        return self._store._refusals().counts()

    # --- monitors --------------------------------------------------------------------------------

    def monitors(self) -> list[Monitor]:
        """The applied monitors, by name."""
        catalog = self._store.registry.catalog
        return [catalog.monitors[name] for name in sorted(catalog.monitors)]

    def monitor_for(self, model: str) -> Monitor | None:
        """The applied monitor that watches the model named `model`, if any."""
        for monitor in self._store.registry.catalog.monitors.values():
            if monitor.model == model:
                return monitor
        return None

    def get_monitor(self, name: str) -> Monitor:
        catalog = self._store.registry.catalog
        found = catalog.monitors.get(name)
        if found is None:
            known = ", ".join(sorted(catalog.monitors)) or "none (declare a Monitor and apply)"
            raise MonitorNotFound(
                f"no monitor named '{name}' in '{catalog.project}'; known: {known}"
            )
        return found

    # --- performance -----------------------------------------------------------------------------

    def performance(
        self,
        model_ref: str,
        *,
        since: TimeLike,
        until: TimeLike | None = None,
        window: timedelta | None = None,
        as_of: TimeLike | None = None,
        record: bool = True,
    ) -> PerformanceReport:
        """Delayed-label performance of `model_ref` ('fraud@champion', 'fraud/3') per window of
        prediction time, with the labels known at `as_of` (default now; `until` defaults to it).
        Each window is stored in the history unless `record=False`. See docs/monitoring.md."""
        from parity.monitoring.performance_report import run
        from parity.timeutil import parse_time

        now = parse_time(as_of, "as_of") if as_of is not None else self._store.now()
        report = run(
            self._store,
            model_ref,
            since=parse_time(since, "since", now=lambda: now),
            until=parse_time(until, "until", now=lambda: now) if until is not None else now,
            window=window,
            as_of=now,
        )
        if record:
            self._performance_history().record(report)
        return report

    def performance_history(
        self, model: str, version: int | None = None, *, latest: bool = True
    ) -> list[dict[str, Any]]:
        """Stored performance windows of the model named `model` (one version or all), oldest
        first; `latest` keeps only the newest run of each window."""
        return self._performance_history().history(model, version, latest=latest)

    def _performance_history(self) -> PerformanceHistory:
        from parity.monitoring.performance_history import PerformanceHistory

        engine = getattr(self._store.registry_store, "engine", None)
        if engine is None:
            raise BackendNotInstalled(
                "the performance history lives in the SQL registry; use sqlite or postgres "
                "in parity.yaml"
            )
        return PerformanceHistory(engine, self._store.project)


def bind_metrics(store: FeatureStore, monitor: Monitor) -> dict[str, MetricFunction]:
    """The monitor's metric functions from the loaded repo, checked against the code hash kept
    at apply; one missing or changed is left out (a performance run reports it null, saying why)."""
    from parity.monitoring.performance_report import bind_metrics as bind

    return bind(monitor, lambda: store.load_repo().catalog.monitors).functions


# --- end performance ---
