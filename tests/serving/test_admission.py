"""Bounded queueing of lookups (serving/admission.py): real read threads, a hand-moved clock for
the choice of which waiter goes next."""

from __future__ import annotations

import asyncio
import threading

import pytest

from parity.errors import ServerOverloaded
from parity.serving.admission import Admission, next_in_line


def test_a_freed_thread_goes_to_the_oldest_waiter_until_it_has_waited_half_the_budget() -> None:
    assert next_in_line(0.0, 0.1) == "oldest"
    assert next_in_line(0.05, 0.1) == "oldest"
    assert next_in_line(0.051, 0.1) == "newest"


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def run_blocked(admission: Admission, gate: threading.Event, order: list[str], name: str) -> object:
    def work() -> str:
        gate.wait(5)
        order.append(name)
        return name

    return admission.run(work)


def test_waiters_are_served_oldest_first_while_the_queue_is_young() -> None:
    clock = Clock()
    admission = Admission(threads=1, max_wait_seconds=1.0, clock=clock)
    gate = threading.Event()
    order: list[str] = []

    async def scenario() -> list[object]:
        tasks = []
        for name in ("busy", "first", "second"):
            tasks.append(asyncio.create_task(run_blocked(admission, gate, order, name)))
            await asyncio.sleep(0.01)
        gate.set()
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(scenario()) == ["busy", "first", "second"]
    assert order == ["busy", "first", "second"]
    admission.close()


def test_once_the_oldest_waited_half_the_budget_the_newest_goes_first() -> None:
    clock = Clock()
    admission = Admission(threads=1, max_wait_seconds=1.0, clock=clock)
    gate = threading.Event()
    order: list[str] = []

    async def scenario() -> None:
        tasks = [asyncio.create_task(run_blocked(admission, gate, order, "busy"))]
        await asyncio.sleep(0.01)
        tasks.append(asyncio.create_task(run_blocked(admission, gate, order, "old")))
        await asyncio.sleep(0.01)
        clock.now = 0.6  # the old one has waited 0.6 s of a 1 s budget
        tasks.append(asyncio.create_task(run_blocked(admission, gate, order, "new")))
        await asyncio.sleep(0.01)
        gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert order == ["busy", "new", "old"]
    admission.close()


def test_a_request_without_a_thread_within_the_budget_is_refused_and_the_rest_still_run() -> None:
    admission = Admission(threads=1, max_wait_seconds=0.05)
    gate = threading.Event()
    order: list[str] = []

    async def scenario() -> None:
        busy = asyncio.create_task(run_blocked(admission, gate, order, "busy"))
        await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ServerOverloaded, match="max_queue_ms"):
            await run_blocked(admission, gate, order, "late")
        assert loop.time() - started < 0.5
        gate.set()
        await busy
        assert await admission.run(lambda: "after") == "after"  # the thread was given back

    asyncio.run(scenario())
    assert order == ["busy"]
    admission.close()
