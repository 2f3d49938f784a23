"""Streaming ingestion from Redis Streams into aggregated views' tiles, exactly once.

A worker (`parity ingest --source NAME`) reads its consumer group's stream in batches. Per batch:

1. skip messages this consumer already applied: the ids of its last committed batch are kept in
   the online store (a marker), written in the same transaction as the tiles;
2. drop (and count) events later than the source's `lateness` behind the worker's clock, and
   messages that cannot be decoded or validated;
3. append the batch's events durably to the batch folder as one Parquet file named by the
   batch's first id (a retried batch replaces it, so the offline copy never doubles);
4. fold the events into every reading view's tiles and store the marker, atomically
   (`TileStore.merge_tiles`);
5. XACK the batch.

A worker killed anywhere in between and restarted re-reads its own pending messages (id 0):
before step 4 nothing was applied and the batch is redone; after it, the marker names the batch
and it is only acknowledged. Several workers in one group share the stream; their merges of the
same tiles serialize in the store. A worker that never comes back (a restart under another
consumer name) leaves pending messages: after `claim_idle_ms` another worker claims them, only
acknowledges those the dead consumer's marker names, and applies the rest.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgpack
from msgpack import unpackb

from parity.aggregation.partials import Merge
from parity.aggregation.tiles import (
    fold_events,
    levels,
    merge_partials,
    merge_pending,
    view_mergers,
)
from parity.definitions import FeatureView, StreamSource
from parity.errors import BackendNotInstalled, ParityError, PushError
from parity.online.encoding import PENDING, entity_keys
from parity.online.store import TileMerge, TileStore
from parity.timeutil import from_micros, to_micros

if TYPE_CHECKING:
    import pyarrow as pa

    from parity.feature_store import FeatureStore

log = logging.getLogger(__name__)
EVENT_FIELD = b"e"
CLAIM_EVERY_S = 10.0  # how often a worker looks for messages a dead consumer left


def publish(
    client: Any, source: StreamSource, rows: Sequence[Mapping[str, Any]], *, project: str
) -> list[str]:
    """Append events to the source's stream in `project` (the key `parity ingest` of that
    project reads: `source.stream_key(project)`; one message each; datetimes as µs). Returns
    the message ids."""
    key = source.stream_key(project)
    pipe = client.pipeline(transaction=False)
    for row in rows:
        plain = {k: to_micros(v) if isinstance(v, datetime) else v for k, v in row.items()}
        pipe.xadd(key, {EVENT_FIELD: msgpack.packb(plain, use_bin_type=True)})
    return [i.decode() if isinstance(i, bytes) else str(i) for i in pipe.execute()]


def decode_event(
    fields: Mapping[bytes, bytes], timestamp_field: str, created_field: str | None = None
) -> dict[str, Any]:
    """A stream message's event: its field `e`, a msgpack map, with the time in µs (how
    `publish` writes it) as a UTC datetime. PushError if it is missing or not a msgpack map.
    `parity ingest` and `parity predict stream` read events with it."""
    return with_datetimes(decode_map(fields), timestamp_field, created_field)


def decode_map(fields: Mapping[bytes, bytes]) -> dict[str, Any]:
    """A stream message's field `e` as a map, times left as sent (µs from `publish`)."""
    data = fields.get(EVENT_FIELD)
    try:
        row = msgpack.unpackb(data, raw=False) if data is not None else None
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as error:
        raise PushError(f"not msgpack: {error}") from None
    if not isinstance(row, dict):
        raise PushError(f"field '{EVENT_FIELD.decode()}' is not a map")
    return row


def with_datetimes(
    row: dict[str, Any], timestamp_field: str, created_field: str | None = None
) -> dict[str, Any]:
    """`row` with its times in µs (integers) as UTC datetimes."""
    # publish() sends every datetime as µs, so the created time comes as an integer too
    for name in (timestamp_field, created_field):
        moment = row.get(name) if name else None
        if name and isinstance(moment, int) and not isinstance(moment, bool):
            # beyond datetime's range it is left as the integer: validation refuses it, naming it
            with contextlib.suppress(OverflowError, ValueError):
                row[name] = from_micros(moment)
    return row


