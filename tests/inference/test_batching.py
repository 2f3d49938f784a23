"""AdaptiveBatcher: batch sizes, the latency timer, routing, failures, cancellation and close.

Time is driven by FakeTimer and "a batch is executing" by HeldExecutor, so no test sleeps except
the two real-loop checks, which only assert generous upper bounds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity.errors import ParityError
from parity.inference.batching import (
    AdaptiveBatcher,
    BatcherClosed,
    BatcherSettingsError,
    BatchItemError,
    BatchItemTooLarge,
    PredictFailed,
)


@dataclass
class _Call:
    when: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeTimer:
    """A clock and call_later that only move when the test says: advance_to() fires what is due."""

    def __init__(self) -> None:
        self.now = 0.0
        self._calls: list[_Call] = []

    def clock(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Call:
        call = _Call(self.now + delay, callback)
        self._calls.append(call)
        return call

    @property
    def pending(self) -> list[float]:
        return sorted(call.when for call in self._calls if not call.cancelled)

    def advance_to(self, now: float) -> None:
        self.now = now
        while due := [c for c in self._calls if not c.cancelled and c.when <= now]:
            call = min(due, key=lambda c: c.when)
            self._calls.remove(call)
            call.callback()


class HeldExecutor(Executor):
    """Holds every predict call until the test releases it, and records each batch's items."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self._held: list[tuple[Callable[..., Any], tuple[Any, ...], Future[Any]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._held.append((fn, args, future))
        self.batches.append(list(args[0]))
        return future

    @property
    def held(self) -> int:
        return len(self._held)

    def release(self, index: int = 0) -> None:
        fn, args, future = self._held.pop(index)
        try:
            future.set_result(fn(*args))
        except Exception as error:
            future.set_exception(error)


def tag(items: list[Any]) -> list[str]:
    return [f"result:{item}" for item in items]


async def settle() -> None:
    """Let the loop run every callback that is ready (task steps, done callbacks, call_soon)."""
    for _ in range(10):
        await asyncio.sleep(0)


def held_batcher(
    max_batch_size: int, **extra: Any
) -> tuple[AdaptiveBatcher, FakeTimer, HeldExecutor]:
    timer, executor = FakeTimer(), HeldExecutor()
    batcher = AdaptiveBatcher(
        tag,
        max_batch_size=max_batch_size,
        max_latency_ms=250,
        clock=timer.clock,
        call_later=timer.call_later,
        executor=executor,
        **extra,
    )
    return batcher, timer, executor


def test_ten_concurrent_requests_form_batches_of_4_4_and_a_timed_out_2() -> None:
    """Items 0-3 and 4-7 fill two batches at once; 8 and 9 wait until 8 has waited 250 ms."""

    async def scenario() -> None:
        batcher, timer, executor = held_batcher(4)
        tasks = [asyncio.create_task(batcher.submit(i)) for i in range(10)]
        await settle()
        assert executor.batches == [[0, 1, 2, 3], [4, 5, 6, 7]]
        assert timer.pending == [0.25]
        timer.advance_to(0.125)
        await settle()
        assert len(executor.batches) == 2  # not before the oldest item is due
        timer.advance_to(0.25)
        await settle()
        assert executor.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
        while executor.held:
            executor.release()
        assert await asyncio.gather(*tasks) == [f"result:{i}" for i in range(10)]

    asyncio.run(scenario())


def test_latency_counts_from_the_oldest_queued_item_and_fires_while_a_batch_runs() -> None:
    async def scenario() -> None:
        batcher, timer, executor = held_batcher(4)
        a = asyncio.create_task(batcher.submit("a"))
        await settle()  # idle model: a goes out at once and stays executing
        timer.advance_to(0.125)
        b = asyncio.create_task(batcher.submit("b"))
        await settle()
        timer.advance_to(0.25)
        c = asyncio.create_task(batcher.submit("c"))
        await settle()
        assert timer.pending == [0.375]  # b arrived at 0.125, plus 250 ms
        timer.advance_to(0.3125)
        await settle()
        assert executor.batches == [["a"]]
        timer.advance_to(0.375)
        await settle()
        assert executor.batches == [["a"], ["b", "c"]]  # overlaps with the running ["a"]
        executor.release(1)
        executor.release(0)
        assert await asyncio.gather(a, b, c) == ["result:a", "result:b", "result:c"]

    asyncio.run(scenario())


