"""The prediction log's in-progress segments: JSON lines appended, flushed and fsynced on every
write, so a killed process loses nothing it wrote; converted to Parquet when complete, or at the
next start by `recover_segments`.

A segment `.NAME.parquet.inprogress` becomes `NAME.parquet`; while a process writes it, it holds an
exclusive `flock` on it, so recovery never touches a live segment. Must not import serving.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from parity.durable import fsync_dir

if TYPE_CHECKING:
    import pyarrow as pa

    from parity.inference.predlog import PredictionRecord

logger = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".inprogress"
_CONVERTING = ".converting"  # a Parquet file being written from a segment
_UNREADABLE = ".unreadable"  # a recovered segment that had unreadable lines, kept for inspection
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST_US, LAST_US = -62_135_596_800_000_000, 253_402_300_799_999_999  # a line's time: years 1-9999
_STRINGS = (0, 2, 5, 6, 7)  # positions of request_id, model and the three JSON-text columns


def encode_lines(records: Sequence[PredictionRecord], dumps: Callable[[Any], str]) -> list[bytes]:
    """One JSON line per record: the log schema's columns in order, the time in epoch
    microseconds, the free-form values as JSON text (what the Parquet columns hold)."""
    import orjson

    return [
        orjson.dumps(
            [
                r.request_id,
                _epoch_us(r.at),
                r.model,
                r.version,
                r.alias,
                dumps(r.entities),
                dumps(r.features),
                dumps(r.prediction),
                r.latency_ms,
                r.status,
                r.role,
            ]
        )
        + b"\n"
        for r in records
    ]


def _epoch_us(at: datetime) -> int:
    moment = at.replace(tzinfo=UTC) if at.tzinfo is None else at
    return (moment - _EPOCH) // timedelta(microseconds=1)


def final_name(segment: Path) -> Path:
    """`.NAME.parquet.inprogress` -> `NAME.parquet`, in the same folder."""
    return segment.with_name(segment.name[1 : -len(SEGMENT_SUFFIX)])


class Segment:
    """An open in-progress segment, locked by this process until it is converted or closed."""

    def __init__(self, path: Path, handle: IO[bytes], opened: float) -> None:
        self.path = path
        self.final = final_name(path)
        self.opened = opened
        self.rows = 0
        self._handle = handle

    @classmethod
    def create(cls, path: Path, opened: float) -> Segment:
        """Create the file (FileExistsError if it exists) and lock it."""
        handle = path.open("xb")
        try:
            _lock(handle, blocking=True)
        except BaseException:
            handle.close()
            path.unlink()
            raise
        return cls(path, handle, opened)

    def append(self, lines: Sequence[bytes]) -> None:
        """Write the lines and make them durable before returning."""
        self._handle.write(b"".join(lines))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.rows += len(lines)

    def finish(self, row_group_size: int) -> None:
        """Convert to the final Parquet file, remove the segment, release the lock."""
        try:
            convert(self.path, row_group_size)
        finally:
            self.close()

    def close(self) -> None:
        """Release the lock and leave the file for recovery (after a failed write)."""
        with contextlib.suppress(OSError):
            self._handle.close()


def _lock(handle: IO[bytes], *, blocking: bool) -> bool:
    """Take an exclusive flock; False if another process holds it. A no-op without fcntl."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking; give each writer process its own folder
        return True
    flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
    try:
        fcntl.flock(handle.fileno(), flags)
    except BlockingIOError:
        return False
    return True


@dataclass
class Recovery:
    """What `recover_segments` found: segments recovered, rows kept, lines it could not read,
    and live segments (locked by a running writer) it left alone."""

    segments: int = 0
    rows: int = 0
    unreadable: int = 0
    live: int = 0


