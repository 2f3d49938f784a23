"""Durable job records in the registry database (SQLAlchemy Core; SQLite and PostgreSQL): insert,
read, and the compare-and-swap transitions a runner makes (claim under the project's concurrency
cap, heartbeat, finish, fail-and-retry, cancel). Loads and stores only: no training, no repo.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from parity.errors import JobNotFound, JobStateError
from parity.jobs.state import ACTIVE, JobKind, JobRecord, JobStatus
from parity.registry.sql import connect, create_tables
from parity.timeutil import from_sortable_text as _time
from parity.timeutil import sortable_text as _text

log = logging.getLogger(__name__)

_WHAT = "job store"
# A job's logs keep their last 64 KiB: enough for a fit's progress and its traceback, small
# enough that listing jobs never drags megabytes of text out of the registry database.
LOG_LIMIT = 64 * 1024
REGISTERING = "registering"  # the stage in which a cancel comes too late (docs/lifecycle.md)

metadata = sa.MetaData()
jobs_table = sa.Table(
    "parity_jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(255), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("model", sa.String(255)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("stage", sa.String(32)),  # what a running job is doing now (e.g. 'registering')
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("not_before", sa.String(40), nullable=False),
    sa.Column("started_at", sa.String(40)),
    sa.Column("finished_at", sa.String(40)),
    sa.Column("heartbeat_at", sa.String(40)),
    sa.Column("runner", sa.String(255)),
    sa.Column("error", sa.Text),
    sa.Column("spec", sa.Text, nullable=False),  # JSON
    sa.Column("result", sa.Text, nullable=False),  # JSON
    sa.Column("logs", sa.Text, nullable=False),
    sa.Column("trigger_decision", sa.Integer),
    sa.Column("retry_of", sa.Integer),
)


Clock = Callable[[], datetime]


@dataclass(frozen=True)
class _Now:
    """A time read inside the write transaction (so the order of times is the order of
    commits, which the concurrency cap is counted in)."""

    clock: Clock


@dataclass(frozen=True)
class NewJob:
    """What `insert` needs: the record's fields fixed at submission."""

    kind: JobKind
    name: str
    model: str | None
    reason: str
    max_attempts: int
    spec: dict[str, Any]
    trigger_decision: int | None = None
    attempt: int = 1
    retry_of: int | None = None


@dataclass(frozen=True)
class Finish:
    """How a running job ends: its status, error, result and logs."""

    status: JobStatus
    error: str | None
    result: dict[str, Any]
    logs: str


