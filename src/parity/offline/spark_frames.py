"""DataFrames of the Spark offline engine: source rows, entity frames, the point-in-time join and
the newest row per entity, with DuckDB's rules (offline/duckdb_sql.py). Builds plans; runs nothing.

Imports pyspark, so only the Spark engine loads it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.types as pat
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from parity.definitions import DType, FeatureView
from parity.errors import EntityFrameError
from parity.offline.delta import FileConstant
from parity.offline.request import ViewRequest
from parity.offline.spark_constants import with_constants
from parity.offline.spark_transfer import collect_rows
from parity.timeutil import NO_CREATED

ORDER_SHIFT = 40  # __ord = file position << 40 + row index, as offline/duckdb_sql.py
_SIDE, _ROW, _HIT = "__parity_side", "__parity_row", "__parity_hit"

_SPARK_TYPES: dict[str, T.DataType] = {
    "Int32": T.IntegerType(),
    "Int64": T.LongType(),
    "Float32": T.FloatType(),
    "Float64": T.DoubleType(),
    "String": T.StringType(),
    "Bool": T.BooleanType(),
    "Bytes": T.BinaryType(),
    "UnixTimestamp": T.TimestampType(),
}
_INTEGRAL = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)


def col(name: str) -> Column:
    """A top-level column by its exact name (dots and backticks are not parsed)."""
    return F.col("`" + name.replace("`", "``") + "`")


def spark_type(dtype: DType) -> T.DataType:
    if dtype.element is not None:
        return T.ArrayType(spark_type(dtype.element))
    return _SPARK_TYPES[dtype.kind]


def micros(column: Column) -> Column:
    """A timestamp, naive timestamp (UTC) or date column as µs since the epoch, UTC."""
    return F.unix_micros(column.cast(T.TimestampType()))


def with_file_order(frame: DataFrame, files: Sequence[Path], name: str, dense: bool) -> DataFrame:
    """`frame` (read straight from `files`) plus column `name`: the row's place in the files
    read in list order. `dense`: 0, 1, 2... (row counts from the footers); else DuckDB's __ord:
    the row index in a single file, else (1-based file position) << 40 + row index."""
    import pyarrow.parquet as pq

    starts: list[int] = []
    total = 0
    for position, file in enumerate(files):
        if dense:
            starts.append(total)
            total += pq.read_metadata(file).num_rows
        else:
            starts.append(0 if len(files) == 1 else (position + 1) << ORDER_SHIFT)
    index = F.col("_metadata.row_index")
    if len(files) == 1:
        return frame.withColumn(name, index + F.lit(starts[0]))
    # Spark names files by URI (file:/a%20b/c); decode it back to the path ('+' is literal).
    uri = F.url_decode(F.replace(F.col("_metadata.file_path"), F.lit("+"), F.lit("%2B")))
    path = F.regexp_replace(uri, "^file:(//)?", "")
    pairs = [item for f, start in zip(files, starts, strict=True) for item in (str(f), start)]
    start = F.element_at(F.create_map(*(F.lit(v) for v in pairs)), path)
    return frame.withColumn(name, start.cast(T.LongType()) + index)


NANOS_AS_LONG = "spark.sql.legacy.parquet.nanosAsLong"


def read_parquet(
    session: SparkSession,
    files: Sequence[Path],
    columns: Sequence[str] | None = None,
    order: tuple[str, bool] | None = None,
) -> DataFrame:
    """The files' rows (only `columns` when given, else all), their columns merged by name
    (DuckDB's union_by_name); `order` = (name, dense) adds with_file_order's column. The schema
    comes from the footers read here, which spares Spark a job per read to infer it.

    Spark 3.5 has no nanosecond time type and refuses TIMESTAMP(NANOS) columns (pandas' default
    Parquet): they are read as longs (spark.sql.legacy.parquet.nanosAsLong) and floored to µs
    timestamps, as DuckDB and entity frames truncate nanoseconds (docs/retrieval.md)."""
    footers = _footers(files)
    nanos = {
        f.name
        for schema in footers
        for f in schema
        if _nanos(f.type) and (columns is None or f.name in columns)
    }
    if nanos and session.conf.get(NANOS_AS_LONG, "false") != "true":
        session.conf.set(NANOS_AS_LONG, "true")  # a session parity did not start
    schema = footer_schema(footers, columns)
    reader = session.read if schema is None else session.read.schema(schema)
    frame = reader.option("mergeSchema", "true").parquet(*(str(f) for f in files))
    if order is not None:
        frame = with_file_order(frame, files, *order)
    for name in sorted(nanos & set(frame.columns)):
        frame = frame.withColumn(name, _floor_nanos(name))
    return frame


def _nanos(kind: pa.DataType) -> bool:
    return bool(pat.is_timestamp(kind) and kind.unit == "ns")


def _floor_nanos(name: str) -> Column:
    """A column of ns-since-epoch longs as timestamps, floored to the µs."""
    quoted = "`" + name.replace("`", "``") + "`"
    return F.timestamp_micros(F.expr(f"({quoted} - pmod({quoted}, 1000)) div 1000"))


def _footers(files: Sequence[Path]) -> list[pa.Schema]:
    """The files' footer schemas ([] when one cannot be read: Spark reports it, naming it)."""
    import pyarrow.parquet as pq

    try:
        return [pq.read_schema(f) for f in files]
    except (pa.ArrowInvalid, OSError):
        return []


def footer_schema(
    footers: Sequence[pa.Schema], columns: Sequence[str] | None = None
) -> T.StructType | None:
    """The Spark schema of the footers merged, limited to `columns` when given (a column no
    view reads may differ in type between files, as DuckDB allows); None when they do not
    merge or a type needs Spark's own reading of Parquet (unsigned integers, nested structs...).
    Nanosecond times are longs here (see read_parquet)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    if not footers:
        return None
    wanted = None if columns is None else set(columns)
    kept = [pa.schema([f for f in s if wanted is None or f.name in wanted]) for s in footers]
    try:
        merged = pa.unify_schemas(kept)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None  # Spark reports it, naming the file
    fields = [pa.field(f.name, _plain_type(f.type)) for f in merged]
    # read as longs (spark.sql.legacy.parquet.nanosAsLong); nested ones stay Spark's to refuse
    fields = [f.with_type(pa.int64()) if _nanos(f.type) else f for f in fields]
    if not all(_plainly_read(f.type) for f in fields):
        return None
    return from_arrow_schema(pa.schema(fields), prefer_timestamp_ntz=True)


def _plainly_read(kind: pa.DataType) -> bool:
    if pat.is_list(kind):
        return _plainly_read(kind.value_type)
    if pat.is_timestamp(kind):
        return str(kind.unit) in ("ms", "us")
    if pat.is_dictionary(kind):
        return bool(pat.is_string(kind.value_type))
    return bool(
        pat.is_boolean(kind)
        or (pat.is_signed_integer(kind))
        or pat.is_float32(kind)
        or pat.is_float64(kind)
        or pat.is_string(kind)
        or pat.is_binary(kind)
        or pat.is_date32(kind)
    )


def _plain_type(kind: pa.DataType) -> pa.DataType:
    if pat.is_dictionary(kind):
        return kind.value_type
    if pat.is_list(kind):
        return pa.list_(_plain_type(kind.value_type))
    return kind


def source_frame(
    session: SparkSession,
    view: FeatureView,
    columns: Sequence[str],
    files: Sequence[Path],
    constants: Sequence[FileConstant] = (),
) -> DataFrame:
    """A view's rows: keys, __ts, __created, __ord and `columns` cast to their dtypes; rows with
    a null event time or join key dropped (offline/duckdb_sql.py source_sql). `constants` are
    columns not in the files (a Delta table's partition values, one per file)."""
    source = view.batch_source
    needed = [source.column_for(k) for k in view.join_keys]
    needed += [source.column_for(n) for n in columns]
    needed += [c for c in (source.timestamp_field, source.created_timestamp_column) if c]
    frame = read_parquet(session, files, needed, order=("__ord", False))
    if constants:
        frame = with_constants(frame, constants, "__ord")
    created: Column = F.lit(NO_CREATED).cast(T.LongType())
    if source.created_timestamp_column:
        created = F.coalesce(micros(col(source.created_timestamp_column)), created)
    selected = [
        *(col(source.column_for(k)).alias(k) for k in view.join_keys),
        micros(col(source.timestamp_field)).alias("__ts"),
        created.alias("__created"),
        col("__ord"),
        *(
            col(source.column_for(n)).cast(spark_type(view.input(n).dtype)).alias(n)
            for n in columns
        ),
    ]
    present = col(source.timestamp_field).isNotNull()
    for key in view.join_keys:
        present = present & col(source.column_for(key)).isNotNull()
    return frame.where(present).select(*selected)


def _key_type(left: T.DataType, right: T.DataType) -> T.DataType:
    """The type both sides' join keys are compared as (integers of any width as longs)."""
    if isinstance(left, _INTEGRAL) and isinstance(right, _INTEGRAL):
        return T.LongType()
    return right


def point_in_time(left: DataFrame, request: ViewRequest, events: DataFrame) -> DataFrame:
    """`left` (entity columns, __rid, __ts) plus `request`'s features: per row, the source row
    with the largest __ts <= t, then the largest __created, then the largest __ord; null when
    none, or when the view's ttl cuts it.

    Entity rows become markers in their keys' stream of source rows, sorted by (time, source
    before marker, created, order); the last source row at or before each marker is the one.
    """
    view = request.view
    keys = [f"__parity_k{i}" for i in range(len(view.join_keys))]
    types = [_key_type(left.schema[k].dataType, events.schema[k].dataType) for k in view.join_keys]
    fields = [col(f).alias(f"f{i}") for i, f in enumerate(request.features)]
    sources = events.select(
        *(col(k).cast(t).alias(a) for k, t, a in zip(view.join_keys, types, keys, strict=True)),
        col("__ts").alias("__parity_ts"),
        F.lit(0).alias(_SIDE),
        col("__created").alias("__parity_created"),
        col("__ord").alias("__parity_ord"),
        F.struct(col("__ts").alias("ts"), *fields).alias(_ROW),
    )
    markers = left.select(
        *(col(k).cast(t).alias(a) for k, t, a in zip(view.join_keys, types, keys, strict=True)),
        col("__ts").alias("__parity_ts"),
        F.lit(1).alias(_SIDE),
        *(col(c) for c in left.columns),
    )
    order = ["__parity_ts", _SIDE, "__parity_created", "__parity_ord"]
    window = (
        Window.partitionBy(*keys)
        .orderBy(*order)
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    both = sources.unionByName(markers, allowMissingColumns=True)
    hit = F.last(col(_ROW), ignorenulls=True).over(window)
    found = both.select("*", hit.alias(_HIT)).where(col(_SIDE) == 1)
    fresh: Column = F.lit(True)
    if view.ttl is not None:
        ttl_us = int(view.ttl.total_seconds() * 1_000_000)
        fresh = col(_HIT)["ts"] >= col("__ts") - F.lit(ttl_us)
    outputs = [
        F.when(fresh, col(_HIT)[f"f{i}"]).alias(name) for i, name in enumerate(request.output_names)
    ]
    return found.select(*(col(c) for c in left.columns), *outputs)


def latest_frame(source: DataFrame, view: FeatureView, start_us: int, end_us: int) -> DataFrame:
    """Per entity, the newest row with __ts in [start, end] by (__ts, __created, __ord): one hash
    aggregate of max(struct), no sort. UnixTimestamp features as µs longs."""
    features = list(view.feature_names)
    rows = source.where(col("__ts").between(start_us, end_us))
    best = F.max(F.struct(col("__ts"), col("__created"), col("__ord"), *map(col, features)))
    newest = rows.groupBy(*map(col, view.join_keys)).agg(best.alias("__parity_best"))
    stamps = {f.name for f in view.features if f.dtype.kind == "UnixTimestamp"}
    values = [
        (F.unix_micros(col("__parity_best")[f]) if f in stamps else col("__parity_best")[f]).alias(
            f
        )
        for f in features
    ]
    return newest.select(
        *map(col, view.join_keys),
        col("__parity_best")["__ts"].alias("__ts"),
        col("__parity_best")["__created"].alias("__created"),
        *values,
    )


def entity_micros(frame: DataFrame, column: str) -> Column:
    """The entity timestamp as µs since the epoch, UTC (naive values are UTC)."""
    kind = frame.schema[column].dataType
    if isinstance(kind, T.TimestampType | T.TimestampNTZType | T.DateType | T.StringType):
        return micros(col(column))
    raise EntityFrameError(
        f"entity frame column '{column}' is {kind.simpleString()}, not a timestamp; convert it "
        "to timestamps"
    )


def refusing_nulls(frame: DataFrame, checks: Sequence[tuple[str, str]]) -> DataFrame:
    """`frame` whose __ts fails as rows are read (Spark's raise_error, turned into an
    EntityFrameError by the job) at a row where a checked column is null: (column, what)."""
    from parity.offline import entity_frame

    value = col("__ts")
    for column, what in reversed(checks):
        head, tail = entity_frame.null_message(column, "\x00", what).split("\x00")
        message = F.concat(F.lit(head), col("__rid").cast(T.StringType()), F.lit(tail))
        value = F.when(col(column).isNull(), F.raise_error(message)).otherwise(value)
    return frame.withColumn("__ts", value)


def dense_ids(frame: DataFrame, name: str) -> DataFrame:
    """`frame` with `name` = 0, 1, 2... in its partitions' order. Materializes `frame` first
    (localCheckpoint), so the ids are the same however often the plan is read."""
    fixed = frame.localCheckpoint(eager=True)
    parts = collect_rows(fixed.groupBy(F.spark_partition_id().alias("p")).count())
    counts = {int(row["p"]): int(row["count"]) for row in parts}
    starts: dict[int, int] = {}
    total = 0
    for part in range(fixed.rdd.getNumPartitions()):
        starts[part] = total
        total += counts.get(part, 0)
    pairs = [F.lit(v) for p, s in starts.items() for v in (p, s)]
    start = F.element_at(F.create_map(*pairs), F.spark_partition_id()) if pairs else F.lit(0)
    offset = F.monotonically_increasing_id() - F.shiftleft(F.spark_partition_id().cast("long"), 33)
    return fixed.withColumn(name, (start + offset).cast(T.LongType()))


def _sparkable(kind: pa.DataType) -> pa.DataType:
    """An Arrow type Spark reads from Arrow batches, for a column to send it."""
    if pat.is_dictionary(kind):
        return _sparkable(kind.value_type)
    if pat.is_timestamp(kind):
        return pa.timestamp("us", tz="UTC" if kind.tz is not None else None)
    if pat.is_large_string(kind) or pat.is_null(kind):
        return pa.string()
    if pat.is_large_binary(kind) or pat.is_fixed_size_binary(kind):
        return pa.binary()
    if pat.is_date64(kind):
        return pa.date32()
    if pat.is_float16(kind):
        return pa.float32()
    if pat.is_unsigned_integer(kind):
        return {8: pa.int16(), 16: pa.int32(), 32: pa.int64()}.get(kind.bit_width, kind)
    if pat.is_list(kind) or pat.is_large_list(kind):
        return pa.list_(_sparkable(kind.value_type))
    return kind


def frame_from_arrow(session: SparkSession, table: pa.Table) -> DataFrame:
    """An Arrow table as a Spark DataFrame, sent to the JVM as Arrow batches (what
    createDataFrame does for pandas with Arrow on; PySpark 3.5 has no public Arrow-table path)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    target = pa.schema([pa.field(f.name, _sparkable(f.type)) for f in table.schema])
    try:
        table = table.cast(target)
        schema = from_arrow_schema(target, prefer_timestamp_ntz=True)
    except Exception as error:  # an Arrow type Spark has no counterpart for
        raise EntityFrameError(
            f"entity frame cannot be sent to Spark: {str(error).splitlines()[0]}; convert the "
            "column to a common type (integers, floats, text, timestamps)"
        ) from None
    batches = table.to_batches(max_chunksize=10_000)
    jvm: Any = session._jvm
    context: Any = session.sparkContext
    jiter = context._serialize_to_jvm(
        batches,
        _ArrowStream(target),
        lambda path: jvm.PythonSQLUtils.readArrowStreamFromFile(path),
        lambda: jvm.ArrowIteratorServer(),
    )
    jframe = jvm.PythonSQLUtils.toDataFrame(jiter, schema.json(), session._jsparkSession)
    return DataFrame(jframe, session)


class _ArrowStream:
    """The serializer `_serialize_to_jvm` needs: writes batches as one Arrow IPC stream."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema

    def dump_stream(self, batches: Iterator[pa.RecordBatch], stream: Any) -> None:
        with pa.ipc.new_stream(stream, self.schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
