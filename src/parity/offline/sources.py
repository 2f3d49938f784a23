"""Resolve sources into Parquet files (FileSource paths, Delta snapshots) and check that a source's
columns match the views that read it.

Reads only Parquet metadata (schemas) and Delta logs, never the data.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from parity.definitions import (
    BatchSource,
    DeltaSource,
    DType,
    FeatureView,
    PushSource,
    StreamSource,
)
from parity.errors import DeltaSourceError, SourceSchemaError

if TYPE_CHECKING:
    import pyarrow as pa

    from parity.offline.delta import FileConstant


def resolve_path(source: BatchSource, repo_root: Path) -> str:
    """The source path made absolute against the repo root (URLs are left alone)."""
    if "://" in source.path or Path(source.path).is_absolute():
        return source.path
    return str(repo_root / source.path)


def source_files(source: BatchSource, repo_root: Path) -> list[Path]:
    """Parquet files of a local source, in ingestion order: the file, the files under a folder,
    or a glob's matches (sorted by path); a Delta table's snapshot in the log's order of adds.

    For engines that read only files: a partitioned Delta table (whose partition columns are not
    in its files) is refused; engines that supply them call `source_layout`."""
    files, constants = source_layout(source, repo_root)
    if constants:
        raise DeltaSourceError(
            f"Delta table '{source.path}' is partitioned by {[c.name for c in constants]}: "
            "those columns are not in its Parquet files and this reader takes only the files; "
            "read it with the DuckDB or Spark engine, or rewrite the table without partition_by"
        )
    return files


def source_layout(
    source: BatchSource, repo_root: Path
) -> tuple[list[Path], tuple[FileConstant, ...]]:
    """`source_files`, plus the columns not in the files: per file, the values of a Delta
    table's partition columns (FileConstant, in file order)."""
    if isinstance(source, DeltaSource):
        from parity.offline.delta import delta_snapshot

        snapshot = delta_snapshot(source, repo_root)
        return list(snapshot.files), snapshot.constants
    path = Path(resolve_path(source, repo_root))
    if path.is_dir():
        return sorted(p for p in path.rglob("*.parquet") if p.is_file()), ()
    if path.is_file():
        return [path], ()
    return sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()), ()


def zoned_nanosecond_columns(files: Sequence[Path]) -> frozenset[str]:
    """Columns some file holds as timestamp[ns] with a zone (pandas' default Parquet), from the
    footers; an unreadable footer is skipped (the engine's read reports it)."""
    import pyarrow.parquet as pq
    import pyarrow.types as t

    found: set[str] = set()
    for file in files:
        try:
            schema = pq.read_schema(file)
        except Exception:
            continue
        found.update(
            f.name
            for f in schema
            if t.is_timestamp(f.type) and f.type.unit == "ns" and f.type.tz is not None
        )
    return frozenset(found)


def read_source_schema(source: BatchSource, repo_root: Path) -> pa.Schema:
    """The Arrow schema of a local source: a Delta table's from its log, else from the first
    file's footer."""
    import pyarrow.parquet as pq

    if isinstance(source, DeltaSource):
        from parity.offline.delta import delta_schema

        return delta_schema(source, repo_root)

    files, _ = source_layout(source, repo_root)
    if not files:
        raise SourceSchemaError(
            f"source path '{source.path}' matches no Parquet files under {repo_root}; "
            "generate the data first or fix the path"
        )
    try:
        return pq.read_schema(files[0])
    except Exception as error:
        raise SourceSchemaError(f"{files[0]} is not a readable Parquet file: {error}") from None


def check_view_against_schema(view: FeatureView, schema: pa.Schema) -> None:
    """Raise SourceSchemaError if a column the view needs is missing or of the wrong type."""
    import pyarrow.types as t

    source = view.batch_source
    columns = {name: schema.field(name).type for name in schema.names}
    where = f"feature view '{view.name}' (source '{source.path}')"
    for name in view.join_keys:
        field = next((f for f in view.fields if f.name == name), None)
        _check_column(where, source, columns, name, field.dtype if field else None)
    for field in view.inputs:
        _check_column(where, source, columns, field.name, field.dtype)
    for name in filter(None, (source.timestamp_field, source.created_timestamp_column)):
        if name not in columns:
            raise SourceSchemaError(
                f"{where}: timestamp column '{name}' is not in the source; it has {sorted(columns)}"
            )
        if not (t.is_timestamp(columns[name]) or t.is_date(columns[name])):
            raise SourceSchemaError(
                f"{where}: column '{name}' is {columns[name]}, not a timestamp; convert it"
            )


def _check_column(
    where: str, source: BatchSource, columns: dict[str, pa.DataType], name: str, dtype: DType | None
) -> None:
    column = source.column_for(name)
    if column not in columns:
        mapped = f" (mapped from '{column}')" if column != name else ""
        raise SourceSchemaError(
            f"{where}: schema field '{name}'{mapped} is not a column of the source; the source "
            f"has {sorted(columns)}. Fix the name or add a field_mapping"
        )
    if dtype is not None and not dtype.accepts_arrow(columns[column]):
        raise SourceSchemaError(
            f"{where}: field '{name}' is declared {dtype} but the source column is "
            f"{columns[column]}; change the dtype or convert the column"
        )


def check_sources(views: Iterable[FeatureView], repo_root: Path) -> None:
    """Check every local source once; remote sources (URLs) are checked when read."""
    schemas: dict[tuple[str, int | None], pa.Schema] = {}
    for view in views:
        source = view.batch_source
        if "://" in source.path:
            continue
        arriving = isinstance(view.source, PushSource | StreamSource)
        if arriving and not source_files(source, repo_root):
            continue  # nothing pushed yet: the first push creates the files
        version = source.version if isinstance(source, DeltaSource) else None
        key = (resolve_path(source, repo_root), version)
        if key not in schemas:
            schemas[key] = read_source_schema(view.batch_source, repo_root)
        check_view_against_schema(view, schemas[key])
