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
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

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
    OnlineRow,
    decode_payload,
    decode_value,
    encode_payload,
    encode_value,
    prepared_marker,
    tile_end,
)
from parity.online.store import PREPARED_CACHE_SECONDS, Prepared, Remembered, TileMerge
from parity.redaction import redact
from parity.store_urls import redis_url_problem

# KEYS[i] gets field ARGV[3i-2] = value ARGV[3i-1] unless the stored header is newer. Headers are
# fixed-width lowercase hex, so string order is time order. ARGV[3i] is the row's expiry: ''
# leaves the key's expiry alone, '-1' means the row never expires (the key must persist), else
# an absolute time in ms: a new key expires then, a key that already expires is pushed out to
# the later of the two, a key without expiry keeps none (another view of it never expires).
_WRITE_IF_NEWER = f"""
local applied = 0
for i = 1, #KEYS do
  local key, field, value, expiry = KEYS[i], ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  local existed = redis.call('EXISTS', key)
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
# The same tiles (ARGV) of each tile hash KEYS[i]: one command for every entity of a read.
_READ_TILES = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HMGET', KEYS[i], unpack(ARGV)) end
return out
"""
# Tile hashes also hold '_v', a version bumped by every write (merges compare it to detect a
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
        self._script = self.client.register_script(_WRITE_IF_NEWER)
        self._read = reader.register_script(_READ)
        self._write_tiles = self.client.register_script(_WRITE_TILES)
        self._read_for_merge = self.client.register_script(_READ_FOR_MERGE)
        self._write_merge = self.client.register_script(_WRITE_MERGE)
        self._read_tiles = reader.register_script(_READ_TILES)
        self._async: tuple[asyncio.AbstractEventLoop, Any, Any] | None = None

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
        if row.expires_at is None:
            return b"-1"
        return str(row.expires_at // 1000).encode()

    def read(self, project: str, keys: Sequence[tuple[str, bytes]]) -> list[OnlineRow | None]:
        if not keys:
            return []
        grouped = _by_entity(keys)
        redis_keys, args = _read_arguments(project, grouped)
        with self._serving():
            replies = self._read(keys=redis_keys, args=args)
        return _decoded(keys, grouped, replies)

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
        """Optimistic, two script calls: read the tiles with their versions, fold them here,
        then write them and the marker in one script that first checks no version moved (else
        read again). A tile hash is swept of stale tiles once per `SWEEP_US` of its drop time."""
        keys = [tiles_key(project, m.view, m.entity_key) for m in merges]
        wanted = packb([[*m.names, "_v", "_swept"] for m in merges], use_bin_type=False)
        marker_value = False if marker is None else encode_payload({"ids": list(marker[1])})
        marker_name = marker_key(project, marker[0] if marker is not None else "")
        with self._reachable():
            for _ in range(_MERGE_ATTEMPTS):
                replies = unpackb(self._read_for_merge(keys=keys, args=[wanted]), raw=True)
                entries = [
                    self.merge_entry(merge, reply)
                    for merge, reply in zip(merges, replies, strict=True)
                ]
                batch = packb([marker_value, entries], use_bin_type=False)
                if self._write_merge(keys=[*keys, marker_name], args=[batch]):
                    return
        raise OnlineStoreUnavailable(
            f"tiles of {len(merges)} entities kept changing under {_MERGE_ATTEMPTS} attempts to "
            "merge into them; too many writers on the same entities"
        )

    def merge_entry(self, merge: TileMerge, reply: list[Any]) -> list[Any]:
        """One tile hash's entry of the merge-write script, from its merge-read reply (the
        tiles, then '_v' and '_swept'): [version read, fields to set, cutoff, expiry]."""
        count = len(merge.names)
        stored = {
            name: value
            for name, value in zip(merge.names, reply, strict=False)
            if value is not False
        }
        updated = merge.fold(stored)
        version, swept = reply[count], reply[count + 1]
        fields: list[str | bytes | int] = [part for item in updated.items() for part in item]
        fields += ("_v", 1 if version is False else int(version) + 1)
        sweep = merge.drop_before_us - merge.drop_before_us % SWEEP_US
        cutoff: int | bool = False
        if swept is False or int(swept) < sweep:
            fields += ("_swept", sweep)
            cutoff = sweep if version is not False else False  # new hash: no scan
        return [version, fields, cutoff, self._tiles_expiry(merge, updated)]

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
