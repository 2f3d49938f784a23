"""A job's log: what its threads print and log while it runs, captured per thread (several jobs
run at once in one runner) and kept to the last 64 KiB. Must not import the job store or training.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TextIO

from parity.jobs.store import LOG_LIMIT, bound_logs


class JobLog:
    """The text of one job's log; thread-safe. `logger` (level INFO) is the job's own logger,
    handed to the train function as `context.log`."""

    def __init__(self, job_id: int, name: str) -> None:
        self.job_id = job_id
        self.stage = "starting"  # what the job does now; saved with each heartbeat
        self._parts: list[str] = []
        self._size = 0
        self._lock = threading.Lock()
        self.logger = logging.getLogger(f"parity.jobs.run.{name}")
        self.logger.setLevel(logging.INFO)

    def write(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            if self._size > 4 * LOG_LIMIT:  # keep memory bounded for a chatty fit
                joined = bound_logs("".join(self._parts))
                self._parts, self._size = [joined], len(joined)

    def note(self, message: str) -> None:
        """A line from the runner itself, timestamped like the captured log records."""
        self.write(f"{_stamp()} runner: {message}\n")

    def text(self) -> str:
        with self._lock:
            return bound_logs("".join(self._parts))


_routes: dict[int, JobLog] = {}
_state_lock = threading.Lock()
_installed: dict[str, object] = {}


class _Router(io.TextIOBase):
    """Stands in for sys.stdout / sys.stderr: a job thread's writes go to its log, the rest to
    the stream it replaced."""

    def __init__(self, original: TextIO) -> None:
        self.original = original

    def write(self, text: str) -> int:
        target = _routes.get(threading.get_ident())
        if target is None:
            return self.original.write(text)
        target.write(text)
        return len(text)

    def flush(self) -> None:
        self.original.flush()

    def isatty(self) -> bool:
        return False


class _Handler(logging.Handler):
    """On the root logger: records logged from a job's thread go to that job's log."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        target = _routes.get(record.thread or 0)
        if target is not None:
            try:
                target.write(self.format(record) + "\n")
            except Exception:  # a bad record must never break the job
                self.handleError(record)


@contextmanager
def capturing(log: JobLog) -> Iterator[None]:
    """Route this thread's prints and log records to `log` until the block ends."""
    ident = threading.get_ident()
    with _state_lock:
        if not _routes:
            _install()
        _routes[ident] = log
    try:
        yield
    finally:
        with _state_lock:
            _routes.pop(ident, None)
            if not _routes:
                _uninstall()


def _install() -> None:
    handler = _Handler()
    logging.getLogger().addHandler(handler)
    _installed["handler"] = handler
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        router = _Router(current)
        setattr(sys, name, router)
        _installed[name] = router


def _uninstall() -> None:
    handler = _installed.pop("handler", None)
    if isinstance(handler, logging.Handler):
        logging.getLogger().removeHandler(handler)
    for name in ("stdout", "stderr"):
        router = _installed.pop(name, None)
        # only when nobody replaced it meanwhile (a test's capture, another tool)
        if isinstance(router, _Router) and getattr(sys, name) is router:
            setattr(sys, name, router.original)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
