"""The job runner: fails stale running jobs (their runner is gone) and queues their retries, claims
due jobs up to the project's concurrency cap, and runs each with a heartbeat, a timeout, captured
logs and cancellation. Records take their times from an injected clock (simulated time may drive
it); liveness (heartbeats, staleness) and timeouts are real time. See docs/lifecycle.md.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import OperationalError

from parity.errors import (
    JobStateError,
    LabelSourceError,
    ModelRegistrationError,
    ParityError,
    RegistryUnavailable,
    TrainingFailed,
)
from parity.jobs import training
from parity.jobs.capture import JobLog, capturing
from parity.jobs.store import Finish, JobStore
from parity.jobs.trained import NotRetryable
from parity.timeutil import utcnow

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore
    from parity.jobs.state import JobRecord
    from parity.repo.config import JobsConfig

log = logging.getLogger(__name__)

# ParityErrors a retry may fix: a label file not written yet, the database briefly away.
_TRANSIENT = (LabelSourceError, RegistryUnavailable)
_POLL = 0.05  # real seconds between looks at a running fit (its end, a cancel, its deadline)


def runner_id() -> str:
    """A runner's identity: host, process and a random part (two runners of a process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class _Failure(Exception):
    """How an attempt failed: the message recorded, and whether the retry policy applies."""

    message: str
    retryable: bool
    result: dict[str, Any] | None = None


