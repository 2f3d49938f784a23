"""Data quality of served traffic and the references quality is judged against: a model's logged
features per version and window (read with the drift module's prediction-log reader), a feature
view's reference (the profile of a dataset holding its features); and `quality_report`, the read
side of `store.monitoring.quality`. Imports monitoring modules only (no server code).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from parity.errors import BackendNotInstalled, NoReference, QualitySubjectNotFound
from parity.monitoring.quality import QualityThresholds, Reference, count_column, judge
from parity.monitoring.quality_store import QualityRecord

if TYPE_CHECKING:
    from parity.definitions import FeatureView
    from parity.feature_store import FeatureStore
    from parity.models.store import ModelVersion
    from parity.monitoring.drift_runner import DriftRunner
    from parity.monitoring.logs import LogColumn, Windows
    from parity.monitoring.profile import ColumnProfile
    from parity.monitoring.profile_store import ProfileStore
    from parity.registry.datasets import DatasetRecord

WINDOW = timedelta(hours=1)  # default window of served-traffic quality (drift's default too)


def reference_of(column: ColumnProfile) -> Reference:
    """What quality needs of a stored column profile: a numeric column's range, a categorical or
    boolean column's top-K categories and "other" count (docs/monitoring.md, "Data quality")."""
    from parity.monitoring.quality import category_key

    numeric = column.kind == "numeric"
    return Reference(
        rows=column.count,
        nulls=column.nulls,
        minimum=column.min if numeric else None,
        maximum=column.max if numeric else None,
        categories=None if numeric else {category_key(v): n for v, n in column.frequencies},
        other=0 if numeric else column.other,
    )


# --- served traffic ------------------------------------------------------------------------------


def served_records(
    runner: DriftRunner,
    target: str,
    windows: Windows,
    thresholds: QualityThresholds | None = None,
) -> list[QualityRecord]:
    """One record per version, window and column of `target` (a model name or ref) with rows
    in the windows: the columns of the version's reference (its dataset's features, its
    request-time inputs) judged against it, or, for a version with no reference, every logged
    feature for rows, nulls and ±inf only. A value of another JSON type than the reference's
    kind (text for a number) reads as null."""
    name, chosen = runner.resolve(target)
    logged = runner.reader.versions(name, windows)
    versions = chosen if chosen is not None else runner.models.versions(name)
    records: list[QualityRecord] = []
    for version in versions:
        if logged.get(version.version, 0) == 0:
            continue
        refs, columns = _version_columns(runner, version, windows)
        read = runner.reader.read(name, [version.version], windows, columns)
        for number, index, table in read.groups():
            lo, hi = windows.bounds(index)
            run = uuid.uuid4().hex
            for column in table.column_names:
                ref = refs.get(column)
                counts = count_column(column, table.column(column), ref)
                quality = judge(column, counts, ref, thresholds)
                records.append(
                    QualityRecord("served", name, column, lo, hi, quality, number, run=run)
                )
    return records


def _version_columns(
    runner: DriftRunner, version: ModelVersion, windows: Windows
) -> tuple[dict[str, Reference], list[LogColumn]]:
    from parity.monitoring.drift import sql_type_of
    from parity.monitoring.logs import ENTITIES, FEATURES, LogColumn

    try:
        reference = runner.reference(version)
    except NoReference:
        names = _logged_feature_names(runner, version, windows)
        return {}, [LogColumn(n, FEATURES, "VARCHAR", n) for n in names]
    wanted = [n for n, kind in reference.kinds.items() if kind in ("feature", "input")]
    columns = [
        LogColumn(
            n,
            FEATURES if reference.kinds[n] == "feature" else ENTITIES,
            sql_type_of(reference.profiles[n]),
            n,
        )
        for n in sorted(wanted)
    ]
    return {n: reference_of(reference.profiles[n]) for n in wanted}, columns


