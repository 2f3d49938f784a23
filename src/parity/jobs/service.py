"""`Jobs` (`store.jobs`): the jobs layer's one entry point: submit, list, inspect and cancel
durable jobs, run them (a runner with a concurrency cap), training jobs, and batch predictions."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore
    from parity.jobs.state import JobRecord, JobStatus


class Jobs:
    """Every method takes an optional `now` (the store's clock by default) so simulated time can
    drive it (the demo, the tests)."""

    def __init__(self, store: FeatureStore) -> None:
        self._store = store

    # --- records ----------------------------------------------------------------------------------

    def submit(
        self,
        name: str,
        *,
        reason: str = "manual",
        trigger_decision: int | None = None,
        now: datetime | None = None,
    ) -> JobRecord:
        """Queue a run of the applied training job `name`; the record (status `queued`)."""
        raise NotImplementedError

    def get(self, job_id: int) -> JobRecord:
        raise NotImplementedError

    def list(
        self,
        *,
        status: JobStatus | None = None,
        model: str | None = None,
        limit: int = 100,
    ) -> builtins.list[JobRecord]:
        """Newest first."""
        raise NotImplementedError

    def active(self, model: str | None = None) -> builtins.list[JobRecord]:
        """Queued and running jobs (of `model`, or all): what the retrain caps count."""
        raise NotImplementedError

    def cancel(self, job_id: int, *, now: datetime | None = None) -> JobRecord:
        raise NotImplementedError

    # --- running ----------------------------------------------------------------------------------

    def run_pending(
        self,
        *,
        max_jobs: int | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> builtins.list[JobRecord]:
        """One runner pass: fail stale running jobs (their runner is gone) and schedule their
        retries, then run queued jobs, at most `jobs.max_concurrent` at once across every
        runner of the project, until none is due; the records of the jobs it finished."""
        raise NotImplementedError

    def run(self, *, until: Callable[[], bool] | None = None) -> None:
        """The runner loop (`parity jobs run --loop`): `run_pending` every `jobs.poll_seconds`."""
        raise NotImplementedError

    # --- batch predictions ------------------------------------------------------------------------

    def predict_batch(
        self,
        model: str,
        entities: Any,
        *,
        out: str,
        as_of: datetime | str | None = None,
        to_online: str | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        batch_size: int | None = None,
    ) -> Any:
        """Score `entities` (a Parquet path, DuckDB SQL, a DataFrame or Arrow table) with model ref
        `model` on point-in-time features from the offline store; write Parquet to `out` with the
        model version and lineage; with `to_online`, also write the scores to the online store as
        that feature view. `as_of`: a datetime, ISO 8601 text or 'now'. Returns a
        BatchPredictionResult (jobs/batch_predict.py)."""
        from parity.jobs.batch_predict import DEFAULT_BATCH_ROWS, predict_batch

        return predict_batch(
            self._store,
            model,
            entities,
            out=out,
            as_of=as_of,
            to_online=to_online,
            progress=progress,
            batch_size=batch_size or DEFAULT_BATCH_ROWS,
        )
