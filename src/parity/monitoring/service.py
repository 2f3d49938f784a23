"""`store.monitoring`: the monitoring layer's one entry point (profiles, drift, performance,
quality, freshness, consistency, alerts). It wires the layer's functions to the store it was given;
the statistics live in the modules it calls. Signals only: it starts nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from parity.errors import MonitorNotFound
from parity.timeutil import TimeLike, parse_time

if TYPE_CHECKING:
    from parity.definitions import FeatureView
    from parity.definitions.monitor import Monitor
    from parity.feature_store import FeatureStore
    from parity.monitoring.freshness import ViewFreshness
    from parity.monitoring.quality_store import BatchWatch, QualityRecord, QualityRecorder


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

    # --- quality ---------------------------------------------------------------------------------

    _quality: QualityRecorder | None = None  # built on first use (needs the SQL registry)

    def quality_recorder(self) -> QualityRecorder | None:
        """Where materializations, pushes and stream batches report the rows and nulls they
        write (monitoring/quality_store.py); None without a SQL registry."""
        if self._quality is None:
            engine = getattr(self._store.registry_store, "engine", None)
            if engine is None:
                return None
            from parity.monitoring.quality_store import QualityRecorder

            self._quality = QualityRecorder(engine, self._store.project, self._store.now)
        return self._quality

    def materialize_watch(self, view: FeatureView) -> BatchWatch:
        """Counts the rows one materialization of `view` writes (`add` per batch) and records
        them when it is `done`; a watch that records nothing without a SQL registry or for an
        aggregated view (it writes tiles)."""
        from parity.monitoring.quality_store import BatchWatch

        recorder = self.quality_recorder()
        watch = None if recorder is None else recorder.watch(view)
        return watch if watch is not None else BatchWatch(view.name, ())

    def quality(
        self,
        name: str,
        *,
        since: TimeLike,
        until: TimeLike | None = None,
        window: timedelta | None = None,
    ) -> list[QualityRecord]:
        """Data quality of a feature view (what its materializations, pushes and stream batches
        recorded since `since`) or of a model's served features (checked now per version and
        window of [since, until), and recorded). See docs/monitoring.md, "Data quality"."""
        from parity.monitoring.quality_served import WINDOW, quality_report

        clock = self._store.now
        return quality_report(
            self._store,
            name,
            since=parse_time(since, "since", now=clock),
            until=None if until is None else parse_time(until, "until", now=clock),
            window=window or WINDOW,
        )

    # --- freshness -------------------------------------------------------------------------------

    def newest_writes(self) -> dict[str, datetime | None]:
        """Per online view, the newest write known: `freshness()` (the materialization
        watermark, or this process's last push) or the last push any process recorded in the
        quality table (written every monitoring.quality_store.FLUSH_EVERY), whichever is later.
        What the freshness SLO and the feature server's freshness gauges measure."""
        newest = self.freshness()
        recorder = self.quality_recorder()
        if recorder is None:
            return newest
        pushed = recorder.table.newest(self._store.project, "ingest", newest)
        return {
            view: max((m for m in (moment, pushed.get(view)) if m is not None), default=None)
            for view, moment in newest.items()
        }

    def freshness_slo(self) -> list[ViewFreshness]:
        """Per online view (by name): its newest write (`newest_writes()`), its age at the
        store's clock, its `freshness_slo` and the status ok / breached / unknown / no_slo."""
        from parity.monitoring.freshness import evaluate, slos_of

        views = self._store.registry.catalog.feature_views.values()
        return evaluate(self.newest_writes(), slos_of(views), self._store.now())

    def freshness_slos(self) -> dict[str, float]:
        """Seconds of `freshness_slo` per online view that declares one (the feature server's
        `parity_feature_freshness_slo_seconds` gauge)."""
        views = self._store.registry.catalog.feature_views.values()
        return {
            v.name: v.freshness_slo.total_seconds()
            for v in views
            if v.online and v.freshness_slo is not None
        }

    def freshness_signals(self) -> dict[str, float]:
        """Alert signals `freshness:<view>` = age / SLO (above 1: breached), for each view with
        an SLO and a known write (monitoring/alerts.py consumes them)."""
        from parity.monitoring.freshness import signals

        return signals(self.freshness_slo())
