"""Materialization history: which interval of which view reached the online store, and when.

An optional ability of a registry store (the `MaterializationLog` protocol); the `end` of a view's
last finished run is its watermark for incremental runs (a `materialize` over an earlier interval
moves it back: it rebuilt what reads at its END need, so incremental runs continue from there).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class MaterializationRecord:
    project: str
    view: str
    start: datetime
    end: datetime
    rows: int
    finished_at: datetime


@runtime_checkable
class MaterializationLog(Protocol):
    def record_materialization(self, record: MaterializationRecord) -> None: ...

    def watermark(self, project: str, view: str) -> datetime | None:
        """The `end` of the view's last finished run, or None if it never ran."""
        ...