def test_a_lone_request_on_an_idle_model_is_dispatched_without_waiting() -> None:
    async def scenario() -> None:
        batcher, timer, executor = held_batcher(4)
        task = asyncio.create_task(batcher.submit("x"))
        await settle()
        assert executor.batches == [["x"]]
        assert timer.now == 0.0
        executor.release()
        assert await task == "result:x"

    asyncio.run(scenario())


def test_requests_queued_while_busy_go_out_together_when_the_model_frees() -> None:
    async def scenario() -> None:
        batcher, timer, executor = held_batcher(4)
        a = asyncio.create_task(batcher.submit("a"))
        await settle()
        b = asyncio.create_task(batcher.submit("b"))
        c = asyncio.create_task(batcher.submit("c"))
        await settle()
        assert executor.batches == [["a"]]
        assert timer.pending == [0.25]  # b's timer, which never fires: the clock stays at 0
        executor.release()
        await settle()
        assert executor.batches == [["a"], ["b", "c"]]
        assert timer.pending == []
        executor.release()
        assert await asyncio.gather(a, b, c) == ["result:a", "result:b", "result:c"]

    asyncio.run(scenario())


def test_an_item_that_would_overflow_sends_the_queued_batch_first() -> None:
    """max 4 rows, model busy with a. Turn 1: p(1) q(1) r(4) -> [p, q], [r], nothing left.
    Turn 2: s(3) t(2) -> [s]; t waits for its timer or a free model."""

    async def scenario() -> None:
        batcher, timer, executor = held_batcher(4)
        a = asyncio.create_task(batcher.submit("a"))
        await settle()
        rows = {"p": 1, "q": 1, "r": 4, "s": 3, "t": 2}
        tasks = [asyncio.create_task(batcher.submit(s, rows=rows[s])) for s in "pqr"]
        await settle()
        assert executor.batches == [["a"], ["p", "q"], ["r"]]
        assert timer.pending == []
        tasks += [asyncio.create_task(batcher.submit(s, rows=rows[s])) for s in "st"]
        await settle()
        assert executor.batches == [["a"], ["p", "q"], ["r"], ["s"]]
        assert timer.pending == [0.25]  # for t, the only item still queued
        while executor.held:
            executor.release()
        await settle()
        assert executor.batches[4:] == [["t"]]  # sent when the model became free
        executor.release()
        assert await asyncio.gather(a, *tasks) == [f"result:{s}" for s in "apqrst"]

    asyncio.run(scenario())


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, list[tuple[str, float]]]:
    max_size = draw(st.integers(1, 6))
    op = st.one_of(
        st.tuples(st.just("submit"), st.integers(1, max_size).map(float)),
        st.tuples(st.just("tick"), st.just(0.0)),
        st.tuples(st.just("advance"), st.sampled_from([0.0625, 0.125, 0.25])),
        st.tuples(st.just("release"), st.integers(0, 5).map(float)),
    )
    return max_size, draw(st.lists(op, max_size=40))


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_batches_never_exceed_max_rows_and_every_item_gets_its_own_result(
    scenario: tuple[int, list[tuple[str, float]]],
) -> None:
    max_size, ops = scenario
    reported: list[tuple[int, int]] = []

    async def run() -> None:
        batcher, timer, executor = held_batcher(
            max_size, on_batch=lambda rows, items, _s: reported.append((rows, items))
        )
        rows_of: list[int] = []
        tasks: list[asyncio.Task[Any]] = []
        for kind, value in ops:
            if kind == "submit":
                rows_of.append(int(value))
                tasks.append(asyncio.create_task(batcher.submit(len(tasks), rows=int(value))))
            elif kind == "advance":
                timer.advance_to(timer.now + value)
            elif kind == "release" and executor.held:
                executor.release(int(value) % executor.held)
            if kind != "submit":  # submits in a row arrive in the same loop turn
                await settle()
        for _ in range(100):
            await settle()
            if all(task.done() for task in tasks):
                break
            while executor.held:
                executor.release()
            timer.advance_to(timer.now + 0.25)
        assert [task.result() for task in tasks] == [f"result:{i}" for i in range(len(tasks))]
        for batch in executor.batches:
            assert sum(rows_of[i] for i in batch) <= max_size
        assert [i for batch in executor.batches for i in batch] == list(range(len(tasks)))
        expected = [(sum(rows_of[i] for i in batch), len(batch)) for batch in executor.batches]
        assert sorted(reported) == sorted(expected)

    asyncio.run(run())


