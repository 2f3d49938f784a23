"""Helpers for users' own tests: small in-memory fakes that follow Parity's protocols exactly.

InMemoryRegistryStore is the reference RegistryStore: written for clarity, checked by the same
conformance suite as the SQL backends.
"""

from __future__ import annotations

import threading
from datetime import datetime

from parity.errors import ProjectNotFound, RegistryConflict, RegistryVersionNotFound
from parity.registry.catalog import Catalog
from parity.registry.plan import ObjectChange
from parity.registry.store import Snapshot, VersionInfo


class InMemoryRegistryStore:
    """A RegistryStore in a dict, safe across threads (not processes)."""

    def __init__(self) -> None:
        self._versions: dict[str, list[Snapshot]] = {}
        self._lock = threading.Lock()

    def head(self, project: str) -> int:
        return len(self._versions.get(project, []))

    def read(self, project: str, version: int | None = None) -> Snapshot:
        versions = self._versions.get(project)
        if not versions:
            raise ProjectNotFound(f"project '{project}' has no registry versions")
        wanted = version or len(versions)
        if not 1 <= wanted <= len(versions):
            raise RegistryVersionNotFound(f"project '{project}' has no registry version {wanted}")
        return versions[wanted - 1]

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
        # Round-trip through JSON so callers get the same isolation a database gives.
        stored = Catalog.from_json(catalog.to_json())
        with self._lock:
            versions = self._versions.setdefault(catalog.project, [])
            if len(versions) != expected_version:
                raise RegistryConflict(
                    f"the registry of project '{catalog.project}' moved past version "
                    f"{expected_version}; nothing was written"
                )
            info = VersionInfo(
                catalog.project,
                expected_version + 1,
                committed_at,
                author,
                message,
                changes,
                stored.fingerprint(),
            )
            versions.append(Snapshot(info, stored))
        return info

    def history(self, project: str) -> list[VersionInfo]:
        return [s.info for s in self._versions.get(project, [])]

    def projects(self) -> list[str]:
        return sorted(p for p, versions in self._versions.items() if versions)

    def delete_project(self, project: str, *, expected_version: int) -> None:
        with self._lock:
            if self.head(project) == 0:
                raise ProjectNotFound(f"project '{project}' is not in the registry")
            if self.head(project) != expected_version:
                raise RegistryConflict(
                    f"the registry of project '{project}' moved past version {expected_version}"
                )
            self._versions.pop(project, None)

    def close(self) -> None:
        return None


__all__ = ["InMemoryRegistryStore"]
