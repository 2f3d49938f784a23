"""Job logs: each of two jobs running at once in one runner keeps its own prints and records,
and a log keeps its last 64 KiB."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from parity.jobs.capture import JobLog, capturing
from parity.jobs.store import LOG_LIMIT, bound_logs
from tests.jobs.support import NOW, open_store


def test_two_jobs_at_once_keep_their_own_logs(
    tiny_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARITY_TEST_SLEEP", "0.5")
    with open_store(tiny_repo) as store:
        fast = store.jobs.submit("ok_job")
        slow = store.jobs.submit("slow_job")
        done = {r.id: r for r in store.jobs.run_pending(now=lambda: NOW)}
        assert {r.status for r in done.values()} == {"succeeded"}
        fast_log, slow_log = done[fast.id].logs, done[slow.id].logs
        assert "printed:" in fast_log and "fitted on" in fast_log
        assert f"slow job {slow.id} sleeping" in slow_log
        assert (
            "slow job" not in fast_log and "printed:" not in slow_log and "fitted" not in slow_log
        )
        assert done[fast.id].runner == done[slow.id].runner  # one runner, two threads
        assert {done[fast.id].result["version"], done[slow.id].result["version"]} == {1, 2}


def test_capture_ends_with_the_block_and_leaves_other_threads_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    joblog = JobLog(1, "capture_test")
    other: list[str] = []

    def elsewhere() -> None:
        print("from another thread")
        other.append("done")

    with capturing(joblog):
        print("inside")
        joblog.logger.info("a record %d", 7)
        logging.getLogger("parity.test").warning("a warning")
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    print("after")
    text = joblog.text()
    assert "inside\n" in text and "INFO parity.jobs.run.capture_test: a record 7" in text
    assert "WARNING parity.test: a warning" in text
    assert "from another thread" not in text and "after" not in text
    out = capsys.readouterr().out
    assert "from another thread" in out and "after" in out and "inside" not in out


def test_a_log_keeps_its_last_64_kib() -> None:
    lines = [f"line {i:06d} é\n" for i in range(20_000)]
    text = "".join(lines)
    kept = bound_logs(text)
    body = kept.split("\n", 1)[1]
    assert kept.startswith("[... earlier lines dropped")
    assert len(body.encode()) <= LOG_LIMIT
    assert body.endswith(lines[-1]) and body.startswith("line ")  # cut at a line start
    assert text.endswith(body)
    assert bound_logs("short\n") == "short\n"
    joblog = JobLog(2, "chatty")
    for line in lines:
        joblog.write(line)
    assert joblog.text() == kept