def read_group(
    client: Any,
    key: str,
    group: str,
    consumer: str,
    *,
    own_pending: bool,
    count: int,
    block_ms: int,
) -> list[tuple[str, Any]]:
    """One XREADGROUP of up to `count` messages: this consumer's own pending ones from the start
    ("0") after a restart or a claim, else new ones (">", waiting up to `block_ms`). Message ids
    as text; the fields as Redis gave them (None for a message deleted since it was delivered)."""
    reply = client.xreadgroup(
        group,
        consumer,
        {key: "0" if own_pending else ">"},
        count=count,
        block=None if own_pending else block_ms,
    )
    return [
        (i.decode() if isinstance(i, bytes) else str(i), fields)
        for _, entries in (reply or [])
        for i, fields in entries
    ]


def stream_order(message_id: str) -> int:
    """Ingestion order of a stream message: its id `<ms>-<seq>` as one integer."""
    millis, _, sequence = message_id.partition("-")
    return (int(millis) << 20) + int(sequence or 0)


def tile_merges(
    view: FeatureView, table: pa.Table, orders: Sequence[int], now_us: int
) -> list[TileMerge]:
    """One TileMerge per entity: fold these events (validated rows, UTC times) into its tiles."""
    source = view.batch_source
    moments = micros(table[source.timestamp_field])
    keys = entity_keys(
        view.join_keys, [table[source.column_for(k)].to_pylist() for k in view.join_keys]
    )
    columns = {a.column: table[source.column_for(a.column)].to_pylist() for a in view.aggregations}
    tiles = fold_events(view, keys, moments, orders, columns, now_us=now_us)
    horizon = max(a.window_us for a in view.aggregations) + levels(view)[-1]
    mergers = view_mergers(view)
    drop = now_us - horizon
    pack = msgpack.Packer(use_bin_type=True).pack  # one per batch: folds run in its thread
    return [
        TileMerge(view.name, key, tuple(named), _folder(mergers, named, drop, pack), drop, horizon)
        for key, named in tiles.items()
    ]


def micros(column: pa.ChunkedArray) -> list[Any]:
    """A timestamp column as µs since the epoch (None where null)."""
    import pyarrow as pa

    unit = pa.timestamp("us", tz=getattr(column.type, "tz", None))
    return list(column.cast(unit).cast(pa.int64()).to_pylist())


def _folder(
    mergers: Mapping[str, Merge],
    fresh: dict[str, dict[str, Any]],
    drop_before_us: int,
    pack: Callable[[Any], bytes],
) -> Callable[[dict[str, bytes]], dict[str, bytes]]:
    """stored tiles -> the same tiles with this batch's partials merged in (and its future
    events added to the pending record)."""

    def fold(stored: dict[str, bytes]) -> dict[str, bytes]:
        updated = {}
        for name, partials in fresh.items():
            data = stored.get(name)
            if name == PENDING:
                old = {} if data is None else unpackb(data, raw=False)
                partials = merge_pending(old, partials, drop_before_us)
            elif data is not None:
                partials = merge_partials(mergers, unpackb(data, raw=False), partials)
            updated[name] = pack(partials)
        return updated

    return fold


@dataclass
class IngestStats:
    batches: int = 0
    applied: int = 0
    late: int = 0
    future: int = 0  # stamped more than ingest.max_future_skew after the worker's clock
    invalid: int = 0
    replayed: int = 0  # messages found already applied after a restart, only acknowledged
    by_reason: dict[str, int] = field(default_factory=dict)


