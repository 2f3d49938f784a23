"""Write a Spark DataFrame of newest rows per entity into Redis or Redis Cluster from the executors.

Each partition opens the online store from its OnlineConfig, encodes rows with the online
encoding (as materialize/batch.py does) and writes them write-if-newer through the store's own
`write`, then answers its count (or its error) to the driver. Imports pyspark only when called.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity.definitions import FeatureView
from parity.errors import MaterializationFailed
from parity.repo.config import OnlineConfig

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

# Online store types an executor can open by itself (SQLite is one file on the driver's disk).
EXECUTOR_STORES = frozenset({"redis", "redis_cluster"})
# Rows per Arrow batch the driver builds for the quality hook: the engine's streaming batch size.
OBSERVE_BATCH_ROWS = 50_000
_COUNT_SCHEMA = "rows long, failure string"


@dataclass(frozen=True)
class PartitionWrite:
    """What one executor needs to write its partitions; pickled to the executors."""

    project: str
    view: FeatureView
    online: OnlineConfig
    repo_root: str

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """mapInArrow: write every batch of the partition, then answer one row
        (rows written, the failure's text or null). A failure stops the partition's writes;
        what it wrote stays (write-if-newer: a re-run converges)."""
        import pyarrow as pa

        written, failure = 0, None
        try:
            for count in write_batches(self, batches):
                written = count
        except Exception as error:  # answered to the driver, which raises MaterializationFailed
            failure = f"{type(error).__name__}: {error}"
        yield pa.RecordBatch.from_pydict(
            {"rows": [written], "failure": [failure]},
            schema=pa.schema([("rows", pa.int64()), ("failure", pa.string())]),
        )


def write_batches(task: PartitionWrite, batches: Iterator[pa.RecordBatch]) -> Iterator[int]:
    """Open the store here and write each batch (one `OnlineStore.write`, which chunks it into
    write-if-newer script calls); yields the rows written so far after each batch."""
    from parity.online.encoding import rows_from_columns
    from parity.online.open import open_online_store

    store = open_online_store(task.online, Path(task.repo_root))
    written = 0
    try:
        for batch in batches:
            if batch.num_rows:
                store.write(task.project, rows_from_columns(task.view, batch.to_pydict()))
                written += batch.num_rows
                yield written
    finally:
        store.close()


def write_frame(
    frame: Any,
    view: FeatureView,
    project: str,
    online: OnlineConfig,
    repo_root: Path,
    *,
    observe: Callable[[pa.RecordBatch], None] | None = None,
) -> int:
    """Write `frame` (a view's newest rows: join keys, __ts, __created, features as the online
    encoding takes them) from the executors; returns the rows written. `observe` sees every row
    on the driver, in Arrow batches, after the write (from the same cached rows). A failed
    partition raises MaterializationFailed once every partition has answered."""
    if online.type not in EXECUTOR_STORES:
        raise MaterializationFailed(
            f"online store type '{online.type}' cannot be written from Spark executors; only "
            f"{sorted(EXECUTOR_STORES)} can (the driver writes the others)"
        )
    task = PartitionWrite(project, view, online, str(repo_root))
    cached = frame.persist()
    try:
        with quiet_pyspark():
            answers = cached.mapInArrow(task, _COUNT_SCHEMA).collect()
        failures = [a["failure"] for a in answers if a["failure"] is not None]
        written = sum(int(a["rows"]) for a in answers)
        if failures:
            raise MaterializationFailed(
                f"materializing view '{view.name}' from Spark: {len(failures)} of "
                f"{len(answers)} partitions failed ({written} rows were written, write-if-newer, "
                f"so a re-run converges); first failure: {failures[0]}"
            )
        if observe is not None:
            for batch in arrow_batches(cached, OBSERVE_BATCH_ROWS):
                observe(batch)
    finally:
        cached.unpersist()
    log.info("wrote %d rows of %s from %d Spark partitions", written, view.name, len(answers))
    return written


def arrow_batches(frame: Any, size: int) -> Iterator[pa.RecordBatch]:
    """The frame's rows streamed to the driver one partition at a time, as Arrow batches."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = to_arrow_schema(frame.schema)
    rows: list[dict[str, Any]] = []
    with quiet_pyspark():
        for row in frame.toLocalIterator():
            rows.append(row.asDict(recursive=True))
            if len(rows) >= size:
                yield pa.RecordBatch.from_pylist(rows, schema=schema)
                rows = []
    if rows:
        yield pa.RecordBatch.from_pylist(rows, schema=schema)


@contextmanager
def quiet_pyspark() -> Iterator[None]:
    """pyspark 3.5 checks pandas with distutils' LooseVersion (DeprecationWarning) and leaves
    the sockets of collect and toLocalIterator for the garbage collector (ResourceWarning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", ResourceWarning)
        yield
