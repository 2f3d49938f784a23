"""The OfflineEngine protocol and RetrievalJob: what every offline engine (DuckDB, Spark) offers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from parity.definitions import FeatureView
from parity.offline.entity_frame import EntityFrame
from parity.offline.request import RetrievalRequest

if TYPE_CHECKING:
    import pyarrow as pa


class RetrievalJob(Protocol):
    """A lazily run retrieval. Each method runs it; results stream where the method allows."""

    def to_arrow(self) -> pa.Table: ...

    def to_pandas(self) -> Any: ...

    def to_parquet(self, path: str | Path, progress: Callable[[float], None] | None = None) -> int:
        """Write the result to one Parquet file without holding it in memory; returns rows.
        `progress`, if given, is called with the share done (0.0 to 1.0) while it runs."""
        ...

    def to_batches(self, batch_size: int = 131_072) -> Iterator[pa.RecordBatch]: ...


class OfflineEngine(Protocol):
    def historical(
        self, request: RetrievalRequest, entity: EntityFrame, timestamp_column: str
    ) -> RetrievalJob:
        """Point-in-time join of `entity` with the requested features (docs/retrieval.md)."""
        ...

    def interval(
        self, request: RetrievalRequest, start: datetime, end: datetime, timestamp_column: str
    ) -> RetrievalJob:
        """Every (keys, event time) of the views' rows in [start, end], with its features."""
        ...

    def latest(
        self, view: FeatureView, start: datetime, end: datetime, batch_size: int = 50_000
    ) -> Iterator[pa.RecordBatch]:
        """Per entity, the newest row of `view` with event time in [start, end] (the retrieval
        tie rule), streamed: join keys, __ts, __created (µs) and the features."""
        ...

    def events(
        self, view: FeatureView, start: datetime, end: datetime, batch_size: int = 50_000
    ) -> Iterator[pa.RecordBatch]:
        """Every row of `view`'s source with event time in [start, end], in ingestion order:
        join keys, __ts and __ord (ingestion order), and the view's input columns."""
        ...

    def describe(self, text: str, *, sql: bool) -> pa.Schema:
        """The schema of an entity frame given as a Parquet path or a SQL query."""
        ...
