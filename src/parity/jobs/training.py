"""One run of a `TrainingJob`: read its matured labels, build the point-in-time training set
(recorded with lineage), call the repo's train function, check what it returned, register the new
version and start the job's rollout. No threads, no job records: the runner (jobs/runner.py) owns
those and calls `prepare` (timed, cancellable) then `register`.
"""

from __future__ import annotations

import logging
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from parity.definitions.training import TrainedModel, TrainingJob
from parity.errors import (
    BackendNotInstalled,
    LabelSourceError,
    ParityError,
    RegistryUnavailable,
    TrainingFailed,
    TrainingJobNotFound,
)
from parity.jobs.trained import (
    NotRetryable,
    as_trained,
    check_importable,
    check_importance,
    check_inputs,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from parity.definitions.monitor import LabelSource
    from parity.feature_store import FeatureStore
    from parity.jobs.state import JobRecord
    from parity.models.store import ModelVersion
    from parity.registry.datasets import DatasetRecord

_LOAD_LOCK = threading.Lock()  # the repo loader edits sys.path and sys.modules: one at a time
DATASET_DIR = Path("data") / "training_sets"  # under the repo: where jobs write training sets


class LabelValuesInvalid(LabelSourceError, NotRetryable):
    """A label source whose values cannot be read as declared (a time column holding numbers):
    a LabelSourceError, but unlike a file not written yet, no retry reads it differently."""


@dataclass(frozen=True)
class LabelCounts:
    """What the label source held and why rows were left out of the training set."""

    read: int = 0
    kept: int = 0
    too_recent: int = 0  # event time after the cutoff: the label has not matured
    before_lookback: int = 0  # event time before cutoff - lookback
    label_unknown: int = 0  # label_timestamp after now: not known yet at `now`
    missing: int = 0  # null, NaN or infinite label, or null event time

    def describe(self) -> str:
        return (
            f"{self.read} label rows read, {self.kept} kept; left out: {self.too_recent} younger "
            f"than the cutoff, {self.before_lookback} before the lookback, {self.label_unknown} "
            f"whose label was not known yet, {self.missing} with no label (null, NaN) or no time"
        )


@dataclass(frozen=True)
class TrainingContext:
    """What a train function gets besides the frame: which run this is and what it trains on.
    `cancelled()` turns true once the job is cancelled (a long fit may check it and stop)."""

    job: str
    job_id: int
    attempt: int
    model: str
    feature_service: str
    now: datetime
    cutoff: datetime
    since: datetime | None
    dataset: str
    dataset_path: str
    label: str
    timestamp_field: str
    features: tuple[str, ...]
    log: logging.Logger
    cancelled: Callable[[], bool] = field(default=lambda: False)


@dataclass(frozen=True)
class Prepared:
    """A trained model, checked, ready to register."""

    job: TrainingJob
    trained: TrainedModel
    dataset: DatasetRecord
    counts: LabelCounts
    inputs: tuple[str, ...]
    window: dict[str, str | None] = field(default_factory=dict)  # now, cutoff, since (ISO)


def applied_job(store: FeatureStore, name: str) -> TrainingJob:
    """The applied training job `name`; TrainingJobNotFound naming the applied ones."""
    job = store.registry.catalog.training_jobs.get(name)
    if job is None:
        known = ", ".join(sorted(store.registry.catalog.training_jobs)) or "none"
        raise TrainingJobNotFound(
            f"no training job named '{name}' is applied in project '{store.project}' (applied: "
            f"{known}); declare it in the repo and run 'parity apply'"
        )
    return job


def bind_train_function(store: FeatureStore, job: TrainingJob) -> Callable[..., Any]:
    """The repo's train function of `job`, whose code must hash to the applied one."""
    from parity.repo.loader import load_repo

    if job.train_function is not None:
        return job.train_function
    with _LOAD_LOCK:
        try:
            repo = load_repo(store.repo_path, store.project).catalog.training_jobs.get(job.name)
        except ParityError as error:
            raise NotRetryable(
                f"the repo could not be loaded to bind '{job.train.name}': {error}"
            ) from None
    if repo is None or repo.train_function is None:
        raise NotRetryable(
            f"training job '{job.name}' is applied but not in the repo at {store.repo_path}; "
            "run the job from the repo that applied it, or apply the repo first"
        )
    if repo.train.code_hash != job.train.code_hash:
        raise NotRetryable(
            f"train function '{job.train.name}' in the repo differs from the applied one: apply "
            "the repo first ('parity apply'), or check out the applied version"
        )
    return repo.train_function


# --- labels ------------------------------------------------------------------------------------


def read_labels(
    repo_root: Path,
    source: LabelSource,
    now: datetime,
    cutoff: datetime,
    since: datetime | None,
) -> tuple[pa.Table, LabelCounts]:
    """The label rows with a known label, event time in [since, cutoff] and label time (when
    declared) at or before `now`; with counts of what was left out and why. LabelColumnNotFound
    names a declared column the source lacks; LabelSourceError a source that cannot be read."""
    import duckdb

    from parity.monitoring import labels as label_io
    from parity.offline.duckdb_sql import quote

    connection = label_io.connect(repo_root)
    try:
        sql = label_io.source_sql(source, repo_root)
        label_io.check_columns(connection, source, sql)
        ts = f"CAST({quote(source.timestamp_field or '')} AS TIMESTAMPTZ)"
        label = quote(source.label)
        why = [  # a NaN or infinite number is no label either
            f"WHEN {ts} IS NULL OR {label} IS NULL "
            f"OR NOT coalesce(isfinite(TRY_CAST({label} AS DOUBLE)), true) THEN 'missing'",
            f"WHEN {ts} > {_instant(cutoff)} THEN 'too_recent'",
        ]
        if since is not None:
            why.append(f"WHEN {ts} < {_instant(since)} THEN 'before_lookback'")
        if source.label_timestamp_field is not None:
            known = f"CAST({quote(source.label_timestamp_field)} AS TIMESTAMPTZ)"
            why.append(f"WHEN {known} > {_instant(now)} THEN 'label_unknown'")
        flagged = f"SELECT *, CASE {' '.join(why)} ELSE 'kept' END AS __why FROM ({sql})"
        connection.execute(f"CREATE TEMP TABLE __labels AS {flagged}")
        counts = dict(
            connection.execute("SELECT __why, count(*) FROM __labels GROUP BY 1").fetchall()
        )
        kept = connection.sql(
            "SELECT * EXCLUDE (__why) FROM __labels WHERE __why = 'kept'"
        ).to_arrow_table()
    except duckdb.Error as error:
        # a value that does not convert stays so; a file being written may read next time
        kind = LabelValuesInvalid if isinstance(error, duckdb.DataError) else LabelSourceError
        raise kind(
            f"label source {label_io.describe(source)} cannot be read as declared: {error}; "
            f"check that '{source.timestamp_field}' (and label_timestamp_field) hold times"
        ) from None
    finally:
        connection.close()
    tally = LabelCounts(
        read=sum(int(n) for n in counts.values()),
        kept=int(counts.get("kept", 0)),
        too_recent=int(counts.get("too_recent", 0)),
        before_lookback=int(counts.get("before_lookback", 0)),
        label_unknown=int(counts.get("label_unknown", 0)),
        missing=int(counts.get("missing", 0)),
    )
    return kept, tally


def _instant(moment: datetime) -> str:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return f"TIMESTAMPTZ '{aware.astimezone(UTC).isoformat()}'"


# --- prepare: labels -> training set -> train -> checked model ---------------------------------


def prepare(
    store: FeatureStore,
    job: TrainingJob,
    record: JobRecord,
    now: datetime,
    *,
    log: logging.Logger,
    cancelled: Callable[[], bool] = lambda: False,
    stage: Callable[[str], None] = lambda _: None,
) -> Prepared:
    """Everything before registration (the part the runner times out and may cancel)."""
    train = bind_train_function(store, job)
    cutoff = now - job.label_delay
    since = None if job.lookback is None else cutoff - job.lookback
    stage("reading labels")
    table, counts = read_labels(store.repo_path, job.labels, now, cutoff, since)
    log.info(
        "labels as of %s (cutoff %s): %s", now.isoformat(), cutoff.isoformat(), counts.describe()
    )
    if counts.kept == 0:
        raise NotRetryable(
            f"no matured labelled rows: {counts.describe()}; wait until labels mature "
            f"(label_delay {job.label_delay}) or widen lookback"
        )
    stage("building the training set")
    dataset = _training_set(store, job, record, table)
    log.info(
        "training set '%s': %d rows, fingerprint %s",
        dataset.name,
        dataset.row_count,
        dataset.fingerprint,
    )
    features = service_features(store, job.feature_service)
    context = TrainingContext(
        job=job.name,
        job_id=record.id,
        attempt=record.attempt,
        model=job.model,
        feature_service=job.feature_service,
        now=now,
        cutoff=cutoff,
        since=since,
        dataset=dataset.name,
        dataset_path=dataset.path,
        label=job.labels.label,
        timestamp_field=job.labels.timestamp_field or "",
        features=features,
        log=log,
        cancelled=cancelled,
    )
    frame = _read_frame(dataset.path)
    stage("training")
    trained = _train(store, job, train, frame, context)
    inputs = check_inputs(trained, features, table.column_names, job)
    check_importance(trained.importance, job.train.name, inputs)
    return Prepared(job, trained, dataset, counts, inputs, _window(now, cutoff, since))


def _window(now: datetime, cutoff: datetime, since: datetime | None) -> dict[str, str | None]:
    iso = None if since is None else since.isoformat()
    return {"now": now.isoformat(), "cutoff": cutoff.isoformat(), "since": iso}


def _train(
    store: FeatureStore,
    job: TrainingJob,
    train: Callable[..., Any],
    frame: pd.DataFrame,
    context: TrainingContext,
) -> TrainedModel:
    """Call the train function; what it returned as a checked TrainedModel."""
    try:
        returned = train(frame, context)
    except Exception as error:
        raise TrainingFailed(
            f"train function '{job.train.name}' raised {type(error).__name__}: {error}"
        ) from error
    trained = as_trained(returned, job.train.name)
    check_importable(trained.model, store.repo_path)
    if trained.sample_input is None:
        trained = _with_default_sample(trained, frame, context.features)
    return trained


def _training_set(
    store: FeatureStore, job: TrainingJob, record: JobRecord, table: pa.Table
) -> DatasetRecord:
    name = f"{job.name}_{record.id}"
    out = store.repo_path / DATASET_DIR / f"{name}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        return store.datasets.create(
            name,
            table,
            job.feature_service,
            out,
            event_timestamp_column=job.labels.timestamp_field or "event_timestamp",
            author=f"job {record.id}",
        )
    except (RegistryUnavailable, BackendNotInstalled):
        raise
    except ParityError as error:  # the repo or its data must change first
        raise NotRetryable(
            f"training set '{name}' could not be built on feature service "
            f"'{job.feature_service}' (the label rows are its entity frame): "
            f"[{error.code}] {error.message}"
        ) from None


def _read_frame(path: str) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(path)


def service_features(store: FeatureStore, service: str) -> tuple[str, ...]:
    """The feature names the service gives a training set (its columns besides the labels')."""
    found = store.registry.catalog.feature_services.get(service)
    if found is None:
        raise NotRetryable(
            f"feature service '{service}' is not applied in project '{store.project}'; apply "
            "the repo first"
        )
    names: dict[str, None] = {}
    for projection in found.features:
        names.update(dict.fromkeys(projection.features))
    return tuple(names)


def _with_default_sample(
    trained: TrainedModel, frame: pd.DataFrame, features: tuple[str, ...]
) -> TrainedModel:
    from dataclasses import replace

    present = [name for name in features if name in frame.columns]
    return replace(trained, sample_input=frame[present].head(5))


# --- register ----------------------------------------------------------------------------------


def register(
    store: FeatureStore, prepared: Prepared, record: JobRecord, *, log: logging.Logger
) -> dict[str, Any]:
    """Register the new version (lineage, metrics, params with the importance, job tags, the
    job's alias), then start the job's rollout; the job's result. A rollout that cannot start
    does not undo the registration: its error is in the result and the logs."""
    job, trained = prepared.job, prepared.trained
    params = dict(trained.params)
    if trained.importance is not None:
        params["feature_importance"] = {k: float(v) for k, v in trained.importance.items()}
    try:
        version = _register_version(store, prepared, record, params)
    except pickle.PicklingError as error:
        raise NotRetryable(
            f"the model could not be saved ({error}): every object in it must be importable "
            "from an installed package, not from the repo's files"
        ) from None
    except (ParityError, OSError, SQLAlchemyError):
        raise  # typed, or the artifact store or database: classified by the runner
    except Exception as error:  # the model itself: pickling it, or predicting its sample
        raise NotRetryable(
            f"the model could not be saved, or failed on its own sample input "
            f"({type(error).__name__}: {error}); nothing was registered. It must pickle, and "
            "sample_input must hold exactly the columns it was fitted on (without one, only the "
            "feature service's features are used)"
        ) from None
    log.info("registered %s (alias '%s')", version.ref, job.alias)
    result: dict[str, Any] = {
        "model": job.model,
        "version": version.version,
        "alias": job.alias,
        "dataset": prepared.dataset.name,
        "rows": prepared.dataset.row_count,
        "labels": prepared.counts.__dict__,
        "labels_as_of": prepared.window,  # the training set's label window, to rebuild it
        "metrics": dict(version.metrics),
        "inputs": list(prepared.inputs),
        "reference_profile": reference_profile(store, version, prepared.dataset.name, log=log),
    }
    if job.rollout is not None:
        result.update(start_rollout(store, job, version.version, log=log))
    return result


