"""Bounded queueing for the feature server's lookups: they run on a few read threads, off the
event loop, and a request that would wait longer than `max_wait_seconds` for one is refused.

The loop keeps answering (/health, 503s) whatever the lookups do. A request arriving when every
thread is busy is refused at once if the queue ahead of it is expected to take longer than the
budget (`expected_wait`, from a running mean of lookup times), else it queues; one still waiting
when the budget runs out is refused then. So an admitted request waits at most the budget, and
an excess one hears 503 within it. All state is touched on the event loop only.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from parity.errors import ServerOverloaded

T = TypeVar("T")

_MEAN_WEIGHT = 0.2  # of the newest lookup in the running mean


def expected_wait(waiting: int, threads: int, mean_seconds: float) -> float:
    """Seconds until a request arriving behind `waiting` queued ones gets one of `threads` busy
    threads, if each lookup takes `mean_seconds`."""
    return (waiting + 1) / threads * mean_seconds


def updated_mean(mean: float, seconds: float, cap: float) -> float:
    """The running mean after one more lookup. A lookup counts as at most `cap` (the budget),
    so one huge read does not make the server refuse everything after it."""
    return mean + _MEAN_WEIGHT * (min(seconds, cap) - mean)


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
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self.waiting = 0
        self.mean_seconds = 0.0

    async def run(self, work: Callable[[], T]) -> T:
        """`work()` on a read thread, or ServerOverloaded if none is free within the budget."""
        arrived = self._clock()
        if not self._free:
            await self._queue(arrived)
        else:
            self._free -= 1
        started = self._clock()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        finally:
            self.mean_seconds = updated_mean(
                self.mean_seconds, self._clock() - started, self.max_wait_seconds
            )
            self._release()

    async def _queue(self, arrived: float) -> None:
        """Wait for a thread handed over by _release; refuse if that would take too long."""
        if expected_wait(self.waiting, self.threads, self.mean_seconds) > self.max_wait_seconds:
            raise self._refusal()
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(turn)
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
            raise self._refusal()
        if self._clock() - arrived > self.max_wait_seconds:  # the loop itself ran late
            self._release()
            raise self._refusal()

    def _release(self) -> None:
        """Hand the thread to the first request still waiting, else mark it free."""
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(True)
                return
        self._free += 1

    def _refusal(self) -> ServerOverloaded:
        return ServerOverloaded(
            f"the feature server is overloaded: no read thread within "
            f"{self.max_wait_seconds * 1000:g} ms; retry later",
        )

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
