"""`Jobs` (`store.jobs`): the jobs layer's one entry point: submit, list, inspect and cancel
durable jobs, run them (a runner with a concurrency cap), training jobs, and batch predictions."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from parity.errors import BackendNotInstalled, InvalidOption, InvalidTime, JobNotFound
from parity.timeutil import utcnow

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore
    from parity.jobs.runner import Runner
    from parity.jobs.state import JobRecord, JobStatus
    from parity.jobs.store import JobStore


class Jobs:
    """Every method takes an optional `now` (the store's clock by default) so simulated time can
    drive it (the demo, the tests)."""

    def __init__(self, store: FeatureStore) -> None:
        self._store = store
        self._db: JobStore | None = None
        self._runner_id: str | None = None

    @property
    def db(self) -> JobStore:
        """The job table in the registry's database (created on first use)."""
        if self._db is None:
            from parity.jobs.store import JobStore

            engine = getattr(self._store.registry.store, "engine", None)
            if engine is None:
                raise BackendNotInstalled(
                    f"the registry store {type(self._store.registry.store).__name__} cannot keep "
                    "jobs; use the SQL registry (sqlite or postgres in parity.yaml)"
                )
            self._db = JobStore(engine, self._store.project)
        return self._db

    # --- records ----------------------------------------------------------------------------------

    def submit(
        self,
        name: str,
        *,
        reason: str = "manual",
        trigger_decision: int | None = None,
        now: datetime | None = None,
    ) -> JobRecord:
        """Queue a run of the applied training job `name`; the record (status `queued`).
        TrainingJobNotFound when no job of that name is applied."""
        from parity.jobs.store import NewJob
        from parity.jobs.training import applied_job

        _check_text(name, "name")
        _check_text(reason, "reason")
        if trigger_decision is not None and not _is_int(trigger_decision):
            raise InvalidOption(
                f"trigger_decision={trigger_decision!r}: give the decision's id (an integer) "
                "or None"
            )
        when = self._now(now)
        job = applied_job(self._store, name)
        spec = {
            "job": job.name,
            "feature_service": job.feature_service,
            "train": job.train.name,
            "code_hash": job.train.code_hash,
            "label_delay_seconds": job.label_delay.total_seconds(),
            "lookback_seconds": None if job.lookback is None else job.lookback.total_seconds(),
            "alias": job.alias,
            "rollout": job.rollout,
            "timeout_seconds": job.timeout.total_seconds(),
            "retry_delay_seconds": job.retry_delay.total_seconds(),
            "registry_version": self._store.registry.version,
        }
        new = NewJob(
            kind="training",
            name=job.name,
            model=job.model,
            reason=reason,
            max_attempts=job.max_attempts,
            spec=spec,
            trigger_decision=trigger_decision,
        )
        return self.db.insert(new, when)

    def get(self, job_id: int) -> JobRecord:
        """The record of job `job_id`; JobNotFound if the project has none."""
        return self.db.get(_job_id(job_id))

    def list(
        self,
        *,
        status: JobStatus | None = None,
        model: str | None = None,
        limit: int = 100,
    ) -> builtins.list[JobRecord]:
        """Newest first: at most `limit` (1 to 10,000) of them, in `status` and of `model` when
        given."""
        if status is not None and status not in _STATUSES:
            raise InvalidOption(f"status={status!r}: give one of {', '.join(_STATUSES)} or None")
        if not _is_int(limit) or not 1 <= limit <= 10_000:
            raise InvalidOption(f"limit={limit!r}: give a whole number from 1 to 10,000")
        statuses = None if status is None else (status,)
        return self.db.list(statuses=statuses, model=model, limit=limit)

    def active(self, model: str | None = None) -> builtins.list[JobRecord]:
        """Queued and running jobs (of `model`, or all): what the retrain caps count."""
        return self.db.list(statuses=("queued", "running"), model=model, limit=None)

    def cancel(self, job_id: int, *, now: datetime | None = None) -> JobRecord:
        """Cancel a queued job (it never runs) or a running one (marked cancelled at once; its
        runner abandons the fit at its next heartbeat and registers nothing). JobStateError for
        a finished job, or one already registering its version (docs/lifecycle.md)."""
        return self.db.cancel(_job_id(job_id), self._now(now), "cancelled")

    # --- running ----------------------------------------------------------------------------------

    def runner(
        self,
        *,
        now: Callable[[], datetime] | None = None,
        slots: int | None = None,
        wall: Callable[[], datetime] | None = None,
    ) -> Runner:
        """A runner of this project (this process's identity) on clock `now` (the records'
        times), running at most `slots` jobs at once itself (default and most:
        `jobs.max_concurrent`); `wall` (real time by default) times heartbeats and staleness."""
        from parity.jobs.runner import Runner, runner_id

        if self._runner_id is None:
            self._runner_id = runner_id()
        clock = self._checked_clock(now or self._store.now)
        config = self._store.config.jobs
        return Runner(
            self._store,
            self.db,
            config,
            clock,
            runner=self._runner_id,
            slots=slots,
            wall=wall or utcnow,
        )

    def run_pending(
        self,
        *,
        max_jobs: int | None = None,
        now: Callable[[], datetime] | None = None,
        slots: int | None = None,
    ) -> builtins.list[JobRecord]:
        """One runner pass: fail stale running jobs (their runner is gone) and schedule their
        retries, then run queued jobs, at most `jobs.max_concurrent` at once across every
        runner of the project (and `slots` in this one), until none is due; the records of
        the jobs it finished."""
        return self.runner(now=now, slots=slots).run_pending(max_jobs)

    def run_job(
        self,
        job_id: int,
        *,
        wait: bool = True,
        now: Callable[[], datetime] | None = None,
    ) -> JobRecord:
        """Run queued job `job_id` in this thread now (`parity jobs run NAME`). While the cap is
        full, wait for a slot (`wait`) or leave it queued for a runner; if another runner took
        it, wait for its end (`wait`). Its record after."""
        runner = self.runner(now=now)
        runner.warm()
        while True:
            runner.sweep()
            cap = self._store.config.jobs.max_concurrent
            record = self.db.claim(
                runner.id, runner.now, cap, only=_job_id(job_id), wall=runner.wall
            )
            if record is not None:
                return runner.execute(record)
            current = self.db.get(job_id)
            if not current.active or not wait:
                return current
            time.sleep(self._store.config.jobs.poll_seconds)  # a slot, or another runner's end

    def run(
        self,
        *,
        until: Callable[[], bool] | None = None,
        slots: int | None = None,
        on_finish: Callable[[JobRecord], None] | None = None,
    ) -> None:
        """The runner loop (`parity jobs run --loop`): `run_pending` every `jobs.poll_seconds`;
        `on_finish` gets each job it ran."""
        self.runner(slots=slots).loop(until, on_finish)

    def _checked_clock(self, clock: Callable[[], datetime]) -> Callable[[], datetime]:
        """`clock`, refusing what is not a timezone-aware datetime (as `now=` is refused), before
        it reaches a record or a label cutoff."""

        def checked() -> datetime:
            when = clock()
            if not isinstance(when, datetime) or when.tzinfo is None:
                raise InvalidTime(
                    f"the jobs clock gave {when!r}: give a clock returning timezone-aware "
                    "datetimes (UTC), e.g. now=lambda: datetime(2026, 6, 1, tzinfo=UTC)"
                )
            return when

        return checked

    def _now(self, now: datetime | None) -> datetime:
        when = self._store.now() if now is None else now
        if not isinstance(when, datetime) or when.tzinfo is None:
            raise InvalidTime(
                f"now={when!r}: give a timezone-aware datetime (UTC), e.g. "
                "datetime(2026, 6, 1, tzinfo=UTC)"
            )
        return when

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
            batch_size=DEFAULT_BATCH_ROWS if batch_size is None else batch_size,
        )


_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
_MAX_ID = 2**63 - 1


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_text(value: object, field: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidOption(f"{field}={value!r}: give non-empty text")


def _job_id(job_id: object) -> int:
    """A job id as the database can look it up: ids outside 1..2^63-1 name no job."""
    if not isinstance(job_id, int) or isinstance(job_id, bool):
        raise InvalidOption(f"job id {job_id!r}: give the job's number (see parity jobs list)")
    if not 1 <= job_id <= _MAX_ID:
        raise JobNotFound(f"there is no job {job_id}: job ids are 1 and up")
    return job_id
