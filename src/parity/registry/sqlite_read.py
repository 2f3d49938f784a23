"""The registry of a SQLite file, read without SQLAlchemy: a catalog's reads use sqlite3.

Loading a catalog (head, head_info, read) is what every process does first, and importing
SQLAlchemy costs more than the rest of a small retrieval; everything else (commits, history,
datasets, the engine other stores share) goes to registry/sql.py's SqlRegistryStore, created on
first use. Must not import SQLAlchemy at module level.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from parity.errors import ProjectNotFound, RegistryVersionNotFound
from parity.registry.catalog import Catalog
from parity.registry.plan import ObjectChange
from parity.registry.store import RegistryStore, Snapshot, VersionInfo

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from parity.registry.datasets import DatasetRecord
    from parity.registry.materializations import MaterializationRecord
    from parity.registry.plan import ObjectChange as Change
    from parity.registry.sql import SqlRegistryStore

# Only plain file URLs (what RegistryConfig.database_url writes); anything else (query
# arguments, :memory:) goes straight to SQLAlchemy.
_PLAIN_FILE = re.compile(r"sqlite:///([^?#]+)")
_INFO = "project, version, committed_at, author, message, changes, fingerprint"
_HEAD = "SELECT head FROM parity_registry_projects WHERE project = ?"


def open_registry_store(url: str) -> RegistryStore:
    """The registry store for `url`: a SQLite file gets the sqlite3 reader in front."""
    match = _PLAIN_FILE.fullmatch(url)
    if match is None or match.group(1) == ":memory:":
        from parity.registry.sql import SqlRegistryStore

        return SqlRegistryStore(url)
    # SQLAlchemy unquotes %XX in the path: the same file as its store's, whatever the name.
    return SqliteRegistryStore(url, Path(unquote(match.group(1))))


def version_info(row: Mapping[Any, Any]) -> VersionInfo:
    """A VersionInfo from a row of parity_registry_versions (the catalog column aside)."""
    changes = tuple(ObjectChange.from_record(r) for r in json.loads(row["changes"]))
    return VersionInfo(
        project=row["project"],
        version=int(row["version"]),
        committed_at=datetime.fromisoformat(row["committed_at"]),
        author=row["author"],
        message=row["message"],
        changes=changes,
        fingerprint=row["fingerprint"],
    )


class SqliteRegistryStore:
    """SqlRegistryStore's behaviour on a SQLite file; head, head_info and read through sqlite3
    until anything else needs SQLAlchemy (then everything goes there). A file or table that is
    not there yet, or any sqlite3 error, also goes there: it creates the tables, or raises the
    same errors as it always did."""

    def __init__(self, url: str, path: Path) -> None:
        self.url = url
        self.path = path
        self._sql: SqlRegistryStore | None = None

    @property
    def sql(self) -> SqlRegistryStore:
        """The SQLAlchemy store on the same file (imported and opened on first use)."""
        if self._sql is None:
            from parity.registry.sql import SqlRegistryStore

            self._sql = SqlRegistryStore(self.url)
        return self._sql

    @property
    def engine(self) -> Engine:
        return self.sql.engine

    def head(self, project: str) -> int:
        rows = self._select(lambda c: c.execute(_HEAD, (project,)).fetchall())
        if rows is None:
            return self.sql.head(project)
        return int(rows[0][0]) if rows and rows[0][0] else 0

    def head_info(self, project: str) -> VersionInfo | None:
        query = (
            f"SELECT {', '.join('v.' + c for c in _INFO.split(', '))} "
            "FROM parity_registry_versions v JOIN parity_registry_projects p "
            "ON p.project = v.project AND p.head = v.version WHERE p.project = ?"
        )
        rows = self._select(lambda c: c.execute(query, (project,)).fetchall())
        if rows is None:
            return self.sql.head_info(project)
        return version_info(rows[0]) if rows else None

    def read(self, project: str, version: int | None = None) -> Snapshot:
        def select(connection: sqlite3.Connection) -> tuple[int, list[sqlite3.Row]]:
            wanted = version
            if not wanted:
                head = connection.execute(_HEAD, (project,)).fetchall()
                wanted = int(head[0][0]) if head and head[0][0] else 0
            query = (
                f"SELECT {_INFO}, catalog FROM parity_registry_versions "
                "WHERE project = ? AND version = ?"
            )
            return wanted, connection.execute(query, (project, wanted)).fetchall()

        found = self._select(select)
        if found is None:
            return self.sql.read(project, version)
        wanted, rows = found
        if not wanted:
            raise ProjectNotFound(
                f"project '{project}' has no registry versions; run 'parity apply' first"
            )
        if not rows:
            raise RegistryVersionNotFound(
                f"project '{project}' has no registry version {wanted}; "
                "see 'parity registry history' for the versions it has"
            )
        return Snapshot(version_info(rows[0]), Catalog.from_json(rows[0]["catalog"]))

    def _select(self, action: Any) -> Any:
        """`action(connection)` in one read transaction, or None when SQLAlchemy should answer."""
        if self._sql is not None or not self.path.is_file():
            return None
        try:
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error:
            return None
        try:
            connection.row_factory = sqlite3.Row
            connection.execute("BEGIN")  # one snapshot for the queries of a read
            return action(connection)
        except sqlite3.Error:  # e.g. no such table yet: SQLAlchemy creates it
            return None
        finally:
            connection.close()

    # Everything else is SqlRegistryStore's.

    def commit(
        self,
        catalog: Catalog,
        *,
        expected_version: int,
        changes: tuple[Change, ...],
        author: str,
        message: str,
        committed_at: datetime,
    ) -> VersionInfo:
        return self.sql.commit(
            catalog,
            expected_version=expected_version,
            changes=changes,
            author=author,
            message=message,
            committed_at=committed_at,
        )

    def history(self, project: str) -> list[VersionInfo]:
        return self.sql.history(project)

    def projects(self) -> list[str]:
        return self.sql.projects()

    def delete_project(self, project: str, *, expected_version: int) -> None:
        self.sql.delete_project(project, expected_version=expected_version)

    def record_dataset(self, record: DatasetRecord) -> None:
        self.sql.record_dataset(record)

    def get_dataset(self, project: str, name: str) -> DatasetRecord:
        return self.sql.get_dataset(project, name)

    def list_datasets(self, project: str) -> list[DatasetRecord]:
        return self.sql.list_datasets(project)

    def record_materialization(self, record: MaterializationRecord) -> None:
        self.sql.record_materialization(record)

    def watermark(self, project: str, view: str) -> datetime | None:
        return self.sql.watermark(project, view)

    def close(self) -> None:
        if self._sql is not None:
            self._sql.close()
