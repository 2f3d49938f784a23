"""`store.monitoring`: the monitoring layer's one entry point (profiles, drift, performance,
quality, freshness, consistency, alerts). It wires the layer's functions to the store it was given;
the statistics live in the modules it calls. Signals only: it starts nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from parity.errors import BackendNotInstalled, MonitorNotFound
from parity.repo.loader import load_repo

if TYPE_CHECKING:
    from collections.abc import Mapping

    from parity.definitions.monitor import MetricFunction, Monitor
    from parity.feature_store import FeatureStore
    from parity.monitoring.alert_store import AlertEvent, AlertGauges, AlertStatus, AlertStore
    from parity.monitoring.consistency import ConsistencyReport
    from parity.monitoring.performance_history import PerformanceHistory
    from parity.monitoring.performance_report import PerformanceReport
    from parity.monitoring.report_data import DriftReportLike
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

        clock = self._store.now
        now = parse_time(as_of, "as_of", now=clock) if as_of is not None else clock()
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
            self._evaluate_metric_alerts(report)
        return report

    def _evaluate_metric_alerts(self, report: PerformanceReport) -> None:
        """Step the monitor's `metric:<name>` rules on each FINAL window, oldest first: a
        provisional window's metrics still move as labels arrive, so they never fire alerts."""
        monitor = self.get_monitor(report.monitor)
        if not any(rule.signal.startswith("metric:") for rule in monitor.alerts):
            return
        store = self._alert_store()
        for window in sorted(report.windows, key=lambda w: w.end):
            if window.status == "final":
                signals = {f"metric:{name}": value for name, value in window.metrics.items()}
                store.evaluate(monitor.name, monitor.alerts, signals, window.end)

    def performance_history(
        self, model: str, version: int | None = None, *, latest: bool = True
    ) -> list[dict[str, Any]]:
        """Stored performance windows of the model named `model` (one version or all), oldest
        first; `latest` keeps only the newest run of each window."""
        return self._performance_history().history(model, version, latest=latest)

    def _performance_history(self) -> PerformanceHistory:
        from parity.monitoring.performance_history import PerformanceHistory

        engine = getattr(self._store.registry.store, "engine", None)
        if engine is None:
            raise BackendNotInstalled(
                "the performance history lives in the SQL registry; use sqlite or postgres "
                "in parity.yaml"
            )
        return PerformanceHistory(engine, self._store.project)

    # --- drift ---------------------------------------------------------------------------------

    def _drift_parts(self) -> tuple[ProfileStore, DriftHistory]:
        """The profile store and drift history, in the registry's database (opened once)."""
        found: tuple[ProfileStore, DriftHistory] | None = getattr(self, "_drift_stores", None)
        if found is None:
            found = self._drift_stores = self._open_drift_stores()
        return found

    def _open_drift_stores(self) -> tuple[ProfileStore, DriftHistory]:
        from parity.errors import BackendNotInstalled
        from parity.monitoring.drift_history import DriftHistory
        from parity.monitoring.profile_store import ProfileStore

        engine = getattr(self._store.registry.store, "engine", None)
        if engine is None:
            raise BackendNotInstalled(
                f"the registry store {type(self._store.registry.store).__name__} cannot keep "
                "monitoring profiles; use the SQL registry (sqlite or postgres in parity.yaml)"
            )
        return ProfileStore(engine), DriftHistory(engine)

    def _references(self) -> ReferenceProfiles:
        from parity.monitoring.reference import ReferenceProfiles

        store = self._store
        return ReferenceProfiles(
            self._drift_parts()[0],
            store.project,
            dataset=store.datasets.get,
            models=lambda: store.models,
            clock=store.now,
        )

    def on_model_registered(self, version: ModelVersion) -> None:
        """The model registry's hook: profile a new version's training set and outputs (a
        failure is logged and recorded, never raised; see `profile_dataset`)."""
        self._references().on_register(version)

    def profile_dataset(self, name: str, *, models: bool = True) -> list[ProfileOutcome]:
        """Compute and store the reference profile of dataset `name`'s features and (with
        `models`) of every model version registered with it: outputs and request-time inputs.
        A computed profile is immutable and kept; a failed one is computed again."""
        return self._references().profile_dataset(name, models=models)

    def profiles(self, dataset: str | None = None) -> list[StoredProfile]:
        """Stored profiles (of one dataset's fingerprint if named), oldest first."""
        store = self._drift_parts()[0]
        fingerprint = None if dataset is None else self._store.datasets.get(dataset).fingerprint
        return store.list(self._store.project, fingerprint)

    def drift(
        self,
        model: str,
        *,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
        window: timedelta | str | None = None,
        persist: bool = True,
    ) -> DriftReport:
        """Drift of `model` ('fraud@champion', 'fraud/3', or 'fraud': every version with rows)
        over the prediction log in [since, until) (default: the last 24 windows up to now), per
        window of `window` (default: the model's Monitor's, else 1 hour; a timedelta or text
        such as '1h' or 'P7D'). Recorded in the history unless `persist=False`."""
        from parity.errors import InvalidWindow
        from parity.monitoring.drift import parse_window
        from parity.timeutil import parse_time

        store = self._store
        if window is not None and not isinstance(window, timedelta | str):
            raise InvalidWindow(
                f"window {window!r} is a {type(window).__name__}: give a timedelta or text such "
                "as '1h', '7d' or 'PT1H'"
            )
        runner = self._drift_runner()
        report = runner.run(
            model,
            since=None if since is None else parse_time(since, "since", now=store.now),
            until=None if until is None else parse_time(until, "until", now=store.now),
            window=parse_window(window) if isinstance(window, str) else window,
            persist=persist,
        )
        if persist:  # a recorded run steps the monitor's drift alert rules, window by window
            self.evaluate_drift_alerts(report)
        return report

    def _drift_runner(self) -> DriftRunner:
        from parity.monitoring.drift_runner import DriftRunner
        from parity.monitoring.logs import PredictionLogReader

        store = self._store
        profiles, history = self._drift_parts()
        return DriftRunner(
            project=store.project,
            models=store.models,
            profiles=profiles,
            history=history,
            reader=PredictionLogReader(
                self.prediction_log_folder(),
                memory_limit=store.config.offline.memory_limit,
                temp_directory=store.config.offline.temp_directory,
            ),
            monitor_for=self.monitor_for,
            clock=store.now,
        )

    def prediction_log_folder(self) -> Path:
        """Where the model server writes its prediction log (models.serving.prediction_log)."""
        from pathlib import Path

        from parity.errors import PredictionLogNotFound

        folder = self._store.config.models.serving.prediction_log
        if folder is None:
            raise PredictionLogNotFound(
                "models.serving.prediction_log is off in parity.yaml, so no predictions are "
                "logged; set it to a folder (default data/prediction_log)"
            )
        path = Path(folder)
        return path if path.is_absolute() else self._store.repo_path / path

    def drift_history(
        self,
        model: str,
        *,
        version: int | None = None,
        column: str | None = None,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
        limit: int | None = None,
    ) -> list[DriftRow]:
        """Stored drift rows of the model named `model`, oldest run first: windows starting in
        [since, until), one version or column if given, the newest `limit` rows."""
        from parity.timeutil import parse_time

        store = self._store
        store.models.versions(model)  # ModelNotFound naming it, not an empty history
        return self._drift_parts()[1].history(
            store.project,
            model,
            version=version,
            column=column,
            since=None if since is None else parse_time(since, "since", now=store.now),
            until=None if until is None else parse_time(until, "until", now=store.now),
            limit=limit,
        )

    def latest_drift(self) -> list[DriftRow]:
        """Per model, version and column, the newest stored drift row (the model server's
        `parity_feature_drift` gauges)."""
        return self._drift_parts()[1].latest(self._store.project)

    # --- quality ---------------------------------------------------------------------------------

    _quality: QualityRecorder | None = None  # built on first use (needs the SQL registry)

    def quality_recorder(self) -> QualityRecorder | None:
        """Where materializations, pushes and stream batches report the rows and nulls they
        write (monitoring/quality_store.py); None without a SQL registry."""
        if self._quality is None:
            engine = getattr(self._store.registry.store, "engine", None)
            if engine is None:
                return None
            from parity.monitoring.quality_store import QualityRecorder

            self._quality = QualityRecorder(
                engine, self._store.project, self._store.now, references=self._view_references
            )
        return self._quality

    def flush_quality(self) -> None:
        """Write the push and stream counts this process holds (FeatureStore.close calls it,
        so a script that pushes and exits, or a server shutting down, loses none)."""
        if self._quality is not None:
            self._quality.flush()

    def _view_references(self, view: FeatureView) -> dict[str, Reference]:
        """A view's features' reference for materialization quality (quality_served's
        `view_references`); none, logged, when it cannot be read."""
        import logging

        from parity.errors import ParityError
        from parity.monitoring.quality_served import reference_candidates, view_references

        store = self._store
        try:
            candidates = reference_candidates(store)
            return view_references(view, candidates, self._drift_parts()[0], store.project)
        except ParityError as failure:
            logging.getLogger(__name__).warning(
                "no quality reference for %s: %s", view.name, failure
            )
            return {}

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
        from parity.timeutil import parse_time

        clock = self._store.now
        return quality_report(
            self._store,
            name,
            since=parse_time(since, "since", now=clock),
            until=None if until is None else parse_time(until, "until", now=clock),
            window=window or WINDOW,
        )

    def quality_signals(self, name: str, *, since: TimeLike) -> dict[str, float]:
        """Alert signals `null_rate:<feature>` of a view or model: each feature's null rate in
        its newest record since `since` (for a model: its newest window, any version)."""
        from parity.monitoring.quality import signals

        newest = {r.feature: r.quality for r in self.quality(name, since=since)}  # oldest first
        return signals(list(newest.values()))

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

    def newest_values(self) -> dict[str, datetime | None]:
        """Per online view, the event time of the newest value written online: the newest
        `event_timestamp` among the rows materialized or pushed (recorded with their quality
        counts, and this process's pushes not yet recorded). A view whose writes carry no such
        record (materialized before it was kept, or windowed views' tiles, which materialize
        writes as aggregates) falls back to its newest write (`newest_writes()`)."""
        writes = self.newest_writes()
        recorder = self.quality_recorder()
        if recorder is None:
            return writes
        recorded = recorder.table.newest_values(self._store.project, writes)
        unrecorded = recorder.counters.newest_events()
        newest: dict[str, datetime | None] = {}
        for view, written in writes.items():
            values = [m for m in (recorded.get(view), unrecorded.get(view)) if m is not None]
            newest[view] = max(values) if values else written
        return newest

    def freshness_slo(self) -> list[ViewFreshness]:
        """Per online view (by name): the event time of its newest value (`newest_values()`),
        its age at the store's clock, its `freshness_slo` and the status ok / breached /
        unknown / no_slo."""
        from parity.monitoring.freshness import evaluate, slos_of

        views = self._store.registry.catalog.feature_views.values()
        return evaluate(self.newest_values(), slos_of(views), self._store.now())

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

    # --- consistency -----------------------------------------------------------------------------

    def consistency(
        self,
        service: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        sample_percent: float | None = None,
    ) -> ConsistencyReport:
        """Replay the served rows logged for feature service `service` (the feature server's
        served log and the model server's prediction log) with request time in [since, until)
        through get_historical_features, and compare per feature and hour (docs/monitoring.md).
        `sample_percent` keeps only that share of entity keys (same hash as the served log)."""
        from parity.monitoring.consistency import consistency

        return consistency(
            self._store, service, since=since, until=until, sample_percent=sample_percent
        )

    def consistency_signals(
        self, service: str, *, since: datetime, until: datetime | None = None
    ) -> dict[str, float]:
        """Alert signals `consistency:<feature>`: each feature's mismatch rate over the served
        rows of `service` logged in [since, until); empty when none were logged."""
        from parity.monitoring.consistency import signals

        return signals(self.consistency(service, since=since, until=until))

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
        from parity.errors import InvalidSignalValue

        for signal, value in signals.items():
            if value is not None and not isinstance(value, int | float):
                raise InvalidSignalValue(
                    f"signal {signal!r} = {value!r} is a {type(value).__name__}: give a number, "
                    "or None for insufficient data"
                )
        chosen = self._alert_monitor(monitor)
        when = self._store.now() if at is None else at
        return self._alert_store().evaluate(chosen.name, chosen.alerts, signals, when)

    def step_alerts(
        self, signals: Mapping[str, float | None], *, at: datetime | None = None
    ) -> list[AlertEvent]:
        """Step, in every applied monitor, the rules whose signal is in `signals`, at `at`
        (default: the store's clock). What `parity monitor freshness`, `quality` and
        `consistency` do with the signals they compute; no rule on them: no events."""
        when = self._store.now() if at is None else at
        events: list[AlertEvent] = []
        for monitor in self.monitors():
            if any(rule.signal in signals for rule in monitor.alerts):
                store = self._alert_store()
                events += store.evaluate(monitor.name, monitor.alerts, signals, when)
        return events

    def evaluate_drift_alerts(self, report: DriftReportLike) -> list[AlertEvent]:
        """Evaluate the alert rules of the monitor watching `report.model` on each COMPLETE
        window of a drift run (a whole, epoch-aligned window that has ended by the run), oldest
        first (`drift_share`, `drift:<column>`); no monitor: no events. A partial window (the
        range's first or last, or one still filling) is shown but never counted: the next run
        sees more of it, and counting both would count the same data twice."""
        from parity.monitoring.report_data import drift_signals

        monitor = self.monitor_for(report.model)
        if monitor is None or not monitor.alerts:
            return []
        width = report.settings.window
        complete = {
            w.end for w in report.windows if w.end - w.start >= width and w.end <= report.run_at
        }
        store = self._alert_store()
        events: list[AlertEvent] = []
        for at, signals in drift_signals(report):
            if at in complete:
                events += store.evaluate(monitor.name, monitor.alerts, signals, at)
        return events

    def drift_report_html(
        self, report: DriftReportLike, *, version: int | None = None, spans: int = 3
    ) -> str:
        """The self-contained HTML page of a drift run (see docs/monitoring.md, "The HTML
        report"): its latest judged window of `version` (default: the newest in the run), each
        score over time from this run and the stored runs of the `spans` run-lengths before it."""
        from parity.monitoring.logs import range_start
        from parity.monitoring.report_data import render_drift_report

        chosen = max(report.versions) if version is None and report.versions else version
        if not report.windows:
            return render_drift_report(report, (), version=chosen)  # ReportError naming why
        start, end = min(w.start for w in report.windows), max(w.end for w in report.windows)
        since = range_start(start, end - start, spans)  # clamped: a run from year 1 is allowed
        history = self.drift_history(report.model, version=chosen, since=since, until=end)
        return render_drift_report(report, history, version=chosen)

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
            from parity.monitoring.alert_store import AlertStore

            engine = getattr(self._store.registry.store, "engine", None)
            if engine is None:
                raise BackendNotInstalled(
                    f"the registry store {type(self._store.registry.store).__name__} cannot keep "
                    "alerts; use the SQL registry (sqlite or postgres in parity.yaml)"
                )
            cached = AlertStore(engine, self._store.project, clock=self._store.now)
            self._alert_store_cache = cached
        return cached


