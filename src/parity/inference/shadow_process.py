"""Shadow predictions in a process of their own: the serving process only queues a small picklable
`ShadowTask` (sent in lists every FLUSH_S; beyond `size` pending: dropped and counted), and a
child process (`shadow_worker`) predicts, times and logs it, so mirrored work takes neither the
champion's CPU nor its GIL. Owns the child's lifecycle (lazy start, restart when it dies or is
stuck, stop) and the counts it sends back. Must not import HTTP code, deploy, or the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from parity.inference.shadow import ShadowCounters

if TYPE_CHECKING:
    from multiprocessing.context import SpawnProcess
    from multiprocessing.queues import Queue

    import numpy as np

logger = logging.getLogger(__name__)

RESTART_PAUSE_S = 1.0  # a child that died young waits this long before its restart, doubled
MAX_RESTART_PAUSE_S = 60.0  # each time it dies young again, up to this
YOUNG_S = 30.0  # a child that lived longer restarts at once
WATCH_S = 0.2  # how often the parent's reader checks that the child is alive
FLUSH_S = 0.02  # tasks submitted within this long go to the child together


class ProcessCounters(ShadowCounters, Protocol):
    """The queue's counters, and the tasks a dead child took with it (ModelMetrics)."""

    def shadow_lost(self, count: int) -> None: ...


@dataclass(frozen=True, slots=True)
class ShadowTask:
    """One mirrored request for one shadow version, as sent to the child. `values` are the
    champion's feature values (read from `service` in `read_seconds`) when the shadow may reuse
    them, else None (the child reads its own); `tensors` instead of entities for a `/v2` request."""

    model: str
    version: int
    request_id: str
    at: datetime
    alias: str | None
    columns: Mapping[str, Sequence[Any]] | None = None  # the request's entity columns
    given: Mapping[str, Sequence[Any]] | None = None  # the champion read's echoed entity columns
    values: Mapping[str, Sequence[Any]] | None = None
    service: str | None = None
    read_seconds: float = 0.0
    tensors: Mapping[str, np.ndarray[Any, Any]] | None = None
    role: str = "shadow"


@dataclass(frozen=True)
class ShadowSettings:
    """What the child needs to open the same repo: its path, the prediction log's folder (None:
    no log), the log's flush period, the time limit, the store clock's offset from the wall
    clock (so a repo served on a shifted clock reads the same features in the child), how much
    lower the child's CPU priority is than the server's, and how long a child holding tasks may
    report nothing before it is taken for stuck (a model call that never returns) and killed."""

    repo: Path
    log_dir: Path | None
    flush_seconds: float = 0.2
    timeout_s: float = 1.0
    clock_offset_s: float = 0.0
    max_batch_jobs: int = 256
    nice: int = 10  # added to the child's niceness: the OS gives live requests the CPU first
    stuck_s: float = 60.0  # a child holding tasks that reports nothing this long is killed
    cycle_s: float = 0.05  # the child takes a batch at most this often: fewer, bigger batches


def lower_priority_of(pid: int | None, nice: int) -> None:
    """Put a just-spawned child in Linux's idle scheduling class from the parent, before it
    imports anything: a spawned interpreter's start-up (imports, opening the store) is CPU work
    that would otherwise compete with live requests for a second or more. Best effort: the child
    lowers itself again once it runs, and `nice` <= 0 leaves it alone."""
    if pid is None or nice <= 0:
        return
    try:
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or the child already exited
        return


