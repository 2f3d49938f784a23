"""Datasets: training sets recorded in the registry with their lineage (refs, version, fingerprint).

An optional ability of a registry store (the `DatasetStore` protocol); records are immutable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class DatasetRecord:
    """A training set as built: what it holds, from which registry version, and its fingerprint."""

    project: str
    name: str
    created_at: datetime
    author: str
    registry_version: int
    feature_refs: tuple[str, ...]
    feature_service: str | None
    row_count: int
    fingerprint: str
    path: str
    entity_source: str


@runtime_checkable
class DatasetStore(Protocol):
    def record_dataset(self, record: DatasetRecord) -> None:
        """Store a new record; raise DatasetExists if the name is taken in that project."""
        ...

    def get_dataset(self, project: str, name: str) -> DatasetRecord:
        """Raise DatasetNotFound if there is none."""
        ...

    def list_datasets(self, project: str) -> list[DatasetRecord]:
        """Oldest first."""
        ...