def _logged_feature_names(
    runner: DriftRunner, version: ModelVersion, windows: Windows
) -> list[str]:
    """The feature names a version logged in the windows (for a version without a reference)."""
    from parity.monitoring.logs import connect_duckdb, log_files

    files = log_files(runner.reader.directory, windows.since, windows.until)
    if not files:
        return []
    connection = connect_duckdb()
    try:
        rows = connection.execute(
            "SELECT DISTINCT unnest(json_keys(features)) FROM "
            "read_parquet(?, union_by_name = true) WHERE model = ? "
            "AND version = ? AND status = 'ok' AND event_timestamp >= ? AND event_timestamp < ?",
            [files, version.name, version.version, windows.since, windows.until],
        ).fetchall()
    finally:
        connection.close()
    return sorted(str(name) for (name,) in rows)


# --- feature views -------------------------------------------------------------------------------


def view_references(
    view: FeatureView,
    candidates: Iterable[DatasetRecord],
    profiles: ProfileStore,
    project: str,
) -> dict[str, Reference]:
    """The reference of a view's features: the stored features profile of the first candidate
    dataset (the facade passes those of registered model versions, newest first, then every
    dataset, newest first) that holds any of them, as `feature` or `view__feature`."""
    from parity.monitoring.drift import load_profile_columns
    from parity.monitoring.profile_store import FEATURES

    for record in candidates:
        held = [r.partition(":")[2] for r in record.feature_refs if r.startswith(f"{view.name}:")]
        if not held:
            continue
        stored = profiles.find(project, record.fingerprint, FEATURES)
        if stored is None or not stored.ok or stored.profile is None:
            continue
        columns = load_profile_columns(stored.profile)
        found = {}
        for feature in held:
            column = columns.get(feature) or columns.get(f"{view.name}__{feature}")
            if column is not None:
                found[feature] = reference_of(column)
        if found:
            return found
    return {}


def reference_candidates(store: FeatureStore) -> list[DatasetRecord]:
    """Datasets a view's reference may come from: those registered model versions were trained
    on (newest registration first), then every recorded dataset (newest first)."""
    datasets = {d.name: d for d in store.datasets.list()}
    trained = sorted(
        (v for m in store.models.models() for v in store.models.versions(m)),
        key=lambda v: v.created_at,
        reverse=True,
    )
    order = [v.training_dataset for v in trained if v.training_dataset in datasets]
    order += sorted(datasets, key=lambda n: datasets[n].created_at, reverse=True)
    return [datasets[n] for n in dict.fromkeys(order) if n is not None]


# --- the read side -------------------------------------------------------------------------------


def quality_report(
    store: FeatureStore,
    name: str,
    *,
    since: datetime,
    until: datetime | None = None,
    window: timedelta = WINDOW,
) -> list[QualityRecord]:
    """`store.monitoring.quality(name, since=...)`. A feature view: the records its
    materializations, pushes and stream batches left since `since` (this process's counters
    written first). A model (`fraud`, `fraud@champion`, `fraud/3`): its served features checked
    now per version and window of [since, until) (default: to the store's clock), recorded
    (replacing an earlier check of the same window) and returned. Anything else:
    QualitySubjectNotFound naming it."""
    from parity.monitoring.logs import make_windows

    recorder = store.monitoring.quality_recorder()
    if recorder is None:
        raise BackendNotInstalled(
            f"the registry store {type(store.registry.store).__name__} keeps no quality records; "
            "use the SQL registry (sqlite or postgres in parity.yaml)"
        )
    if name in store.registry.catalog.feature_views:
        recorder.flush()
        return recorder.table.read(store.project, name, since)
    if _model_name(name) not in store.models.models():
        raise _not_found(store, name)
    windows = make_windows(since, until or store.now(), window)
    records = served_records(store.monitoring._drift_runner(), name, windows)
    recorder.table.record(store.project, records, store.now(), replace=True)
    return records


def _model_name(text: str) -> str | None:
    """The model name of a ref (`fraud@champion` -> `fraud`); None when it is not a ref."""
    from parity.errors import InvalidModelRef
    from parity.models.registry import parse_ref

    try:
        return parse_ref(text)[0]
    except InvalidModelRef:
        return None


def _not_found(store: FeatureStore, name: str) -> QualitySubjectNotFound:
    views = sorted(store.registry.catalog.feature_views)
    models = sorted(store.models.models())
    return QualitySubjectNotFound(
        f"'{name}' is neither a feature view nor a model of project '{store.project}' "
        f"(views: {', '.join(views) or 'none'}; models: {', '.join(models) or 'none'})"
    )
