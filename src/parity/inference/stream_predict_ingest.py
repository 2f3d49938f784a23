"""Waiting for `parity ingest` before a stream score reads its features (`parity predict stream`).

A score includes its own event: its features are those `get_historical_features` gives at the
event's own time. Online, that holds once `parity ingest` (its own consumer group on the same
stream, acknowledging each event after applying it to the tiles) has applied the event and every
earlier one. Applied means: delivered to the ingest group (its last-delivered id is at or after
the event) and no longer pending there (acknowledged). The worker polls the group (XINFO GROUPS,
XPENDING) until every event of the batch is applied, or the wait runs out; the events still not
applied then are scored anyway and marked `ingest_behind` (docs/lifecycle.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from parity.ingest.stream import stream_order

POLL_FIRST_S, POLL_MAX_S = 0.002, 0.02  # the first poll after 2 ms, then 1.5x, at most 20 ms


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def not_applied(ids: Sequence[str], delivered: int | None, lowest_pending: int | None) -> set[str]:
    """The ids the ingest group has not applied: not yet delivered to it (after `delivered`, the
    order of its last-delivered id; None: the group does not exist) or at or after its lowest
    pending (delivered, not acknowledged) message. Pure."""
    if delivered is None:
        return set(ids)
    return {
        i
        for i in ids
        if stream_order(i) > delivered
        or (lowest_pending is not None and stream_order(i) >= lowest_pending)
    }


def ingest_state(client: Any, key: str, group: str, last: str) -> tuple[int | None, int | None]:
    """The ingest group's last-delivered order (None: no such group) and the order of its lowest
    pending message up to `last` (None: none pending)."""
    delivered = None
    for info in client.xinfo_groups(key):
        if _text(info.get("name", b"")) == group:
            delivered = stream_order(_text(info.get("last-delivered-id", b"0-0")))
    if delivered is None:
        return None, None
    pending = client.xpending_range(key, group, min="-", max=last, count=1)
    return delivered, (stream_order(_text(pending[0]["message_id"])) if pending else None)


def wait_for_ingest(
    client: Any, key: str, group: str, ids: Sequence[str], wait_ms: int
) -> set[str]:
    """Poll until the ingest group `group` has applied every id, at most `wait_ms`; the ids still
    not applied then. A missing group is not waited for (no `parity ingest` runs on the source):
    every id is returned at once. Redis errors other than a missing group propagate (the worker
    retries the batch, as for any unreachable store)."""
    if not ids:
        return set()
    last = max(ids, key=stream_order)
    deadline = time.monotonic() + wait_ms / 1000
    pause = POLL_FIRST_S
    while True:
        try:
            delivered, lowest = ingest_state(client, key, group, last)
        except Exception as error:  # the group (or the stream) was deleted under the poll
            if "NOGROUP" not in str(error) and "no such key" not in str(error):
                raise
            delivered, lowest = None, None
        behind = not_applied(ids, delivered, lowest)
        left = deadline - time.monotonic()
        if not behind or delivered is None or left <= 0:
            return behind
        time.sleep(min(pause, left))
        pause = min(pause * 1.5, POLL_MAX_S)


__all__ = ["ingest_state", "not_applied", "wait_for_ingest"]
