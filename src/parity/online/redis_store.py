"""Redis online store: one hash per (project, entity), a field per view; write-if-newer in Lua.

Keys carry the entity in a hash tag (`parity:v1:<project>:{<entity hex>}`), so all views of one
entity share a Redis Cluster slot. With `expire=True` a key expires when the last of its views
passes its ttl (Redis >= 7.0 for PEXPIRETIME). Imports redis, so load it only when used.

Serving reads (`read`, `read_async`, `read_tiles`) use their own clients: `read_timeout_seconds`
per attempt, no retries, and a circuit breaker (online/breaker.py) that refuses them at once while
Redis keeps failing. Writes keep redis-py's own timeouts and retries.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from msgpack import packb, unpackb

from parity.errors import (
    BackendNotInstalled,
    ConfigError,
    OnlineStoreCircuitOpen,
    OnlineStoreUnavailable,
)
from parity.online.breaker import CircuitBreaker
from parity.online.encoding import (
    HEADER_CHARS,
    PENDING,
    Latest,
    OnlineRow,
    decode_latest,
    decode_payload,
    decode_value,
    encode_payload,
    encode_value,
    latest_by_view,
    prepared_marker,
    tile_end,
)
from parity.online.store import PREPARED_CACHE_SECONDS, Prepared, Remembered, TileMerge
from parity.online.tile_cache import TileCache
from parity.redaction import redact
from parity.store_urls import redis_url_problem

if TYPE_CHECKING:
    from parity.online.columns import EncodedRows

# KEYS[i] gets field ARGV[3i-2] = value ARGV[3i-1] unless the stored header is newer. Headers are
# fixed-width lowercase hex, so string order is time order. ARGV[3i] is the row's expiry: ''
# leaves the key's expiry alone, '-1' means the row never expires (the key must persist), else
# an absolute time in ms: a new key expires then, a key that already expires is pushed out to
# the later of the two, a key without expiry keeps none (another view of it never expires).
_WRITE_IF_NEWER = f"""
local applied = 0
for i = 1, #KEYS do
  local key, field, value, expiry = KEYS[i], ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  local existed = expiry ~= '' and redis.call('EXISTS', key)  -- only expiries need it
  local current = redis.call('HGET', key, field)
  local width = {HEADER_CHARS}
  if (not current) or string.sub(value, 1, width) >= string.sub(current, 1, width) then
    redis.call('HSET', key, field, value)
    applied = applied + 1
    if expiry ~= '' then
      local at = redis.call('PEXPIRETIME', key)
      if expiry == '-1' then
        if at >= 0 then redis.call('PERSIST', key) end
      elseif existed == 0 or (at >= 0 and tonumber(expiry) > at) then
        redis.call('PEXPIREAT', key, expiry)
      end
    end
  end
end
return applied
"""
# The same for rows of one view in a store that does not expire keys: ARGV[1] is the field (the
# view), KEYS[i] gets ARGV[i + 1]. Half the arguments to pack and parse per row.
_WRITE_IF_NEWER_ONE_FIELD = f"""
local field, applied, width = ARGV[1], 0, {HEADER_CHARS}
for i = 1, #KEYS do
  local value = ARGV[i + 1]
  local current = redis.call('HGET', KEYS[i], field)
  if (not current) or string.sub(value, 1, width) >= string.sub(current, 1, width) then
    redis.call('HSET', KEYS[i], field, value)
    applied = applied + 1
  end
