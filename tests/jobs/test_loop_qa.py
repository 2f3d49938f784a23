"""Integration QA of the closed loop (issue 15): defects found running it as a user does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from parity import FeatureStore


def test_a_job_failed_stale_says_why_in_its_logs(tiny_repo: Path) -> None:
    """A `parity jobs run --loop` SIGKILLed before the job's first heartbeat left the failed
    job's `parity jobs status ID --logs` at '(none)': the sweep now appends why it failed."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    with FeatureStore(tiny_repo, clock=lambda: start) as store:
        job = store.jobs.submit("hang_job")
        ghost = store.jobs.runner(now=lambda: start, wall=lambda: start)
        claimed = ghost.db.claim("ghost-runner", lambda: start, 2)  # a runner that then dies
        assert claimed is not None and claimed.id == job.id and claimed.logs == ""
        later = start + timedelta(minutes=5)
        [failed] = store.jobs.runner(now=lambda: later, wall=lambda: later).sweep()
        assert failed.status == "failed" and failed.error is not None
        assert "runner ghost-runner lost: no heartbeat since" in failed.logs
        assert failed.logs.strip().endswith(failed.error)
        assert store.jobs.get(job.id).logs == failed.logs
