"""Prediction log: each prediction queued off the request path, written to rotated fsynced Parquet.

Files share one schema (free-form values as JSON text, NaN as null). Each write is appended to a
JSON-lines segment and fsynced; a crashed writer's segment is recovered at the next start
(predlog_segment). Must not import serving.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from parity.durable import fsync_dir
from parity.errors import BackendNotInstalled, PredictionLogError
from parity.inference.predlog_segment import (
    SEGMENT_SUFFIX,
    Recovery,
    Segment,
    encode_lines,
    recover_segments,
)

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

_SEQUENCE = itertools.count()  # process-wide: two sinks on one folder never pick the same name


@dataclass(slots=True)
class PredictionRecord:
    """One prediction for one row: its entity keys, the features used and what the model said.

    Encoded later, on the writer thread: do not mutate a record (or its arrays) once logged.
    """

    request_id: str
    at: datetime  # UTC; a naive datetime is taken as UTC
    model: str
    version: int
    entities: dict[str, Any]
    features: dict[str, Any]
    prediction: Any
    latency_ms: float
    alias: str | None = None
    status: str = "ok"  # "ok", "error" (the model or its feature read raised), "timeout" (shadow)
    role: str | None = None  # None (no rollout), "champion", "canary" or "shadow"


LogRef = tuple[str, str, int, str | None]  # a row's request id, model, version and alias


def log_rows(
    log: PredictionLogger | None,
    ref: LogRef,
    entities: Sequence[dict[str, Any]],
    features: Sequence[dict[str, Any]],
    predictions: Sequence[Any],
    seconds: float,
    at: datetime,
    role: str | None,
    status: str = "ok",
) -> None:
    """Queues one record per prediction (entities and features row by row; empty: {})."""
    if log is None:
        return
    request_id, model, version, alias = ref
    for row, prediction in enumerate(predictions):
        log.log(
            PredictionRecord(
                request_id=request_id,
                at=at,
                model=model,
                version=version,
                entities=entities[row] if entities else {},
                features=features[row] if features else {},
                prediction=prediction,
                latency_ms=seconds * 1000,
                alias=alias,
                status=status,
                role=role,
            )
        )


def log_schema() -> pa.Schema:
    """The Arrow schema of every log file; JSON-text columns keep it the same for any model."""
    import pyarrow as pa

    return pa.schema(
        [
            ("request_id", pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            ("model", pa.string()),
            ("version", pa.int64()),
            ("alias", pa.string()),
            ("entities", pa.string()),
            ("features", pa.string()),
            ("prediction", pa.string()),
            ("latency_ms", pa.float64()),
            ("status", pa.string()),
            ("role", pa.string()),  # appended in issue 14: older files lack it (read them with
        ]  # DuckDB's union_by_name = true)
    )


def records_to_table(records: Sequence[PredictionRecord]) -> pa.Table:
    """Records as an Arrow table of `log_schema()`: JSON with sorted keys; numpy as numbers/lists,
    bytes as base64, NaN and infinities as null, other objects as their str()."""
    import pyarrow as pa

    dumps = _json_encoder()
    columns = {
        "request_id": [r.request_id for r in records],
        "event_timestamp": [_utc(r.at) for r in records],
        "model": [r.model for r in records],
        "version": [r.version for r in records],
        "alias": [r.alias for r in records],
        "entities": [dumps(r.entities) for r in records],
        "features": [dumps(r.features) for r in records],
        "prediction": [dumps(r.prediction) for r in records],
        "latency_ms": [r.latency_ms for r in records],
        "status": [r.status for r in records],
        "role": [r.role for r in records],
    }
    return pa.table(columns, schema=log_schema())


def _json_encoder() -> Callable[[Any], str]:
    try:
        import orjson
    except ImportError:
        raise BackendNotInstalled(
            "the prediction log needs orjson: pip install 'parity[serve]'"
        ) from None
    options = (
        orjson.OPT_SORT_KEYS
        | orjson.OPT_SERIALIZE_NUMPY
        | orjson.OPT_NON_STR_KEYS
        | orjson.OPT_NAIVE_UTC
        | orjson.OPT_UTC_Z
    )

    def dumps(value: Any) -> str:
        try:
            return orjson.dumps(value, default=_json_default, option=options).decode()
        except orjson.JSONEncodeError as error:  # an int beyond 64 bits, a cycle
            logger.warning("prediction log stores a value as its repr: %s", error)
            return orjson.dumps(repr(value)).decode()

    return dumps


def _json_default(value: Any) -> Any:
    """What orjson calls for a type it does not know."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars OPT_SERIALIZE_NUMPY declines
    if callable(tolist):
        return tolist()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return str(value)


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _by_day(records: Sequence[PredictionRecord]) -> list[tuple[date, list[PredictionRecord]]]:
    """Records grouped by UTC date, dates in order, records in their given order."""
    days: dict[date, list[PredictionRecord]] = {}
    for record in records:
        days.setdefault(_utc(record.at).date(), []).append(record)
    return sorted(days.items(), key=lambda item: item[0])


