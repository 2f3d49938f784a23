"""A writer's memory of the tile hashes it last read or wrote, valid while a hash's version
(`_v`, changed by every write) is the one remembered. Pure; no I/O.

Tile merges are read-modify-write. With the tiles a worker wrote itself still at hand, a merge
skips the read: it sends the write with the version it expects, and the store's write script
refuses the whole batch if any version moved (another writer, an expiry, a deletion), after
which the caller forgets those hashes and reads them again. So a stale memory costs a retry,
never a wrong tile.

What is known of a hash: the bytes of some tiles, and, for a hash this process created (the read
found no version), that every other tile newer than `floor` is absent. Tiles older than
`retain_us` before the hash's newest are forgotten (a later merge of such a late event reads
them again), which bounds the memory of a long-running worker.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from parity.online.encoding import PENDING, tile_end

MAX_HASHES = 100_000  # ~10k-30k tiles' bytes per 10k hashes: tens of MB at most
RETAIN_US = 15 * 60 * 1_000_000  # event-time span of tiles kept per hash behind its newest
_NEVER_PRUNED = -(1 << 62)
PRUNE_AT = 32  # tiles known of one hash before the retention is applied


@dataclass(slots=True)
class Known:
    version: Any  # the hash's `_v` as the store answers it (False: no hash)
    swept: Any  # its `_swept` (False: none)
    tiles: dict[str, bytes] = field(default_factory=dict)
    complete: bool = False  # every tile newer than `floor` is in `tiles`
    floor: int = _NEVER_PRUNED  # tiles ending at or before it are not known


class TileCache:
    """Known tile hashes by key, least recently used first; at most `max_hashes`."""

    def __init__(self, max_hashes: int = MAX_HASHES, retain_us: int = RETAIN_US) -> None:
        self.max_hashes = max_hashes
        self.retain_us = retain_us
        self._known: dict[bytes, Known] = {}
        self._lock = threading.Lock()  # one store may merge from several threads

    def __len__(self) -> int:
        return len(self._known)

    def reply(self, key: bytes, names: Sequence[str]) -> list[Any] | None:
        """What the store's merge read would answer for these tiles of `key` (their bytes or
        False, then `_v` and `_swept`), or None when some tile is not known."""
        return self.replies([key], [names])[0]

    def replies(
        self, keys: Sequence[bytes], names: Sequence[Sequence[str]]
    ) -> list[list[Any] | None]:
        """`reply` for each key and its tile names: one lock for a whole batch."""
        with self._lock:
            return [self._reply(k, n) for k, n in zip(keys, names, strict=True)]

    def _reply(self, key: bytes, names: Sequence[str]) -> list[Any] | None:
        known = self._known.get(key)
        if known is None:
            return None
        tiles, floor = known.tiles, known.floor
        values: list[Any] = []
        for name in names:
            data = tiles.get(name)
            if data is not None:
                values.append(data)
            elif known.complete and (floor == _NEVER_PRUNED or tile_end(name) > floor):
                values.append(False)
            else:
                return None
        values += (known.version, known.swept)
        return values

    def read(self, key: bytes, names: Sequence[str], reply: Sequence[Any]) -> None:
        """Remember a merge read's reply for `names` of `key` (replacing what was known)."""
        version, swept = reply[len(names)], reply[len(names) + 1]
        tiles = {n: v for n, v in zip(names, reply, strict=False) if v is not False}
        with self._lock:
            self._put(key, Known(version, swept, tiles, complete=version is False))

    def wrote(
        self,
        key: bytes,
        before: Any,
        version: Any,
        swept: Any,
        updated: Mapping[str, bytes],
        cutoff: int,
    ) -> None:
        """After a write of `updated` tiles over version `before` that set `_v`/`_swept` and
        deleted the tiles ending at or before `cutoff`: remember the new state, forgetting
        tiles beyond the retention. What is known of another version is forgotten (another
        thread of this process wrote it meanwhile)."""
        self.wrote_all([(key, before, version, swept, updated, cutoff)])

    def wrote_all(
        self, writes: Sequence[tuple[bytes, Any, Any, Any, Mapping[str, bytes], int]]
    ) -> None:
        """`wrote` for each write of a batch: one lock for all of them."""
        with self._lock:
            for key, before, version, swept, updated, cutoff in writes:
                self._wrote(key, before, version, swept, updated, cutoff)

    def _wrote(
        self,
        key: bytes,
        before: Any,
        version: Any,
        swept: Any,
        updated: Mapping[str, bytes],
        cutoff: int,
    ) -> None:
        known = self._known.pop(key, None)
        if known is None or known.version != before:
            return
        known.version, known.swept = version, swept
        tiles = known.tiles
        tiles.update(updated)
        if cutoff > known.floor or len(tiles) > PRUNE_AT:
            newest = max((_start(n) for n in tiles), default=known.floor)
            known.floor = max(known.floor, cutoff, newest - self.retain_us)
            known.tiles = {n: v for n, v in tiles.items() if tile_end(n) > known.floor}
        self._known[key] = known  # popped above: now the most recently used
        if len(self._known) > self.max_hashes:
            del self._known[next(iter(self._known))]

    def forget(self, keys: Sequence[bytes]) -> None:
        with self._lock:
            for key in keys:
                self._known.pop(key, None)

    def _put(self, key: bytes, known: Known) -> None:
        self._known.pop(key, None)
        self._known[key] = known
        if len(self._known) > self.max_hashes:
            del self._known[next(iter(self._known))]


def _start(name: str) -> int:
    if name == PENDING:
        return -(1 << 62)
    return int(name.partition(":")[2])
