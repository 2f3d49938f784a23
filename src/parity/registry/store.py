"""The RegistryStore protocol and the records it deals in: immutable, numbered catalog versions.

Backends implement compare-and-swap commits; see registry/sql.py. No backend imports here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from parity.registry.catalog import Catalog
from parity.registry.plan import ObjectChange


@dataclass(frozen=True)
class VersionInfo:
    """Who committed registry version `version` of `project`, when, why, and what changed."""

    project: str
    version: int
    committed_at: datetime
    author: str
    message: str
    changes: tuple[ObjectChange, ...]
    fingerprint: str


@dataclass(frozen=True)
class Snapshot:
    """One registry version with its full catalog."""

    info: VersionInfo
    catalog: Catalog

    @property
    def version(self) -> int:
        return self.info.version


@runtime_checkable
class RegistryStore(Protocol):
    """Versioned catalog storage. Versions start at 1 and increase by one per commit."""

    def head(self, project: str) -> int:
        """The latest version of `project`, or 0 if it has none. Cheap: no catalog is read."""
        ...

    def head_info(self, project: str) -> VersionInfo | None:
        """Metadata of the latest version (with its catalog fingerprint), without the catalog."""
        ...

    def read(self, project: str, version: int | None = None) -> Snapshot:
        """The catalog at `version` (default: head).

        Raises ProjectNotFound or RegistryVersionNotFound.
        """
        ...

    def commit(
        self,
        catalog: Catalog,
        *,
        expected_version: int,
        changes: tuple[ObjectChange, ...],
        author: str,
        message: str,
        committed_at: datetime,
    ) -> VersionInfo:
        """Write version `expected_version + 1` atomically, or raise RegistryConflict and write
        nothing if the head is no longer `expected_version`."""
        ...

    def history(self, project: str) -> list[VersionInfo]:
        """All versions of `project`, oldest first."""
        ...

    def projects(self) -> list[str]: ...

    def delete_project(self, project: str, *, expected_version: int) -> None:
        """Remove every version of `project`, or raise RegistryConflict if its head moved."""
        ...

    def close(self) -> None: ...