end
return applied
"""
# One call reads every wanted view of every entity: KEYS[i] with ARGV holding, per key, the
# number of fields and then the fields. Replies are flat, in request order, nil when missing.
# (One script call costs a third of a pipeline of HMGETs in redis-py's client-side work.)
_READ = """
local out = {}
local a = 1
for i = 1, #KEYS do
  local n = tonumber(ARGV[a])
  local values = redis.call('HMGET', KEYS[i], unpack(ARGV, a + 1, a + n))
  for j = 1, n do out[#out + 1] = values[j] end
  a = a + n + 1
end
return out
"""
# KEYS[1] is one entity's tile hash of one view; ARGV[1] the drop-before time (µs: now minus the
# longest window), ARGV[2] the key's expiry (ms, '' for none), then field/value pairs. Tiles
# ending at or before the drop time are deleted: no window reads them any more.
_WRITE_TILES = """
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HINCRBY', KEYS[1], '_v', 1)
local cutoff = tonumber(ARGV[1])
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  local size, start = string.match(name, '^(%d+):(-?%d+)$')
  if size and tonumber(size) + tonumber(start) <= cutoff then
    redis.call('HDEL', KEYS[1], name)
  end
end
if ARGV[2] ~= '' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return 1
"""
# The same views (ARGV) of each entity hash KEYS[i], flat: a serving read, whose entities all want
# the same views (arguments and replies: one per key and per view, not per pair).
_READ_VIEWS = """
local out = {}
for i = 1, #KEYS do
  local values = redis.call('HMGET', KEYS[i], unpack(ARGV))
  for j = 1, #ARGV do out[#out + 1] = values[j] end
end
return out
"""
# The same tiles (ARGV) of each tile hash KEYS[i]: one command for every entity of a read.
_READ_TILES = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HMGET', KEYS[i], unpack(ARGV)) end
return out
"""
# Tile hashes also hold '_v', a version changed by every write (merges compare it to detect a
# concurrent writer), and '_swept', the drop-before time of the last scan for stale tiles.
#
# Both merge scripts take their arguments as one msgpack value and answer one, so that a batch
# of thousands of tiles costs the client one argument to pack and one reply to parse.
#
# Merge, read: KEYS are tile hashes; ARGV[1] packs, per key, the list of fields wanted (the tile
# names, then '_v' and '_swept'). Answers, per key, their values (false where missing).
_READ_FOR_MERGE = """
local wanted = cmsgpack.unpack(ARGV[1])
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('HMGET', KEYS[i], unpack(wanted[i]))
end
return cmsgpack.pack(out)
"""
# Merge, write, all or nothing: KEYS are the tile hashes, then the marker key. ARGV[1] packs
# {marker value or false, {per key: version read or false, {field, value, ...}, cutoff or false}}
# where the fields include the next '_v' (and '_swept'). If any version changed since it was
# read, nothing is written and 0 returned: the caller reads again. A cutoff deletes the tiles
# ending at or before it (a scan of the hash).
_WRITE_MERGE = """
local batch = cmsgpack.unpack(ARGV[1])
local entries = batch[2]
for i = 1, #entries do
  if redis.call('HGET', KEYS[i], '_v') ~= entries[i][1] then return 0 end
end
for i = 1, #entries do
  local key, entry = KEYS[i], entries[i]
  local fields = entry[2]
  for j = 1, #fields, 200 do
    redis.call('HSET', key, unpack(fields, j, math.min(j + 199, #fields)))
  end
  local cutoff = entry[3]
  if cutoff then
    for _, name in ipairs(redis.call('HKEYS', key)) do
      local size, start = string.match(name, '^(%d+):(-?%d+)$')
      if size and tonumber(size) + tonumber(start) <= cutoff then redis.call('HDEL', key, name) end
    end
  end
  local expiry = entry[4]
  if expiry then
    local at = redis.call('PEXPIRETIME', key)
    if at < 0 or expiry > at then redis.call('PEXPIREAT', key, expiry) end
  end
end
if batch[1] then redis.call('SET', KEYS[#KEYS], batch[1]) end
return 1
"""
_MERGE_ATTEMPTS = 100
DAY_US = 86_400_000_000
SWEEP_US = 3_600_000_000  # sweep a tile hash of stale tiles at most once an hour of time
_BATCH = 500
_NO_CUTOFF = -(1 << 62)
_PIPELINE = 20  # script calls per round trip when writing encoded rows (10,000 rows)


def redis_key(project: str, entity_key: bytes) -> bytes:
    return b"parity:v1:" + project.encode() + b":{" + entity_key.hex().encode() + b"}"


def marker_key(project: str, name: str) -> bytes:
    return b"parity:v1:" + project.encode() + b":marker:" + name.encode()


def tiles_key(project: str, view: str, entity_key: bytes) -> bytes:
    """One entity's tiles of one aggregated view: a hash in the entity's slot."""
    return redis_key(project, entity_key) + b":tiles:" + view.encode()


def redis_module() -> Any:
    try:
        import redis
    except ModuleNotFoundError:
        raise BackendNotInstalled(
            "the Redis online store needs the redis package: pip install 'parity[redis]'"
        ) from None
    return redis


class RedisOnlineStore:
    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        client: Any = None,
        *,
        expire: bool = False,
        read_timeout_seconds: float = 0.5,
        breaker: CircuitBreaker | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._prepared: Remembered[tuple[str, str], Prepared | None] = Remembered(
            PREPARED_CACHE_SECONDS, monotonic
        )
        if client is None:
            problem = redis_url_problem(url)
            if problem is not None:
                raise ConfigError(f"online.connection_string: {problem}")
        self.client = client if client is not None else redis_module().Redis.from_url(url)
        self.expire = expire
        self.read_timeout_seconds = read_timeout_seconds
        self.breaker = breaker or CircuitBreaker()
        reader = client if client is not None else self._reader(redis_module())
        self._reader_client = reader
        # Serving reads of a store that made its reader: one connection per read thread, used
        # directly (redis-py's pool and command layers cost as much as the round trip).
        self._own_reader = client is None
        self._thread = threading.local()
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()  # a dead thread's goes
        self._script = self.client.register_script(_WRITE_IF_NEWER)
        self._one_field = self.client.register_script(_WRITE_IF_NEWER_ONE_FIELD)
        self._read = reader.register_script(_READ)
        self._read_views = reader.register_script(_READ_VIEWS)
        self._write_tiles = self.client.register_script(_WRITE_TILES)
        self._read_for_merge = self.client.register_script(_READ_FOR_MERGE)
        self._write_merge = self.client.register_script(_WRITE_MERGE)
        self._read_tiles = reader.register_script(_READ_TILES)
        self._async: tuple[asyncio.AbstractEventLoop, Any, Any] | None = None
        self.tile_cache = TileCache()  # tiles this store merged last, while their version holds

    def _reader(self, module: Any) -> Any:
        """A client (`redis`, or `redis.asyncio`) for serving reads: one try, short timeouts."""
        from redis.backoff import NoBackoff

        return module.Redis.from_url(
            self.url,
            socket_timeout=self.read_timeout_seconds,
            socket_connect_timeout=self.read_timeout_seconds,
            retry=module.retry.Retry(NoBackoff(), 0),
        )

    def write(self, project: str, rows: Sequence[OnlineRow]) -> int:
        applied = 0
        with self._reachable():
            for start in range(0, len(rows), _BATCH):
                batch = rows[start : start + _BATCH]
                keys = [redis_key(project, r.entity_key) for r in batch]
                args: list[bytes] = []
                for row in batch:
                    args.extend((row.view.encode(), encode_value(row), self._expiry(row)))
                applied += int(self._script(keys=keys, args=args))
        return applied

    def write_encoded(self, project: str, rows: EncodedRows) -> int:
        """As `write`, for rows already encoded (materialization's batches): the script calls of
        _PIPELINE batches go in one pipeline, one round trip."""
        keys, view, values, expiries = self._encoded(project, rows)
        applied = 0
        with self._reachable():
            for start in range(0, len(keys), _BATCH * _PIPELINE):
                pipe = self.client.pipeline(transaction=False)
                for first in range(start, min(start + _BATCH * _PIPELINE, len(keys)), _BATCH):
                    last = min(first + _BATCH, len(keys))
                    if self.expire:
                        args: list[bytes] = []
                        for i in range(first, last):
                            args += (view, values[i], expiries[i])
                        self._script(keys=keys[first:last], args=args, client=pipe)
                    else:
                        args = [view, *values[first:last]]
                        self._one_field(keys=keys[first:last], args=args, client=pipe)
                applied += sum(int(n) for n in pipe.execute())
        return applied

    def _encoded(
        self, project: str, rows: EncodedRows
    ) -> tuple[list[bytes], bytes, list[bytes], Sequence[bytes]]:
        """The Redis keys, the field (view), the values and the expiry arguments of `rows`."""
        keys = rows.hex_keys(b"parity:v1:" + project.encode() + b":{", b"}")  # redis_key's
        expiries = (
            [self._expiry_at(at) for at in rows.expires_at] if self.expire else [b""] * len(keys)
        )
        return keys, rows.view.encode(), rows.values(), expiries

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """Connection failures and timeouts become OnlineStoreUnavailable (HTTP 503)."""
        exceptions = redis_module().exceptions
        try:
            yield
        except (exceptions.ConnectionError, exceptions.TimeoutError) as error:
            raise OnlineStoreUnavailable(
                f"the Redis online store at {redact(self.url)} did not answer: {error}"
            ) from None

    @contextmanager
    def _serving(self) -> Iterator[None]:
        """A serving read: refused at once while the breaker is open; its outcome feeds it."""
        wait = self.breaker.allow()
        if wait is not None:
            raise OnlineStoreCircuitOpen(
                f"the Redis online store failed {self.breaker.failures} reads in a row; the "
                f"circuit is open: reads are refused for {wait:.1f} s more, then one is tried",
                retry_after_seconds=wait,
            )
        try:
            with self._reachable():
                yield
        except OnlineStoreUnavailable:
            self.breaker.record_failure()
            raise
        except BaseException:  # Redis answered (e.g. an error reply), or the caller went away
            self.breaker.release()
            raise
        self.breaker.record_success()

    def _expiry(self, row: OnlineRow) -> bytes:
        if not self.expire:
            return b""
        return self._expiry_at(row.expires_at)

    @staticmethod
    def _expiry_at(expires_at: int | None) -> bytes:
        """The script's expiry argument when the store expires keys (see _WRITE_IF_NEWER)."""
        return b"-1" if expires_at is None else str(expires_at // 1000).encode()

    def read(self, project: str, keys: Sequence[tuple[str, bytes]]) -> list[OnlineRow | None]:
        if not keys:
            return []
        grouped = _by_entity(keys)
        redis_keys, args = _read_arguments(project, grouped)
        with self._serving():
            replies = self._read(keys=redis_keys, args=args)
        return _decoded(keys, grouped, replies)

    def read_views(
        self, project: str, plain: Sequence[tuple[str, Sequence[bytes]]]
    ) -> list[list[Latest | None]]:
        """Per view, the row of each of its keys (reads.ViewReads): one HMGET of the views per
        distinct entity (in one script call for several) when every view has the same keys (one
        entity type), else `read`."""
        if not plain:
            return []
        keys = plain[0][1]
        script = getattr(self, "_read_views", None)  # a subclass (cluster) may read otherwise
        if script is None or any(other is not keys and other != keys for _, other in plain[1:]):
            return latest_by_view(
                plain, self.read(project, [(v, k) for v, ks in plain for k in ks])
            )
        unique = list(dict.fromkeys(keys))
        if not unique:
            return [[] for _ in plain]
        views = [view for view, _ in plain]
        with self._serving():
            replies = self._views_of(script, [redis_key(project, k) for k in unique], views)
        return by_view(decode_latest(replies), len(views), keys, unique)

    def _views_of(self, script: Any, keys: list[bytes], views: list[str]) -> Any:
        """The `views` fields of each entity hash `keys`, flat, on this thread's own connection
        (the same timeouts, no retries but on a kept connection Redis closed), or through the
        client when it was given. One entity is a plain HMGET: the script costs Redis ten times
        more for it."""
        command: tuple[Any, ...] | None = ("HMGET", keys[0], *views) if len(keys) == 1 else None
        if not self._own_reader:
            if command is not None:
                return self._reader_client.hmget(keys[0], views)
            return script(keys=keys, args=views)
        if command is None:
            command = ("EVALSHA", script.sha, len(keys), *keys, *views)
        exceptions = redis_module().exceptions
        connection = self._thread_connection()
        if getattr(connection, "_sock", None) is None:  # connecting now: one try
            return self._send(connection, command, script, exceptions)
        try:
            return self._send(connection, command, script, exceptions)
        except exceptions.ConnectionError:
            # Redis closed the connection this thread kept (a restart, its idle timeout): once
            # more on a new one, as redis-py's pool checks a kept connection before use. (Not
            # after a timeout, a TimeoutError: a hung Redis still costs one timeout.)
            return self._send(connection, command, script, exceptions)

    def _send(self, connection: Any, command: tuple[Any, ...], script: Any, exceptions: Any) -> Any:
        try:
            try:
                connection.send_command(*command)
                return connection.read_response()
            except exceptions.NoScriptError:  # Redis restarted or flushed its scripts
                self._reader_client.script_load(script.script)
                connection.send_command(*command)
                return connection.read_response()
        except exceptions.ResponseError:
            raise  # Redis answered: the connection is still in step
        except BaseException:
            connection.disconnect()  # a reply may still come: the next call reconnects
            raise

    def _thread_connection(self) -> Any:
        """This read thread's own connection. One made before a fork is the parent's socket: a
        forked child makes its own, as redis-py's pool does (sharing it, each process would
        read the other's replies)."""
        connection = getattr(self._thread, "connection", None)
        if connection is None or self._thread.pid != os.getpid():
            connection = self._reader_client.connection_pool.make_connection()
            self._thread.connection, self._thread.pid = connection, os.getpid()
            self._connections.add(connection)
        return connection

    async def read_async(
        self, project: str, keys: Sequence[tuple[str, bytes]]
    ) -> list[OnlineRow | None]:
        if not keys:
            return []
        grouped = _by_entity(keys)
        redis_keys, args = _read_arguments(project, grouped)
        _, _, script = self._async_client()
        with self._serving():
            replies = await script(keys=redis_keys, args=args)
        return _decoded(keys, grouped, replies)

    def _async_client(self) -> tuple[asyncio.AbstractEventLoop, Any, Any]:
        """A redis.asyncio client for the running event loop (its connections belong to it)."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            client = self._reader(redis_module().asyncio)
            self._async = (loop, client, client.register_script(_READ))
        return self._async

    async def close_async(self) -> None:
        """Close the event loop's connections; call it before the loop ends."""
        if self._async is not None:
            client, self._async = self._async[1], None
            await client.aclose()

    def write_tiles(
        self,
        project: str,
        view: str,
        tiles: Mapping[tuple[bytes, str], bytes],
        now_us: int,
        horizon_us: int,
    ) -> int:
        by_entity, ends = tiles_by_entity(tiles, now_us)
        with self._reachable():
            pipe = self.client.pipeline(transaction=False)
            for key, fields in by_entity.items():
                # With expiry on, the hash outlives its newest tile by the longest window.
                expiry = str((ends[key] + horizon_us) // 1000) if self.expire else ""
                self._write_tiles(
                    keys=[tiles_key(project, view, key)],
                    args=[now_us - horizon_us, expiry, *fields],
                    client=pipe,
                )
            pipe.execute()
        return len(tiles)

    def read_tiles(
        self, project: str, view: str, keys: Sequence[bytes], names: Sequence[str]
    ) -> list[dict[str, bytes]]:
        if not names or not keys:
            return [{} for _ in keys]
        redis_keys = [tiles_key(project, view, key) for key in keys]
        with self._serving():
            if len(redis_keys) == 1:  # one entity: a plain HMGET costs Redis a fifth of a script
                replies = [self._reader_client.execute_command("HMGET", redis_keys[0], *names)]
            else:
                replies = self._read_tiles(keys=redis_keys, args=names)
        return [
            {name: value for name, value in zip(names, values, strict=True) if value is not None}
            for values in replies
        ]

    def merge_tiles(
        self,
        project: str,
        merges: Sequence[TileMerge],
        marker: tuple[str, Sequence[str]] | None = None,
    ) -> None:
        """Optimistic: read the tiles with their versions (unless this store wrote or read them
        last and remembers them: `tile_cache`), fold them here, then write them and the marker
        in one script that first checks no version moved (else forget them and read again).
        A tile hash is swept of stale tiles once per `SWEEP_US` of its drop time."""
        keys = [tiles_key(project, m.view, m.entity_key) for m in merges]
        marker_value = False if marker is None else encode_payload({"ids": list(marker[1])})
        marker_name = marker_key(project, marker[0] if marker is not None else "")
        cache = self.tile_cache
        with self._reachable():
            for _ in range(_MERGE_ATTEMPTS):
                replies = self._merge_read(keys, merges)
                entries = [
                    self._merge_entry(merge, reply)
                    for merge, reply in zip(merges, replies, strict=True)
                ]
                batch = packb([marker_value, [e[:4] for e in entries]], use_bin_type=False)
                if self._write_merge(keys=[*keys, marker_name], args=[batch]):
                    cache.wrote_all([(k, e[0], *e[4:]) for k, e in zip(keys, entries, strict=True)])
                    return
                cache.forget(keys)  # some hash moved: read them all again
        raise OnlineStoreUnavailable(
            f"tiles of {len(merges)} entities kept changing under {_MERGE_ATTEMPTS} attempts to "
            "merge into them; too many writers on the same entities"
        )

    def _merge_read(self, keys: Sequence[bytes], merges: Sequence[TileMerge]) -> list[Any]:
        """Each merge's stored tiles, then `_v` and `_swept`: from the cache where it knows
        them all, else from one read script call for the rest (remembered)."""
        cache = self.tile_cache
        replies = cache.replies(keys, [m.names for m in merges])
        missing = [i for i, reply in enumerate(replies) if reply is None]
        if missing:
            wanted = [[*merges[i].names, "_v", "_swept"] for i in missing]
            read = unpackb(
                self._read_for_merge(
                    keys=[keys[i] for i in missing], args=[packb(wanted, use_bin_type=False)]
                ),
                raw=True,
            )
            for i, reply in zip(missing, read, strict=True):
                replies[i] = reply
                cache.read(keys[i], merges[i].names, reply)
        return replies

    def merge_entry(self, merge: TileMerge, reply: list[Any]) -> list[Any]:
        """One tile hash's entry of the merge-write script, from its merge-read reply (the
        tiles, then '_v' and '_swept'): [version read, fields to set, cutoff, expiry]."""
        return self._merge_entry(merge, reply)[:4]

    def _merge_entry(self, merge: TileMerge, reply: list[Any]) -> list[Any]:
        """merge_entry's entry, then what the tile cache remembers once it is written: the new
        version, the new `_swept`, the tiles written and the sweep's cutoff. A new version is
        a random token, not the old one plus one, so a hash deleted and written again never
        comes back to a version a cache remembers."""
        count = len(merge.names)
        stored = {
            name: value
            for name, value in zip(merge.names, reply, strict=False)
            if value is not False
        }
        updated = merge.fold(stored)
        version, swept = reply[count], reply[count + 1]
        written = b"%d" % random.getrandbits(62)
        fields: list[str | bytes | int] = [part for item in updated.items() for part in item]
        fields += ("_v", written)
        sweep = merge.drop_before_us - merge.drop_before_us % SWEEP_US
        cutoff: int | bool = False
        if swept is False or int(swept) < sweep:
            fields += ("_swept", sweep)
            swept = b"%d" % sweep
            cutoff = sweep if version is not False else False  # new hash: no scan
        expiry = self._tiles_expiry(merge, updated)
        swept_to = _NO_CUTOFF if cutoff is False else cutoff
        return [version, fields, cutoff, expiry, written, swept, updated, swept_to]

    def _tiles_expiry(self, merge: TileMerge, updated: Mapping[str, bytes]) -> int | bool:
        """With expiry on, a tile hash outlives its newest tile by the view's horizon."""
        if not self.expire or not updated:
            return False
        now = merge.drop_before_us + merge.horizon_us
        ends = (_end(name, payload, now) for name, payload in updated.items())
        return (max(ends) + merge.horizon_us) // 1000

    def read_marker(self, project: str, name: str) -> list[str]:
        with self._reachable():
            data = self.client.get(marker_key(project, name))
        return [] if data is None else list(decode_payload(data)["ids"])

    def mark_materialized(self, project: str, view: str, prepared: Prepared) -> None:
        with self._reachable():
            self.client.set(
                marker_key(project, prepared_marker(view)), encode_payload(prepared._asdict())
            )
        self._prepared.forget((project, view))

    def materialized(self, project: str, view: str) -> Prepared | None:
        return self._prepared.get((project, view), lambda: self._load_prepared(project, view))

    def _load_prepared(self, project: str, view: str) -> Prepared | None:
        with self._serving():  # on the read path: short timeout, behind the circuit breaker
            data = self._reader_client.get(marker_key(project, prepared_marker(view)))
        return None if data is None else Prepared(**decode_payload(data))

    def delete_view(self, project: str, view: str) -> None:
        self.client.delete(marker_key(project, prepared_marker(view)))
        self._prepared.forget((project, view))
        pattern = b"parity:v1:" + project.encode() + b":{*"
        tiles_suffix = b":tiles:" + view.encode()
        for key in self.client.scan_iter(match=pattern, count=1000):
            if key.endswith(b"}"):
                self.client.hdel(key, view)
            elif key.endswith(tiles_suffix):
                self.client.delete(key)

    def close(self) -> None:
        self.client.close()
        for connection in list(self._connections):
            connection.disconnect()
        if self._reader_client is not self.client:
            self._reader_client.close()
        self._async = None


def _by_entity(keys: Sequence[tuple[str, bytes]]) -> dict[bytes, list[str]]:
    """The views wanted of each entity: one HMGET per entity hash, whatever the views."""
    grouped: dict[bytes, list[str]] = {}
    for view, key in keys:
        views = grouped.get(key)
        if views is None:
            grouped[key] = [view]
        elif view not in views:
            views.append(view)
    return grouped


def _read_arguments(
    project: str, grouped: dict[bytes, list[str]]
) -> tuple[list[bytes], list[str | int]]:
    redis_keys = []
    args: list[str | int] = []
    for entity, views in grouped.items():
        redis_keys.append(redis_key(project, entity))
        args.append(len(views))
        args.extend(views)
    return redis_keys, args


def by_view(
    found: list[Latest | None], views: int, keys: Sequence[bytes], unique: list[bytes]
) -> list[list[Latest | None]]:
    """Per view, the rows of `keys`, from `found`: entity by entity over `unique` (the distinct
    keys, in first-seen order), `views` rows each."""
    if len(unique) == len(keys):
        return [found[view::views] for view in range(views)]
    where = {key: index * views for index, key in enumerate(unique)}
    starts = [where[key] for key in keys]
    return [[found[start + view] for start in starts] for view in range(views)]


def _decoded(
    keys: Sequence[tuple[str, bytes]], grouped: dict[bytes, list[str]], replies: list[Any]
) -> list[OnlineRow | None]:
    found: dict[tuple[str, bytes], OnlineRow | None] = {}
    flat = iter(replies)
    for entity, views in grouped.items():
        for view in views:
            data = next(flat)
            found[(view, entity)] = None if data is None else decode_value(view, entity, data)
    return [found[wanted] for wanted in keys]


def _end(name: str, payload: bytes, now_us: int) -> int:
    """When a tile ends, for expiry: the pending record's events are at most max_future_skew
    (at most a day) after the writer's clock; an empty record (b'\x80', an empty map) ends
    nothing."""
    if name != PENDING:
        return tile_end(name)
    return 0 if payload == b"\x80" else now_us + DAY_US


def tiles_by_entity(
    tiles: Mapping[tuple[bytes, str], bytes], now_us: int
) -> tuple[dict[bytes, list[bytes | str]], dict[bytes, int]]:
    """Tiles to write, per entity key: its field/value pairs, and the end of its newest tile."""
    by_entity: dict[bytes, list[bytes | str]] = {}
    ends: dict[bytes, int] = {}
    for (key, name), payload in tiles.items():
        by_entity.setdefault(key, []).extend((name, payload))
        ends[key] = max(ends.get(key, 0), _end(name, payload, now_us))
    return by_entity, ends