def recover_segments(directory: Path, row_group_size: int) -> Recovery:
    """Convert every unfinished segment no running process holds; keep each readable row."""
    found = Recovery()
    for path in sorted(directory.rglob(f".*{SEGMENT_SUFFIX}")):
        try:
            handle = path.open("rb")
        except FileNotFoundError:  # another process recovered it meanwhile
            continue
        with handle:
            locked = _lock(handle, blocking=False)
            if not _still_there(path, handle):
                continue
            if not locked:
                found.live += 1
                continue
            try:
                rows, unreadable = convert(path, row_group_size)
            except OSError as error:  # a full disk must not stop the server from starting
                logger.error("could not recover prediction log segment %s: %s", path, error)
                continue
        found.segments += 1
        found.rows += rows
        found.unreadable += unreadable
        logger.warning(
            "recovered prediction log segment %s: %d rows kept, %d unreadable lines%s",
            path,
            rows,
            unreadable,
            f" (kept as {path.name}{_UNREADABLE})" if unreadable else "",
        )
    return found


def _still_there(path: Path, handle: IO[bytes]) -> bool:
    """Whether `path` is still the file `handle` opened (not converted and removed since)."""
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def convert(segment: Path, row_group_size: int) -> tuple[int, int]:
    """Write the segment's readable rows to its final Parquet file (fsynced, renamed into place)
    and remove the segment; return (rows kept, unreadable lines). A segment whose final file
    already exists was converted before a crash and is only removed."""
    final = final_name(segment)
    if final.exists():
        segment.unlink()
        fsync_dir(segment.parent)
        return 0, 0
    temp = segment.with_name(f".{final.name}{_CONVERTING}")
    rows, unreadable = _write_parquet(_read_lines(segment), temp, row_group_size)
    if rows:
        os.replace(temp, final)
    else:
        temp.unlink(missing_ok=True)
    if unreadable:
        os.replace(segment, segment.with_name(segment.name + _UNREADABLE))
    else:
        segment.unlink()
    fsync_dir(segment.parent)
    return rows, unreadable


def _read_lines(segment: Path) -> Iterator[list[Any] | None]:
    """Each line of the segment as its row, or None for a line that is not a valid row."""
    import orjson

    with segment.open("rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield None
                continue
            yield row if _valid(row) else None


def _valid(row: Any) -> bool:
    if not isinstance(row, list) or len(row) not in (10, 11):  # 10: written before `role`
        return False
    if len(row) == 11 and not (row[10] is None or isinstance(row[10], str)):
        return False
    if not all(isinstance(row[i], str) for i in _STRINGS):
        return False
    if not (_int64(row[1]) and FIRST_US <= row[1] <= LAST_US and _int64(row[3])):
        return False
    latency_ok = row[8] is None or isinstance(row[8], float) or _int64(row[8])
    return latency_ok and (row[4] is None or isinstance(row[4], str)) and isinstance(row[9], str)


def _int64(value: Any) -> bool:
    """An integer an int64 column holds (a bigger one would stop the whole conversion)."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def _write_parquet(
    rows: Iterable[list[Any] | None], temp: Path, row_group_size: int
) -> tuple[int, int]:
    import pyarrow.parquet as pq

    from parity.inference.predlog import log_schema

    kept = unreadable = 0
    writer: Any = None
    with temp.open("wb") as handle:
        try:
            batch: list[list[Any]] = []
            for row in rows:
                if row is None:
                    unreadable += 1
                    continue
                batch.append(row)
                if len(batch) == row_group_size:
                    writer = writer or pq.ParquetWriter(handle, log_schema(), compression="zstd")
                    writer.write_table(_table(batch))
                    kept, batch = kept + len(batch), []
            if batch:
                writer = writer or pq.ParquetWriter(handle, log_schema(), compression="zstd")
                writer.write_table(_table(batch))
                kept += len(batch)
        finally:
            if writer is not None:
                writer.close()
        handle.flush()
        os.fsync(handle.fileno())
    return kept, unreadable


def _table(rows: list[list[Any]]) -> pa.Table:
    import pyarrow as pa

    from parity.inference.predlog import log_schema

    schema = log_schema()
    columns = [
        pa.array([row[i] if i < len(row) else None for row in rows], type=schema.field(i).type)
        for i in range(len(schema))
    ]
    return pa.Table.from_arrays(columns, schema=schema)
