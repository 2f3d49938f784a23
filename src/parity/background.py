"""A value read from a slow source (the registry database) in the background, for metrics that a
scrape must never make wait: the last values read, refreshed when older than a period. Must not
import any layer; the servers' gauges (drift, alerts) build on it."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
Spawn = Callable[[Callable[[], None]], None]


class BackgroundRead(Generic[T]):
    """`current()` returns the rows last read and, when they are older than `refresh_seconds`
    (by `clock`), starts one read with `spawn` (a daemon thread by default). A failed read keeps
    the previous rows and is logged as `what`. `refresh()` reads now, on the calling thread."""

    def __init__(
        self,
        read: Callable[[], Sequence[T]],
        *,
        what: str,
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        spawn: Spawn | None = None,
    ) -> None:
        self._read = read
        self._what = what
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._spawn = spawn or _thread
        self._lock = threading.Lock()
        self._rows: Sequence[T] = ()
        self._due = -math.inf
        self._reading = False

    def refresh(self) -> None:
        try:
            rows = list(self._read())
        except Exception:  # the registry database is down: keep showing the last values
            logger.warning("%s failed; showing the last values read", self._what, exc_info=True)
        else:
            self._rows = rows
        finally:
            with self._lock:
                self._reading = False
                self._due = self._clock() + self._refresh_seconds

    def current(self) -> Sequence[T]:
        with self._lock:
            stale = not self._reading and self._clock() >= self._due
            if stale:
                self._reading = True
        if stale:
            self._spawn(self.refresh)
        return self._rows


def _thread(target: Callable[[], None]) -> None:
    threading.Thread(target=target, name="parity-background-read", daemon=True).start()
