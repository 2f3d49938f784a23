"""What the online side can say about itself: how fresh each view is and how many windowed
values it refused. Signals only; reads no store itself (the facade hands it its sources)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from parity.online.reads import Refusals


class OnlineMonitor:
    """`store.monitoring`: freshness per online view and refused windowed reads per view."""

    def __init__(
        self, freshness: Callable[[], dict[str, datetime | None]], refusals: Refusals
    ) -> None:
        self._freshness = freshness
        self._refusals = refusals

    def freshness(self) -> dict[str, datetime | None]:
        """Per online view, the newest data written online: its materialization watermark or
        this process's last push to it, whichever is later; None when neither happened."""
        return self._freshness()

    def refused_window_reads(self) -> dict[str, int]:
        """Per aggregated view, how many window values this process answered OUTSIDE_MAX_AGE
        because the view's last materialization did not write the tiles they need (read
        later than materialize.read_slack after its END; see docs/aggregations.md)."""
        return self._refusals.counts()
