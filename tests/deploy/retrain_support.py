"""Shared pieces of the retrain trigger tests: an in-memory job queue honouring `store.jobs`'
contract (submit / active / list, with a runner step that starts at most `cap` jobs and finishes
them after a duration), scripted signals, and an engine on a real SQLite trigger store."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from parity.definitions.retrain import RetrainPolicy
from parity.deploy.retrain import TriggerEngine
from parity.deploy.retrain_decide import Observation
from parity.deploy.retrain_store import TriggerStore
from parity.jobs.state import ACTIVE, JobRecord, JobStatus
from parity.registry.sql import create_registry_engine, sqlite_url

T0 = datetime(2026, 6, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def policy(model: str = "fraud", **changes: Any) -> RetrainPolicy:
    fields: dict[str, Any] = {"name": f"{model}_retrain", "model": model, "job": f"{model}_job"}
    fields.update(changes)
    return RetrainPolicy(**fields)


@dataclass
class FakeQueue:
    """Jobs in memory, with the contract of parity.jobs.service.Jobs: submit queues, active is
    queued + running, list is newest first. `step(now)` is a runner pass: finish running jobs
    that are due, then start queued ones up to `cap` running."""

    cap: int = 2
    duration: timedelta = HOUR
    models: dict[str, str] = field(default_factory=dict)  # job name -> model
    jobs: list[JobRecord] = field(default_factory=list)
    max_running: int = 0
    max_active: int = 0
    on_finish: Callable[[JobRecord], object] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(
        self,
        name: str,
        *,
        reason: str = "manual",
        trigger_decision: int | None = None,
        now: datetime | None = None,
    ) -> JobRecord:
        with self.lock:
            at = now or T0
            model = self.models.get(name, name.removesuffix("_job"))
            record = JobRecord(
                id=len(self.jobs) + 1,
                project="p",
                kind="training",
                name=name,
                model=model,
                status="queued",
                reason=reason,
                attempt=1,
                max_attempts=1,
                created_at=at,
                not_before=at,
                trigger_decision=trigger_decision,
            )
            self.jobs.append(record)
            self.max_active = max(self.max_active, len(self._active(None)))
            return record

    def _active(self, model: str | None) -> list[JobRecord]:
        return [j for j in self.jobs if j.status in ACTIVE and model in (None, j.model)]

    def active(self, model: str | None = None) -> list[JobRecord]:
        with self.lock:
            return self._active(model)

    def list(
        self, *, status: JobStatus | None = None, model: str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        with self.lock:
            found = [
                j for j in self.jobs if model in (None, j.model) and status in (None, j.status)
            ]
            return found[::-1][:limit]

    def step(self, now: datetime) -> None:
        finished = []
        with self.lock:
            for index, job in enumerate(self.jobs):
                due = job.started_at is not None and now >= job.started_at + self.duration
                if job.status == "running" and due:
                    self.jobs[index] = replace(job, status="succeeded", finished_at=now)
                    finished.append(self.jobs[index])
            running = sum(j.status == "running" for j in self.jobs)
            for index, job in enumerate(self.jobs):
                if job.status == "queued" and running < self.cap:
                    self.jobs[index] = replace(job, status="running", started_at=now)
                    running += 1
            self.max_running = max(self.max_running, running)
        for job in finished:
            if self.on_finish is not None:
                self.on_finish(job)

    def fired_models(self) -> builtins.list[str]:
        return [str(j.model) for j in self.jobs]


@dataclass
class Scripted:
    """Signals decided by the test: `drift(model, now)` / `performance(model, now)` give the
    value (None: insufficient data); the evidence time is `now` (one window per evaluation)."""

    drift_value: Callable[[str, datetime], float | None] = lambda model, now: None
    performance_value: Callable[[str, datetime], float | None] = lambda model, now: None
    newest: Callable[[str], datetime | None] = lambda model: None
    errors: dict[str, Exception] = field(default_factory=dict)
    rollouts: dict[str, str] = field(default_factory=dict)

    def drift(self, policy: RetrainPolicy, now: datetime) -> Observation:
        if policy.model in self.errors:
            raise self.errors[policy.model]
        value = self.drift_value(policy.model, now)
        return Observation(value, now if value is not None else None)

    def performance(self, policy: RetrainPolicy, now: datetime) -> Observation:
        value = self.performance_value(policy.model, now)
        return Observation(value, now if value is not None else None)

    def newest_version_at(self, model: str) -> datetime | None:
        return self.newest(model)

    def rollout(self, model: str) -> str | None:
        return self.rollouts.get(model)


def sqlite_store(path: Path, project: str = "p") -> TriggerStore:
    return TriggerStore(create_registry_engine(sqlite_url(path)), project)


def engine(
    store: TriggerStore, queue: FakeQueue, signals: Scripted, *, cap: int = 2
) -> TriggerEngine:
    return TriggerEngine(store=store, queue=queue, signals=signals, overall_cap=cap)
