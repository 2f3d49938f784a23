"""`store.monitoring`: the monitoring layer's one entry point (profiles, drift, performance,
quality, freshness, consistency, alerts). It wires the layer's functions to the store it was given;
the statistics live in the modules it calls. Signals only: it starts nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from parity.errors import MonitorNotFound

if TYPE_CHECKING:
    from parity.definitions.monitor import Monitor
    from parity.feature_store import FeatureStore


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
