"""SparkJob: a retrieval as a Spark DataFrame, run by its methods; results come back as Arrow of
the same schema DuckDB gives, and to_parquet writes from the executors, never via the driver."""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from parity.errors import EntityFrameError, SourceSchemaError

log = logging.getLogger(__name__)

_ENTITY_ERROR = re.compile(r"entity frame column '.*?' row \d+ has .*?: drop the row or fill it in")
WRITE_SHARE = 0.9  # share of to_parquet's progress given to Spark's write; the rest is the merge


class SparkJob:
    """A retrieval as a Spark DataFrame ordered as the output; `schema` is the Arrow schema of
    the result (the one DuckDB gives), applied to whatever Spark hands back."""

    def __init__(self, frame: DataFrame, schema: pa.Schema) -> None:
        self.frame = frame
        self.schema = schema

    def to_arrow(self) -> pa.Table:
        batches = run(lambda: self.frame._collect_as_arrow())
        if not batches:
            return self.schema.empty_table()
        return conform(pa.Table.from_batches(batches), self.schema)

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas()

    def to_batches(self, batch_size: int = 131_072) -> Iterator[pa.RecordBatch]:
        """Streamed: the executors turn each partition into Arrow IPC bytes, which the driver
        fetches one partition at a time (toLocalIterator), in order."""
        blobs = self.frame.mapInArrow(_to_ipc, T.StructType([T.StructField("ipc", T.BinaryType())]))
        pending: list[pa.RecordBatch] = []
        rows = 0
        for row in run(lambda: blobs.toLocalIterator()):
            for batch in pa.ipc.open_stream(row[0]):
                pending.append(batch)
                rows += batch.num_rows
                while rows >= batch_size:
                    table = pa.Table.from_batches(pending)
                    yield from conform(table.slice(0, batch_size), self.schema).to_batches()
                    rest = table.slice(batch_size)
                    pending, rows = rest.to_batches(), rest.num_rows
        if rows:
            yield from conform(pa.Table.from_batches(pending), self.schema).to_batches()

    def to_parquet(self, path: str | Path, progress: Callable[[float], None] | None = None) -> int:
        """Spark's executors write part files into a folder beside the target; they are then
        appended, row group by row group, to one Parquet file that is renamed into place."""
        target = Path(path).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:12]
        folder = target.parent / f".{target.name}.parts-{token}"
        partial = target.parent / f".{target.name}.{token}.tmp"
        report = progress or (lambda share: None)
        try:
            run(lambda: _write_parts(self.frame, folder, report))
            rows = concatenate(sorted(folder.glob("part-*.parquet")), partial, self.schema, report)
            os.replace(partial, target)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            partial.unlink(missing_ok=True)
        report(1.0)
        return rows


def _to_ipc(batches: Iterable[pa.RecordBatch]) -> Iterable[pa.RecordBatch]:
    """Runs on the executors: each batch of a partition as one Arrow IPC stream in one cell."""
    for batch in batches:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        yield pa.record_batch([pa.array([sink.getvalue().to_pybytes()], pa.binary())], ["ipc"])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` (as Spark gives it) with `schema`'s names and types."""
    columns = [_cast(table.column(i), field.type) for i, field in enumerate(schema)]
    return pa.Table.from_arrays(columns, schema=schema)


def _cast(column: pa.ChunkedArray, kind: pa.DataType) -> pa.ChunkedArray:
    if column.type == kind:
        return column
    if pa.types.is_null(kind):
        return pa.chunked_array([pa.nulls(len(column))], pa.null())
    return column.cast(kind)


def concatenate(
    parts: list[Path], target: Path, schema: pa.Schema, progress: Callable[[float], None]
) -> int:
    """Append the parts' row groups, in order, to one zstd Parquet file; one row group in
    memory at a time. Returns the rows written."""
    groups = [(part, pq.ParquetFile(part)) for part in parts]
    total = sum(file.metadata.num_rows for _, file in groups) or 1
    rows = 0
    with pq.ParquetWriter(target, schema, compression="zstd") as writer:
        for _, file in groups:
            for index in range(file.num_row_groups):
                table = conform(file.read_row_group(index), schema)
                writer.write_table(table)
                rows += table.num_rows
                progress(WRITE_SHARE + (1 - WRITE_SHARE) * rows / total)
            file.close()
    return rows


def _write_parts(frame: DataFrame, folder: Path, progress: Callable[[float], None]) -> None:
    """Write `frame` as Parquet part files into `folder`, reporting the share of Spark tasks
    done (scaled to WRITE_SHARE) while it runs."""
    context = frame.sparkSession.sparkContext
    group = f"parity-to-parquet-{uuid.uuid4().hex[:12]}"
    outcome: dict[str, BaseException] = {}

    def write() -> None:
        context.setJobGroup(group, "parity to_parquet")
        try:
            frame.write.mode("error").parquet(str(folder))
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=write, name="parity-spark-write", daemon=True)
    worker.start()
    done = 0.0
    while worker.is_alive():
        worker.join(0.25)
        done = max(done, _task_share(context, group))
        progress(WRITE_SHARE * done)
    if "error" in outcome:
        raise outcome["error"]


def _task_share(context: Any, group: str) -> float:
    """Completed tasks / tasks of the group's stages known so far (0.0 when none yet)."""
    tracker = context.statusTracker()
    done = total = 0
    for job in tracker.getJobIdsForGroup(group):
        info = tracker.getJobInfo(job)
        for stage in info.stageIds if info else ():
            stage_info = tracker.getStageInfo(stage)
            if stage_info:
                done += stage_info.numCompletedTasks
                total += stage_info.numTasks
    return done / total if total else 0.0


def run(action: Callable[[], Any]) -> Any:
    """Run a Spark action; entity-frame refusals and unreadable sources become Parity errors."""
    try:
        return action()
    except Exception as error:
        text = str(error)
        refused = _ENTITY_ERROR.search(text)
        if refused:
            raise EntityFrameError(refused.group(0)) from None
        if "PATH_NOT_FOUND" in text or "FileNotFoundException" in text:
            raise SourceSchemaError(f"a source could not be read: {_first_line(text)}") from None
        raise


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]
