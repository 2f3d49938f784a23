"""The feature server's served-feature log: each served row of a sampled entity key (a stable md5
hash of its join key values), queued off the request path and written by the prediction log's
durable Parquet sink. Must not import serving: the serving layer imports this module.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from base64 import b64encode
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parity.inference.predlog import PredictionLogger, PredictionRecord
    from parity.online.reads import OnlineResponse
    from parity.registry.catalog import Catalog

SERVED_VERSION = 0  # the `version` column of served-log records (the log's schema is shared)
_SPACE = 2**32
_MAX_DECIDED = 1 << 16  # keys whose sampling decision a server remembers (then it starts over)

logger = logging.getLogger(__name__)


def label_of(wanted: str | Sequence[str]) -> str:
    """The `model` column of a served record: the feature service's name, or the refs asked for,
    joined by commas."""
    return wanted if isinstance(wanted, str) else ",".join(wanted)


def key_text(keys: Mapping[str, Any]) -> str:
    """The canonical text of an entity key: `name=value` pairs in name order, joined by \\x1f.

    The same key gives the same text in every process, whether the values are Python or numpy
    scalars (served) or decoded from the log's JSON (replayed)."""
    return "\x1f".join(f"{name}={_scalar_text(keys[name])}" for name in sorted(keys))


def _scalar_text(value: Any) -> str:
    kind = type(value)
    if kind is int or kind is str:  # the usual keys, first
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray | memoryview):
        return b64encode(bytes(value)).decode("ascii")
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and not isinstance(value, str | int | float):
        return _scalar_text(item())
    return str(value)


def key_bucket(text: str) -> float:
    """Where a key falls in [0, 100): the first 32 bits of md5(text), scaled. md5 is used for its
    stability across processes and versions (Python's hash() is salted per process), not for
    security."""
    digest = hashlib.md5(text.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big") * 100.0 / _SPACE


def is_sampled(text: str, percent: float) -> bool:
    """Whether the key with canonical text `text` is in the `percent` sample. A key sampled at p
    is sampled at every percent above p, so a replay at q <= p reads a subset of a p log."""
    return percent > 0 and key_bucket(text) < percent


def served_records(
    label: str,
    response: OnlineResponse,
    join_keys: Sequence[str],
    at: datetime,
    percent: float,
    request_id: str | None = None,
    decided: dict[tuple[Any, ...], bool] | None = None,
) -> list[PredictionRecord]:
    """One record per served row whose key is sampled: the request's entity columns (join keys
    and request fields), the served values, and per feature its status and event time (in the
    `prediction` column, as {"statuses": ..., "event_timestamps": ...}). `decided` caches the
    decision per key values (a server's keys repeat)."""
    from parity.inference.predlog import PredictionRecord

    if percent <= 0:
        return []
    entities = response.entities
    names = sorted(k for k in join_keys if k in entities)  # key_text's order, computed once
    prefixes = [f"{name}=" for name in names]
    keys = zip(*(entities[name] for name in names), strict=True)
    cache: dict[tuple[Any, ...], bool] = {} if decided is None else decided
    if len(cache) > _MAX_DECIDED:
        cache.clear()
    rows = []
    for row, values in enumerate(keys):
        chosen = cache.get(values)
        if chosen is None:
            text = "\x1f".join(p + _scalar_text(v) for p, v in zip(prefixes, values, strict=True))
            chosen = cache[values] = is_sampled(text, percent)
        if chosen:
            rows.append(row)
    if not rows:
        return []
    request_id = request_id or uuid.uuid4().hex
    return [
        PredictionRecord(
            request_id=request_id,
            at=at,
            model=label,
            version=SERVED_VERSION,
            entities={name: column[row] for name, column in entities.items()},
            features={name: column[row] for name, column in response.values.items()},
            prediction={
                "statuses": {n: str(s[row]) for n, s in response.statuses.items()},
                "event_timestamps": {n: t[row] for n, t in response.event_timestamps.items()},
            },
            latency_ms=0.0,
        )
        for row in rows
    ]


class ServedLog:
    """The feature server's log: `log(...)` samples and queues (O(rows) hashing, cached per key;
    encoding and writes happen on the logger's thread). The logger and its writer thread start
    with the first sampled row, so a server that logs nothing starts no thread."""

    def __init__(self, make_logger: Callable[[], PredictionLogger], percent: float) -> None:
        self.percent = float(percent)
        self._make_logger = make_logger
        self._logger: PredictionLogger | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._keys: tuple[Catalog | None, dict[str, tuple[str, ...]]] = (None, {})
        self._decided: dict[tuple[Any, ...], bool] = {}

    @property
    def logger(self) -> PredictionLogger | None:
        """The underlying logger once a row was sampled (its counts: logged, dropped, errors)."""
        return self._logger

    def log_lookup(
        self,
        catalog: Catalog,
        wanted: str | Sequence[str],
        response: OnlineResponse,
        at: datetime,
    ) -> int:
        """Queue the sampled rows of a lookup of `wanted` (a service name or refs) answered at
        `at` against `catalog`; returns how many were queued."""
        label = label_of(wanted)
        if self._keys[0] is not catalog:
            self._keys = (catalog, {})
        join_keys = self._keys[1].get(label)
        if join_keys is None:
            from parity.offline.request import resolve

            join_keys = resolve(catalog, wanted).join_keys
            self._keys[1][label] = join_keys
        return self.log(label, response, join_keys, at)

    def log(
        self, label: str, response: OnlineResponse, join_keys: Sequence[str], at: datetime
    ) -> int:
        """Queue the sampled rows of one answered lookup; returns how many were queued."""
        records = served_records(
            label, response, join_keys, at, self.percent, decided=self._decided
        )
        if not records:
            return 0
        logger = self._started()
        if logger is None:
            return 0
        return sum(logger.log(record) for record in records)

    def _started(self) -> PredictionLogger | None:
        with self._lock:
            if self._closed:
                return None
            if self._logger is None:
                self._logger = self._make_logger()
            return self._logger

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued is written (True when nothing was ever queued)."""
        logger = self._logger
        return True if logger is None else logger.flush(timeout)

    def close(self) -> None:
        """Write what is queued and stop the writer; later rows are not logged."""
        with self._lock:
            self._closed = True
            logger, self._logger = self._logger, None
        if logger is not None:
            logger.close()


def served_log(
    repo_path: Path, folder: str | None, percent: float, flush_seconds: float = 0.2
) -> ServedLog | None:
    """The served log of a feature server writing under `folder` (relative to the repo, or
    absolute), or None when the folder is unset or `percent` is 0 (logging off)."""
    if folder is None or percent <= 0:
        return None
    path = Path(folder)
    directory = path if path.is_absolute() else repo_path / path
    _recover(directory)

    def make() -> PredictionLogger:
        from parity.inference.predlog import ParquetLogSink, PredictionLogger

        return PredictionLogger(ParquetLogSink(directory), flush_interval_s=flush_seconds)

    return ServedLog(make, percent)


def _recover(directory: Path) -> None:
    """Segments a killed server left are converted at start, not when the first row of the new
    one is sampled (the sink opens lazily): what it served before the kill is readable at once.
    Segments a running worker holds are left alone."""
    if not directory.is_dir():
        return
    from parity.inference.predlog_segment import recover_segments

    recovered = recover_segments(directory, 10_000)
    if recovered.segments:
        logger.warning(
            "served log %s: recovered %d rows from %d unfinished segments (%d unreadable lines)",
            directory,
            recovered.rows,
            recovered.segments,
            recovered.unreadable,
        )