class LogSink(Protocol):
    """Where the writer thread puts batches, one thread at a time.

    The logger calls `write([])` when idle, so a sink can do time-based work such as rotation.
    """

    def write(self, records: Sequence[PredictionRecord]) -> None: ...

    def close(self) -> None: ...


class MemoryLogSink:
    """Keeps every written record in `records`, for tests and notebooks."""

    def __init__(self) -> None:
        self.records: list[PredictionRecord] = []
        self.closed = False

    def write(self, records: Sequence[PredictionRecord]) -> None:
        if self.closed:
            raise PredictionLogError("this MemoryLogSink is closed; create a new one")
        self.records.extend(records)

    def close(self) -> None:
        self.closed = True


class ParquetLogSink:
    """Writes `directory/date=YYYY-MM-DD/predictions-<first UTC time>-<pid>-<seq>.parquet`.

    Each write is appended to the open segment, the hidden `.<name>.inprogress` (JSON lines), and
    fsynced before `write` returns, so a killed process loses only what was not yet written. A
    segment becomes its Parquet file (row groups of `row_group_size`, fsynced, renamed into
    place) when it holds `max_rows_per_file` rows, is `max_seconds_per_file` old (by `clock`),
    the records' UTC date changes, or on close; readers of `*.parquet` see only complete files.
    Start-up recovers the segments crashed writers left (see `recovered`). A failed write leaves
    the segment for the next start to recover.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_rows_per_file: int = 100_000,
        max_seconds_per_file: float = 300.0,
        row_group_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_count("max_rows_per_file", max_rows_per_file)
        _check_count("row_group_size", row_group_size)
        _check_seconds("max_seconds_per_file", max_seconds_per_file)
        self._dumps = _json_encoder()  # fail here, not in the writer thread, when it is missing
        _import_converters()
        self.directory = Path(directory)
        self.max_rows_per_file = max_rows_per_file
        self.max_seconds_per_file = float(max_seconds_per_file)
        self.row_group_size = row_group_size
        self._clock = clock
        self._lock = threading.Lock()
        self._current: Segment | None = None
        self._day: date | None = None
        self._closed = False
        _prepare_folder(self.directory)
        self.recovered: Recovery = recover_segments(self.directory, row_group_size)
        if self.recovered.segments:  # a crash's leftovers: worth a warning
            logger.warning(
                "prediction log %s: recovered %d rows from %d unfinished segments, %d unreadable "
                "lines lost; %d segments of running writers left alone",
                self.directory,
                self.recovered.rows,
                self.recovered.segments,
                self.recovered.unreadable,
                self.recovered.live,
            )
        elif self.recovered.live:  # other processes writing the same folder (workers, shadows)
            logger.info(
                "prediction log %s: %d segments of running writers left alone",
                self.directory,
                self.recovered.live,
            )

    def write(self, records: Sequence[PredictionRecord]) -> None:
        with self._lock:
            if self._closed:
                raise PredictionLogError(f"the prediction log in {self.directory} is closed")
            days = [
                (day, group, encode_lines(group, self._dumps)) for day, group in _by_day(records)
            ]
            try:
                current = self._current
                if (
                    current is not None
                    and self._clock() - current.opened >= self.max_seconds_per_file
                ):
                    self._finish()
                for day, group, lines in days:
                    self._append(day, group, lines)
            except Exception:
                self._abandon()
                raise

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._finish()
            except Exception:
                self._abandon()
                raise

    def _append(self, day: date, records: list[PredictionRecord], lines: list[bytes]) -> None:
        offset = 0
        while offset < len(lines):
            current = self._current
            if current is None or self._day != day:
                self._finish()
                current = self._current = self._open(day, _utc(records[offset].at))
                self._day = day
            take = min(self.max_rows_per_file - current.rows, len(lines) - offset)
            current.append(lines[offset : offset + take])
            offset += take
            if current.rows >= self.max_rows_per_file:
                self._finish()

    def _open(self, day: date, first_at: datetime) -> Segment:
        folder = self.directory / f"date={day.isoformat()}"
        if not folder.is_dir():
            folder.mkdir(exist_ok=True)
            fsync_dir(self.directory)
        stamp = first_at.strftime("%Y%m%dT%H%M%S%fZ")
        while True:
            name = f"predictions-{stamp}-{os.getpid()}-{next(_SEQUENCE):06d}.parquet"
            if (folder / name).exists():
                continue
            try:
                segment = Segment.create(folder / f".{name}{SEGMENT_SUFFIX}", self._clock())
            except FileExistsError:
                continue
            fsync_dir(folder)
            return segment

    def _finish(self) -> None:
        """Converts the open segment into its Parquet file."""
        current, self._current = self._current, None
        if current is not None:
            current.finish(self.row_group_size)

    def _abandon(self) -> None:
        current, self._current = self._current, None
        if current is None:
            return
        current.close()
        logger.error(
            "prediction log segment %s was left unfinished after a write error; the next start "
            "recovers it",
            current.path,
        )


def _import_converters() -> None:
    """Import pyarrow (and pandas, which it may import lazily) on the starting thread: two threads
    importing them at once for the first time can see a partially initialised module."""
    import pyarrow.parquet  # noqa: F401

    with contextlib.suppress(ImportError):
        import pandas  # noqa: F401


def _prepare_folder(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PredictionLogError(
            f"cannot create the prediction log folder {directory}: {error}"
        ) from error
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PredictionLogError(f"the prediction log folder {directory} is not writable")


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PredictionLogError(f"{name} must be an int of at least 1, got {value!r}")


def _check_seconds(name: str, value: float) -> None:
    if isinstance(value, bool) or not (math.isfinite(value) and value > 0):
        raise PredictionLogError(f"{name} must be a finite number of seconds > 0, got {value!r}")


class PredictionLogger:
    """Queues records on the caller's thread (O(1), never blocks) and writes them on its own.

    A failed sink write is retried once, then its batch is dropped and counted in `errors`.
    """

    def __init__(
        self,
        sink: LogSink,
        *,
        max_queue: int = 100_000,
        flush_interval_s: float = 0.2,
        max_batch: int = 4096,
    ) -> None:
        _check_count("max_queue", max_queue)
        _check_count("max_batch", max_batch)
        _check_seconds("flush_interval_s", flush_interval_s)
        self._sink = sink
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._interval = float(flush_interval_s)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the writer waits on it
        self._drained = threading.Condition(self._lock)  # flush() waits on it
        self._queue: list[PredictionRecord] = []
        self._flush_wanted = False
        self._closed = False
        self._enqueued = 0  # records ever queued
        self._done = 0  # records the writer finished with, written or not
        self._dropped = 0
        self._logged = 0
        self._errors = 0
        self._close_error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="parity-predlog", daemon=True)
        self._thread.start()

    @property
    def sink(self) -> LogSink:
        """Where the records go (the shadow process writes its own into the same folder)."""
        return self._sink

    @property
    def flush_interval_s(self) -> float:
        return self._interval

    @property
    def dropped(self) -> int:
        """Records refused because the queue was full."""
        return self._dropped

    @property
    def logged(self) -> int:
        """Records the sink has written."""
        return self._logged

    @property
    def errors(self) -> int:
        """Sink failures: batches dropped after a failed retry, and failed idle ticks."""
        return self._errors

    @property
    def running(self) -> bool:
        """Whether the writer thread is alive (it is until close)."""
        return self._thread.is_alive()

    def log(self, record: PredictionRecord) -> bool:
        """Queues `record`; False if the queue was full and it was dropped."""
        with self._lock:
            if self._closed:
                raise PredictionLogError("the prediction logger is closed; records are not logged")
            if len(self._queue) >= self._max_queue:
                self._dropped += 1
                dropped = self._dropped
            else:
                self._queue.append(record)
                self._enqueued += 1
                if len(self._queue) == self._max_batch:
                    self._wake.notify()
                return True
        if dropped & (dropped - 1) == 0:  # warn at 1, 2, 4, 8, ... drops, not at each one
            logger.warning("prediction log queue is full: %d records dropped so far", dropped)
        return False

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until everything queued before the call is written; False on timeout."""
        with self._lock:
            target = self._enqueued
            if self._done >= target:
                return True
            self._flush_wanted = True
            self._wake.notify()
            return self._drained.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Stops accepting records, writes what is queued and closes the sink, blocking up to
        `timeout` seconds (PredictionLogError if the sink is stuck). Safe to call twice."""
        with self._lock:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise PredictionLogError(
                f"the prediction log did not drain within {timeout} s: the sink is stuck"
            )
        error, self._close_error = self._close_error, None
        if error is not None:
            raise PredictionLogError(f"the prediction log sink failed to close: {error}") from error

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            batch, closing = self._take()
            try:
                if batch:
                    for start in range(0, len(batch), self._max_batch):
                        self._write(batch[start : start + self._max_batch])
                elif not closing:
                    self._tick()
            except Exception:  # a bug above must not kill the thread
                logger.exception("prediction log writer failed")
            with self._lock:
                self._done += len(batch)
                self._drained.notify_all()
            if closing and not batch:
                break
        try:
            self._sink.close()
        except Exception as error:
            logger.exception("prediction log sink failed to close")
            self._close_error = error

    def _take(self) -> tuple[list[PredictionRecord], bool]:
        """Waits for a full batch, a flush, close or the interval; takes the whole queue."""
        with self._lock:
            deadline = time.monotonic() + self._interval
            while not (self._closed or self._flush_wanted or len(self._queue) >= self._max_batch):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wake.wait(remaining)
            batch, self._queue = self._queue, []
            self._flush_wanted = False
            return batch, self._closed

    def _write(self, chunk: list[PredictionRecord]) -> None:
        try:
            self._sink.write(chunk)
        except Exception:
            logger.warning("prediction log write failed; retrying once", exc_info=True)
            try:
                self._sink.write(chunk)
            except Exception:
                self._errors += 1
                logger.exception("prediction log write failed twice: %d records lost", len(chunk))
                return
        self._logged += len(chunk)

    def _tick(self) -> None:
        try:
            self._sink.write([])
        except Exception:
            self._errors += 1
            logger.exception("prediction log sink failed on an idle tick")
