"""Read-ahead of batch predictions: items in order, the producer's error raised in the consumer,
and a consumer that stops early stops the producer (which never runs far ahead)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from parity.jobs.batch_prefetch import Prefetched


def test_items_arrive_in_order() -> None:
    with Prefetched(iter(range(100)), depth=3) as items:
        assert list(items) == list(range(100))


def test_the_producers_error_is_raised_in_the_consumer_after_its_items() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("the join failed")

    seen = []
    with Prefetched(failing()) as items, pytest.raises(ValueError, match="the join failed"):
        for item in items:
            seen.append(item)
    assert seen == [1, 2]


def test_stopping_early_stops_and_closes_the_producer() -> None:
    produced: list[int] = []
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                produced.append(n)
                yield n
                n += 1
        finally:
            closed.set()

    with Prefetched(endless(), depth=2) as items:
        for item in items:
            if item == 5:
                break
    assert closed.is_set()
    # at most depth items queued, one blocked in put, beyond the six consumed
    assert 6 <= len(produced) <= 6 + 2 + 1


def test_closing_cancels_a_producer_still_blocked_in_its_work() -> None:
    """A join that has not produced its first batch is interrupted, not waited for."""
    release = threading.Event()

    def blocked() -> Iterator[int]:
        if not release.wait(timeout=30):
            raise AssertionError("never cancelled")
        raise InterruptedError("interrupted")
        yield 0  # a generator

    reader = Prefetched(blocked(), cancel=release.set)
    reader.close()  # returns at once: cancel released the producer
    assert release.is_set()
