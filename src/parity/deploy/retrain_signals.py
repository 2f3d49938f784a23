"""The retrain triggers' signals, read from the monitoring history as of an evaluation time: drift
as ONE number (the importance-weighted share of drifted features of the newest complete window),
the delayed-label metric's relative drop on FINAL windows, the newest version's age; and one
modest pass of the monitors for `parity monitor evaluate`. Reads only through `store.monitoring`
and `store.models`; the weighting and the drop are pure functions here."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from parity.deploy.retrain_decide import Observation
from parity.errors import NoReference, ParityError

if TYPE_CHECKING:
    from parity.definitions.retrain import RetrainPolicy
    from parity.feature_store import FeatureStore
    from parity.models.store import ModelVersion
    from parity.monitoring.drift_history import DriftRow

log = logging.getLogger(__name__)

CHAMPION = "champion"  # the alias whose version the signals describe (the newest without it)
DEFAULT_WINDOW = timedelta(hours=1)  # a model without a Monitor: monitoring's own default
STALE_WINDOWS = 3  # drift evidence older than this many windows before now is no evidence
FEATURE_KINDS = ("feature", "input")  # model outputs drift as a consequence, not a cause


def weighted_share(
    verdicts: Mapping[str, bool | None],
    importance: Mapping[str, Any] | None,
    weighting: str,
) -> tuple[float | None, dict[str, Any]]:
    """The share of drifted columns, each weighted by its importance (equal weights with
    `weighting="equal"`, or when no usable importance covers any column). Columns without a
    verdict (too few rows) count neither way; none with a verdict: None (no evidence).
    Returns the share and its detail (weights used, drifted columns, left-out columns)."""
    judged = {name: bool(v) for name, v in verdicts.items() if v is not None}
    weights, note = _weights(list(judged), importance, weighting)
    total = sum(weights.values())
    drifted = sorted(name for name, v in judged.items() if v)
    detail: dict[str, Any] = {
        "weighting": note,
        "columns": len(verdicts),
        "judged": len(judged),
        "drifted": drifted[:50],
        "drifted_count": len(drifted),
    }
    unweighted = sorted(name for name in judged if weights.get(name, 0.0) == 0.0)
    if unweighted and note == "importance":
        detail["zero_weight"] = unweighted[:50]
    if total <= 0:
        return None, detail
    return sum(weights[name] for name in drifted) / total, detail


def _weights(
    columns: Sequence[str], importance: Mapping[str, Any] | None, weighting: str
) -> tuple[dict[str, float], str]:
    equal = {name: 1.0 for name in columns}
    if weighting == "equal":
        return equal, "equal"
    if not isinstance(importance, Mapping) or not importance:
        return equal, "equal (the version records no feature_importance)"
    found: dict[str, float] = {}
    for name in columns:
        raw = _lookup(importance, name)
        if raw is None:
            found[name] = 0.0
            continue
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            return equal, f"equal (feature_importance of '{name}' is {raw!r}, not a number)"
        found[name] = abs(float(raw))  # signed coefficients weigh by magnitude
    if not any(found.values()):
        return equal, "equal (feature_importance names none of the drift columns)"
    return found, "importance"


def _lookup(importance: Mapping[str, Any], column: str) -> Any:
    """The column's importance: by its name, else by its bare feature name (`view__f`, `view:f`)."""
    if column in importance:
        return importance[column]
    bare = column.replace(":", "__").split("__")[-1]
    return importance.get(bare)


def relative_drop(current: float, reference: float, higher_is_better: bool) -> float | None:
    """How much worse `current` is than `reference`, relative to it (0.1: 10 % worse; negative:
    better); None when the reference is 0 or a value is not finite."""
    if not (math.isfinite(current) and math.isfinite(reference)) or reference == 0:
        return None
    worse = reference - current if higher_is_better else current - reference
    return worse / abs(reference)