def test_results_reach_their_callers_and_predict_runs_off_the_loop_thread() -> None:
    threads: set[int] = set()

    def row_sums(items: list[Any]) -> list[Any]:
        threads.add(threading.get_ident())
        return [array.sum(axis=1) for array in items]

    row_counts = [3, 1, 4, 1, 5, 2, 6, 5, 3, 5, 8, 2, 7, 1]
    starts = [100 * i for i in range(len(row_counts))]

    async def scenario() -> list[Any]:
        batcher = AdaptiveBatcher(row_sums, max_batch_size=8, max_latency_ms=5)
        return await asyncio.gather(
            *(
                batcher.submit(np.arange(start, start + 3 * k).reshape(k, 3), rows=k)
                for start, k in zip(starts, row_counts, strict=True)
            )
        )

    results = asyncio.run(scenario())
    for result, start, k in zip(results, starts, row_counts, strict=True):
        first = [start + 3 * r for r in range(k)]
        assert result.tolist() == [f + (f + 1) + (f + 2) for f in first]
    assert threading.get_ident() not in threads


def test_a_failed_batch_is_retried_item_by_item_so_only_the_bad_item_fails() -> None:
    calls: list[list[str]] = []

    def fragile(items: list[str]) -> list[str]:
        calls.append(items)
        if "boom" in items:
            raise ValueError("cannot score boom")
        return tag(items)

    async def scenario() -> list[Any]:
        timer = FakeTimer()
        batcher = AdaptiveBatcher(
            fragile,
            max_batch_size=2,
            max_latency_ms=250,
            clock=timer.clock,
            call_later=timer.call_later,
            run_inline=True,
        )
        first = await asyncio.gather(
            *(batcher.submit(x) for x in ["a", "boom", "c"]), return_exceptions=True
        )
        return [*first, await batcher.submit("d")]

    a, boom, c, d = asyncio.run(scenario())
    assert calls == [["a", "boom"], ["a"], ["boom"], ["c"], ["d"]]
    assert isinstance(boom, PredictFailed)
    assert isinstance(boom.__cause__, ValueError)
    assert "ValueError: cannot score boom" in str(boom)
    assert (a, c, d) == ("result:a", "result:c", "result:d")


def test_the_retry_runs_on_the_executor_and_each_error_names_only_its_own_item() -> None:
    def fragile(items: list[str]) -> list[str]:
        bad = [item for item in items if item.startswith("bad")]
        if bad:
            raise ValueError(f"cannot score {bad}")
        return tag(items)

    async def scenario() -> tuple[list[Any], list[list[Any]]]:
        timer, executor = FakeTimer(), HeldExecutor()
        batcher = AdaptiveBatcher(
            fragile,
            max_batch_size=4,
            max_latency_ms=250,
            clock=timer.clock,
            call_later=timer.call_later,
            executor=executor,
        )
        calls = [asyncio.ensure_future(batcher.submit(x)) for x in ["a", "bad1", "bad2", "d"]]
        await settle()
        executor.release()  # the batch of four fails; the retry is one executor call
        await settle()
        executor.release()
        results = await asyncio.gather(*calls, return_exceptions=True)
        return results, executor.batches

    (a, bad1, bad2, d), batches = asyncio.run(scenario())
    assert batches == [["a", "bad1", "bad2", "d"], ["a", "bad1", "bad2", "d"]]
    assert (a, d) == ("result:a", "result:d")
    assert "['bad1']" in str(bad1) and "bad2" not in str(bad1)
    assert "['bad2']" in str(bad2) and "bad1" not in str(bad2)