class StreamWorker:
    """One consumer of a stream source's group; `run_once` handles one batch."""

    def __init__(
        self,
        store: FeatureStore,
        source: str,
        *,
        consumer: str | None = None,
        batch_size: int = 1_000,
        block_ms: int = 1_000,
        claim_idle_ms: int = 60_000,
        client: Any = None,
    ) -> None:
        from parity.ingest.push import views_of

        self.store = store
        self.views = views_of(store.registry.catalog, source)
        stream_source = self.views[0].source
        if not isinstance(stream_source, StreamSource):
            raise PushError(f"'{source}' is a push source, not a stream source: push to it")
        for view in self.views:
            if not view.is_aggregated:
                raise PushError(
                    f"stream source '{source}' feeds feature view '{view.name}', which has no "
                    "aggregations; streams feed aggregated views"
                )
        online = store.online_store
        if not isinstance(online, TileStore):
            raise BackendNotInstalled(f"the online store {type(online).__name__} keeps no tiles")
        self.online: TileStore = online
        self.source = stream_source
        self.key = stream_source.stream_key(store.project)
        self.group = f"parity:{store.project}"
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.marker = self._marker_of(self.consumer)
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self._next_claim = 0.0  # monotonic time of the next look for abandoned messages
        self.client = client if client is not None else _redis_client(store)
        self.stats = IngestStats()
        self.quality = store.monitoring.quality_recorder()  # rows and nulls per batch (monitoring)
        self._own_pending = True  # after a restart, first finish what this consumer was given
        self._reread = True  # the last read was of pending messages (delivered before)
        self._offline_writer: ThreadPoolExecutor | None = None
        self._ensure_group()

    def _ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.key, self.group, id="0", mkstream=True)
        except Exception as error:  # BUSYGROUP: it exists already
            if "BUSYGROUP" not in str(error):
                raise

    def _marker_of(self, consumer: str) -> str:
        return f"stream:{self.source.name}:{self.group}:{consumer}"

    def _claim_abandoned(self) -> None:
        """Take over messages other consumers were given and left unacknowledged for
        `claim_idle_ms` (a worker that died). XCLAIM is atomic with its idle check, so two
        claimers never both get a message. Those the previous owner's marker names were applied
        (it died before XACK): acknowledge them. The rest become this consumer's pending."""
        stream = self.key
        entries = self.client.xpending_range(
            stream, self.group, min="-", max="+", count=self.batch_size, idle=self.claim_idle_ms
        )
        owners: dict[str, list[Any]] = {}
        for entry in entries:
            owner = entry["consumer"]
            owner = owner.decode() if isinstance(owner, bytes) else str(owner)
            if owner != self.consumer:
                owners.setdefault(owner, []).append(entry["message_id"])
        for owner, ids in owners.items():
            claimed = self.client.xclaim(
                stream, self.group, self.consumer, self.claim_idle_ms, ids, justid=True
            )
            names = [i.decode() if isinstance(i, bytes) else str(i) for i in claimed]
            applied = set(self.online.read_marker(self.store.project, self._marker_of(owner)))
            done = [i for i in names if i in applied]
            if done:
                self.client.xack(stream, self.group, *done)
            log.info(
                "stream %s: claimed %d messages of consumer %s (%d already applied)",
                self.source.name,
                len(names),
                owner,
                len(done),
            )
            if len(done) < len(names):
                self._own_pending = True

    def _read(self) -> list[tuple[str, dict[bytes, bytes]]]:
        if not self._own_pending and time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + CLAIM_EVERY_S
            self._claim_abandoned()
        self._reread = self._own_pending
        read = read_group(
            self.client,
            self.key,
            self.group,
            self.consumer,
            own_pending=self._own_pending,
            count=self.batch_size,
            block_ms=self.block_ms,
        )
        messages = [(i, fields) for i, fields in read if fields is not None]  # None: deleted
        if self._own_pending and not messages:
            self._own_pending = False  # caught up with what this consumer was given: read new
            return self._read()
        return messages

    def run_once(self) -> int:
        """Read and apply one batch; returns the number of messages handled (0 when idle)."""
        with collector_paused():
            return self._run_once()

    def _run_once(self) -> int:
        messages = self._read()
        if not messages:
            return 0
        # New messages (">") were never delivered before, so never applied: only a reread of
        # pending ones can meet the marker (this saves a round trip per batch).
        done = set(self.online.read_marker(self.store.project, self.marker) if self._reread else ())
        fresh = [(i, f) for i, f in messages if i not in done]
        self.stats.replayed += len(messages) - len(fresh)
        if fresh:
            self._apply(fresh)
        _crash_point("before_ack")
        self.client.xack(self.key, self.group, *[i for i, _ in messages])
        self.stats.batches += 1
        return len(messages)

    def _apply(self, messages: list[tuple[str, dict[bytes, bytes]]]) -> None:
        import pyarrow as pa

        from parity.ingest.push import append_offline

        now = self.store.now()
        cutoff = to_micros(now) - int(self.source.lateness.total_seconds() * 1_000_000)
        skew = self.store.config.ingest.max_future_skew.total_seconds()
        ahead = to_micros(now) + int(skew * 1_000_000)
        decoded = [(i, row) for i, f in messages if (row := self._decode(i, f)) is not None]
        rows: list[pa.Table] = []
        ids: list[str] = []
        for table, table_ids in self._validated(decoded):
            keep = self._in_time(table, table_ids, to_micros(now), cutoff, ahead)
            ids += [table_ids[i] for i in keep]
            if keep:
                rows.append(table.take(keep) if len(keep) < table.num_rows else table)
            elif self._reread and not rows:
                # a reread may redo a batch whose file a killed run wrote: with no event in
                # time any more, that file is replaced by one of no rows
                rows.append(table.slice(0, 0))
        if rows:
            batch = pa.concat_tables(rows, promote_options="permissive")
            # Named by the batch's first message, applied or not: a redo after a crash replaces
            # the file even if that message has turned late meanwhile (not one beside it).
            name = f"stream-{stream_order(messages[0][0]):020d}.parquet"
            # The durable append (a file and a folder fsync, milliseconds) runs in a thread while
            # this one folds the batch; both are done before the tiles are written.
            offline = self._writer().submit(
                append_offline, self.views[0], batch, self.store.repo_path, now, file_name=name
            )
            orders = [stream_order(i) for i in ids]
            try:
                merges = [
                    m
                    for view in self.views
                    for m in tile_merges(view, batch, orders, to_micros(now))
                ]
            finally:
                offline.result()
            _crash_point("after_offline")
        else:
            merges = []
        self.online.merge_tiles(self.store.project, merges, (self.marker, [i for i, _ in messages]))
        self.stats.applied += len(ids)
        if ids and self.quality is not None:
            for view in self.views:
                self.quality.ingested(view, batch)

    def _writer(self) -> ThreadPoolExecutor:
        if self._offline_writer is None:
            self._offline_writer = ThreadPoolExecutor(1, thread_name_prefix="parity-offline")
        return self._offline_writer

    def _in_time(
        self, table: pa.Table, ids: list[str], now_us: int, cutoff: int, ahead: int
    ) -> list[int]:
        """The rows to apply: those with an event time from `cutoff` (the lateness) up to
        `ahead` (the future skew); the others are counted (and a future one logged)."""
        import pyarrow.compute as pc

        if table.num_rows == 0:
            return []
        timestamp = self.source.batch_source.timestamp_field
        moments = table[timestamp].cast(_int64())
        bounds = pc.min_max(moments).as_py()
        if moments.null_count == 0 and cutoff <= bounds["min"] and bounds["max"] <= ahead:
            return list(range(table.num_rows))  # the usual batch: all of it in time
        keep = []
        for index, (message_id, moment) in enumerate(zip(ids, moments.to_pylist(), strict=True)):
            if moment is None:
                self._reject(message_id, "invalid", f"no '{timestamp}'")
            elif moment < cutoff:
                self.stats.late += 1
                self._count("late")
            elif moment > ahead:
                self.stats.future += 1
                self._count("future")
                log.warning(
                    "stream %s message %s dropped: event time %s is more than max_future_skew "
                    "(%s) after the worker's clock %s",
                    self.source.name,
                    message_id,
                    from_micros(moment).isoformat(),
                    self.store.config.ingest.max_future_skew,
                    from_micros(now_us).isoformat(),
                )
            else:
                keep.append(index)
        return keep

    def _validated(
        self, decoded: list[tuple[str, dict[str, Any]]]
    ) -> list[tuple[pa.Table, list[str]]]:
        """The batch as one validated table; if that fails, row by row, rejecting bad rows."""
        import pyarrow as pa

        from parity.ingest.push import validate

        if not decoded:
            return []
        # OverflowError: an integer past int64 (msgpack carries up to 2**64 - 1)
        problems = (ParityError, pa.ArrowException, TypeError, ValueError, OverflowError)
        rows = [row for _, row in decoded]
        batch = self.source.batch_source
        stamps = [n for n in (batch.timestamp_field, batch.created_timestamp_column) if n]
        try:
            if all(type(row.get(n)) is int for n in stamps for row in rows):  # as published
                table = pa.Table.from_pylist(rows)  # times as µs: cast, not per-row datetimes
                for name in stamps:
                    index = table.column_names.index(name)
                    table = table.set_column(index, name, table[name].cast(_utc_micros()))
            else:
                rows = [with_datetimes(row, *stamps) for row in rows]
                table = pa.Table.from_pylist(rows)
            return [(validate(self.views, table), [i for i, _ in decoded])]
        except problems:
            pass  # some row is bad: find it
        tables = []
        for message_id, row in decoded:
            try:
                row = with_datetimes(row, *stamps)
                tables.append((validate(self.views, pa.Table.from_pylist([row])), [message_id]))
            except problems as error:
                self._reject(message_id, "invalid", str(error))
        return tables

    def _decode(self, message_id: str, fields: dict[bytes, bytes]) -> dict[str, Any] | None:
        try:
            return decode_map(fields)
        except PushError as error:
            self._reject(message_id, "invalid", str(error))
            return None

    def _reject(self, message_id: str, reason: str, detail: str) -> None:
        self.stats.invalid += 1
        self._count(reason)
        log.warning("stream %s message %s dropped: %s", self.source.name, message_id, detail)

    def _count(self, reason: str) -> None:
        self.stats.by_reason[reason] = self.stats.by_reason.get(reason, 0) + 1

    def run(self, stop: Callable[[], bool] = lambda: False) -> IngestStats:
        while not stop():
            self.run_once()
        if self.quality is not None:
            self.quality.flush()  # what this worker counted since its last write
        return self.stats


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for one batch (it collects once, at the next
    allocation after). A batch allocates tens of thousands of small containers while the worker
    keeps its caches' tens of thousands more alive; collecting every 700 allocations walked them
    again and again: 40% of the worker's CPU. The batch itself makes no cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _redis_client(store: FeatureStore) -> Any:
    from parity.online.redis_store import redis_module

    settings = store.config.online
    if settings.type == "redis_cluster":  # streams live in the cluster too: it follows MOVED
        from parity.online.cluster_router import cluster_client

        return cluster_client(settings.connection_string or "redis://127.0.0.1:7000")
    url = settings.connection_string or "redis://127.0.0.1:6379/0"
    return redis_module().Redis.from_url(url)


def _utc_micros() -> pa.DataType:
    import pyarrow as pa

    return pa.timestamp("us", tz="UTC")


def _int64() -> pa.DataType:
    import pyarrow as pa

    return pa.int64()


def _crash_point(name: str) -> None:
    """Tests of crash safety set PARITY_INGEST_CRASH=<point> to SIGKILL the worker there."""
    if os.environ.get("PARITY_INGEST_CRASH") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
