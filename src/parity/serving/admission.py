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
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

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
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="parity-read")
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
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
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
        self._executor.shutdown(wait=False, cancel_futures=True)
