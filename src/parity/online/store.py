"""The OnlineStore protocol: write-if-newer rows, and reads of many (view, entity) in one trip."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, Protocol, TypeVar, runtime_checkable

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

    def mark_materialized(self, project: str, view: str, prepared: Prepared) -> None:
        """Record that the view's tiles now serve exactly the reads `prepared` says (written by
        a materialization after its tiles; delete_view forgets it)."""
        ...

    def materialized(self, project: str, view: str) -> Prepared | None:
        """The view's last materialization record, None if it was never materialized; may be up
        to PREPARED_CACHE_SECONDS old (reads ask it on every call)."""
        ...


class Prepared(NamedTuple):
    """What the last materialization of an aggregated view wrote: the tiles of its events up to
    `end` for reads at t in [since, until] (since: the earlier of end and the run's clock;
    until = end + read_slack); see aggregation.tiles.stale_outputs."""

    end_us: int
    since_us: int
    until_us: int


# How long a store remembers a view's materialization record: a server sees a new one within
# this. Safe because a record only lags: an older one refuses or answers what its tiles hold.
PREPARED_CACHE_SECONDS = 1.0

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Remembered(Generic[K, V]):
    """Values loaded on demand and kept for `seconds` of `clock` (monotonic seconds)."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.seconds, self.clock = seconds, clock
        self._kept: dict[K, tuple[float, V]] = {}

    def get(self, key: K, load: Callable[[], V]) -> V:
        now = self.clock()
        kept = self._kept.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        value = load()
        self._kept[key] = (now + self.seconds, value)
        return value

    def forget(self, key: K) -> None:
        self._kept.pop(key, None)