class Runner:
    """Runs one project's queued jobs; any number of runners (threads, processes, hosts) may
    share a project: claims are compare-and-swap and the cap is counted under a lock."""

    def __init__(
        self,
        store: FeatureStore,
        db: JobStore,
        config: JobsConfig,
        now: Callable[[], datetime],
        *,
        runner: str | None = None,
        slots: int | None = None,
        wall: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        # jobs this runner runs at once (threads); the project's cap bounds all runners together
        self.slots = min(slots or config.max_concurrent, config.max_concurrent)
        self.db = db
        self.config = config
        self.now = now  # the records' times (created, due, started, finished)
        self.wall = wall  # real time: heartbeats and staleness (a crash happens in real time)
        self.id = runner or runner_id()

    # --- passes ----------------------------------------------------------------------------------

    def sweep(self) -> list[JobRecord]:
        """Fail every running job whose heartbeat is older than `jobs.stale_after_seconds` and
        queue its retry when its policy allows; the failed records."""
        failed = []
        now = self.now()
        for job in self.db.stale(self.wall(), self.config.stale_after_seconds):
            seen = job.heartbeat_at.isoformat() if job.heartbeat_at else "never"
            message = (
                f"runner {job.runner} lost: no heartbeat since {seen} (jobs.stale_after_seconds "
                f"= {self.config.stale_after_seconds:g})"
            )
            try:
                # the lost runner's last saved lines, then why the job ended (a runner killed
                # before its first heartbeat saved nothing: the log would otherwise be empty)
                logs = f"{job.logs.rstrip()}\n{now.isoformat()} sweep: {message}".lstrip()
                retry = self.db.fail_and_retry(
                    job, lambda: now, message, _retry_delay(job), logs=logs, result=job.result
                )
            except JobStateError:
                continue  # it finished, or another runner failed it first
            log.warning("job %d failed: %s%s", job.id, message, _retry_note(retry))
            failed.append(self.db.get(job.id))
        return failed

    def warm(self) -> None:
        """Open what the job threads share (the registry's catalog, models, datasets), here in
        one thread: their first use from several threads at once is not safe."""
        self.store.registry.refresh()
        for part in ("models", "datasets", "monitoring", "rollouts"):
            getattr(self.store, part)

    def run_pending(
        self,
        max_jobs: int | None = None,
        stop: Callable[[], bool] | None = None,
        on_finish: Callable[[JobRecord], None] | None = None,
    ) -> list[JobRecord]:
        """Sweep, then run due queued jobs, at most `jobs.max_concurrent` at once across every
        runner of the project, until none is due (or `max_jobs` were claimed, or `stop()` is
        true: then the running ones finish and no other is taken); the records of the jobs this
        pass ran, as they ended (each also handed to `on_finish` then)."""
        self.warm()
        self.sweep()
        cap = self.config.max_concurrent
        finished: list[JobRecord] = []
        claimed = 0
        with ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="parity-job") as pool:
            running: set[Future[JobRecord]] = set()
            while True:
                record = None
                wanted = max_jobs is None or claimed < max_jobs
                if len(running) < self.slots and wanted and not (stop is not None and stop()):
                    record = self.db.claim(
                        self.id, self.now, cap, kinds=("training",), wall=self.wall
                    )
                if record is not None:
                    claimed += 1
                    running.add(pool.submit(self.execute, record))
                    continue
                if not running:
                    return finished
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    finished.append(future.result())
                    if on_finish is not None:
                        on_finish(finished[-1])

    def loop(
        self,
        until: Callable[[], bool] | None = None,
        on_finish: Callable[[JobRecord], None] | None = None,
    ) -> None:
        """`run_pending` every `jobs.poll_seconds` (real time) until `until()` is true. A pass
        that cannot reach the registry database is logged and tried again at the next poll: a
        database restart must not stop the project's runner. `on_finish` gets each job this
        runner ran, as it ends."""
        while until is None or not until():
            try:
                self.run_pending(stop=until, on_finish=on_finish)
            except (RegistryUnavailable, OperationalError) as error:  # the database is away
                log.warning(
                    "runner pass failed, trying again in %gs: %s", self.config.poll_seconds, error
                )
            if until is not None and until():
                return
            time.sleep(self.config.poll_seconds)

    # --- one job ---------------------------------------------------------------------------------

    def execute(self, record: JobRecord) -> JobRecord:
        """Run the claimed `record` to its end in this thread; its final record."""
        joblog = JobLog(record.id, record.name)
        joblog.note(f"attempt {record.attempt} of {record.max_attempts} on runner {self.id}")
        stop, cancelled = threading.Event(), threading.Event()
        beat = threading.Thread(
            target=self._heartbeat,
            args=(record, joblog, stop, cancelled),
            name=f"parity-job-{record.id}-heartbeat",
            daemon=True,
        )
        beat.start()
        try:
            with capturing(joblog):
                self._attempt(record, joblog, cancelled)
        except _Failure as failure:
            self._fail(record, joblog, failure)
        except Exception as error:  # anything unforeseen fails the job, never the runner
            self._fail(record, joblog, _classify(error, traceback.format_exc(), joblog))
        finally:
            stop.set()
            beat.join()
        return self.db.get(record.id)

    def _attempt(self, record: JobRecord, joblog: JobLog, cancelled: threading.Event) -> None:
        job = training.applied_job(self.store, record.name)
        timeout = timedelta(
            seconds=float(record.spec.get("timeout_seconds", job.timeout.total_seconds()))
        )
        now = self.now()
        box: dict[str, Any] = {}

        def fit() -> None:
            with capturing(joblog):
                try:
                    box["prepared"] = training.prepare(
                        self.store,
                        job,
                        record,
                        now,
                        log=joblog.logger,
                        cancelled=cancelled.is_set,
                        stage=lambda text: setattr(joblog, "stage", text),
                    )
                except BaseException as error:  # handed to the runner's thread
                    box["error"] = error
                    box["trace"] = traceback.format_exc()

        worker = threading.Thread(target=fit, name=f"parity-job-{record.id}-fit", daemon=True)
        worker.start()
        deadline = time.monotonic() + timeout.total_seconds()
        while worker.is_alive():
            worker.join(_POLL)
            if cancelled.is_set():
                joblog.note("cancelled: the fit is abandoned and nothing will be registered")
                return
            if worker.is_alive() and time.monotonic() > deadline:
                cancelled.set()  # context.cancelled() tells a cooperative fit to stop
                raise _Failure(
                    f"timed out after {timeout} (the job's timeout); the fit was abandoned and "
                    "nothing was registered",
                    False,
                )
        if "error" in box:
            raise _classify(box["error"], box.get("trace", ""), joblog)
        self._register(record, joblog, box["prepared"])

    def _register(self, record: JobRecord, joblog: JobLog, prepared: training.Prepared) -> None:
        joblog.stage = "registering"
        if not self.db.enter_registering(record.id, self.id, self.wall(), joblog.text()):
            joblog.note("cancelled before registration: nothing was registered")
            log.info("job %d was cancelled (or failed elsewhere) before registering", record.id)
            return
        try:
            result = training.register(self.store, prepared, record, log=joblog.logger)
        except ModelRegistrationError as error:
            raise _Failure(f"the model could not be registered: {error.message}", False) from None
        end = Finish("succeeded", None, result, joblog.text())
        if not self.db.finish(record.id, self.id, self.now, end):
            log.warning(
                "job %d registered %s/%s but its record had changed",
                record.id,
                result["model"],
                result["version"],
            )

    def _fail(self, record: JobRecord, joblog: JobLog, failure: _Failure) -> None:
        joblog.note(f"failed: {failure.message}")
        delay = _retry_delay(record) if failure.retryable else None
        try:
            retry = self.db.fail_and_retry(
                record,
                self.now,
                failure.message,
                delay,
                logs=joblog.text(),
                result=failure.result,
            )
        except JobStateError:
            log.info("job %d failed after it was cancelled or failed elsewhere", record.id)
            return
        log.warning("job %d failed: %s%s", record.id, failure.message, _retry_note(retry))

    def _heartbeat(
        self,
        record: JobRecord,
        joblog: JobLog,
        stop: threading.Event,
        cancelled: threading.Event,
    ) -> None:
        """Every `jobs.heartbeat_seconds`: say the job is alive and save its logs; when the
        record is no longer ours (cancelled, or failed as stale), set `cancelled`."""
        while not stop.wait(self.config.heartbeat_seconds):
            try:
                alive = self.db.heartbeat(
                    record.id, self.id, self.wall(), joblog.text(), joblog.stage
                )
            except Exception as error:  # the database is away or busy: the next beat tries again
                log.warning("job %d heartbeat failed: %s", record.id, error)
                continue
            if not alive:
                cancelled.set()
                return


def _classify(error: BaseException, trace: str, joblog: JobLog) -> _Failure:
    """Retried: the train function raised, a transient source or database error, anything
    unforeseen (its traceback goes to the logs). Final: every other ParityError (the repo or the
    data must change first)."""
    if isinstance(error, NotRetryable):
        return _Failure(_message(error), False)
    if isinstance(error, TrainingFailed):  # the train function raised: it may pass next time
        joblog.write(trace)
        return _Failure(_message(error), True)
    if isinstance(error, ParityError):
        return _Failure(_message(error), isinstance(error, _TRANSIENT))
    joblog.write(trace)
    return _Failure(_message(error), True)


def _message(error: BaseException) -> str:
    if isinstance(error, ParityError):
        return f"[{error.code}] {error.message}"
    return f"{type(error).__name__}: {error}"


def _retry_delay(job: JobRecord) -> timedelta:
    return timedelta(seconds=float(job.spec.get("retry_delay_seconds", 0.0)))


def _retry_note(retry: JobRecord | None) -> str:
    if retry is None:
        return "; no retry"
    return f"; retry queued as job {retry.id} (attempt {retry.attempt}) after {retry.not_before}"
