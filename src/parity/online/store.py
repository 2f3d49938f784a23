"""The OnlineStore protocol: write-if-newer rows, and reads of many (view, entity) in one trip."""

from __future__ import annotations

from collections.abc import Sequence
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
