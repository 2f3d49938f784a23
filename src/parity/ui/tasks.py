"""Background computations of the UI (duplicate scans, consistency replays): one thread each, a
progress counter the pages poll, the last result kept per key. In memory, per process: a
restarted UI starts with none (the pages offer to run them again)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

logger = logging.getLogger(__name__)

RUNNING, DONE, FAILED = "running", "done", "failed"


@dataclass(frozen=True)
class TaskState:
    """Where one background computation stands. `total` None: not known yet."""

    id: str
    kind: str
    key: str
    state: str
    phase: str = ""
    done: int = 0
    total: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    result: Any = field(default=None, compare=False, repr=False)


# progress(phase, done, total): called by the work as it goes.
Progress = Callable[[str, int, "int | None"], None]


class Tasks:
    """Start work in the background (`start`), ask where it stands (`latest`). A second start of a
    key already running answers the running one (no two scans of one thing at once)."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], TaskState] = {}

    def latest(self, kind: str, key: str = "") -> TaskState | None:
        with self._lock:
            return self._latest.get((kind, key))

    def start(self, kind: str, key: str, work: Callable[[Progress], Any]) -> TaskState:
        with self._lock:
            current = self._latest.get((kind, key))
            if current is not None and current.state == RUNNING:
                return current
            state = TaskState(
                uuid.uuid4().hex[:12], kind, key, RUNNING, "queued", started_at=self._clock()
            )
            self._latest[(kind, key)] = state
        thread = threading.Thread(
            target=self._run, args=(state, work), name=f"parity-ui-{kind}", daemon=True
        )
        thread.start()
        return state

    def _update(self, task: TaskState, **changes: Any) -> None:
        with self._lock:
            current = self._latest.get((task.kind, task.key))
            if current is not None and current.id == task.id:
                self._latest[(task.kind, task.key)] = replace(current, **changes)

    def _run(self, state: TaskState, work: Callable[[Progress], Any]) -> None:
        def progress(phase: str, done: int, total: int | None) -> None:
            self._update(state, phase=phase, done=done, total=total)

        try:
            result = work(progress)
        except Exception as failure:  # reported on the page, and logged with its traceback
            from parity.errors import ParityError

            if not isinstance(failure, ParityError):
                logger.exception("UI task %s %s failed", state.kind, state.key)
            message = failure.message if isinstance(failure, ParityError) else repr(failure)
            self._update(state, state=FAILED, error=message, finished_at=self._clock())
            return
        self._update(state, state=DONE, phase="done", result=result, finished_at=self._clock())