class MonitoringSignals:
    """The signals of a store's models from its monitoring history (a `SignalSource`)."""

    def __init__(self, store: FeatureStore) -> None:
        self._store = store

    def version(self, model: str) -> ModelVersion:
        """The version the signals describe: the champion, else the newest (ModelNotFound for
        a model that does not exist)."""
        models = self._store.models
        versions = models.versions(model)
        if CHAMPION in models.aliases(model):
            return models.get_alias(model, CHAMPION)
        return max(versions, key=lambda v: v.version)

    def newest_version_at(self, model: str) -> datetime | None:
        versions = self._store.models.versions(model)
        return max((v.created_at for v in versions), default=None)

    def rollout(self, model: str) -> str | None:
        """The model's rollout in progress (shadow, canary or paused), as 'id (status)'."""
        for state in self._store.rollouts.list(active_only=True):
            if state.model == model:
                return f"{state.id} ({state.status})"
        return None

    def check_reference(self, version: ModelVersion) -> None:
        """NoReference naming the model and the command to run when the version has no usable
        reference profile of its training set's features."""
        from parity.monitoring.profile_store import FEATURES

        if version.training_dataset is None:
            raise NoReference(
                f"model {version.ref} has no reference profile: it was registered without a "
                "training dataset, so drift cannot be measured; register it with "
                "training_dataset=... (or set drift_fire_at=None in its RetrainPolicy)"
            )
        profiles = self._store.monitoring.profiles(version.training_dataset)
        if not any(p.subject == FEATURES and p.ok for p in profiles):
            raise NoReference(
                f"model {version.ref} has no reference profile of dataset "
                f"'{version.training_dataset}'; run 'parity monitor profile --dataset "
                f"{version.training_dataset}'"
            )

    def drift(self, policy: RetrainPolicy, now: datetime) -> Observation:
        if policy.drift_fire_at is None:
            return Observation(None)
        version = self.version(policy.model)
        self.check_reference(version)
        width = self._window(policy.model)
        oldest = now - width * STALE_WINDOWS  # the oldest window end still evidence
        rows = self._store.monitoring.drift_history(
            policy.model, version=version.version, since=oldest - width, until=now
        )
        newest = newest_complete_window([r for r in rows if r.window_end >= oldest], width, now)
        if not newest:
            return Observation(
                None, detail={"version": version.version, "why": "no complete drift window"}
            )
        verdicts = {r.column: r.drifted for r in newest if r.kind in FEATURE_KINDS}
        importance = version.params.get("feature_importance")
        share, detail = weighted_share(verdicts, importance, policy.weighting)
        end = newest[0].window_end
        detail.update(version=version.version, window_end=end.isoformat(), run=newest[0].run_id)
        return Observation(share, end, detail)

    def performance(self, policy: RetrainPolicy, now: datetime) -> Observation:
        metric = policy.metric
        if metric is None:
            return Observation(None)
        version = self.version(policy.model)
        rows = self._store.monitoring.performance_history(policy.model, version.version)
        final = sorted(
            (r for r in rows if r["status"] == "final" and r["window_end"] <= now),
            key=lambda r: r["window_end"],
        )
        values: list[tuple[datetime, float]] = []
        for row in final:
            found = _metric(row, metric)
            if found is not None:
                values.append((row["window_end"], found))
        detail: dict[str, Any] = {"version": version.version, "metric": metric}
        if not values:
            return Observation(None, detail={**detail, "why": "no final window with the metric"})
        reference, source = self._reference(policy, version, values[0][1])
        end, current = values[-1]
        detail.update(current=current, reference=reference, reference_from=source)
        detail["window_end"] = end.isoformat()
        if reference is None:
            why = f"version {version.ref} has no registration metric '{policy.reference_metric}'"
            return Observation(None, detail=detail, error=why)
        return Observation(relative_drop(current, reference, policy.higher_is_better), end, detail)

    def _reference(
        self, policy: RetrainPolicy, version: ModelVersion, first: float
    ) -> tuple[float | None, str]:
        if policy.reference_metric is None:
            return first, "first final window"
        found = version.metrics.get(policy.reference_metric)
        return found, f"registration metric '{policy.reference_metric}'"

    def _window(self, model: str) -> timedelta:
        monitor = self._store.monitoring.monitor_for(model)
        return DEFAULT_WINDOW if monitor is None else monitor.window


