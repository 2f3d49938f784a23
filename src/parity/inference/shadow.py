"""Shadow traffic: mirrored predictions run after the champion's answer, through a bounded queue
(a full queue drops the copy and counts it) and a few worker tasks with a time limit, so a
shadow's error, timeout or slowness never reaches the client nor delays it. Must not import HTTP
code or deploy; what a job does is a closure the model server builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 1_000  # mirrored requests waiting for a worker; beyond: dropped, counted
DEFAULT_TIMEOUT_S = 1.0  # a shadow prediction's time limit; past it the row is "timeout"
DEFAULT_WORKERS = 64  # shadow jobs in flight at once: their rows share model calls (batches)


@dataclass(frozen=True)
class ShadowJob:
    """One mirrored request for one shadow version. `run` predicts and logs its rows;
    `failed(status, seconds)` logs them as "error" or "timeout" instead."""

    model: str
    version: int
    run: Callable[[], Awaitable[None]]
    failed: Callable[[str, float], None]


class ShadowCounters(Protocol):
    """Where the queue counts what happened to each job (ModelMetrics in the server)."""

    def shadow_dropped(self, model: str, version: int) -> None: ...

    def shadow_request(self, model: str, version: int, status: str) -> None: ...


class LiveRequests:
    """Counts the live requests in flight (the HTTP layer calls `enter` and `leave`) and tells
    its `listeners` of each change, so shadow work can yield to live requests."""

    def __init__(self) -> None:
        self.count = 0
        self.listeners: list[Callable[[], None]] = []

    def enter(self) -> None:
        self.count += 1
        if self.count == 1:
            self._changed()

    def leave(self) -> None:
        self.count = max(0, self.count - 1)
        if self.count == 0:
            self._changed()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()


class ShadowQueue:
    """Jobs queued with `submit` (never blocks) and run by `workers` tasks on the event loop
    that first submits; a worker starts a job only when no live request is in flight (`live`),
    so mirrored work takes the server's idle time, and each job gets `timeout_s` seconds.
    `close()` stops the workers."""

    def __init__(
        self,
        counters: ShadowCounters,
        *,
        size: int = DEFAULT_QUEUE_SIZE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        workers: int = DEFAULT_WORKERS,
        live: LiveRequests | None = None,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"shadow queue size must be an int of at least 1, got {size!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"shadow workers must be an int of at least 1, got {workers!r}")
        if not timeout_s > 0:
            raise ValueError(f"shadow timeout_s must be > 0 seconds, got {timeout_s!r}")
        self._counters = counters
        self.size = size
        self.timeout_s = float(timeout_s)
        self.workers = workers
        self.live = live or LiveRequests()
        self.live.listeners.append(self._regate)
        self._backlog = max(1, size // 2)  # this many queued: run even while requests are live
        self._go = asyncio.Event()  # set while a worker may start a job
        self._go.set()
        self._queue: asyncio.Queue[ShadowJob] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.dropped = 0
        self.done = 0  # jobs finished (ok, error or timeout)

    def submit(self, job: ShadowJob) -> bool:
        """Queue `job`; False (dropped and counted) when the queue is full. Call it on the loop."""
        queue = self._queue
        if queue is None:
            queue = self._start()
        try:
            queue.put_nowait(job)
            self._regate()
        except asyncio.QueueFull:
            self.dropped += 1
            self._counters.shadow_dropped(job.model, job.version)
            if self.dropped & (self.dropped - 1) == 0:  # at 1, 2, 4, 8, ... drops
                logger.warning("shadow queue is full: %d mirrored requests dropped", self.dropped)
            return False
        return True

    @property
    def pending(self) -> int:
        """Jobs queued and not yet taken by a worker."""
        return 0 if self._queue is None else self._queue.qsize()

    async def drain(self) -> None:
        """Wait until every queued job has finished (tests and benchmarks)."""
        if self._queue is not None:
            await self._queue.join()

    async def close(self) -> None:
        """Cancel the workers; queued jobs are dropped unlogged (the server is stopping)."""
        tasks, self._tasks, self._queue = self._tasks, [], None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _start(self) -> asyncio.Queue[ShadowJob]:
        queue: asyncio.Queue[ShadowJob] = asyncio.Queue(self.size)
        self._queue = queue
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._work(queue), name=f"parity-shadow-{n}")
            for n in range(self.workers)
        ]
        return queue

    async def _work(self, queue: asyncio.Queue[ShadowJob]) -> None:
        while True:
            job = await queue.get()
            try:
                self._regate()
                if not self._go.is_set():  # live requests first: mirrored work takes idle time
                    await self._go.wait()
                await self._run(job)
            finally:
                queue.task_done()
                self.done += 1

    def _regate(self) -> None:
        """Open the gate when no live request is in flight, or when the queue is half full
        (then the shadow must run to keep up); close it otherwise."""
        if self.live.count == 0 or self.pending >= self._backlog:
            self._go.set()
        else:
            self._go.clear()

    async def _run(self, job: ShadowJob) -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                await job.run()
        except TimeoutError:
            status = "timeout"
        except Exception:
            logger.debug("shadow %s v%d failed", job.model, job.version, exc_info=True)
            status = "error"
        else:
            self._counters.shadow_request(job.model, job.version, "ok")
            return
        self._counters.shadow_request(job.model, job.version, status)
        try:
            job.failed(status, time.perf_counter() - started)
        except Exception:  # a bug in logging the failure must not kill the worker
            logger.exception("logging a failed shadow prediction failed")
