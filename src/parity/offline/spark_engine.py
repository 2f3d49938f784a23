"""The Spark offline engine: the OfflineEngine protocol of DuckDB (same rule, same output schema)
on a SparkSession, for data that outgrows one machine (docs/scale.md). Imports pyspark."""

from __future__ import annotations

import contextlib
import glob
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.types as pat
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema

from parity.definitions import DType, FeatureView
from parity.errors import EntityFrameError, SourceSchemaError
from parity.offline import entity_frame
from parity.offline.delta import FileConstant
from parity.offline.entity_frame import EntityFrame
from parity.offline.request import RetrievalRequest, interval_keys
from parity.offline.sources import source_layout
from parity.offline.spark_frames import (
    col,
    dense_ids,
    entity_micros,
    frame_from_arrow,
    latest_frame,
    point_in_time,
    read_parquet,
    refusing_nulls,
    source_frame,
)
from parity.offline.spark_job import SparkJob
from parity.offline.spark_session import spark_session
from parity.repo.config import OfflineConfig
from parity.timeutil import to_micros

log = logging.getLogger(__name__)
_working_directory = threading.Lock()  # one SQL entity query analyzed at a time (see below)
UTC_US = pa.timestamp("us", tz="UTC")


class SparkEngine:
    """OfflineEngine on the process's SparkSession (never stopped by the engine)."""

    def __init__(self, repo_root: Path, config: OfflineConfig | None = None) -> None:
        self.repo_root = repo_root
        self.config = config or OfflineConfig(type="spark")
        self.session: SparkSession = spark_session(self.config)

    # --- sources ------------------------------------------------------------------------------

    def _files(self, view: FeatureView) -> tuple[list[Path], tuple[FileConstant, ...]]:
        files, constants = source_layout(view.batch_source, self.repo_root)
        if not files:
            raise SourceSchemaError(
                f"feature view '{view.name}': source path '{view.batch_source.path}' matches "
                "no Parquet files; generate the data or fix the path"
            )
        return files, constants

    def source_frame(self, view: FeatureView, columns: Sequence[str]) -> DataFrame:
        """The view's rows: join keys, __ts, __created, __ord (ingestion order) and `columns`."""
        files, constants = self._files(view)
        return source_frame(self.session, view, columns, files, constants)

    def latest_frame(self, view: FeatureView, start: datetime, end: datetime) -> DataFrame:
        """Per entity, the newest row of `view` with event time in [start, end]."""
        source = self.source_frame(view, view.feature_names)
        return latest_frame(source, view, to_micros(start), to_micros(end))

    def latest(
        self, view: FeatureView, start: datetime, end: datetime, batch_size: int = 50_000
    ) -> Iterator[pa.RecordBatch]:
        frame = self.latest_frame(view, start, end)
        schema = _arrow_schema(frame, {f.name: _stored(f.dtype) for f in view.features})
        yield from SparkJob(frame, schema).to_batches(batch_size)

    def events(
        self, view: FeatureView, start: datetime, end: datetime, batch_size: int = 50_000
    ) -> Iterator[pa.RecordBatch]:
        inputs = [f.name for f in view.inputs]
        rows = self.source_frame(view, inputs).where(
            col("__ts").between(to_micros(start), to_micros(end))
        )
        frame = rows.drop("__created").orderBy("__ord")
        schema = _arrow_schema(frame, {f.name: f.dtype.to_arrow() for f in view.inputs})
        yield from SparkJob(frame, schema).to_batches(batch_size)

    # --- entity frames ------------------------------------------------------------------------

    def _entity_path(self, text: str) -> str:
        path = Path(text)
        return str(path if path.is_absolute() else self.repo_root / path)

    def _entity_reader(self, text: str, *, sql: bool) -> DataFrame:
        try:
            if sql:
                return self._sql_from_repo_root(text)
            return read_parquet(self.session, [Path(self._entity_path(text))])
        except Exception as error:  # Spark's parse and analysis errors
            what = "SQL entity query" if sql else f"entity Parquet path '{text}'"
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise EntityFrameError(f"{what} cannot be read: {first}") from None

    def _sql_from_repo_root(self, text: str) -> DataFrame:
        """`text` analyzed with relative paths (parquet.`data/x.parquet`) resolved from the repo
        root, as DuckDB's file_search_path does: the local file system's working directory is
        the repo root while Spark analyzes the query (which qualifies every path it reads)."""
        jvm: Any = self.session._jvm
        local = jvm.org.apache.hadoop.fs.FileSystem.getLocal(
            self.session._jsc.hadoopConfiguration()
        )
        with _working_directory:
            before = local.getWorkingDirectory()
            local.setWorkingDirectory(
                jvm.org.apache.hadoop.fs.Path(self.repo_root.resolve().as_uri())
            )
            try:
                return self.session.sql(text)
            finally:
                local.setWorkingDirectory(before)

    def describe(self, text: str, *, sql: bool) -> pa.Schema:
        """Spark's schema of the frame; for Parquet, the files' own (types and nullability as
        written, which DuckDB also reports) when their footers merge."""
        frame = self._entity_reader(text, sql=sql)
        if not sql:
            with contextlib.suppress(pa.ArrowInvalid, OSError):
                files = glob.glob(self._entity_path(text), recursive=True)
                return pa.unify_schemas([pq.read_schema(f) for f in sorted(files)])
        return to_arrow_schema(frame.schema)

    def _entity(
        self, entity: EntityFrame, timestamp_column: str, request: RetrievalRequest
    ) -> DataFrame:
        """The entity rows with __rid (their order) and __ts (µs UTC)."""
        if entity.table is not None:
            rows = pa.array(np.arange(entity.table.num_rows, dtype=np.int64))
            frame = frame_from_arrow(self.session, entity.table.append_column("__rid", rows))
            return frame.withColumn("__ts", entity_micros(frame, timestamp_column))
        if entity.path is not None:
            files = sorted(
                Path(p) for p in glob.glob(self._entity_path(entity.path), recursive=True)
            )
            frame = read_parquet(self.session, files, order=("__rid", True))
        else:
            frame = dense_ids(self._entity_reader(str(entity.sql), sql=True), "__rid")
        frame = frame.withColumn("__ts", entity_micros(frame, timestamp_column))
        checks = [(timestamp_column, entity_frame.NO_TIME)]
        checks += [(k, entity_frame.NULL_KEY) for k in entity_frame.join_keys(request)]
        return refusing_nulls(frame, checks)

    # --- retrieval ----------------------------------------------------------------------------

    def _join(self, request: RetrievalRequest, left: DataFrame) -> DataFrame:
        for view_request in request.views:
            view = view_request.view
            if view.is_aggregated:
                from parity.offline.spark_windows import (  # type: ignore[import-not-found,unused-ignore]
                    add_windows,
                )

                columns = list(dict.fromkeys(a.column for a in view.aggregations))
                left = add_windows(left, self.source_frame(view, columns), view_request)
            else:
                events = self.source_frame(view, view_request.features)
                left = point_in_time(left, view_request, events)
        return left

    def historical(
        self, request: RetrievalRequest, entity: EntityFrame, timestamp_column: str
    ) -> SparkJob:
        left = self._entity(entity, timestamp_column, request)
        joined = self._join(request, left)
        names = [n for n in joined.columns if n not in ("__rid", "__ts")]
        stamp = F.timestamp_micros(col("__ts")).alias(timestamp_column)
        output = [stamp if n == timestamp_column else col(n) for n in names]
        fields = {f.name: _plain(f.type) for f in entity.schema}
        fields[timestamp_column] = UTC_US  # rewritten, as DuckDB's make_timestamp
        fields.update(_feature_types(request))
        schema = _arrow_schema(joined.select(*output), fields)
        return SparkJob(joined.select(*output, col("__rid")), schema, order="__rid")

    def interval(
        self, request: RetrievalRequest, start: datetime, end: datetime, timestamp_column: str
    ) -> SparkJob:
        keys = interval_keys(request)
        lo, hi = to_micros(start), to_micros(end)
        parts = [
            self.source_frame(v.view, ())
            .where(col("__ts").between(lo, hi))
            .select(*map(col, keys), col("__ts"))
            for v in request.views
        ]
        rows = parts[0]
        for part in parts[1:]:
            rows = rows.unionByName(part)
        ordered = rows.distinct().orderBy(col("__ts"), *map(col, keys))
        # After a total order, these ids rise with it and are the same on every read.
        left = ordered.select(
            *map(col, keys),
            F.timestamp_micros(col("__ts")).alias(timestamp_column),
            F.monotonically_increasing_id().alias("__rid"),
            col("__ts"),
        )
        joined = self._join(request, left).drop("__ts")
        fields = {timestamp_column: UTC_US, **_feature_types(request)}
        schema = _arrow_schema(joined.drop("__rid"), fields)
        return SparkJob(joined, schema, order="__rid")


