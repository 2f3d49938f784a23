"""Adaptive batching: merges concurrent predict requests for one model into row-bounded batches.

Policy: queued requests are dispatched as one batch when (1) the next item would overflow
`max_batch_size` rows, or the queue holds exactly that many; (2) the oldest queued item has waited
`max_latency_ms` (one loop timer, no polling); or (3) no batch is executing (greedy, at the next
loop turn, so requests that arrive together still merge). Batches may overlap; the executor bounds
how many run in parallel. If `predict` fails on a batch of several items, each item is predicted
again on its own: only the items that fail alone get a `PredictFailed` (its `__cause__` the
model's exception, its message about that item only); other items and batches are unaffected.
Must not import serving, a web framework, or any model library.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import operator
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

from parity.errors import (
    BatcherClosed,
    BatcherSettingsError,
    BatchItemError,
    BatchItemTooLarge,
    PredictFailed,
)

logger = logging.getLogger(__name__)


class Cancellable(Protocol):
    """What `call_later` returns: asyncio.TimerHandle, or a test's fake."""

    def cancel(self) -> None: ...


Predict = Callable[[list[Any]], Sequence[Any]]
CallLater = Callable[[float, Callable[[], None]], Cancellable]
OnBatch = Callable[[int, int, float], None]


@dataclass(eq=False, slots=True)
class _Pending:
    item: Any
    rows: int
    future: asyncio.Future[Any]
    arrived: float