def newest_complete_window(
    rows: Sequence[DriftRow], width: timedelta, now: datetime
) -> list[DriftRow]:
    """The rows of the newest window that is whole (`width` long), ended by `now` and judged by
    a run made after it ended (a run inside a window saw part of it); the latest such run."""
    complete = [
        r
        for r in rows
        if r.window_end - r.window_start >= width
        and r.window_end <= now
        and r.run_at >= r.window_end
    ]
    if not complete:
        return []
    end = max(r.window_end for r in complete)
    latest = max((r.run_at, r.run_id) for r in complete if r.window_end == end)[1]
    return [r for r in complete if r.window_end == end and r.run_id == latest]


def _metric(row: Mapping[str, Any], metric: str) -> float | None:
    value = (row.get("metrics") or {}).get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def monitor_pass(store: FeatureStore, now: datetime) -> list[str]:
    """One modest pass of the monitors at `now`: per applied Monitor, drift of the newest whole
    window ended by `now` (recorded, and its alert rules stepped) unless a run after its end is
    already recorded; and, with a label source, performance of the windows whose labels can
    have matured (recorded; final windows step the metric alerts). One line per monitor."""
    notes = []
    for monitor in store.monitoring.monitors():
        notes.append(_drift_once(store, monitor.model, monitor.window, now))
        if monitor.labels is not None:
            notes.append(_performance_once(store, monitor.model, monitor, now))
    return notes


def _drift_once(store: FeatureStore, model: str, width: timedelta, now: datetime) -> str:
    end = _floor(now, width)
    since = end - width
    try:
        done = store.monitoring.drift_history(model, since=since, until=end + width)
        if any(r.window_end == end and r.run_at >= end for r in done):
            return f"{model}: drift of [{since.isoformat()}, {end.isoformat()}) already recorded"
        report = store.monitoring.drift(model, since=since, until=end, window=width)
    except Exception as error:  # one broken monitor (a corrupt log file) must not stop the pass
        return f"{model}: drift not run ({_why(error)})"
    flagged = sum(1 for w in report.windows if w.drifted)
    return (
        f"{model}: drift of [{since.isoformat()}, {end.isoformat()}) recorded ({flagged} flagged)"
    )


def _performance_once(store: FeatureStore, model: str, monitor: Any, now: datetime) -> str:
    """Performance of the windows whose labels may have matured by `now`, once per window of
    time (a pass inside the window of the last recorded run records nothing)."""
    width: timedelta = monitor.window
    since = _floor(now - monitor.label_delay, width) - width * STALE_WINDOWS
    try:
        version = MonitoringSignals(store).version(model)
        done = store.monitoring.performance_history(model, version.version, latest=False)
        if any(row["as_of"] >= _floor(now, width) and row["as_of"] <= now for row in done):
            return f"{model}: performance already recorded since {_floor(now, width).isoformat()}"
        report = store.monitoring.performance(version.ref, since=since, until=now, as_of=now)
    except Exception as error:
        return f"{model}: performance not run ({_why(error)})"
    final = sum(1 for w in report.windows if w.status == "final")
    return f"{model}: performance of {len(report.windows)} windows recorded ({final} final)"


def _why(error: Exception) -> str:
    """A monitor's failure in one line: the typed error's code, else the exception's type; any
    URL password redacted (a database error may quote its connection)."""
    from parity.redaction import redact

    kind = error.code if isinstance(error, ParityError) else type(error).__name__
    return redact(f"{kind}: {error}".splitlines()[0])


def _floor(moment: datetime, width: timedelta) -> datetime:
    """The epoch-aligned window boundary at or before `moment` (monitoring's windows)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // width) * width