class ShadowProcess:
    """The serving side of the shadow process: `submit` never blocks (a full queue drops the task
    and counts it); a reader thread turns the child's reports into `counters` and restarts the
    child when it died (the tasks it held are lost, counted in `lost`). `close()` stops it."""

    def __init__(
        self, settings: ShadowSettings, counters: ProcessCounters, *, size: int = 1_000
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"shadow queue size must be an int of at least 1, got {size!r}")
        self.settings = settings
        self.size = size
        self._counters = counters
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._jobs: Queue[list[ShadowTask] | None] | None = None
        self._outbox: list[ShadowTask] = []  # submitted, not yet sent
        self._results: Queue[tuple[Any, ...]] | None = None
        self._child: SpawnProcess | None = None
        self._reader: threading.Thread | None = None
        self._stopping = threading.Event()
        self._services: dict[tuple[str, int], str | None] = {}  # reported by the child
        self.submitted = 0
        self.dropped = 0
        self.done = 0  # tasks the child finished (ok, error or timeout)
        self.lost = 0  # tasks a dead child took with it (in flight or queued)
        self.restarts = 0
        self._started_at = 0.0
        self._heard = 0.0  # when the child last reported (or started)
        self._pause = 0.0  # before the next restart of a child that died young

    @property
    def pid(self) -> int | None:
        child = self._child
        return None if child is None else child.pid

    def reuses(self, model: str, version: int, service: str | None) -> bool:
        """Whether a task for this shadow should carry the champion's feature values: yes unless
        the child reported that the shadow reads another feature service."""
        known = self._services.get((model, version), service)
        return known == service

    def start(self) -> None:
        """Start the child (and the reader) now if it is not running; idempotent."""
        with self._lock:
            if self._stopping.is_set() or self._child is not None:
                return
            self._spawn()
            self._reader = threading.Thread(
                target=self._read, name="parity-shadow-reader", daemon=True
            )
            self._reader.start()

    def submit(self, task: ShadowTask) -> bool:
        """Queue `task` for the child; False (dropped and counted) when `size` tasks are already
        waiting or being predicted. On an event loop, tasks are sent together every FLUSH_S (one
        pickling and one wake-up of the queue's feeder thread per flush, not per request)."""
        if self._stopping.is_set():
            return False
        if self._child is None:
            self.start()
        if self.pending >= self.size:
            self._drop(task)
            return False
        self._outbox.append(task)  # before the count: a restart never counts it lost twice
        self.submitted += 1
        if len(self._outbox) == 1:
            try:
                asyncio.get_running_loop().call_later(FLUSH_S, self._flush)
            except RuntimeError:  # no event loop: send it now
                self._flush()
        return True

    def _flush(self) -> None:
        with self._lock:  # not while a restart swaps the queues
            tasks, self._outbox = self._outbox, []
            jobs = self._jobs
            if tasks and jobs is not None:
                jobs.put_nowait(tasks)  # unbounded: `submit` bounds what is pending

    def _drop(self, task: ShadowTask) -> None:
        self.dropped += 1
        self._counters.shadow_dropped(task.model, task.version)
        if self.dropped & (self.dropped - 1) == 0:  # at 1, 2, 4, 8, ... drops
            logger.warning("shadow queue is full: %d mirrored requests dropped", self.dropped)

    @property
    def pending(self) -> int:
        """Tasks submitted and not yet finished or lost (queued or being predicted)."""
        return self.submitted - self.done - self.lost

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every submitted task finished (tests and benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.pending > 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Ask the child to finish its tasks, write its log and exit; kill it after `timeout`."""
        self._stopping.set()
        with self._lock:
            child, jobs = self._child, self._jobs
        if child is not None and jobs is not None:
            with contextlib.suppress(Exception):
                self._flush()  # what was submitted is still predicted and logged
                jobs.put(None, timeout=1.0)
            child.join(timeout)
            if child.is_alive():
                logger.warning("the shadow process did not stop in %.0f s: killed", timeout)
                child.kill()
                child.join(5)
        reader = self._reader
        if reader is not None:
            reader.join(5)
        with self._lock:
            self._abandon_queues()
            self._child = None

    def _spawn(self) -> None:
        """A fresh child with fresh queues (a killed child may hold the old queue's read lock)."""
        from parity.inference.shadow_worker import main

        self._abandon_queues()
        self._jobs = self._context.Queue()
        self._results = self._context.Queue()
        child = self._context.Process(
            target=main,
            args=(self.settings, self._jobs, self._results, os.getpid()),
            name="parity-shadow",
            daemon=True,
        )
        child.start()
        lower_priority_of(child.pid, self.settings.nice)
        self._child = child
        self._started_at = self._heard = time.monotonic()
        logger.info("started the shadow process (pid %s)", child.pid)

    def _abandon_queues(self) -> None:
        for old in (self._jobs, self._results):
            if old is not None:
                old.cancel_join_thread()  # never wait at exit to feed a pipe nobody reads
                old.close()
        self._jobs = self._results = None

    def _read(self) -> None:
        """The reader thread: apply the child's reports; restart the child when it died."""
        while True:
            results, child = self._results, self._child
            if results is None or child is None:
                return
            try:
                self._apply(results.get(timeout=WATCH_S))
                continue
            except queue.Empty:
                pass
            except (OSError, EOFError, ValueError):  # the queue was closed under us
                pass
            if not child.is_alive():
                self._drain_reports(results)
                if self._stopping.is_set():
                    return
                self._restart(child)
            elif self._stuck():
                logger.error(
                    "the shadow process (pid %s) reported nothing for %.0f s while holding %d "
                    "mirrored requests (a shadow model call that never returns?): killed",
                    child.pid,
                    self.settings.stuck_s,
                    self.pending,
                )
                child.kill()

    def _stuck(self) -> bool:
        """Whether the child held tasks and reported nothing for `stuck_s` (checked every
        WATCH_S: an idle child, holding none, is never stuck)."""
        now = time.monotonic()
        if self.pending <= 0:
            self._heard = now
            return False
        return now - self._heard > self.settings.stuck_s and not self._stopping.is_set()

    def _drain_reports(self, results: Queue[tuple[Any, ...]]) -> None:
        with contextlib.suppress(queue.Empty, OSError, EOFError, ValueError):
            while True:
                self._apply(results.get_nowait())

    def _restart(self, dead: SpawnProcess) -> None:
        if time.monotonic() - self._started_at < YOUNG_S:  # a broken repo: do not spin
            self._pause = min(MAX_RESTART_PAUSE_S, max(RESTART_PAUSE_S, 2 * self._pause))
        else:
            self._pause = 0.0
        self._stopping.wait(self._pause)
        with self._lock:
            if self._stopping.is_set():
                return
            submitted = self.submitted - len(self._outbox)  # sent to the dead child's queue
            self._spawn()
        lost = submitted - self.done - self.lost
        self.lost += lost
        self._counters.shadow_lost(lost)
        self.restarts += 1
        logger.error(
            "the shadow process (pid %s) died with exit code %s and was restarted; %d mirrored "
            "requests it held are lost",
            dead.pid,
            dead.exitcode,
            lost,
        )

    def _apply(self, report: tuple[Any, ...]) -> None:
        self._heard = time.monotonic()
        kind = report[0]
        if kind == "done":
            _, model, version, status, count = report
            for _ in range(count):  # the counters' interface counts one request at a time
                self._counters.shadow_request(model, version, status)
            self.done += count
        elif kind == "service":
            _, model, version, service = report
            self._services[(model, version)] = service
