"""`store.monitoring`: the monitoring layer's one entry point (profiles, drift, performance,
quality, freshness, consistency, alerts). It wires the layer's functions to the store it was given;
the statistics live in the modules it calls. Signals only: it starts nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from parity.errors import MonitorNotFound

if TYPE_CHECKING:
    from collections.abc import Mapping

    from parity.definitions.monitor import Monitor
    from parity.feature_store import FeatureStore
    from parity.monitoring.alert_store import AlertEvent, AlertGauges, AlertStatus, AlertStore
    from parity.monitoring.report_data import DriftReportLike


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

    # --- alerts ----------------------------------------------------------------------------------

    def evaluate_alerts(
        self,
        signals: Mapping[str, float | None],
        *,
        monitor: str | None = None,
        at: datetime | None = None,
    ) -> list[AlertEvent]:
        """Step the alert rules of `monitor` once on `signals` (signal name -> value, None for
        insufficient data) at `at` (the end of the window they describe; default: the store's
        clock). Returns the fire/clear events, also stored. `monitor` may be left out when the
        project has one monitor. Re-evaluating a time already evaluated changes nothing."""
        chosen = self._alert_monitor(monitor)
        when = self._store.now() if at is None else at
        return self._alert_store().evaluate(chosen.name, chosen.alerts, signals, when)

    def evaluate_drift_alerts(self, report: DriftReportLike) -> list[AlertEvent]:
        """Evaluate the alert rules of the monitor watching `report.model` on each window of a
        drift run, oldest first (`drift_share`, `drift:<column>`); no monitor: no events."""
        from parity.monitoring.report_data import drift_signals

        monitor = self.monitor_for(report.model)
        if monitor is None or not monitor.alerts:
            return []
        store = self._alert_store()
        events: list[AlertEvent] = []
        for at, signals in drift_signals(report):
            events += store.evaluate(monitor.name, monitor.alerts, signals, at)
        return events

    def alerts(
        self, *, active_only: bool = False, monitor: str | None = None, limit: int | None = None
    ) -> list[AlertEvent]:
        """Alert events newest first; `active_only`: the "fired" event of each rule firing now."""
        if monitor is not None:
            self.get_monitor(monitor)
        store = self._alert_store()
        if active_only:
            return store.active(monitor=monitor)[:limit]
        return store.events(monitor=monitor, limit=limit)

    def alert_statuses(self, *, monitor: str | None = None) -> list[AlertStatus]:
        """Where every evaluated rule stands: firing or not, its streak, last value and time."""
        return self._alert_store().statuses(monitor=monitor)

    def alert_gauges(self) -> AlertGauges:
        """A Prometheus collector of `parity_alert_firing{monitor,rule}` for a server's registry."""
        from parity.monitoring.alert_store import AlertGauges

        return AlertGauges(lambda: self._alert_store().statuses())

    def _alert_monitor(self, name: str | None) -> Monitor:
        if name is not None:
            return self.get_monitor(name)
        monitors = self.monitors()
        if len(monitors) == 1:
            return monitors[0]
        known = ", ".join(m.name for m in monitors) or "none (declare a Monitor and apply)"
        raise MonitorNotFound(
            f"name the monitor whose alerts to evaluate (monitor=...); "
            f"'{self._store.project}' has: {known}"
        )

    def _alert_store(self) -> AlertStore:
        cached: AlertStore | None = getattr(self, "_alert_store_cache", None)
        if cached is None:
            from parity.errors import BackendNotInstalled
            from parity.monitoring.alert_store import AlertStore

            engine = getattr(self._store.registry_store, "engine", None)
            if engine is None:
                raise BackendNotInstalled(
                    f"the registry store {type(self._store.registry_store).__name__} cannot keep "
                    "alerts; use the SQL registry (sqlite or postgres in parity.yaml)"
                )
            cached = AlertStore(engine, self._store.project, clock=self._store.now)
            self._alert_store_cache = cached
        return cached
