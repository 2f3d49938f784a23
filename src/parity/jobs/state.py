"""Job records as values: what the registry database keeps for one job (pure, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

JobKind = Literal["training", "batch_prediction"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ACTIVE: tuple[JobStatus, ...] = ("queued", "running")
FINISHED: tuple[JobStatus, ...] = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class JobRecord:
    """One job: `name` is the training job's name (or the batch prediction's model ref), `model`
    the registered model it concerns; `spec` what it was asked to do (JSON), `result` what it
    produced (e.g. the registered version), `reason` why it was submitted ("manual", "drift",
    "schedule", ... with the trigger decision's id when a trigger submitted it)."""

    id: int
    project: str
    kind: JobKind
    name: str
    model: str | None
    status: JobStatus
    reason: str
    attempt: int
    max_attempts: int
    created_at: datetime
    not_before: datetime  # a retry waits for its delay
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    runner: str | None = None
    stage: str | None = None  # what a running job does now ('training', 'registering', ...)
    error: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    logs: str = ""
    trigger_decision: int | None = None
    retry_of: int | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def seconds(self) -> float | None:
        """How long it ran (started to finished), None before it finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()