class AdaptiveBatcher:
    """Merges concurrent `submit` calls into `predict` batches of at most `max_batch_size` rows."""

    def __init__(
        self,
        predict: Predict,
        *,
        max_batch_size: int,
        max_latency_ms: float,
        clock: Callable[[], float] | None = None,
        call_later: CallLater | None = None,
        executor: Executor | None = None,
        run_inline: bool = False,
        on_batch: OnBatch | None = None,
    ) -> None:
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int):
            raise BatcherSettingsError(f"max_batch_size must be an int, got {max_batch_size!r}")
        if max_batch_size < 1:
            raise BatcherSettingsError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if not (math.isfinite(max_latency_ms) and max_latency_ms >= 0):
            raise BatcherSettingsError(
                f"max_latency_ms must be a finite number >= 0, got {max_latency_ms!r}"
            )
        if run_inline and executor is not None:
            raise BatcherSettingsError("give either run_inline=True or an executor, not both")
        self.max_batch_size = max_batch_size
        self.max_latency_ms = float(max_latency_ms)
        self._predict = predict
        self._clock = clock
        self._call_later = call_later
        self._executor = executor
        self._run_inline = run_inline
        self._on_batch = on_batch
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._running: set[asyncio.Task[None]] = set()
        self._timer: Cancellable | None = None
        self._timer_for: _Pending | None = None
        self._flush_scheduled = False
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def submit(self, item: Any, rows: int = 1) -> Any:
        """Queue `item` (declaring `rows` rows) and return its result from `predict`."""
        if self._closed:
            raise BatcherClosed("this batcher is closed; submit to the model's new batcher")
        rows = self.check_rows(rows)
        loop = asyncio.get_running_loop()
        if self._queued_rows + rows > self.max_batch_size:
            self._dispatch()
        pending = _Pending(item, rows, loop.create_future(), self._now())
        self._queue.append(pending)
        self._queued_rows += rows
        if self._queued_rows >= self.max_batch_size:
            self._dispatch()
        elif not self._running and not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush_if_idle)
        self._arm_timer()
        return await pending.future

    async def close(self) -> None:
        """Stop accepting requests, dispatch what is queued, and wait for every batch to finish."""
        self._closed = True
        while self._queue:
            self._dispatch()
        while self._running:
            await asyncio.wait(set(self._running))  # unlike gather, never cancels the batches

    def check_rows(self, rows: int) -> int:
        """`rows` as an int; BatchItemError unless it is from 1 to `max_batch_size` (a caller may
        check a request here before the work that builds its item)."""
        try:
            count = operator.index(rows)
        except TypeError:
            count = 0
        if count < 1:
            raise BatchItemError(f"rows must be a positive integer (the item's rows), got {rows!r}")
        if count > self.max_batch_size:
            raise BatchItemTooLarge(
                f"an item of {count} rows exceeds max_batch_size={self.max_batch_size}; split it "
                f"into requests of at most {self.max_batch_size} rows, or raise max_batch_size"
            )
        return count

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _flush_if_idle(self) -> None:
        self._flush_scheduled = False
        if not self._running and self._queue:
            self._dispatch()

    def _on_timer(self) -> None:
        self._timer = self._timer_for = None
        self._dispatch()

    def _arm_timer(self) -> None:
        """Keep exactly one timer, due when the oldest queued item has waited max_latency_ms."""
        oldest = self._queue[0] if self._queue else None
        if oldest is self._timer_for:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_for = None
        if oldest is not None:
            delay = max(0.0, oldest.arrived + self.max_latency_ms / 1000 - self._now())
            if self._call_later is not None:
                self._timer = self._call_later(delay, self._on_timer)
            else:
                self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
            self._timer_for = oldest

    def _dispatch(self) -> None:
        """Start one batch from the head of the queue; items whose caller gave up are skipped."""
        batch: list[_Pending] = []
        rows = 0
        while self._queue:
            head = self._queue[0]
            if not head.future.done() and rows + head.rows > self.max_batch_size:
                break
            self._queue.popleft()
            self._queued_rows -= head.rows
            if not head.future.done():
                batch.append(head)
                rows += head.rows
        self._arm_timer()
        if batch:
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not self._running and self._queue:
            self._dispatch()  # the model became free: send what queued up meanwhile

    async def _run(self, batch: list[_Pending]) -> None:
        started = self._now()
        try:
            items = [pending.item for pending in batch]
            if self._run_inline:
                batch, results = self._predict_wanted(batch, items)
            else:
                loop = asyncio.get_running_loop()
                run = functools.partial(self._predict_wanted, batch)
                batch, results = await loop.run_in_executor(self._executor, run, items)
        except Exception as error:  # a model failure: find whose item it was
            if len(batch) == 1:
                _fail(batch, f"predict raised {type(error).__name__}: {error}", error)
            else:
                await self._retry_alone(batch)
        else:
            if len(results) != len(batch):
                reason = f"predict returned {len(results)} results for {len(batch)} items"
                _fail(batch, f"{reason}; it must return one result per item, in order", None)
            for pending, result in zip(batch, results, strict=False):
                if not pending.future.done():  # done: failed above, or its caller was cancelled
                    pending.future.set_result(result)
        finally:
            _fail(batch, "the batch was cancelled before predict finished", None)
            if batch:  # not when every caller had given up (nothing was predicted)
                self._report(sum(p.rows for p in batch), len(batch), self._now() - started)

    def _predict_wanted(
        self, batch: list[_Pending], items: list[Any]
    ) -> tuple[list[_Pending], list[Any]]:
        """The items of `batch` whose callers still wait when the model gets to them, and their
        results. A batch may wait in the executor behind a slow one; its callers may give up
        meanwhile (a shadow past its time limit), and their work is then skipped rather than
        run for no one, so a slow model's backlog never outgrows its callers. (Reads the
        futures' state from the executor's thread: at worst one that just gave up is run.)"""
        keep = [i for i, pending in enumerate(batch) if not pending.future.done()]
        if len(keep) == len(batch):
            return batch, list(self._predict(items))
        wanted = [items[i] for i in keep]
        return [batch[i] for i in keep], list(self._predict(wanted)) if wanted else []

    async def _retry_alone(self, batch: list[_Pending]) -> None:
        """Predict each item of a failed batch on its own, so a bad item fails only its caller
        and its error quotes only that caller's input."""
        batch = [pending for pending in batch if not pending.future.done()]
        items = [pending.item for pending in batch]
        if self._run_inline:
            outcomes = _each_alone(self._predict, items)
        else:
            loop = asyncio.get_running_loop()
            alone = functools.partial(_each_alone, self._predict)
            outcomes = await loop.run_in_executor(self._executor, alone, items)
        for pending, (ok, value) in zip(batch, outcomes, strict=True):
            if pending.future.done():  # its caller was cancelled
                continue
            if ok:
                pending.future.set_result(value)
            else:
                error = PredictFailed(
                    f"predict failed for this request: predict raised {type(value).__name__}: "
                    f"{value}"
                )
                error.__cause__ = value
                pending.future.set_exception(error)

    def _report(self, rows: int, items: int, seconds: float) -> None:
        if self._on_batch is None:
            return
        try:
            self._on_batch(rows, items, seconds)
        except Exception:  # a broken metrics hook must not break serving
            logger.exception("on_batch hook failed for a batch of %d rows", rows)


def _each_alone(predict: Predict, items: list[Any]) -> list[tuple[bool, Any]]:
    """(True, result) or (False, exception) for each item predicted on its own."""
    outcomes: list[tuple[bool, Any]] = []
    for item in items:
        try:
            results = list(predict([item]))
            if len(results) != 1:
                raise ValueError(f"predict returned {len(results)} results for 1 item")
            outcomes.append((True, results[0]))
        except Exception as error:
            outcomes.append((False, error))
    return outcomes


def _fail(batch: list[_Pending], reason: str, cause: BaseException | None) -> None:
    """Give every still-waiting caller of `batch` its own PredictFailed."""
    for pending in batch:
        if not pending.future.done():
            error = PredictFailed(f"predict failed for a batch of {len(batch)} items: {reason}")
            error.__cause__ = cause
            pending.future.set_exception(error)
