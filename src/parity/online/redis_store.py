"""Redis online store: one hash per (project, entity), a field per view; write-if-newer in Lua.

Keys carry the entity in a hash tag (`parity:v1:<project>:{<entity hex>}`), so all views of one
entity share a Redis Cluster slot. Imports redis, so load it only when used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from parity.errors import BackendNotInstalled
from parity.online.encoding import HEADER_CHARS, OnlineRow, decode_value, encode_value

# KEYS[i] gets field ARGV[2i-1] = value ARGV[2i] unless the stored header is newer. Headers are
# fixed-width lowercase hex, so string order is time order.
_WRITE_IF_NEWER = f"""
local applied = 0
for i = 1, #KEYS do
  local field, value = ARGV[2 * i - 1], ARGV[2 * i]
  local current = redis.call('HGET', KEYS[i], field)
  local width = {HEADER_CHARS}
  if (not current) or string.sub(value, 1, width) >= string.sub(current, 1, width) then
    redis.call('HSET', KEYS[i], field, value)
    applied = applied + 1
  end
end
return applied
"""
_BATCH = 500


def redis_key(project: str, entity_key: bytes) -> bytes:
    return b"parity:v1:" + project.encode() + b":{" + entity_key.hex().encode() + b"}"


class RedisOnlineStore:
    def __init__(self, url: str = "redis://127.0.0.1:6379/0", client: Any = None) -> None:
        if client is None:
            try:
                import redis
            except ModuleNotFoundError:
                raise BackendNotInstalled(
                    "the Redis online store needs the redis package: pip install 'parity[redis]'"
                ) from None
            client = redis.Redis.from_url(url)
        self.client = client
        self._script = client.register_script(_WRITE_IF_NEWER)

    def write(self, project: str, rows: Sequence[OnlineRow]) -> int:
        applied = 0
        for start in range(0, len(rows), _BATCH):
            batch = rows[start : start + _BATCH]
            keys = [redis_key(project, r.entity_key) for r in batch]
            args: list[bytes] = []
            for row in batch:
                args.extend((row.view.encode(), encode_value(row)))
            applied += int(self._script(keys=keys, args=args))
        return applied

    def read(self, project: str, keys: Sequence[tuple[str, bytes]]) -> list[OnlineRow | None]:
        pipe = self.client.pipeline(transaction=False)
        for view, key in keys:
            pipe.hget(redis_key(project, key), view)
        results = pipe.execute()
        return [
            None if data is None else decode_value(view, key, data)
            for (view, key), data in zip(keys, results, strict=True)
        ]

    def delete_view(self, project: str, view: str) -> None:
        pattern = b"parity:v1:" + project.encode() + b":{*"
        for key in self.client.scan_iter(match=pattern, count=1000):
            self.client.hdel(key, view)

    def close(self) -> None:
        self.client.close()
