"""Read ahead: iterate a producer (the offline engine's record batches) on a thread of its own,
a bounded number of items ahead of the consumer, so the join runs while the model loads and the
next batch is fetched while the current one is scored and written. Errors reach the consumer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, cast

T = TypeVar("T")
_POLL_S = 0.1  # how often a blocked producer checks whether the consumer has gone


class Prefetched(Generic[T]):
    """`iter(Prefetched(items))` yields what `items` yields, in order; `close()` (or leaving a
    `with` block) stops the producer thread and closes `items` on it. `cancel`, if given, is
    called by `close()` while the producer is still running, to interrupt a producer blocked in
    its work (a join that has not produced its first batch when scoring fails or Ctrl-C comes)."""

    def __init__(
        self,
        items: Iterator[T],
        depth: int = 2,
        name: str = "parity-prefetch",
        cancel: Callable[[], None] | None = None,
    ) -> None:
        self._items = items
        self._cancel = cancel
        self._queue: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put("item", item):
                    return
            self._put("end", None)
        except BaseException as error:  # handed to the consumer's thread, raised there
            self._put("error", error)
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()

    def _put(self, kind: str, value: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put((kind, value), timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            kind, value = self._queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise cast(BaseException, value)
            yield cast(T, value)

    def close(self) -> None:
        self._stop.set()
        if self._cancel is not None and self._thread.is_alive():
            self._cancel()
        self._thread.join()

    def __enter__(self) -> Prefetched[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
