"""Write a Spark DataFrame of newest rows per entity into Redis or Redis Cluster from the executors.

Each partition opens the online store from its OnlineConfig, encodes rows with the online
encoding (as materialize/batch.py does) and writes them write-if-newer through the store's own
`write`, then answers its count (or its error) to the driver. Imports pyspark only when called.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity.definitions import FeatureView
from parity.errors import MaterializationFailed, ParityError
from parity.repo.config import OnlineConfig

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

# Online store types an executor can open by itself (SQLite is one file on the driver's disk).
EXECUTOR_STORES = frozenset({"redis", "redis_cluster"})
# Rows per OnlineStore.write on an executor, and per batch the quality hook sees: the driver
# path's batch size, so the store gets calls of the same size (a cluster groups each by slot:
# larger calls put more rows in each slot's script call).
CHUNK_ROWS = 50_000
_ANSWER = "rows long, failure string"


@dataclass(frozen=True)
class PartitionWrite:
    """What one executor needs to write its partitions; pickled to the executors."""

    project: str
    view: FeatureView
    online: OnlineConfig
    repo_root: str
    schema: pa.Schema  # the batches' types as the engine's latest() gives them

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """mapInArrow: write the partition, then answer one row (rows written, the failure's
        text or null). A failure stops the partition's writes; what it wrote stays
        (write-if-newer: a re-run converges)."""
        import pyarrow as pa

        written, failure = 0, None
        try:
            for count in write_chunks(self, batches):
                written = count
        except Exception as error:  # answered to the driver, which raises MaterializationFailed
            failure = f"{type(error).__name__}: {error}"
        yield pa.RecordBatch.from_pydict(
            {"rows": [written], "failure": [failure]},
            schema=pa.schema([("rows", pa.int64()), ("failure", pa.string())]),
        )


def write_chunks(task: PartitionWrite, batches: Iterable[pa.RecordBatch]) -> Iterator[int]:
    """Open the store here and write the batches in chunks of CHUNK_ROWS (each one
    `OnlineStore.write`: the write-if-newer script); yields the rows written so far."""
    from parity.offline.spark_job import conform
    from parity.online.encoding import rows_from_columns
    from parity.online.open import open_online_store

    store = open_online_store(task.online, Path(task.repo_root))
    written = 0
    try:
        for chunk in chunks(batches, CHUNK_ROWS):
            columns = conform(chunk, task.schema).to_pydict()
            store.write(task.project, rows_from_columns(task.view, columns))
            written += chunk.num_rows
            yield written
    finally:
        store.close()


def chunks(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """The batches regrouped into tables of `size` rows (the last one smaller)."""
    import pyarrow as pa

    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if batch.num_rows:
            pending.append(batch)
            rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size)
            rest = table.slice(size)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending)


def latest_schema(frame: Any, view: FeatureView) -> pa.Schema:
    """The Arrow schema of the engine's latest(): Spark's own types, features as declared
    (UnixTimestamp as µs integers), so that both paths encode the same values."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    stored = {
        f.name: pa.int64() if f.dtype.kind == "UnixTimestamp" else f.dtype.to_arrow()
        for f in view.features
    }
    return pa.schema(
        [pa.field(f.name, stored.get(f.name, f.type)) for f in to_arrow_schema(frame.schema)]
    )


def write_frame(
    frame: Any,
    view: FeatureView,
    project: str,
    online: OnlineConfig,
    repo_root: Path,
    *,
    observe: Callable[[pa.RecordBatch], None] | None = None,
) -> int:
    """Write `frame` (a view's newest rows: join keys, __ts, __created, features, as the
    Spark engine's latest_frame gives them) from the executors; returns the rows written.
    `observe` then sees every row on the driver, streamed from the cached frame in batches of
    CHUNK_ROWS. A failed partition raises MaterializationFailed once every partition answered."""
    from parity.offline.spark_job import SparkJob

    if online.type not in EXECUTOR_STORES:
        raise MaterializationFailed(
            f"online store type '{online.type}' cannot be written from Spark executors; only "
            f"{sorted(EXECUTOR_STORES)} can (the driver writes the others)"
        )
    schema = latest_schema(frame, view)
    task = PartitionWrite(project, view, online, str(repo_root), schema)
    # Kept for the quality pass after the write, so that it reads the rows written, not a rerun.
    cached = frame.persist() if observe is not None else frame
    try:
        answers = _run_writes(cached, task)
        written = sum(int(a["rows"]) for a in answers)
        failures = [a["failure"] for a in answers if a["failure"] is not None]
        if failures:
            raise MaterializationFailed(
                f"materializing view '{view.name}' from Spark: {len(failures)} of "
                f"{len(answers)} partitions failed ({written} rows were written, write-if-newer, "
                f"so a re-run converges); first failure: {failures[0]}"
            )
        if observe is not None:
            with quiet_pyspark():
                for batch in SparkJob(cached, schema).to_batches(CHUNK_ROWS):
                    observe(batch)
    finally:
        if observe is not None:
            cached.unpersist()
    log.info("wrote %d rows of %s from %d Spark partitions", written, view.name, len(answers))
    return written


def _run_writes(frame: Any, task: PartitionWrite) -> list[Any]:
    """The partitions' answers; a job that fails before they answer (the rows' query, or an
    executor that cannot run the writer) raises MaterializationFailed with Spark's first line."""
    import pyarrow as pa

    from parity.offline.spark_job import run
    from parity.offline.spark_transfer import collect_arrow

    try:
        with quiet_pyspark():
            batches = run(lambda: collect_arrow(frame.mapInArrow(task, _ANSWER)))
        return pa.Table.from_batches(batches).to_pylist() if batches else []
    except ParityError:
        raise
    except Exception as error:
        cause = spark_cause(str(error)) or type(error).__name__
        raise MaterializationFailed(
            f"materializing view '{task.view.name}' from Spark: the job failed before its "
            f"partitions answered: {cause}. Executors need parity installed (with its redis "
            "extra) and must reach the online store; nothing was recorded, run it again"
        ) from None


def spark_cause(text: str) -> str:
    """The line of a Spark error that says what went wrong: a Python traceback's last line, else
    the innermost Java cause (`Caused by: ...`, or the failure line's last `...: message`), Java
    frames and py4j's preamble dropped; at most 300 characters."""
    lines = [line for line in text.splitlines() if line.strip()]
    if any("Traceback (most recent call last)" in line for line in lines):
        skip = (":", "An error occurred", "org.", "java.", "Caused by", "Driver stacktrace")
        tail = [
            line
            for line in lines
            if not line[0].isspace() and not line.startswith(skip) and "Traceback" not in line
        ]
        return tail[-1][:300] if tail else ""
    causes = [line.removeprefix("Caused by: ") for line in lines if line.startswith("Caused by: ")]
    for line in [*causes[-1:], *lines]:  # the innermost cause, if Java names one
        if line.startswith(": ") or "Exception: " in line or "Error: " in line:
            return line.rpartition("): ")[2].removeprefix(": ")[:300]
    return lines[0][:300] if lines else ""


@contextmanager
def quiet_pyspark() -> Iterator[None]:
    """pyspark 3.5's mapInArrow checks pandas with distutils' LooseVersion (a
    DeprecationWarning on every call)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield
