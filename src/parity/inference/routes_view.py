"""The model server's view of the active rollouts: each model's `Routes`, read from the control
plane (`store.rollouts.routes`) in the background so a slow registry database never holds a
request. Must not import deploy (the reader is a plain callable) nor HTTP code.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from parity.background import BackgroundRead
from parity.inference.routing import Routes

logger = logging.getLogger(__name__)

RoutesReader = Callable[[], Mapping[str, Routes]]
MIN_TICK_S = 0.05  # keep_fresh's shortest period (alias_refresh_seconds may be 0 in tests)


class RoutesView:
    """`current()` answers the routes last read (refreshed in the background once older than
    `refresh_seconds`). A reader that raises NotImplementedError (no control plane yet) means no
    rollouts, said once in the log; any other failure keeps the last routes read."""

    def __init__(
        self,
        read: RoutesReader,
        *,
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        spawn: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self._read = read
        self.refresh_seconds = refresh_seconds
        self._unsupported = False  # the reader raised NotImplementedError: stop asking
        self._failing = False  # the last read failed (logged once per run of failures)
        self._last: dict[str, Routes] = {}
        self._background = BackgroundRead(
            self._read_once,
            what="rollout routes: reading the active rollouts",
            refresh_seconds=refresh_seconds,
            clock=clock,
            spawn=spawn,
        )

    def refresh(self) -> None:
        """Read the routes now, on the calling thread (the server's start-up does this once)."""
        self._background.refresh()

    async def keep_fresh(self) -> None:
        """Asks for the routes every period even when no request does (run as a task until
        cancelled), so the first request after a quiet spell never meets routes older than
        about two periods (an aborted rollout still routing it)."""
        while True:
            await asyncio.sleep(max(self.refresh_seconds, MIN_TICK_S))
            self.current()

    def current(self) -> Mapping[str, Routes]:
        rows = self._background.current()
        return rows[0] if rows else {}

    def _read_once(self) -> list[Mapping[str, Routes]]:
        if self._unsupported:
            return [{}]
        try:
            routes = _checked(self._read())
        except NotImplementedError:
            self._unsupported = True
            logger.warning(
                "rollout routes are not available (no rollout control): every request is "
                "served by the version its alias names"
            )
            return [{}]
        except Exception:  # the registry database is down: keep routing as last read
            if not self._failing:
                logger.warning(
                    "reading the rollout routes failed; keeping the last routes read "
                    "until a read succeeds",
                    exc_info=True,
                )
            self._failing = True
            return [self._last]
        if self._failing:
            logger.info("reading the rollout routes works again")
        self._failing = False
        self._last = routes
        return [routes]


def _checked(routes: Mapping[str, Routes]) -> dict[str, Routes]:
    """The reader's answer, refused (TypeError) unless each value is its model's Routes."""
    found = dict(routes)
    for name, route in found.items():
        if not isinstance(route, Routes) or route.model != name:
            raise TypeError(f"the routes reader returned {route!r} for model '{name}'")
    return found
