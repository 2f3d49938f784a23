"""Bounded queueing for the feature server's lookups: they run on a few read threads, off the
event loop, and a request that cannot get one within `max_wait_seconds` is refused (503).

The loop keeps answering (/health, 503s) whatever the lookups do. A request arriving when every
thread is busy waits in a queue; one still waiting when the budget runs out is refused. A freed
thread goes to the oldest waiter while the queue is short-lived, and to the newest once the
oldest has waited half the budget (adaptive LIFO): under overload the queue is always old, and
serving its newest requests admits them at once while the old ones run out of budget anyway.
So an admitted request waited at most the budget, and an excess one hears 503 within it.
All state is changed on the event loop only; `/metrics` reads `waiting`, `busy` and `rejected`
(plain ints) from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from parity.errors import ServerOverloaded

T = TypeVar("T")


def next_in_line(oldest_waited: float, max_wait_seconds: float) -> Literal["oldest", "newest"]:
    """Which waiter a freed thread goes to, given how long the oldest one has waited."""
    return "newest" if oldest_waited > max_wait_seconds / 2 else "oldest"


def _expire(turn: asyncio.Future[bool]) -> None:
    if not turn.done():
        turn.set_result(False)


class Admission:
    def __init__(
        self,
        *,
        threads: int,
        max_wait_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threads = threads
        self.max_wait_seconds = max_wait_seconds
        self._clock = clock
        self._readers = _Readers(threads)
        self._free = threads
        self._waiters: deque[tuple[float, asyncio.Future[bool]]] = deque()
        self.waiting = 0  # requests waiting for a thread now
        self.rejected = 0  # requests refused (503) because none was free within the budget

    @property
    def busy(self) -> int:
        """Read threads running (or handed to) a lookup now."""
        return self.threads - self._free

    async def run(self, work: Callable[[], T]) -> T:
        """`work()` on a read thread, or ServerOverloaded if none is free within the budget."""
        if self._free:
            self._free -= 1
        else:
            await self._queue()
        try:
            return await self._readers.run(work)
        finally:
            self._release()

    async def _queue(self) -> None:
        """Wait for a thread handed over by _release, at most the budget."""
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[bool] = loop.create_future()
        self._waiters.append((self._clock(), turn))
        self.waiting += 1
        timer = loop.call_later(self.max_wait_seconds, _expire, turn)
        try:
            granted = await turn
        except BaseException:  # cancelled: pass on a thread handed over meanwhile
            if turn.done() and not turn.cancelled() and turn.result():
                self._release()
            turn.cancel()
            raise
        finally:
            timer.cancel()
            self.waiting -= 1
        if not granted:
            self.rejected += 1
            raise ServerOverloaded(
                "the feature server is overloaded: no read thread free within "
                f"{self.max_wait_seconds * 1000:g} ms (feature_server.max_queue_ms); retry later"
            )

    def _release(self) -> None:
        """Hand the thread to a request still waiting (next_in_line), else mark it free."""
        waiters = self._waiters
        while waiters and waiters[0][1].done():
            waiters.popleft()
        while waiters and waiters[-1][1].done():
            waiters.pop()
        if not waiters:
            self._free += 1
            return
        oldest_waited = self._clock() - waiters[0][0]
        if next_in_line(oldest_waited, self.max_wait_seconds) == "oldest":
            waiters.popleft()[1].set_result(True)
        else:
            waiters.pop()[1].set_result(True)

    def close(self) -> None:
        self._readers.close()


_Job = tuple[Callable[[], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


class _Readers:
    """The read threads: a queue of (work, future, loop) they take turns on, each answer handed
    back with one call_soon_threadsafe. (A ThreadPoolExecutor's submit, its future and the
    chaining of that future to the loop's cost as much as a small lookup.) Work whose request
    was cancelled before it started is skipped. Started on first use; closed, they drop the
    queued work (its futures are cancelled) and end."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._started = False
        self._closed = False
        self._lock = threading.Lock()

    def run(self, work: Callable[[], T]) -> asyncio.Future[T]:
        if self._closed:
            raise RuntimeError("the read threads are closed")
        if not self._started:
            self._start()
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[T] = loop.create_future()
        self._jobs.put((work, answer, loop))
        return answer

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            for index in range(self.threads):
                name = f"parity-read_{index}"
                threading.Thread(target=self._serve, name=name, daemon=True).start()
            self._started = True

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            work, answer, loop = job
            if self._closed:
                _hand_back(loop, answer.cancel)
                continue
            # Its request went away before it started: skip it, as an executor skips a cancelled
            # job (the state is read off the loop's thread; a stale read only runs it).
            if answer.cancelled():
                continue
            try:
                result, failure = work(), None
            except BaseException as error:  # handed to the awaiting request, as an executor does
                result, failure = None, error
            _hand_back(loop, _settle, answer, result, failure)

    def close(self) -> None:
        self._closed = True
        if self._started:
            for _ in range(self.threads):
                self._jobs.put(None)


def _hand_back(loop: asyncio.AbstractEventLoop, call: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(call, *args)


def _settle(answer: asyncio.Future[Any], result: Any, failure: BaseException | None) -> None:
    if answer.cancelled():  # the request went away meanwhile
        return
    if failure is None:
        answer.set_result(result)
    else:
        answer.set_exception(failure)