def bind_metrics(store: FeatureStore, monitor: Monitor) -> dict[str, MetricFunction]:
    """The monitor's metric functions from the loaded repo, checked against the code hash kept
    at apply; one missing or changed is left out (a performance run reports it null, saying why)."""
    from parity.monitoring.performance_report import bind_metrics as bind

    return bind(
        monitor, lambda: load_repo(store.repo_path, store.project).catalog.monitors
    ).functions


# --- end performance ---


# --- drift: names for type hints (kept here so the blocks above merge without conflicts) -------
if TYPE_CHECKING:
    from datetime import timedelta
    from pathlib import Path

    from parity.models.store import ModelVersion
    from parity.monitoring.drift import DriftReport
    from parity.monitoring.drift_history import DriftHistory, DriftRow
    from parity.monitoring.drift_runner import DriftRunner
    from parity.monitoring.profile_store import ProfileStore, StoredProfile
    from parity.monitoring.reference import ProfileOutcome, ReferenceProfiles
    from parity.timeutil import TimeLike


# --- quality and freshness: names for type hints (here so the blocks above merge cleanly) -----
if TYPE_CHECKING:
    from datetime import timedelta

    from parity.definitions import FeatureView
    from parity.monitoring.freshness import ViewFreshness
    from parity.monitoring.quality import Reference
    from parity.monitoring.quality_store import BatchWatch, QualityRecord, QualityRecorder
    from parity.timeutil import TimeLike