def _feature_types(request: RetrievalRequest) -> dict[str, pa.DataType]:
    types = {}
    for view_request in request.views:
        view = view_request.view
        for feature, output in zip(view_request.features, view_request.output_names, strict=True):
            types[output] = view.feature(feature).dtype.to_arrow()
    return types


def _stored(dtype: DType) -> pa.DataType:
    """A feature's Arrow type in latest(): UnixTimestamp as µs integers."""
    return pa.int64() if dtype.kind == "UnixTimestamp" else dtype.to_arrow()


def _plain(kind: pa.DataType) -> pa.DataType:
    """The type DuckDB hands back for an entity column of `kind` (no large variants, categories
    as their values)."""
    if pat.is_dictionary(kind):
        return _plain(kind.value_type)
    if pat.is_large_string(kind):
        return pa.string()
    if pat.is_large_binary(kind):
        return pa.binary()
    return kind


def _arrow_schema(frame: DataFrame, fields: Mapping[str, pa.DataType]) -> pa.Schema:
    """The Arrow schema of `frame`'s result: `fields`' types where given, else Spark's own
    mapping; every field nullable, as DuckDB's results are (docs/retrieval.md)."""
    return pa.schema(
        pa.field(f.name, fields.get(f.name, f.type)) for f in to_arrow_schema(frame.schema)
    )
