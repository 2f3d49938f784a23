"""The runner across real processes: several runners share a cap of 2 (never more than 2 jobs
running at once, none lost), and a SIGKILLed runner's job stays running until it is stale, then
fails and is retried per its policy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from parity import FeatureStore
from parity.jobs.state import JobRecord

ROOT = Path(__file__).resolve().parents[2]


def start_runner(
    repo: Path, mode: str, sleep: float = 1.0, go: Path | None = None
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PARITY_TEST_SLEEP": str(sleep), "PYTHONPATH": str(ROOT)}
    if go is not None:
        env["PARITY_TEST_GO"] = str(go)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.jobs.runner_proc", str(repo), mode],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finish(procs: list[subprocess.Popen[bytes]], timeout: float = 90.0) -> list[str]:
    """Each runner's output once it exits; a runner still going after `timeout` is killed (the
    test fails, and leaves no process behind)."""
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=timeout)[0].decode())
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
                other.communicate()
            raise
    return outputs


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of [start, end) spans holding one instant (an oracle by sweep)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = current = 0
    for _, step in events:  # ends sort before starts at the same instant: touching is not overlap
        current += step
        best = max(best, current)
    return best


def span(record: JobRecord) -> tuple[float, float]:
    assert record.started_at is not None and record.finished_at is not None
    return record.started_at.timestamp(), record.finished_at.timestamp()


def test_three_runner_processes_never_run_more_than_the_cap(tiny_repo: Path) -> None:
    with FeatureStore(tiny_repo) as store:
        submitted = [store.jobs.submit("slow_job").id for _ in range(6)]
        go = tiny_repo / "go"
        runners = [start_runner(tiny_repo, "loop", sleep=1.0, go=go) for _ in range(3)]
        deadline = time.monotonic() + 60
        while len(list(tiny_repo.glob("go.*"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        go.touch()  # all three start together: they compete for the two slots
        outputs = finish(runners)
        assert [proc.returncode for proc in runners] == [0, 0, 0], outputs
        records = [store.jobs.get(job_id) for job_id in submitted]
        assert [r.status for r in records] == ["succeeded"] * 6, [r.error for r in records]
        assert len({r.result["version"] for r in records}) == 6  # six versions, none lost
        assert sorted(v.version for v in store.models.versions("m")) == [1, 2, 3, 4, 5, 6]
        assert most_at_once([span(r) for r in records]) == 2  # the cap held, and was used
        fits = [(r.result["metrics"]["started"], r.result["metrics"]["ended"]) for r in records]
        assert most_at_once(fits) <= 2
        assert len({r.runner for r in records}) >= 2  # the work was shared
        assert store.jobs.active() == []


def wait_running(store: FeatureStore, job_ids: list[int], limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        records = [store.jobs.get(i) for i in job_ids]
        if all(r.status == "running" and r.stage == "training" for r in records):
            return
        time.sleep(0.05)
    raise AssertionError(f"jobs did not start: {records}")


def test_a_killed_runner_leaves_its_job_running_until_stale_then_failed_and_retried(
    tiny_repo: Path,
) -> None:
    with FeatureStore(tiny_repo) as store:
        retried = store.jobs.submit("hang_job")  # max_attempts 2
        final = store.jobs.submit("hang_once_job")  # max_attempts 1
        proc = start_runner(tiny_repo, "once")
        try:
            wait_running(store, [retried.id, final.id])
        except AssertionError:
            proc.kill()
            raise AssertionError(finish([proc], 30)) from None
        time.sleep(0.3)  # a few heartbeats
        proc.send_signal(signal.SIGKILL)
        finish([proc], 30)
        assert proc.returncode == -signal.SIGKILL
        lost = store.jobs.get(retried.id)
        assert lost.status == "running" and lost.heartbeat_at is not None
        beat = max(lost.heartbeat_at, store.jobs.get(final.id).heartbeat_at or lost.heartbeat_at)
        assert "hanging" in lost.logs  # logs were saved with the heartbeats
        # Not yet stale (1 s): a sweep leaves both running and claims nothing (no queued job).
        fresh = store.jobs.runner(wall=lambda: beat + timedelta(seconds=0.5))
        assert fresh.sweep() == []
        assert store.jobs.get(retried.id).status == "running"
        later = beat + timedelta(seconds=1.5)
        failed = store.jobs.runner(now=lambda: later, wall=lambda: later).sweep()
        assert sorted(r.id for r in failed) == [retried.id, final.id]
        for record in failed:
            assert record.status == "failed" and "lost: no heartbeat since" in (record.error or "")
            assert record.finished_at == later
        queued = store.jobs.list(status="queued")
        [retry] = queued
        assert retry.retry_of == retried.id and retry.attempt == 2 and retry.name == "hang_job"
        assert retry.not_before == later + timedelta(hours=1)  # the job's retry_delay
        assert store.jobs.get(retried.id).result["retry"] == retry.id
        assert "retry" not in store.jobs.get(final.id).result  # max_attempts=1: stays failed
        assert store.models.models() == []


def test_a_retry_runs_when_due_and_is_not_retried_past_max_attempts(tiny_repo: Path) -> None:
    now = [datetime.fromisoformat("2026-03-01T00:00:00+00:00")]
    with FeatureStore(tiny_repo, clock=lambda: now[0]) as store:
        first = store.jobs.submit("raises_job")
        [done] = store.jobs.run_pending(now=lambda: now[0])
        retry_id = done.result["retry"]
        assert store.jobs.run_pending(now=lambda: now[0]) == []  # not due for an hour
        now[0] += timedelta(hours=1)
        [second] = store.jobs.run_pending(now=lambda: now[0])
        assert second.id == retry_id and second.retry_of == first.id
        assert second.status == "failed" and second.attempt == 2
        assert "retry" not in second.result
        assert store.jobs.active() == []


def test_another_runner_recovers_a_killed_runners_job_in_real_time(tiny_repo: Path) -> None:
    with FeatureStore(tiny_repo) as store:
        job = store.jobs.submit("flaky_job")  # retry_delay 0: the retry is due at once
        first = start_runner(tiny_repo, "once")
        try:
            wait_running(store, [job.id])
        except AssertionError:
            first.kill()
            raise AssertionError(finish([first], 30)) from None
        first.send_signal(signal.SIGKILL)
        finish([first], 30)
        second = start_runner(tiny_repo, "loop")  # loops while a job runs or is due
        output = finish([second], 90)[0]
        assert second.returncode == 0, output
        lost = store.jobs.get(job.id)
        assert lost.status == "failed" and "lost: no heartbeat" in (lost.error or "")
        assert lost.finished_at is not None and lost.heartbeat_at is not None
        # failed only once its heartbeat was older than jobs.stale_after_seconds (1 s)
        assert lost.finished_at - lost.heartbeat_at >= timedelta(seconds=1)
        retry = store.jobs.get(lost.result["retry"])
        assert retry.status == "succeeded" and retry.attempt == 2 and retry.retry_of == job.id
        assert retry.runner != lost.runner
        assert [v.version for v in store.models.versions("m")] == [1]  # exactly one version
        assert store.models.get_version("m", 1).tags["job_id"] == str(retry.id)