def test_wrong_number_of_results_fails_every_item_of_the_batch() -> None:
    async def scenario() -> list[Any]:
        batcher = AdaptiveBatcher(
            lambda items: tag(items)[:-1], max_batch_size=2, max_latency_ms=5, run_inline=True
        )
        return await asyncio.gather(
            batcher.submit("a"), batcher.submit("b"), return_exceptions=True
        )

    errors = asyncio.run(scenario())
    for error in errors:
        assert isinstance(error, PredictFailed)
        assert "predict returned 1 results for 2 items" in str(error)


def test_an_item_larger_than_a_batch_or_with_bad_rows_is_rejected() -> None:
    async def scenario() -> None:
        batcher = AdaptiveBatcher(tag, max_batch_size=4, max_latency_ms=5, run_inline=True)
        with pytest.raises(BatchItemTooLarge) as too_large:
            await batcher.submit("big", rows=5)
        assert isinstance(too_large.value, ValueError)
        assert isinstance(too_large.value, ParityError)
        assert "5 rows exceeds max_batch_size=4" in str(too_large.value)
        assert "split it" in str(too_large.value)
        for bad in (0, -1, "3", 2.0):
            with pytest.raises(BatchItemError, match="positive integer"):
                await batcher.submit("x", rows=bad)  # type: ignore[arg-type]
        assert await batcher.submit("ok", rows=np.int64(4)) == "result:ok"  # type: ignore[arg-type]

    asyncio.run(scenario())


def test_impossible_settings_are_rejected() -> None:
    for kwargs in (
        {"max_batch_size": 0, "max_latency_ms": 5},
        {"max_batch_size": 2.5, "max_latency_ms": 5},
        {"max_batch_size": 4, "max_latency_ms": -1},
        {"max_batch_size": 4, "max_latency_ms": float("nan")},
        {"max_batch_size": 4, "max_latency_ms": 5, "run_inline": True, "executor": HeldExecutor()},
    ):
        with pytest.raises(BatcherSettingsError):
            AdaptiveBatcher(tag, **kwargs)


def test_close_drains_queued_and_running_batches_then_submit_is_rejected() -> None:
    async def scenario() -> None:
        batcher, _timer, executor = held_batcher(4)
        a = asyncio.create_task(batcher.submit("a"))
        await settle()
        b = asyncio.create_task(batcher.submit("b"))
        await settle()
        closing = asyncio.create_task(batcher.close())
        await settle()
        assert executor.batches == [["a"], ["b"]]  # close dispatched the queued b
        assert not closing.done()  # and waits for both batches
        executor.release()
        executor.release()
        await closing
        assert (await a, await b) == ("result:a", "result:b")
        assert batcher.closed
        with pytest.raises(BatcherClosed, match="closed"):
            await batcher.submit("late")

    asyncio.run(scenario())


def test_max_batch_size_one_makes_one_predict_call_per_request() -> None:
    calls: list[list[int]] = []

    def record(items: list[int]) -> list[str]:
        calls.append(items)
        return tag(items)

    async def scenario() -> list[str]:
        batcher = AdaptiveBatcher(record, max_batch_size=1, max_latency_ms=50, run_inline=True)
        return await asyncio.gather(*(batcher.submit(i) for i in range(5)))

    assert asyncio.run(scenario()) == [f"result:{i}" for i in range(5)]
    assert calls == [[0], [1], [2], [3], [4]]


