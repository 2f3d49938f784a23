"""Drift runs' I/O: resolves a model ref, loads each version's reference profiles, reads the
prediction log's windows, evaluates them (parity.monitoring.drift, pure) and records the history.

Must not import cli, serving or inference.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from parity.errors import InsufficientData, NoReference
from parity.monitoring.drift import (
    DEFAULT_RANGE_WINDOWS,
    DriftReport,
    DriftSettings,
    Reference,
    WindowDrift,
    chosen_columns,
    evaluate_window,
    load_profile_columns,
)
from parity.monitoring.drift_history import DriftHistory
from parity.monitoring.logs import (
    ENTITIES,
    FEATURES,
    LogColumn,
    PredictionLogReader,
    Windows,
    make_windows,
    range_start,
)
from parity.monitoring.profile_store import FEATURES as FEATURES_SUBJECT
from parity.monitoring.profile_store import ProfileStore, StoredProfile, model_subject

if TYPE_CHECKING:
    from parity.models.registry import ModelRegistry
    from parity.models.store import ModelVersion
    from parity.monitoring.profile import ColumnProfile


class DriftRunner:
    """Resolves a model ref, loads references, reads the log, evaluates and records the run."""

    def __init__(
        self,
        *,
        project: str,
        models: ModelRegistry,
        profiles: ProfileStore,
        history: DriftHistory,
        reader: PredictionLogReader,
        monitor_for: Callable[[str], Any | None],
        clock: Callable[[], datetime],
    ) -> None:
        self.project = project
        self.models = models
        self.profiles = profiles
        self.history = history
        self.reader = reader
        self._monitor_for = monitor_for
        self._clock = clock

    def run(
        self,
        target: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        window: timedelta | None = None,
        persist: bool = True,
    ) -> DriftReport:
        name, chosen = self.resolve(target)
        settings = DriftSettings.from_monitor(self._monitor_for(name))
        width = window or settings.window
        end = until or self._clock()
        windows = make_windows(since or range_start(end, width, DEFAULT_RANGE_WINDOWS), end, width)
        versions = self._versions_with_rows(target, name, chosen, windows)
        references = {v.version: self.reference(v) for v in versions}
        results = []
        for version in versions:
            results += self._version_windows(name, references[version.version], settings, windows)
        report = DriftReport(
            run_id=uuid.uuid4().hex,
            run_at=self._clock(),
            project=self.project,
            model=name,
            target=target,
            versions=tuple(v.version for v in versions),
            since=windows.since,
            until=windows.until,
            settings=settings if window is None else _with_window(settings, width),
            references=references,
            windows=tuple(results),
        )
        if persist:
            self.history.record(report.history_rows())
        return report

    def resolve(self, target: str) -> tuple[str, list[ModelVersion] | None]:
        """(model name, the versions a ref names; None for a bare name: every version)."""
        from parity.models.registry import parse_ref

        name, version, alias = parse_ref(target)
        if alias is not None:
            return name, [self.models.get_alias(name, alias)]
        if version is not None:
            return name, [self.models.get_version(name, version)]
        self.models.versions(name)  # ModelNotFound for an unknown model
        return name, None

    def _versions_with_rows(
        self, target: str, name: str, chosen: list[ModelVersion] | None, windows: Windows
    ) -> list[ModelVersion]:
        logged = self.reader.versions(name, windows)
        wanted = (
            chosen
            if chosen is not None
            else [v for v in self.models.versions(name) if v.version in logged]
        )
        found = [v for v in wanted if logged.get(v.version, 0) > 0]
        if not found:
            held = ", ".join(f"{name}/{v}: {n} rows" for v, n in logged.items()) or "no rows"
            raise InsufficientData(
                f"insufficient data: the prediction log has no rows of {target} between "
                f"{windows.since.isoformat()} and {windows.until.isoformat()} (it holds "
                f"{held} of model '{name}' there); widen --since/--until or check the model ref"
            )
        return found

    def reference(self, version: ModelVersion) -> Reference:
        """The version's reference columns: its dataset's features, its request-time inputs and
        its outputs (NoReference naming what to run when there are none)."""
        if version.training_dataset is None or version.dataset_fingerprint is None:
            raise NoReference(
                f"model {version.ref} was registered without a training dataset, so it has no "
                "reference to compare against; register it with training_dataset="
            )
        kinds: dict[str, str] = {}
        profiles: dict[str, ColumnProfile] = {}
        subjects = (
            (FEATURES_SUBJECT, "feature"),
            (model_subject(version.name, version.version, "inputs"), "input"),
            (model_subject(version.name, version.version), "output"),
        )
        for subject, kind in subjects:
            stored = self.profiles.find(self.project, version.dataset_fingerprint, subject)
            if stored is None and kind == "input":
                continue  # a model whose inputs are all features has no inputs subject
            self._check(version, subject, stored)
            for column, profile in load_profile_columns(str(stored.profile)).items():  # type: ignore[union-attr]
                kinds.setdefault(column, kind)
                profiles.setdefault(column, profile)
        return Reference(
            version.version, version.training_dataset, version.dataset_fingerprint, kinds, profiles
        )

    def _check(self, version: ModelVersion, subject: str, stored: StoredProfile | None) -> None:
        if stored is not None and stored.ok:
            return
        why = "was never computed" if stored is None else f"failed: {stored.error}"
        raise NoReference(
            f"the reference profile '{subject}' of model {version.ref} (dataset "
            f"'{version.training_dataset}') {why}; run 'parity monitor profile --dataset "
            f"{version.training_dataset}'"
        )

    def _version_windows(
        self, name: str, reference: Reference, settings: DriftSettings, windows: Windows
    ) -> list[WindowDrift]:
        columns = chosen_columns(reference, settings)
        wanted = reference.log_columns(columns)
        read = self.reader.read(name, [reference.version], windows, wanted)
        by_window = {index: rows for _, index, rows in read.groups()}
        results = [
            evaluate_window(
                reference,
                columns,
                by_window.get(index),
                settings,
                index=index,
                bounds=windows.bounds(index),
            )
            for index in range(windows.count)
        ]
        absent = self._absent(name, reference.version, windows, wanted)
        return [_mark_absent(result, absent) for result in results] if absent else results

    def _absent(
        self, name: str, version: int, windows: Windows, columns: Sequence[LogColumn]
    ) -> dict[str, str]:
        """Reasons for the columns whose key the log's JSON never holds (a renamed feature,
        full feature names), so they are not mistaken for null values."""
        reasons = {}
        for source, what in ((FEATURES, "features"), (ENTITIES, "request fields")):
            keyed = [c for c in columns if c.source == source]
            if not keyed:
                continue
            logged = self.reader.keys(name, version, windows, source)
            for column in keyed:
                if logged and column.key not in logged:
                    reasons[column.name] = (
                        f"'{column.key}' is not in the logged {what} of {name}/{version} (they "
                        f"hold {sorted(logged)}); the reference and the served names differ"
                    )
        return reasons


def _mark_absent(result: WindowDrift, reasons: Mapping[str, str]) -> WindowDrift:
    from dataclasses import replace

    if result.rows == 0:
        return result
    columns = tuple(
        replace(c, reason=reasons[c.column]) if c.column in reasons else c for c in result.columns
    )
    return replace(result, columns=columns)


def _with_window(settings: DriftSettings, width: timedelta) -> DriftSettings:
    from dataclasses import replace

    return replace(settings, window=width)
