"""Redis online store: one hash per (project, entity), a field per view; write-if-newer in Lua.

Keys carry the entity in a hash tag (`parity:v1:<project>:{<entity hex>}`), so all views of one
entity share a Redis Cluster slot. With `expire=True` a key expires when the last of its views
passes its ttl (Redis >= 7.0 for PEXPIRETIME). Imports redis, so load it only when used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from parity.errors import BackendNotInstalled
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
        self._async: tuple[asyncio.AbstractEventLoop, Any] | None = None

    def write(self, project: str, rows: Sequence[OnlineRow]) -> int:
        applied = 0
        for start in range(0, len(rows), _BATCH):
            batch = rows[start : start + _BATCH]
            keys = [redis_key(project, r.entity_key) for r in batch]
            args: list[bytes] = []
            for row in batch:
                args.extend((row.view.encode(), encode_value(row), self._expiry(row)))
            applied += int(self._script(keys=keys, args=args))
        return applied

    def _expiry(self, row: OnlineRow) -> bytes:
        if not self.expire:
            return b""
        if row.expires_at is None:
            return b"-1"
        return str(row.expires_at // 1000).encode()

    def read(self, project: str, keys: Sequence[tuple[str, bytes]]) -> list[OnlineRow | None]:
        pipe = self.client.pipeline(transaction=False)
        for view, key in keys:
            pipe.hget(redis_key(project, key), view)
        return _decoded(keys, pipe.execute())

    async def read_async(
        self, project: str, keys: Sequence[tuple[str, bytes]]
    ) -> list[OnlineRow | None]:
        pipe = self._async_client().pipeline(transaction=False)
        for view, key in keys:
            pipe.hget(redis_key(project, key), view)
        return _decoded(keys, await pipe.execute())

    def _async_client(self) -> Any:
        """A redis.asyncio client for the running event loop (its connections belong to it)."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            self._async = (loop, _redis_module().asyncio.Redis.from_url(self.url))
        return self._async[1]

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


def _decoded(keys: Sequence[tuple[str, bytes]], results: list[Any]) -> list[OnlineRow | None]:
    return [
        None if data is None else decode_value(view, key, data)
        for (view, key), data in zip(keys, results, strict=True)
    ]