def test_a_cancelled_caller_is_skipped_if_queued_and_ignored_if_dispatched() -> None:
    async def scenario() -> None:
        batcher, _timer, executor = held_batcher(4)
        a = asyncio.create_task(batcher.submit("a"))
        x = asyncio.create_task(batcher.submit("x"))
        await settle()
        assert executor.batches == [["a", "x"]]
        x.cancel()  # already dispatched: its result is dropped
        b, c, d = (asyncio.create_task(batcher.submit(s)) for s in "bcd")
        await settle()
        c.cancel()  # still queued: left out of the next batch
        await settle()
        executor.release()
        await settle()
        assert executor.batches == [["a", "x"], ["b", "d"]]
        executor.release()
        assert await asyncio.gather(a, b, d) == ["result:a", "result:b", "result:d"]
        assert x.cancelled() and c.cancelled()

    asyncio.run(scenario())


def test_on_batch_reports_rows_items_and_seconds_by_the_injected_clock() -> None:
    reported: list[tuple[int, int, float]] = []

    async def scenario() -> None:
        batcher, timer, executor = held_batcher(8, on_batch=lambda *stats: reported.append(stats))
        tasks = [asyncio.create_task(batcher.submit(s, rows=r)) for s, r in [("p", 2), ("q", 3)]]
        await settle()
        timer.advance_to(0.5)
        executor.release()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert reported == [(5, 2, 0.5)]


def test_a_failing_on_batch_hook_is_logged_and_does_not_break_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(rows: int, items: int, seconds: float) -> None:
        raise RuntimeError("metrics down")

    async def scenario() -> list[str]:
        batcher = AdaptiveBatcher(
            tag, max_batch_size=4, max_latency_ms=5, run_inline=True, on_batch=broken
        )
        return [await batcher.submit("a"), await batcher.submit("b")]

    with caplog.at_level(logging.ERROR, logger="parity.inference.batching"):
        assert asyncio.run(scenario()) == ["result:a", "result:b"]
    assert "on_batch hook failed" in caplog.text


def test_two_batchers_on_one_loop_keep_their_own_queues() -> None:
    async def scenario() -> list[Any]:
        upper = AdaptiveBatcher(
            lambda items: [s.upper() for s in items], max_batch_size=3, max_latency_ms=5
        )
        double = AdaptiveBatcher(
            lambda items: [s * 2 for s in items], max_batch_size=2, max_latency_ms=5
        )
        return await asyncio.gather(
            *(batcher.submit(s) for s in "abcde" for batcher in (upper, double))
        )

    assert asyncio.run(scenario()) == [
        "A", "aa", "B", "bb", "C", "cc", "D", "dd", "E", "ee",
    ]  # fmt: skip


def test_real_loop_lone_request_is_answered_within_the_latency_bound() -> None:
    async def scenario() -> float:
        batcher = AdaptiveBatcher(tag, max_batch_size=16, max_latency_ms=20)
        started = time.perf_counter()
        assert await batcher.submit("x") == "result:x"
        return time.perf_counter() - started

    assert asyncio.run(scenario()) < 0.020 + 0.5


def test_real_loop_timer_dispatches_a_partial_batch_while_the_model_is_busy() -> None:
    """The first batch blocks in its thread until the second batch, sent by the 20 ms timer
    while the first still runs, has been answered."""
    unblock = threading.Event()

    def predict(items: list[str]) -> list[str]:
        if items == ["first"]:
            unblock.wait(timeout=5)
        return tag(items)

    async def scenario() -> tuple[str, str, bool]:
        batcher = AdaptiveBatcher(predict, max_batch_size=16, max_latency_ms=20)
        first = asyncio.create_task(batcher.submit("first"))
        await asyncio.sleep(0.01)
        try:
            second = await asyncio.wait_for(batcher.submit("second"), timeout=2)
            still_running = not first.done()
        finally:
            unblock.set()
        return await first, second, still_running

    assert asyncio.run(scenario()) == ("result:first", "result:second", True)
