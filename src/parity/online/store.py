"""The OnlineStore protocol: write-if-newer rows, and reads of many (view, entity) in one trip."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from parity.online.encoding import OnlineRow


@runtime_checkable
class OnlineStore(Protocol):
    def write(self, project: str, rows: Sequence[OnlineRow]) -> int:
        """Store rows whose (event, created) time is >= the stored one, atomically per row;
        an older row never replaces a newer one. Returns how many were applied."""
        ...

    def read(self, project: str, keys: Sequence[tuple[str, bytes]]) -> list[OnlineRow | None]:
        """The stored row for each (view, entity key), None where there is none; one round
        trip to the store whatever the number of keys and views."""
        ...

    def delete_view(self, project: str, view: str) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncReads(Protocol):
    """Stores with a network round trip also read without blocking the event loop."""

    async def read_async(
        self, project: str, keys: Sequence[tuple[str, bytes]]
    ) -> list[OnlineRow | None]: ...

    async def close_async(self) -> None:
        """Release the connections of the running event loop."""
        ...


@dataclass(slots=True)  # not frozen: ingestion builds one per entity per batch
class TileMerge:
    """New events of one entity for one aggregated view, to fold into its stored tiles."""

    view: str
    entity_key: bytes
    names: tuple[str, ...]  # the tiles the events touch
    fold: Callable[[dict[str, bytes]], dict[str, bytes]]  # stored tiles -> updated tiles
    drop_before_us: int  # the entity's tiles ending at or before this are dropped
    horizon_us: int  # how long after its newest tile ends the entity's tiles are still read


@runtime_checkable
class TileStore(Protocol):
    """Partial aggregates of aggregated views, by (view, entity key, tile `<size>:<start>`)."""

    def write_tiles(
        self,
        project: str,
        view: str,
        tiles: Mapping[tuple[bytes, str], bytes],
        now_us: int,
        horizon_us: int,
    ) -> int:
        """Store each tile (replacing one of the same name), then drop the view's tiles that
        ended `horizon_us` (its longest window) or more before `now_us`: no window reads them
        any more. Tile names are `<size µs>:<start µs>`. Returns tiles written."""
        ...

    def read_tiles(
        self, project: str, view: str, keys: Sequence[bytes], names: Sequence[str]
    ) -> list[dict[str, bytes]]:
        """Per entity key, the named tiles it has; one round trip for all keys."""
        ...

    def merge_tiles(
        self,
        project: str,
        merges: Sequence[TileMerge],
        marker: tuple[str, Sequence[str]] | None = None,
    ) -> None:
        """Atomically, for all merges together: read the named tiles, store what `fold` makes of
        them, and set `marker` (a name and a list of ids, e.g. a stream consumer's last applied
        batch) in the same transaction. Concurrent merges of the same tiles serialize."""
        ...

    def read_marker(self, project: str, name: str) -> list[str]:
        """The ids last stored under marker `name` (empty if none)."""
        ...
