"""A circuit breaker for online-store calls: a small state machine on an injected clock, no I/O.

Closed: calls go through; `failures` failures in a row open it. Open: calls are refused (the
caller answers at once) until `cool_down_seconds` have passed since it opened. Half-open: one
call, the probe, goes through; its success closes the circuit, its failure opens it again.
Thread-safe: the feature server's read threads share one. `opens` counts every move to open
(a failed probe's included), for the feature server's /metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self,
        failures: int = 5,
        cool_down_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1:
            raise ValueError(f"failures={failures}: the circuit opens after at least 1 failure")
        if not cool_down_seconds > 0:
            raise ValueError(f"cool_down_seconds={cool_down_seconds}: must be above 0")
        self.failures = failures
        self.cool_down_seconds = cool_down_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failed = 0  # failures in a row while closed
        self._opened_at: float | None = None  # None: closed
        self._probing = False  # half-open: the probe is out
        self.opens = 0  # times it opened: after `failures` in a row, or on a failed probe

    @property
    def state(self) -> State:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half_open" if self._probing else "open"

    def allow(self) -> float | None:
        """None if the call may go ahead (report its outcome with record_success,
        record_failure or release); else the seconds until a probe may go."""
        with self._lock:
            if self._opened_at is None:
                return None
            remaining = self._opened_at + self.cool_down_seconds - self._clock()
            if self._probing:
                return max(remaining, 1.0)  # the probe answers within the timeout
            if remaining > 0:
                return remaining
            self._probing = True
            return None

    def record_success(self) -> None:
        with self._lock:
            self._failed = 0
            self._opened_at = None
            self._probing = False

    def record_failure(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                if self._probing:  # the probe failed: a whole new cool-down
                    self._opened_at = self._clock()
                    self._probing = False
                    self.opens += 1
                return  # a call started before it opened: the cool-down stands
            self._failed += 1
            if self._failed >= self.failures:
                self._opened_at = self._clock()
                self.opens += 1

    def release(self) -> None:
        """The call ended without telling whether the store works (e.g. it was cancelled)."""
        with self._lock:
            self._probing = False
