"""The read threads behind Admission (serving/admission.py's _Readers, issue 19): a request that
goes away before its lookup starts leaves no work behind (a ThreadPoolExecutor, which they
replaced, skips a cancelled job too), and the threads go on serving the rest."""

from __future__ import annotations

import asyncio
import threading

from parity.serving.admission import Admission


def test_a_lookup_cancelled_before_it_started_is_never_run() -> None:
    admission = Admission(threads=1, max_wait_seconds=5.0)
    gate = threading.Event()
    ran: list[str] = []

    def work(name: str) -> str:
        gate.wait(5)
        ran.append(name)
        return name

    async def scenario() -> str:
        busy = asyncio.create_task(admission.run(lambda: work("busy")))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(admission.run(lambda: work("gone")))
        await asyncio.sleep(0.05)
        busy.cancel()  # the thread is still busy; "gone" is handed the slot and queued behind
        await asyncio.sleep(0.05)
        waiting.cancel()  # its client went away before its lookup started
        await asyncio.sleep(0.05)
        gate.set()
        return await admission.run(lambda: work("after"))

    assert asyncio.run(scenario()) == "after"
    assert ran == ["busy", "after"]
    admission.close()