class JobStore:
    """The job records of one project, on the registry's SQLAlchemy engine."""

    def __init__(self, engine: Engine, project: str) -> None:
        self.engine = engine
        self.project = project
        create_tables(metadata, engine, _WHAT)

    def _connect(self, *, write: bool = False) -> Connection:
        return connect(self.engine, write=write, what=_WHAT)

    # --- reads -----------------------------------------------------------------------------------

    def get(self, job_id: int) -> JobRecord:
        query = sa.select(jobs_table).where(_mine(self.project), jobs_table.c.id == job_id)
        with self._connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise JobNotFound(
                f"project '{self.project}' has no job {job_id}; list them with parity jobs list"
            )
        return _record(row._mapping)

    def list(
        self,
        *,
        statuses: Sequence[JobStatus] | None = None,
        model: str | None = None,
        name: str | None = None,
        limit: int | None = 100,
    ) -> builtins.list[JobRecord]:
        """Newest first (by id: ids grow with submission)."""
        table = jobs_table
        query = sa.select(table).where(_mine(self.project))
        if statuses is not None:
            query = query.where(table.c.status.in_(list(statuses)))
        if model is not None:
            query = query.where(table.c.model == model)
        if name is not None:
            query = query.where(table.c.name == name)
        query = query.order_by(table.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._connect() as conn:
            rows = conn.execute(query).all()
        return [_record(row._mapping) for row in rows]

    # --- writes ----------------------------------------------------------------------------------

    def insert(self, new: NewJob, now: datetime, not_before: datetime | None = None) -> JobRecord:
        with self._connect(write=True) as conn, conn.begin():
            job_id = _insert(conn, self.project, new, now, not_before or now)
        return self.get(job_id)

    def claim(
        self,
        runner: str,
        clock: Clock,
        cap: int,
        *,
        kinds: Sequence[JobKind] | None = None,
        only: int | None = None,
        wall: Clock | None = None,
    ) -> JobRecord | None:
        """Take the oldest due queued job for `runner` (status running), unless `cap` jobs of the
        project are running already: counted and taken in one transaction that holds the
        project's write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so several
        runners together never exceed the cap. None when the cap is full or nothing is due.
        `only`: claim that job or none. The clocks are read under the lock, after the count, so a
        job's start is never before the end that freed its slot; `wall` (default `clock`) times
        the first heartbeat."""
        table = jobs_table
        with self._connect(write=True) as conn, conn.begin():
            _lock_project(conn, self.project)
            running = conn.execute(
                sa.select(sa.func.count())
                .select_from(table)
                .where(_mine(self.project), table.c.status == "running")
            ).scalar()
            if int(running or 0) >= cap:
                return None
            now = clock()
            query = sa.select(table.c.id).where(
                _mine(self.project),
                table.c.status == "queued",
                table.c.not_before <= _text(now),
            )
            if kinds is not None:
                query = query.where(table.c.kind.in_(list(kinds)))
            if only is not None:
                query = query.where(table.c.id == only)
            job_id = conn.execute(query.order_by(table.c.id).limit(1)).scalar()
            if job_id is None:
                return None
            taken = conn.execute(
                table.update()
                .where(_mine(self.project), table.c.id == job_id, table.c.status == "queued")
                .values(
                    status="running",
                    stage="starting",
                    runner=runner,
                    started_at=_text(now),
                    heartbeat_at=_text((wall or clock)()),
                )
            )
            if taken.rowcount != 1:  # cannot happen under the lock; never claim twice anyway
                return None
        log.info("runner %s claimed job %d", runner, job_id)
        return self.get(int(job_id))

    def heartbeat(
        self, job_id: int, runner: str, alive_at: datetime, logs: str, stage: str | None = None
    ) -> bool:
        """Say the job is alive (and save its logs so far); False when it is no longer running
        under `runner` (cancelled, or failed as stale by another runner)."""
        values: dict[str, Any] = {"heartbeat_at": _text(alive_at), "logs": bound_logs(logs)}
        if stage is not None:  # never moves a job back out of registering (cancel would pass)
            column = jobs_table.c.stage
            values["stage"] = sa.case((column == REGISTERING, column), else_=sa.literal(stage))
        return self._update_running(job_id, runner, values)

    def enter_registering(self, job_id: int, runner: str, alive_at: datetime, logs: str) -> bool:
        """Compare-and-swap into the registering stage, after which a cancel is refused; False
        when the job was cancelled (or failed as stale) first: then nothing may be registered."""
        values = {"stage": REGISTERING, "heartbeat_at": _text(alive_at), "logs": bound_logs(logs)}
        return self._update_running(job_id, runner, values)

    def finish(self, job_id: int, runner: str, clock: Clock, end: Finish) -> bool:
        """Write the job's end (`clock` read in the transaction) if it is still running under
        `runner`; False otherwise."""
        values = {
            "status": end.status,
            "stage": None,
            "finished_at": _Now(clock),
            "error": end.error,
            "result": json.dumps(end.result, default=str),
            "logs": bound_logs(end.logs),
        }
        return self._update_running(job_id, runner, values)

    def _update_running(self, job_id: int, runner: str, values: dict[str, Any]) -> bool:
        table = jobs_table
        with self._connect(write=True) as conn, conn.begin():
            values = {k: _text(v.clock()) if isinstance(v, _Now) else v for k, v in values.items()}
            done = conn.execute(
                table.update()
                .where(
                    _mine(self.project),
                    table.c.id == job_id,
                    table.c.status == "running",
                    table.c.runner == runner,
                )
                .values(**values)
            )
        return done.rowcount == 1

    def fail_and_retry(
        self,
        job: JobRecord,
        clock: Clock,
        error: str,
        retry_delay: timedelta | None,
        *,
        logs: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> JobRecord | None:
        """Mark the running `job` failed (compare-and-swap on status and runner) and, with a
        `retry_delay` and attempts left, queue its retry in the same transaction (attempt + 1,
        `retry_of`, due after the delay). Returns the retry's record, None without one; raises
        JobStateError when the job is no longer running as read."""
        table = jobs_table
        retry_id: int | None = None
        values: dict[str, Any] = {
            "status": "failed",
            "stage": None,
            "error": error,
            "result": json.dumps(result or {}, default=str),
        }
        if logs is not None:
            values["logs"] = bound_logs(logs)
        with self._connect(write=True) as conn, conn.begin():
            now = clock()
            values["finished_at"] = _text(now)
            done = conn.execute(
                table.update()
                .where(
                    _mine(self.project),
                    table.c.id == job.id,
                    table.c.status == "running",
                    table.c.runner == job.runner,
                )
                .values(**values)
            )
            if done.rowcount != 1:
                raise JobStateError(f"job {job.id} is no longer running under {job.runner}")
            if retry_delay is not None and job.attempt < job.max_attempts:
                retry = retry_of(job)
                retry_id = _insert(conn, self.project, retry, now, now + retry_delay)
                conn.execute(
                    table.update()
                    .where(table.c.id == job.id)
                    .values(result=json.dumps({**(result or {}), "retry": retry_id}, default=str))
                )
        return None if retry_id is None else self.get(retry_id)

    def stale(self, wall: datetime, after_seconds: float) -> builtins.list[JobRecord]:
        """Running jobs whose last heartbeat is older than `after_seconds` before `wall` (real
        time, like the heartbeats)."""
        table = jobs_table
        limit = _text(wall - timedelta(seconds=after_seconds))
        query = (
            sa.select(table)
            .where(_mine(self.project), table.c.status == "running", table.c.heartbeat_at < limit)
            .order_by(table.c.id)
        )
        with self._connect() as conn:
            rows = conn.execute(query).all()
        return [_record(row._mapping) for row in rows]

    def cancel(self, job_id: int, now: datetime, reason: str) -> JobRecord:
        """A queued or running job becomes cancelled at once (compare-and-swap on its status);
        JobStateError for a finished one, or a running one already registering its result."""
        table = jobs_table
        for _ in range(5):
            current = self.get(job_id)
            if current.status not in ACTIVE:
                raise JobStateError(
                    f"job {job_id} is {current.status}: only queued and running jobs can be "
                    "cancelled"
                )
            if current.status == "running" and current.stage == REGISTERING:
                raise JobStateError(
                    f"job {job_id} is registering its model version: too late to cancel. When "
                    "it ends, move the alias back or abort the rollout it started"
                )
            with self._connect(write=True) as conn, conn.begin():
                done = conn.execute(
                    table.update()
                    .where(
                        _mine(self.project),
                        table.c.id == job_id,
                        table.c.status == current.status,
                        sa.or_(table.c.stage.is_(None), table.c.stage != REGISTERING),
                    )
                    .values(status="cancelled", stage=None, finished_at=_text(now), error=reason)
                )
            if done.rowcount == 1:
                return self.get(job_id)
        raise JobStateError(f"job {job_id} kept changing while being cancelled; try again")


def retry_of(job: JobRecord) -> NewJob:
    return NewJob(
        kind=job.kind,
        name=job.name,
        model=job.model,
        reason=job.reason,
        max_attempts=job.max_attempts,
        spec=job.spec,
        trigger_decision=job.trigger_decision,
        attempt=job.attempt + 1,
        retry_of=job.id,
    )


def bound_logs(text: str) -> str:
    """The last LOG_LIMIT bytes of `text` (UTF-8), cut at a line start when one is near."""
    data = text.encode("utf-8")
    if len(data) <= LOG_LIMIT:
        return text
    tail = data[-LOG_LIMIT:].decode("utf-8", errors="ignore")
    newline = tail.find("\n")
    if 0 <= newline < 1024:
        tail = tail[newline + 1 :]
    return "[... earlier lines dropped: logs keep the last 64 KiB]\n" + tail


# --- rows <-> values ---------------------------------------------------------------------------


def _mine(project: str) -> sa.ColumnElement[bool]:
    return jobs_table.c.project == project


def _lock_project(conn: Connection, project: str) -> None:
    """PostgreSQL: the project's advisory lock until the transaction ends (SQLite's BEGIN
    IMMEDIATE already holds the database's write lock)."""
    if conn.dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"parity_jobs:{project}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _insert(
    conn: Connection, project: str, new: NewJob, now: datetime, not_before: datetime
) -> int:
    result = conn.execute(
        jobs_table.insert().values(
            project=project,
            kind=new.kind,
            name=new.name,
            model=new.model,
            status="queued",
            reason=new.reason,
            attempt=new.attempt,
            max_attempts=new.max_attempts,
            created_at=_text(now),
            not_before=_text(not_before),
            spec=json.dumps(new.spec, default=str),
            result="{}",
            logs="",
            trigger_decision=new.trigger_decision,
            retry_of=new.retry_of,
        )
    )
    key = result.inserted_primary_key
    if key is None:  # every backend we support returns it
        raise JobStateError("the database did not return the new job's id")
    return int(key[0])


def _record(row: Any) -> JobRecord:
    return JobRecord(
        id=int(row["id"]),
        project=row["project"],
        kind=cast(JobKind, row["kind"]),
        name=row["name"],
        model=row["model"],
        status=cast(JobStatus, row["status"]),
        reason=row["reason"],
        attempt=int(row["attempt"]),
        max_attempts=int(row["max_attempts"]),
        created_at=_time(row["created_at"]),
        not_before=_time(row["not_before"]),
        started_at=_maybe(row["started_at"]),
        finished_at=_maybe(row["finished_at"]),
        heartbeat_at=_maybe(row["heartbeat_at"]),
        runner=row["runner"],
        stage=row["stage"],
        error=row["error"],
        spec=json.loads(row["spec"]),
        result=json.loads(row["result"]),
        logs=row["logs"],
        trigger_decision=row["trigger_decision"],
        retry_of=row["retry_of"],
    )


def _maybe(text: str | None) -> datetime | None:
    return None if text is None else _time(text)
