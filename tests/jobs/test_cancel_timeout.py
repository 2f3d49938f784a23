"""Cancelling jobs (queued: never runs; running: abandoned, nothing registered; finished or
registering: refused) and the job timeout."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from parity.errors import JobStateError
from parity.jobs.state import JobRecord
from tests.jobs.support import NOW, open_store


def test_a_cancelled_queued_job_never_runs(tiny_repo: Path) -> None:
    with open_store(tiny_repo) as store:
        job = store.jobs.submit("ok_job")
        cancelled = store.jobs.cancel(job.id)
        assert cancelled.status == "cancelled" and cancelled.finished_at == NOW
        assert cancelled.started_at is None
        assert store.jobs.run_pending(now=lambda: NOW) == []
        assert store.jobs.get(job.id).status == "cancelled"
        assert store.models.models() == []
        with pytest.raises(JobStateError, match="is cancelled: only queued and running"):
            store.jobs.cancel(job.id)


def test_a_cancelled_running_job_is_abandoned_and_registers_nothing(tiny_repo: Path) -> None:
    with open_store(tiny_repo) as store:
        job = store.jobs.submit("hang_job")
        ended: list[JobRecord] = []
        runner = threading.Thread(
            target=lambda: ended.extend(store.jobs.run_pending(now=lambda: NOW))
        )
        runner.start()
        deadline = time.monotonic() + 30
        while store.jobs.get(job.id).stage != "training" and time.monotonic() < deadline:
            time.sleep(0.02)
        cancelled = store.jobs.cancel(job.id)
        assert cancelled.status == "cancelled" and cancelled.error == "cancelled"
        runner.join(timeout=30)
        assert not runner.is_alive()
        [record] = ended
        assert record.id == job.id and record.status == "cancelled"
        assert store.models.models() == []  # nothing registered
        assert store.jobs.list(status="queued") == []  # a cancel is not retried
        with pytest.raises(JobStateError):
            store.jobs.cancel(job.id)


def test_a_cancel_is_refused_once_the_job_registers(tiny_repo: Path) -> None:
    with open_store(tiny_repo) as store:
        job = store.jobs.submit("ok_job")
        db = store.jobs.db
        claimed = db.claim("runner-a", lambda: NOW, 2)
        assert claimed is not None and claimed.id == job.id
        assert db.enter_registering(job.id, "runner-a", NOW, "")
        assert not db.heartbeat(job.id, "runner-b", NOW, "", "training")  # not its runner
        assert db.heartbeat(job.id, "runner-a", NOW, "", "training")
        assert store.jobs.get(job.id).stage == "registering"  # a heartbeat never moves it back
        with pytest.raises(JobStateError, match="too late to cancel"):
            store.jobs.cancel(job.id)
        assert store.jobs.get(job.id).status == "running"


def test_a_job_past_its_timeout_fails_and_is_not_retried(tiny_repo: Path) -> None:
    with open_store(tiny_repo) as store:
        store.jobs.submit("timeout_job")
        started = time.monotonic()
        [done] = store.jobs.run_pending(now=lambda: NOW)
        assert time.monotonic() - started < 20
        assert done.status == "failed"
        assert "timed out after 0:00:00.500000" in (done.error or "")
        assert store.models.models() == [] and store.jobs.active() == []
