"""Data quality of served traffic: the features the model server logged, per model version and
window of prediction time, read from the Parquet prediction log with DuckDB and judged against
each version's reference; and `quality_report`, the read side. Imports no server code.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity.errors import BackendNotInstalled, ConfigError, QualitySubjectNotFound
from parity.monitoring.quality import Counts, QualityThresholds, Reference, count_column, judge
from parity.monitoring.quality_store import QualityRecord

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore

WINDOW = timedelta(hours=1)  # default window of served-traffic quality (as drift's default)


def read_logged_features(
    log_dir: Path, model: str, start: datetime, end: datetime
) -> list[tuple[int, datetime, dict[str, Any]]]:
    """(version, prediction time, features) of each `ok` prediction of `model` logged in
    [start, end), oldest first. Only complete `*.parquet` files are read (segments still being
    written are hidden `.inprogress` files)."""
    import duckdb

    if not any(log_dir.glob("**/*.parquet")):
        return []
    query = (
        "SELECT version, event_timestamp, features FROM read_parquet(?, hive_partitioning=false, "
        "union_by_name=true) WHERE model = ? AND status = 'ok' AND event_timestamp >= ? "
        "AND event_timestamp < ? ORDER BY event_timestamp"
    )
    connection = duckdb.connect()
    try:
        connection.execute("SET TimeZone = 'UTC'")
        rows = connection.execute(
            query, [str(log_dir / "**" / "*.parquet"), model, start, end]
        ).fetchall()
    finally:
        connection.close()
    return [(int(v), at, json.loads(text) if text else {}) for v, at, text in rows]


def served_records(
    model: str,
    logged: list[tuple[int, datetime, dict[str, Any]]],
    start: datetime,
    end: datetime,
    *,
    window: timedelta = WINDOW,
    references: Callable[[int], Mapping[str, Reference]] | None = None,
    thresholds: QualityThresholds | None = None,
) -> list[QualityRecord]:
    """One record per version, window of [start, end) and feature seen in it. A feature absent
    from a logged row counts as null there. Windows without predictions give no records."""
    buckets: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for version, at, features in logged:
        index = int((at - start) / window)
        buckets.setdefault((version, index), []).append(features)
    records = []
    for (version, index), rows in sorted(buckets.items()):
        lo = start + index * window
        hi = min(lo + window, end)
        refs = dict(references(version)) if references is not None else {}
        names = sorted({name for row in rows for name in row})
        run = uuid.uuid4().hex
        for name in names:
            ref = refs.get(name)
            counts: Counts = count_column(name, [row.get(name) for row in rows], ref)
            quality = judge(name, counts, ref, thresholds)
            records.append(QualityRecord("served", model, name, lo, hi, quality, version, run=run))
    return records


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
    written first). A model: its served features checked now per version and window of
    [since, until) (default: to the store's clock), recorded (replacing an earlier check of the
    same window) and returned. Anything else: QualitySubjectNotFound naming it."""
    recorder = store.monitoring.quality_recorder()
    if recorder is None:
        raise BackendNotInstalled(
            f"the registry store {type(store.registry_store).__name__} keeps no quality records; "
            "use the SQL registry (sqlite or postgres in parity.yaml)"
        )
    if name in store.registry.catalog.feature_views:
        recorder.flush()
        return recorder.table.read(store.project, name, since)
    if name not in store.models.models():
        raise _not_found(store, name)
    end = until or store.now()
    logged = read_logged_features(_log_dir(store), name, since, end)
    records = served_records(name, logged, since, end, window=window)
    recorder.table.record(store.project, records, store.now(), replace=True)
    return records


def _log_dir(store: FeatureStore) -> Path:
    where = store.config.models.serving.prediction_log
    if where is None:
        raise ConfigError(
            "models.serving.prediction_log is off in parity.yaml: the model server logged no "
            "features to check; set it to a folder (default data/prediction_log)"
        )
    path = Path(where)
    return path if path.is_absolute() else store.repo_path / path


def _not_found(store: FeatureStore, name: str) -> QualitySubjectNotFound:
    views = sorted(store.registry.catalog.feature_views)
    models = sorted(store.models.models())
    return QualitySubjectNotFound(
        f"'{name}' is neither a feature view nor a model of project '{store.project}' "
        f"(views: {', '.join(views) or 'none'}; models: {', '.join(models) or 'none'})"
    )
