"""CachedRegistry: a reader's in-memory catalog, refreshed by comparing the head version.

Lookups of the current catalog never touch the database; at most once per `refresh_interval` the
head version (number, commit time, fingerprint) is checked, and the catalog is re-read only when it
moved: a teardown and a re-apply landing on the same number count as a move. The clock is injected.
Versioned reads (`snapshot`, `history`, `describe` at a version) go to the store each time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from parity.definitions import Entity, FeatureService, FeatureView
from parity.errors import (
    EntityNotFound,
    FeatureServiceNotFound,
    FeatureViewNotFound,
    ProjectNotFound,
)
from parity.registry.catalog import Catalog, Definition
from parity.registry.store import RegistryStore, Snapshot, VersionInfo


class CachedRegistry:
    """Read side of the registry for servers and the facade."""

    def __init__(
        self,
        store: RegistryStore,
        project: str,
        *,
        refresh_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.project = project
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._catalog = Catalog(project)
        self._version = -1
        self._stamp: tuple[int, datetime | None, str] = (-1, None, "")
        self._next_check = float("-inf")
        self._first_load = threading.Lock()
        self.reloads = 0

    @property
    def version(self) -> int:
        self._maybe_refresh()
        return self._version

    @property
    def catalog(self) -> Catalog:
        self._maybe_refresh()
        return self._catalog

    def current(self) -> tuple[Catalog, int]:
        """The catalog and its version, read together (no refresh can fall between them)."""
        self._maybe_refresh()
        return self._catalog, self._version

    def refresh(self) -> bool:
        """Check the head version now; re-read the catalog only if it changed (its number, or,
        after a teardown and a re-apply, its commit time or fingerprint). True if reloaded."""
        self._next_check = self._clock() + self.refresh_interval
        info = self.store.head_info(self.project)
        stamp = (
            (0, None, "") if info is None else (info.version, info.committed_at, info.fingerprint)
        )
        if stamp == self._stamp:
            return False
        try:
            snapshot = self.store.read(self.project, stamp[0]) if stamp[0] else None
        except ProjectNotFound:  # torn down between the two reads
            snapshot = None
        if snapshot is None:
            self._catalog, self._version, self._stamp = Catalog(self.project), 0, (0, None, "")
        else:
            self._catalog, self._version = snapshot.catalog, snapshot.version
            self._stamp = (snapshot.version, snapshot.info.committed_at, snapshot.info.fingerprint)
        self.reloads += 1
        return True

    def teardown(self) -> int:
        """Remove this project from the registry (its head and every version, guarded by the
        same compare-and-swap as a commit); returns the last version it had."""
        from parity.registry.apply import teardown
        from parity.registry.audit import AuditTrail
        from parity.timeutil import utcnow

        version = teardown(self.store, self.project)
        self.refresh()
        trail = AuditTrail(getattr(self.store, "engine", None), self.project, utcnow)
        trail.record("registry.teardown", self.project, {"version": version})  # once removed
        return version

    def _maybe_refresh(self) -> None:
        if self._version < 0:  # never loaded: every caller waits for the first read, or a
            with self._first_load:  # second thread would see an empty catalog meanwhile
                if self._version < 0:
                    self.refresh()
            return
        if self._clock() >= self._next_check:  # later checks: one caller reads, the others
            self.refresh()  # go on with the catalog they have (at most one interval old)

    def get_entity(self, name: str) -> Entity:
        entity = self.catalog.entities.get(name)
        if entity is None:
            raise EntityNotFound(self._missing("entity", name, self._catalog.entities))
        return entity

    def get_feature_view(self, name: str) -> FeatureView:
        view = self.catalog.feature_views.get(name)
        if view is None:
            raise FeatureViewNotFound(
                self._missing("feature view", name, self._catalog.feature_views)
            )
        return view

    def get_feature_service(self, name: str) -> FeatureService:
        service = self.catalog.feature_services.get(name)
        if service is None:
            raise FeatureServiceNotFound(
                self._missing("feature service", name, self._catalog.feature_services)
            )
        return service

    def snapshot(self, version: int | None = None) -> Snapshot:
        """Registry version `version` (default: the head, read now) with its catalog and who
        committed it; ProjectNotFound or RegistryVersionNotFound if there is none."""
        return self.store.read(self.project, version)

    def describe(self, name: str, version: int | None = None) -> Definition:
        """The entity, feature view or feature service `name`, in the current catalog or at
        `version`."""
        catalog = self.catalog if version is None else self.snapshot(version).catalog
        return catalog.find(name)

    def history(self) -> list[VersionInfo]:
        """Every version of the project: who committed what, when and why; oldest first."""
        return self.store.history(self.project)

    def _missing(self, what: str, name: str, known: Mapping[str, object]) -> str:
        names = ", ".join(sorted(known))
        hint = f"registered: {names}" if names else "nothing is registered; run 'parity apply'"
        return f"no {what} named '{name}' in project '{self.project}' ({hint})"