def _register_version(
    store: FeatureStore, prepared: Prepared, record: JobRecord, params: dict[str, Any]
) -> ModelVersion:
    job, trained = prepared.job, prepared.trained
    return store.models.register_model(
        job.model,
        trained.model,
        flavor=trained.flavor,
        feature_service=job.feature_service,
        training_dataset=prepared.dataset.name,
        metrics=trained.metrics,
        params=params,
        tags={"job": job.name, "job_id": str(record.id)},
        description=trained.description,
        sample_input=trained.sample_input,
        alias=job.alias,
    )


def reference_profile(
    store: FeatureStore, version: ModelVersion, dataset: str, *, log: logging.Logger
) -> dict[str, str]:
    """What registering stored as the version's reference profile (drift compares serving with
    it): 'ok' or why not, by subject. A failure never undoes the registration; it is logged and
    recorded, and 'parity monitor profile --dataset NAME' computes it again."""
    from parity.monitoring.profile_store import FEATURES, model_subject

    try:
        stored = {profile.subject: profile for profile in store.monitoring.profiles(dataset)}
    except ParityError as error:
        stored, why = {}, f"[{error.code}] {error.message}"
    else:
        why = "not computed"
    mine = model_subject(version.name, version.version, "")
    subjects = [FEATURES, model_subject(version.name, version.version)]
    subjects += sorted(name for name in stored if name.startswith(mine) and name not in subjects)
    status: dict[str, str] = {}
    for subject in subjects:
        profile = stored.get(subject)
        status[subject] = why if profile is None else "ok" if profile.ok else profile.error
    for subject, state in status.items():
        if state != "ok":
            log.warning(
                "reference profile %s of dataset %s: %s; drift cannot compare it until "
                "'parity monitor profile --dataset %s' computes it",
                subject,
                dataset,
                state,
                dataset,
            )
    return status


def start_rollout(
    store: FeatureStore, job: TrainingJob, version: int, *, log: logging.Logger
) -> dict[str, Any]:
    """Start the job's applied rollout with the new version as its candidate."""
    rollout = store.registry.catalog.rollouts.get(job.rollout or "")
    if rollout is None:
        message = f"rollout '{job.rollout}' is not applied; the version was registered only"
        log.warning("%s", message)
        return {"rollout_error": message}
    try:
        state = store.rollouts.start(rollout.model_copy(update={"candidate": version}))
    except ParityError as error:
        log.warning("rollout '%s' did not start: %s", rollout.name, error)
        return {"rollout_error": f"[{error.code}] {error.message}"}
    log.info(
        "rollout %s started: version %d against champion %d", state.id, version, state.champion
    )
    return {"rollout": state.id}
