"""Redis Cluster online store: the Redis store's keys and Lua scripts (shared, not copied), every
call grouped by hash slot and sent as one pipeline per node (online/cluster_router.py); a failover
ridden out by writes, a node down refusing only the reads of its slots (503 naming them)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from msgpack import packb, unpackb

from parity.errors import OnlineStoreCircuitOpen, OnlineStoreUnavailable
from parity.online import redis_store as single
from parity.online.breaker import CircuitBreaker
from parity.online.cluster_calls import Call, NodeDown, _Batch, script_call
from parity.online.cluster_router import (
    FAILOVER_WAIT_SECONDS,
    REFRESH_SECONDS,
    SLOTS,
    WRITE_TIMEOUT_SECONDS,
    AsyncClusterRouter,
    ClusterRouter,
    by_slot,
    cluster_client,
    cluster_urls,
    key_slot,
)
from parity.online.encoding import (
    OnlineRow,
    decode_payload,
    encode_payload,
    encode_value,
    prepared_marker,
)
from parity.online.redis_store import RedisOnlineStore, marker_key, redis_key, tiles_key
from parity.online.store import PREPARED_CACHE_SECONDS, Prepared, Remembered, TileMerge
from parity.redaction import redact

if TYPE_CHECKING:
    from parity.online.columns import EncodedRows


class RedisClusterOnlineStore(RedisOnlineStore):
    """The Redis store on a cluster: same keys, scripts and guarantees per key; calls grouped
    by slot (a script's keys must share one), one pipeline per node. Serving reads have a
    circuit breaker per node, so a node down refuses only the reads of its slots."""

    def __init__(
        self,
        connection_string: str,
        *,
        expire: bool = False,
        read_timeout_seconds: float = 0.5,
        breaker: CircuitBreaker | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        failover_wait_seconds: float = FAILOVER_WAIT_SECONDS,
    ) -> None:
        self.url = connection_string
        self.urls = cluster_urls(connection_string)
        self._prepared = Remembered(PREPARED_CACHE_SECONDS, monotonic)
        self.expire = expire
        self.read_timeout_seconds = read_timeout_seconds
        self.breaker = breaker or CircuitBreaker()  # the settings every node's breaker copies
        self._breakers: dict[str, CircuitBreaker] = {}
        self.failover_wait_seconds = failover_wait_seconds
        self.writer = ClusterRouter(self.urls, timeout=WRITE_TIMEOUT_SECONDS, retries=True)
        self.reader = ClusterRouter(self.urls, timeout=read_timeout_seconds, retries=False)
        self._async_router: tuple[asyncio.AbstractEventLoop, AsyncClusterRouter] | None = None
        self._cluster: Any = None

    @property
    def client(self) -> Any:
        """A redis-py RedisCluster for single-key and admin commands (tests, stream workers)."""
        if self._cluster is None:
            with self._reachable():
                self._cluster = cluster_client(self.url)
        return self._cluster

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        """Each node's circuit breaker by `host:port` (for /metrics: `breaker` is only the
        settings they copy)."""
        return dict(self._breakers)

    def node_breaker(self, node: str) -> CircuitBreaker:
        found = self._breakers.get(node)
        if found is None:
            template = self.breaker
            found = CircuitBreaker(template.failures, template.cool_down_seconds, template._clock)
            found = self._breakers.setdefault(node, found)
        return found

    # --- writes: followed through redirections and ridden through a failover ---------------

    def _write(self, calls: Sequence[Call]) -> list[Any]:
        deadline = time.monotonic() + self.failover_wait_seconds
        resume: _Batch | None = None
        while True:
            try:
                return self.writer.run(calls, resume=resume)
            except NodeDown as down:
                if time.monotonic() >= deadline:
                    raise OnlineStoreUnavailable(
                        f"{down.slots} unreachable for "
                        f"{self.failover_wait_seconds:g} s: {redact(str(down.error))}"
                    ) from None
                resume = down.batch
                time.sleep(REFRESH_SECONDS)
                self.writer.refresh(force=True)

    def write(self, project: str, rows: Sequence[OnlineRow]) -> int:
        keys = [redis_key(project, row.entity_key) for row in rows]
        fields = [(row.view.encode(), encode_value(row), self._expiry(row)) for row in rows]
        return self._write_if_newer(keys, fields)

    def write_encoded(self, project: str, rows: EncodedRows) -> int:
        keys, view, values, expiries = self._encoded(project, rows)
        fields = [(view, value, expiry) for value, expiry in zip(values, expiries, strict=True)]
        return self._write_if_newer(keys, fields)

    def _write_if_newer(
        self, keys: Sequence[bytes], fields: Sequence[tuple[bytes, bytes, bytes]]
    ) -> int:
        """_WRITE_IF_NEWER's calls, by slot: KEYS[i] gets its (field, value, expiry) triple."""
        body, calls = single._WRITE_IF_NEWER, []
        for slot, indexes in by_slot(keys).items():
            if len(indexes) == 1:  # the common case: most rows of a batch have a slot each
                calls.append(script_call(slot, body, (keys[indexes[0]],), fields[indexes[0]]))
                continue
            for start in range(0, len(indexes), single._BATCH):
                chunk = indexes[start : start + single._BATCH]
                many = [part for i in chunk for part in fields[i]]
                calls.append(script_call(slot, body, [keys[i] for i in chunk], many))
        return sum(int(applied) for applied in self._write(calls))

    def write_tiles(
        self,
        project: str,
        view: str,
        tiles: Mapping[tuple[bytes, str], bytes],
        now_us: int,
        horizon_us: int,
    ) -> int:
        by_entity, ends = single.tiles_by_entity(tiles, now_us)
        calls = []
        for key, fields in by_entity.items():
            expiry = str((ends[key] + horizon_us) // 1000) if self.expire else ""
            hashed = tiles_key(project, view, key)
            args = [now_us - horizon_us, expiry, *fields]
            calls.append(script_call(key_slot(hashed), single._WRITE_TILES, [hashed], args))
        self._write(calls)
        return len(tiles)

    def merge_tiles(
        self,
        project: str,
        merges: Sequence[TileMerge],
        marker: tuple[str, Sequence[str]] | None = None,
    ) -> None:
        """As the single store, but atomic per slot: each slot's tiles are read, folded and
        written back (if no version moved, else again); the marker is set after every slot.
        With a marker, each slot's write also records the batch in a per-slot marker of the
        same name, and a slot that already holds this batch is skipped: the same batch, redone
        after a crash between two slots' writes, is applied once in every slot."""
        keys = [tiles_key(project, m.view, m.entity_key) for m in merges]
        todo = by_slot(keys)
        batch = None if marker is None else _batch_marker(project, marker)
        for _ in range(single._MERGE_ATTEMPTS):
            if not todo:
                break
            todo = self._merge_round(merges, keys, todo, batch)
        else:
            raise OnlineStoreUnavailable(
                f"tiles of {len(merges)} entities kept changing under "
                f"{single._MERGE_ATTEMPTS} attempts to merge into them; too many writers"
            )
        if marker is not None:
            name = marker_key(project, marker[0])
            value = encode_payload({"ids": list(marker[1])})
            self._write([Call(key_slot(name), ("SET", name, value))])

    def _merge_round(
        self,
        merges: Sequence[TileMerge],
        keys: list[bytes],
        todo: dict[int, list[int]],
        batch: tuple[bytes, bytes] | None,
    ) -> dict[int, list[int]]:
        """One read-fold-write of the slots in `todo`; the slots whose write found a version
        moved (to do again). `batch`: the slot markers' key prefix and this batch's digest."""
        reads = []
        for slot, indexes in todo.items():
            wanted = [[*merges[i].names, "_v", "_swept"] for i in indexes]
            slot_keys = [keys[i] for i in indexes]
            if batch is not None:
                wanted.append(["b", "_v", "_swept"])
                slot_keys.append(_slot_marker(batch[0], slot))
            packed = packb(wanted, use_bin_type=False)
            body = single._READ_FOR_MERGE
            reads.append(script_call(slot, body, slot_keys, [packed], writes=False))
        writes, sent = [], []
        for (slot, indexes), reply in zip(todo.items(), self._write(reads), strict=True):
            stored = unpackb(reply, raw=True)
            entries = [
                self.merge_entry(merges[i], r) for i, r in zip(indexes, stored, strict=False)
            ]
            slot_keys = [keys[i] for i in indexes]
            if batch is not None:
                done, version = stored[-1][0], stored[-1][1]
                if done == batch[1]:
                    continue  # this slot already holds this batch (a redo after a crash)
                next_version = 1 if version is False else int(version) + 1
                expiry = int(time.time() * 1000) + SLOT_MARKER_MS
                entries.append([version, ["b", batch[1], "_v", next_version], False, expiry])
                slot_keys.append(_slot_marker(batch[0], slot))
            packed = packb([False, entries], use_bin_type=False)
            writes.append(script_call(slot, single._WRITE_MERGE, slot_keys, [packed]))
            sent.append((slot, indexes))
        written = self._write(writes)
        return {slot: idx for (slot, idx), ok in zip(sent, written, strict=True) if not ok}

    def read_marker(self, project: str, name: str) -> list[str]:
        key = marker_key(project, name)
        data = self._write([Call(key_slot(key), ("GET", key))])[0]
        return [] if data is None else list(decode_payload(data)["ids"])

    def mark_materialized(self, project: str, view: str, prepared: Prepared) -> None:
        key = marker_key(project, prepared_marker(view))
        value = encode_payload(prepared._asdict())
        self._write([Call(key_slot(key), ("SET", key, value))])
        self._prepared.forget((project, view))

    def delete_view(self, project: str, view: str) -> None:
        key = marker_key(project, prepared_marker(view))
        self._write([Call(key_slot(key), ("DEL", key))])
        self._prepared.forget((project, view))
        pattern = b"parity:v1:" + project.encode() + b":{*"
        tiles_suffix = b":tiles:" + view.encode()
        self.writer.refresh(force=True)
        for node in list(self.writer.ranges):
            client = self.writer.client(node)
            for found in client.scan_iter(match=pattern, count=1000):
                if found.endswith(b"}"):
                    self._write([Call(key_slot(found), ("HDEL", found, view))])
                elif found.endswith(tiles_suffix):
                    self._write([Call(key_slot(found), ("DEL", found))])

    # --- serving reads: a breaker per node; a node down fails only the reads of its slots ----

    def _admit(self, node: str, used: list[str]) -> None:
        """Let a read go to `node` unless its breaker is open (once per read and node)."""
        if node in used:
            return
        breaker = self.node_breaker(node)
        wait = breaker.allow()
        if wait is not None:
            raise OnlineStoreCircuitOpen(
                f"{self.reader.describe(node)}: {breaker.failures} reads failed in a row; the "
                f"circuit is open: reads of these slots are refused for {wait:.1f} s more, "
                "then one is tried",
                retry_after_seconds=wait,
            )
        used.append(node)

    @contextmanager
    def _served(self, used: list[str]) -> Iterator[None]:
        """The outcome of a read feeds the breakers of the nodes it went to."""
        try:
            yield
        except NodeDown as down:
            self.node_breaker(down.node).record_failure()
            self._release(used, but=down.node)
            raise self._unavailable(down) from None
        except BaseException:
            self._release(used)
            raise
        for node in used:
            self.node_breaker(node).record_success()

    def _release(self, nodes: list[str], but: str | None = None) -> None:
        for node in nodes:
            if node != but:
                self.node_breaker(node).release()

    def _unavailable(self, down: NodeDown) -> OnlineStoreUnavailable:
        return OnlineStoreUnavailable(
            f"{down.slots} unreachable: {type(down.error).__name__}: "
            f"{redact(str(down.error))}; reads of entities in other slots still work"
        )

    def read(self, project: str, keys: Sequence[tuple[str, bytes]]) -> list[OnlineRow | None]:
        if not keys:
            return []
        grouped = single._by_entity(keys)
        calls, order = _read_calls(project, grouped)
        used: list[str] = []
        with self._served(used):
            replies = self.reader.run(calls, lambda node: self._admit(node, used))
        return single._decoded(keys, grouped, _flatten(order, replies))

    async def read_async(
        self, project: str, keys: Sequence[tuple[str, bytes]]
    ) -> list[OnlineRow | None]:
        if not keys:
            return []
        grouped = single._by_entity(keys)
        calls, order = _read_calls(project, grouped)
        router = self._async_reader()
        used: list[str] = []
        with self._served(used):
            replies = await router.run(calls, lambda node: self._admit(node, used))
        return single._decoded(keys, grouped, _flatten(order, replies))

    def _async_reader(self) -> AsyncClusterRouter:
        """Node clients for the running event loop (their connections belong to it)."""
        loop = asyncio.get_running_loop()
        if self._async_router is None or self._async_router[0] is not loop:
            self._async_router = (loop, AsyncClusterRouter(self.reader))
        return self._async_router[1]

    async def close_async(self) -> None:
        if self._async_router is not None:
            router, self._async_router = self._async_router[1], None
            await router.close()

    def read_tiles(
        self, project: str, view: str, keys: Sequence[bytes], names: Sequence[str]
    ) -> list[dict[str, bytes]]:
        if not names or not keys:
            return [{} for _ in keys]
        hashed = [tiles_key(project, view, key) for key in keys]
        groups = by_slot(hashed)
        calls = [
            script_call(slot, single._READ_TILES, [hashed[i] for i in indexes], names, writes=False)
            for slot, indexes in groups.items()
        ]
        used: list[str] = []
        with self._served(used):
            replies = self.reader.run(calls, lambda node: self._admit(node, used))
        found: list[dict[str, bytes]] = [{} for _ in keys]
        for indexes, values in zip(groups.values(), replies, strict=True):
            for index, tile in zip(indexes, values, strict=True):
                found[index] = {n: v for n, v in zip(names, tile, strict=True) if v is not None}
        return found

    def _load_prepared(self, project: str, view: str) -> Prepared | None:
        key = marker_key(project, prepared_marker(view))
        used: list[str] = []
        with self._served(used):  # on the read path: short timeout, behind the breakers
            calls = [Call(key_slot(key), ("GET", key))]
            data = self.reader.run(calls, lambda node: self._admit(node, used))[0]
        return None if data is None else Prepared(**decode_payload(data))

    def close(self) -> None:
        self.writer.close()
        self.reader.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
        self._async_router = None


def _read_calls(
    project: str, grouped: dict[bytes, list[str]]
) -> tuple[list[Call], list[list[tuple[int, int]]]]:
    """One read script per slot; `order` says, per slot, (entity index, its view count)."""
    entities = list(grouped)
    hashed = [redis_key(project, entity) for entity in entities]
    calls, order = [], []
    for slot, indexes in by_slot(hashed).items():
        args: list[str | int] = []
        for index in indexes:
            views = grouped[entities[index]]
            args.append(len(views))
            args.extend(views)
        keys = [hashed[i] for i in indexes]
        calls.append(script_call(slot, single._READ, keys, args, writes=False))
        order.append([(i, len(grouped[entities[i]])) for i in indexes])
    return calls, order


def _flatten(order: list[list[tuple[int, int]]], replies: list[Any]) -> list[Any]:
    """The per-slot replies as the single store's flat reply: entity by entity, in order."""
    values: list[list[Any]] = [[] for _ in range(sum(len(o) for o in order))]
    for slot_order, reply in zip(order, replies, strict=True):
        position = 0
        for index, count in slot_order:
            values[index] = reply[position : position + count]
            position += count
    return [value for entity in values for value in entity]


# A per-slot marker lives this long after its batch: long enough for any crashed worker to be
# restarted and redo its batch, short enough that the markers of consumers that are gone (a
# consumer per host and process) do not pile up.
SLOT_MARKER_MS = 7 * 86_400_000


def _batch_marker(project: str, marker: tuple[str, Sequence[str]]) -> tuple[bytes, bytes]:
    """The per-slot markers' key prefix of a marker name, and a digest of the batch's ids."""
    digest = hashlib.sha1(packb(list(marker[1]), use_bin_type=False)).hexdigest()[:20]
    return marker_key(project, marker[0]) + b":slot:", digest.encode()


def _slot_marker(prefix: bytes, slot: int) -> bytes:
    return prefix + b"{" + _slot_tags()[slot] + b"}"


@functools.cache
def _slot_tags() -> list[bytes]:
    """For each slot, a short hash tag in it (the first integer, as text, that hashes there)."""
    tags: list[bytes | None] = [None] * SLOTS
    missing, number = SLOTS, 0
    while missing:
        text = str(number).encode()
        slot = key_slot(text)
        if tags[slot] is None:
            tags[slot] = text
            missing -= 1
        number += 1
    return [tag or b"" for tag in tags]
