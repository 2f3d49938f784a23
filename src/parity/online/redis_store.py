"""Redis online store: one hash per (project, entity), a field per view; write-if-newer in Lua.

Keys carry the entity in a hash tag (`parity:v1:<project>:{<entity hex>}`), so all views of one
entity share a Redis Cluster slot. With `expire=True` a key expires when the last of its views
passes its ttl (Redis >= 7.0 for PEXPIRETIME). Imports redis, so load it only when used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from parity.errors import BackendNotInstalled, OnlineStoreUnavailable
from parity.online.encoding import HEADER_CHARS, OnlineRow, decode_value, encode_value

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
_BATCH = 500


def redis_key(project: str, entity_key: bytes) -> bytes:
    return b"parity:v1:" + project.encode() + b":{" + entity_key.hex().encode() + b"}"


def _redis_module() -> Any:
    try:
        import redis
    except ModuleNotFoundError:
        raise BackendNotInstalled(
            "the Redis online store needs the redis package: pip install 'parity[redis]'"
        ) from None
    return redis


class RedisOnlineStore:
    def __init__(
        self, url: str = "redis://127.0.0.1:6379/0", client: Any = None, *, expire: bool = False
    ) -> None:
        self.url = url
        self.client = client if client is not None else _redis_module().Redis.from_url(url)
        self.expire = expire
        self._script = self.client.register_script(_WRITE_IF_NEWER)
        self._read = self.client.register_script(_READ)
        self._async: tuple[asyncio.AbstractEventLoop, Any, Any] | None = None

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
        exceptions = _redis_module().exceptions
        try:
            yield
        except (exceptions.ConnectionError, exceptions.TimeoutError) as error:
            raise OnlineStoreUnavailable(
                f"the Redis online store at {self.url} did not answer: {error}"
            ) from None

    def _expiry(self, row: OnlineRow) -> bytes:
        if not self.expire:
            return b""
        if row.expires_at is None:
            return b"-1"
        return str(row.expires_at // 1000).encode()

    def read(self, project: str, keys: Sequence[tuple[str, bytes]]) -> list[OnlineRow | None]:
        grouped = _by_entity(keys)
        redis_keys, args = _read_arguments(project, grouped)
        with self._reachable():
            replies = self._read(keys=redis_keys, args=args)
        return _decoded(keys, grouped, replies)

    async def read_async(
        self, project: str, keys: Sequence[tuple[str, bytes]]
    ) -> list[OnlineRow | None]:
        grouped = _by_entity(keys)
        redis_keys, args = _read_arguments(project, grouped)
        _, _, script = self._async_client()
        with self._reachable():
            replies = await script(keys=redis_keys, args=args)
        return _decoded(keys, grouped, replies)

    def _async_client(self) -> tuple[asyncio.AbstractEventLoop, Any, Any]:
        """A redis.asyncio client for the running event loop (its connections belong to it)."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            client = _redis_module().asyncio.Redis.from_url(self.url)
            self._async = (loop, client, client.register_script(_READ))
        return self._async

    async def close_async(self) -> None:
        """Close the event loop's connections; call it before the loop ends."""
        if self._async is not None:
            client, self._async = self._async[1], None
            await client.aclose()

    def delete_view(self, project: str, view: str) -> None:
        pattern = b"parity:v1:" + project.encode() + b":{*"
        for key in self.client.scan_iter(match=pattern, count=1000):
            self.client.hdel(key, view)

    def close(self) -> None:
        self.client.close()
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
