"""Resolve a Delta Lake table's snapshot into the ordered Parquet files both engines read.

Reads only the transaction log (through `deltalake`, and the log's JSON commits for the order of
adds), never the data. Refuses what plain Parquet readers would get wrong.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from parity.definitions import DeltaSource
from parity.errors import BackendNotInstalled, DeltaSourceError

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

# Reader features that change nothing for a reader of the snapshot's Parquet files: they concern
# the log (checkpoints, vacuum) or a type Parquet already carries (timestamps without zone).
HARMLESS_READER_FEATURES = frozenset(
    {"timestampNtz", "v2Checkpoint", "vacuumProtocolCheck", "checkpointProtection"}
)
_WHAT_TO_DO = {
    "deletionVectors": (
        "rows it deletes are still in the Parquet files; purge them (Spark: REORG TABLE ... "
        "APPLY (PURGE)) or write the table without deletion vectors"
    ),
    "columnMapping": (
        "its Parquet columns have physical names, not the table's; rewrite the table without "
        "column mapping (delta.columnMapping.mode = 'none')"
    ),
}


@dataclass(frozen=True)
class FileConstant:
    """A column that is not in the files but the same for every row of each file (a Delta
    partition column): its name, Arrow type, and per file (in the snapshot's order) its value as
    text an engine casts to the type (ISO dates and times, `nan`, `true`), None for null."""

    name: str
    type: pa.DataType
    values: tuple[str | None, ...]


@dataclass(frozen=True)
class DeltaSnapshot:
    """One version of a table: its live Parquet files in ingestion order, the partition values
    of each, and its schema."""

    table: str  # the table folder, absolute
    version: int
    files: tuple[Path, ...]
    constants: tuple[FileConstant, ...]
    schema: pa.Schema  # the table's logical schema, partition columns included


def delta_table_path(source: DeltaSource, repo_root: Path) -> Path:
    """The table folder made absolute against the repo root; URLs are refused (for now the
    engines read local files only)."""
    if "://" in source.path:
        raise DeltaSourceError(
            f"Delta source '{source.path}': only local tables are read; copy or mount the "
            "table locally and give its folder"
        )
    path = Path(source.path)
    return path if path.is_absolute() else repo_root / path


def delta_snapshot(source: DeltaSource, repo_root: Path) -> DeltaSnapshot:
    """The snapshot `source` names (its `version`, else the latest), refused with a
    DeltaSourceError when it cannot be read as plain Parquet files."""
    import pyarrow as pa

    folder = delta_table_path(source, repo_root)
    table = _open(folder, source.version)
    check_readable(str(folder), table)
    version = int(table.version())
    adds = pa.table(table.get_add_actions(flatten=True))
    paths = [str(p) for p in adds.column("path").to_pylist()]
    modified = [int(m or 0) for m in adds.column("modification_time").to_pylist()]
    order = add_order(folder / "_delta_log", version)
    ranked = sorted(range(len(paths)), key=lambda i: file_rank(order, paths[i], modified[i]))
    files = tuple(_local_file(folder, paths[i]) for i in ranked)
    _check_files_exist(folder, version, files, pinned=source.version is not None)
    schema = pa.schema(table.schema().to_arrow())
    partitions = list(table.metadata().partition_columns)
    constants = tuple(
        _constant(str(folder), name, schema.field(name).type, adds, ranked) for name in partitions
    )
    log.debug("Delta table %s version %d: %d files", folder, version, len(files))
    return DeltaSnapshot(str(folder), version, files, constants, schema)


def delta_schema(source: DeltaSource, repo_root: Path) -> pa.Schema:
    """The table's schema at `source`'s version, from the log alone (apply checks a view's
    columns against it; whether the version's files are still on disk is checked on reading)."""
    import pyarrow as pa

    folder = delta_table_path(source, repo_root)
    table = _open(folder, source.version)
    check_readable(str(folder), table)
    return pa.schema(table.schema().to_arrow())


def _check_files_exist(
    folder: Path, version: int, files: tuple[Path, ...], *, pinned: bool
) -> None:
    """Refuse a snapshot whose files are gone (VACUUM removes the files of old versions),
    naming the latest version when a pinned one is stale."""
    missing = next((f for f in files if not f.is_file()), None)
    if missing is None:
        return
    what = f"Delta table '{folder}' version {version} lists {missing.name}, which is not on disk"
    if pinned:
        import deltalake

        latest = _latest_version(deltalake, folder)
        raise DeltaSourceError(
            f"{what} (removed by VACUUM?); its latest version is {latest}: pin version "
            f"{latest} (or another whose files are kept), or leave version out for the latest"
        )
    raise DeltaSourceError(
        f"{what}, though it is the latest version: restore the file or repair the table"
    )


# Partition column types whose values an engine can cast from text.
_CONSTANT_TYPES = (
    "is_integer",
    "is_floating",
    "is_string",
    "is_large_string",
    "is_boolean",
    "is_date32",
    "is_timestamp",
    "is_decimal",
)


def _constant(
    table: str, name: str, kind: pa.DataType, adds: pa.Table, ranked: list[int]
) -> FileConstant:
    """One partition column's values, as text, for the files in snapshot order."""
    import pyarrow.types as t

    if not any(getattr(t, test)(kind) for test in _CONSTANT_TYPES):
        raise DeltaSourceError(
            f"Delta table '{table}' is partitioned by '{name}' of type {kind}, which parity "
            "cannot supply to the rows of its files; partition by a number, string, boolean, "
            "date or timestamp column, or not at all"
        )
    values = adds.column(f"partition.{name}").to_pylist()
    return FileConstant(name, kind, tuple(_text(values[i]) for i in ranked))


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def _open(folder: Path, version: int | None) -> Any:
    try:
        import deltalake
    except ModuleNotFoundError:
        raise BackendNotInstalled(
            "Delta Lake sources need the deltalake package: pip install 'parity[delta]'"
        ) from None
    if not (folder / "_delta_log").is_dir():
        raise DeltaSourceError(
            f"Delta table '{folder}' has no _delta_log folder: it is not a Delta table; write "
            "the table first or fix the path (a folder of plain Parquet files is a FileSource)"
        )
    try:
        return deltalake.DeltaTable(str(folder), version=version)
    except Exception as error:
        if version is None:
            raise DeltaSourceError(f"Delta table '{folder}' cannot be read: {error}") from None
        latest = _latest_version(deltalake, folder)
        raise DeltaSourceError(
            f"Delta table '{folder}' has no readable version {version} (its latest is "
            f"{latest}); pin an existing version or leave version out for the latest"
        ) from None


def _latest_version(deltalake: Any, folder: Path) -> str:
    try:
        return str(deltalake.DeltaTable(str(folder)).version())
    except Exception:
        return "unknown"


def check_readable(name: str, table: Any) -> None:
    """Refuse tables whose Parquet files (plus partition values) do not hold the snapshot's
    rows: deletion vectors, column mapping, unknown reader features."""
    protocol = table.protocol()
    features = set(protocol.reader_features or ())
    mode = table.metadata().configuration.get("delta.columnMapping.mode", "none")
    if mode not in ("none", None):
        features.add("columnMapping")
    for feature in sorted(features - HARMLESS_READER_FEATURES):
        what = _WHAT_TO_DO.get(feature, "parity reads only tables plain Parquet readers can read")
        raise DeltaSourceError(
            f"Delta table '{name}' uses reader feature '{feature}', which parity cannot read: "
            f"{what}"
        )
    if protocol.min_reader_version > 3:
        raise DeltaSourceError(
            f"Delta table '{name}' needs reader version {protocol.min_reader_version}; parity "
            "reads versions 1 to 3. Write the table with an older protocol"
        )


def add_order(log_folder: Path, version: int) -> dict[str, tuple[int, int]]:
    """Per file path (decoded), where its latest add stands in the log up to `version`:
    (commit version, position among the commit's adds). Commits a checkpoint replaced and
    cleanup removed are missing here; see file_rank."""
    order: dict[str, tuple[int, int]] = {}
    for commit in sorted(log_folder.glob("[0-9]*.json")):
        number = int(commit.name.split(".")[0])
        if number > version:
            continue
        position = 0
        with commit.open(encoding="utf-8") as lines:
            for line in lines:
                if '"add"' not in line:
                    continue
                action = json.loads(line)
                if "add" in action:
                    order[unquote(action["add"]["path"])] = (number, position)
                    position += 1
    return order


def file_rank(
    order: dict[str, tuple[int, int]], path: str, modified_ms: int
) -> tuple[int, int, int, str]:
    """The sort key of one live file: files whose add is in the JSON commits by (commit,
    position); files known only from a checkpoint first, by modification time, then path."""
    found = order.get(unquote(path))
    if found is None:
        return (-1, modified_ms, 0, path)
    return (found[0], 0, found[1], path)


def _local_file(folder: Path, path: str) -> Path:
    """A log path (relative to the table, percent-encoded, or a file:// URI) as a local file."""
    if "://" in path:
        parsed = urlparse(path)
        if parsed.scheme != "file":
            raise DeltaSourceError(
                f"Delta table '{folder}' has a file outside the local disk ({parsed.scheme}://); "
                "parity reads local tables only"
            )
        return Path(unquote(parsed.path))
    return folder / unquote(path)
