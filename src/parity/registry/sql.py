"""SQL registry backend on SQLAlchemy Core: SQLite (embedded default) and PostgreSQL.

Compare-and-swap lives in one row per project (`head`); a version is one row, so a commit is all or
nothing. Must not import other backends or anything above the registry layer.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from parity.errors import (
    BackendNotInstalled,
    ConfigError,
    DatasetExists,
    DatasetNotFound,
    ProjectNotFound,
    RegistryConflict,
    RegistryUnavailable,
    RegistryVersionNotFound,
)
from parity.registry.catalog import Catalog
from parity.registry.datasets import DatasetRecord
from parity.registry.materializations import MaterializationRecord
from parity.registry.plan import ObjectChange
from parity.registry.sqlite_read import version_info as _info
from parity.registry.store import Snapshot, VersionInfo
from parity.store_urls import registry_url_problem

log = logging.getLogger(__name__)

metadata = sa.MetaData()
projects_table = sa.Table(
    "parity_registry_projects",
    metadata,
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("head", sa.Integer, nullable=False),
)
versions_table = sa.Table(
    "parity_registry_versions",
    metadata,
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("committed_at", sa.String(40), nullable=False),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("changes", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("catalog", sa.Text, nullable=False),
)
datasets_table = sa.Table(
    "parity_datasets",
    metadata,
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("registry_version", sa.Integer, nullable=False),
    sa.Column("feature_refs", sa.Text, nullable=False),
    sa.Column("feature_service", sa.String(255)),
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("entity_source", sa.Text, nullable=False),
)
materializations_table = sa.Table(
    "parity_materializations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(255), nullable=False, index=True),
    sa.Column("view", sa.String(255), nullable=False),
    sa.Column("start_at", sa.String(40), nullable=False),
    sa.Column("end_at", sa.String(40), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("finished_at", sa.String(40), nullable=False),
)
_INFO_COLUMNS = [c for c in versions_table.c if c.name != "catalog"]


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path)}"


def normalize_url(url: str) -> URL:
    """Accept plain `postgresql://` URLs and pick the psycopg 3 driver for them."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_registry_engine(url: str) -> Engine:
    """An engine for a SQLite file or PostgreSQL; a URL the driver cannot take is a
    ConfigError naming `registry.url` (checked before an engine exists)."""
    problem = None if url.startswith("sqlite:") else registry_url_problem(url)
    if problem is not None:
        raise ConfigError(f"registry.url: {problem}")
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    try:
        return sa.create_engine(parsed, pool_pre_ping=True)
    except ModuleNotFoundError as error:
        raise BackendNotInstalled(
            f"the PostgreSQL registry needs the psycopg driver ({error.name} is missing): "
            "pip install 'parity[postgres]'"
        ) from None


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let us issue BEGIN ourselves
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA busy_timeout=30000")

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # Writers take the lock up front, so a commit's check of the head and its write are one
        # step; readers begin deferred and never block each other (WAL).
        writing = connection.get_execution_options().get("parity_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

    return engine


def unavailable(engine: Engine, error: Exception, what: str = "registry") -> RegistryUnavailable:
    """The error for a database that cannot be reached, naming it without its password."""
    shown = engine.url.render_as_string(hide_password=True)
    detail = str(getattr(error, "orig", error)).strip().splitlines()[0]
    return RegistryUnavailable(
        f"cannot reach the {what} at {shown}: {detail}. Check that the database is "
        "running and the registry settings in parity.yaml"
    )


def create_tables(tables: sa.MetaData, engine: Engine, what: str = "registry") -> None:
    """Create missing tables; tolerate another process creating them at the same moment."""
    for attempt in range(3):
        try:
            # As a writer from the start (BEGIN IMMEDIATE on SQLite): a deferred transaction that
            # reads the schema and then writes gets "database is locked" at once, without
            # waiting, when another process wrote in between (two workers starting together).
            with engine.connect() as connection:
                connection.execution_options(parity_write=True)
                with connection.begin():
                    tables.create_all(connection, checkfirst=True)
            return
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
            if attempt == 2:
                raise
        except sa.exc.OperationalError as error:
            raise unavailable(engine, error, what) from None


def connect(engine: Engine, *, write: bool = False, what: str = "registry") -> Connection:
    """A connection; `write` ones take SQLite's write lock when they begin (BEGIN IMMEDIATE)."""
    try:
        conn = engine.connect()
        return conn.execution_options(parity_write=True) if write else conn
    except sa.exc.OperationalError as error:
        raise unavailable(engine, error, what) from None


class SqlRegistryStore:
    """RegistryStore on any SQLAlchemy database; tested on SQLite and PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_registry_engine(url)
        create_tables(metadata, self.engine)

    def head(self, project: str) -> int:
        query = sa.select(projects_table.c.head).where(projects_table.c.project == project)
        with self._connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def head_info(self, project: str) -> VersionInfo | None:
        query = (
            sa.select(*_INFO_COLUMNS)
            .join(
                projects_table,
                sa.and_(
                    projects_table.c.project == versions_table.c.project,
                    projects_table.c.head == versions_table.c.version,
                ),
            )
            .where(projects_table.c.project == project)
        )
        with self._connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _info(row._mapping)

    def read(self, project: str, version: int | None = None) -> Snapshot:
        with self._connect() as conn:
            wanted = (
                version
                or conn.execute(
                    sa.select(projects_table.c.head).where(projects_table.c.project == project)
                ).scalar()
            )
            if not wanted:
                raise ProjectNotFound(
                    f"project '{project}' has no registry versions; run 'parity apply' first"
                )
            row = conn.execute(
                sa.select(versions_table).where(
                    versions_table.c.project == project, versions_table.c.version == wanted
                )
            ).first()
        if row is None:
            raise RegistryVersionNotFound(
                f"project '{project}' has no registry version {wanted}; "
                "see 'parity registry history' for the versions it has"
            )
        return Snapshot(_info(row._mapping), Catalog.from_json(row.catalog))

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
        project, version = catalog.project, expected_version + 1
        row = {
            "project": project,
            "version": version,
            "committed_at": committed_at.astimezone(UTC).isoformat(),
            "author": author,
            "message": message,
            "changes": json.dumps([c.to_record() for c in changes]),
            "fingerprint": catalog.fingerprint(),
            "catalog": catalog.to_json(),
        }
        try:
            with self._connect(write=True) as conn, conn.begin():
                self._move_head(conn, project, expected_version, version)
                conn.execute(versions_table.insert().values(**row))
        except sa.exc.IntegrityError:
            raise _conflict(project, expected_version) from None
        log.info("committed registry version %d of project %s", version, project)
        return _info(row)

    def _move_head(self, conn: Connection, project: str, expected: int, new: int) -> None:
        if expected == 0:  # first version: the primary key decides who wins
            conn.execute(projects_table.insert().values(project=project, head=new))
            return
        moved = conn.execute(
            projects_table.update()
            .where(projects_table.c.project == project, projects_table.c.head == expected)
            .values(head=new)
        )
        if moved.rowcount != 1:
            raise _conflict(project, expected)

    def history(self, project: str) -> list[VersionInfo]:
        query = (
            sa.select(*_INFO_COLUMNS)
            .where(versions_table.c.project == project)
            .order_by(versions_table.c.version)
        )
        with self._connect() as conn:
            return [_info(row._mapping) for row in conn.execute(query)]

    def projects(self) -> list[str]:
        with self._connect() as conn:
            query = sa.select(projects_table.c.project).order_by(projects_table.c.project)
            return [str(p) for p in conn.execute(query).scalars()]

    def delete_project(self, project: str, *, expected_version: int) -> None:
        with self._connect(write=True) as conn, conn.begin():
            gone = conn.execute(
                projects_table.delete().where(
                    projects_table.c.project == project,
                    projects_table.c.head == expected_version,
                )
            )
            if gone.rowcount != 1:
                head = conn.execute(
                    sa.select(projects_table.c.head).where(projects_table.c.project == project)
                ).scalar()
                if head is None:
                    raise ProjectNotFound(f"project '{project}' is not in the registry")
                raise _conflict(project, expected_version)
            conn.execute(versions_table.delete().where(versions_table.c.project == project))
            conn.execute(datasets_table.delete().where(datasets_table.c.project == project))
            conn.execute(
                materializations_table.delete().where(materializations_table.c.project == project)
            )

    def record_dataset(self, record: DatasetRecord) -> None:
        row = {
            **{f: getattr(record, f) for f in DatasetRecord.__dataclass_fields__},
            "created_at": record.created_at.astimezone(UTC).isoformat(),
            "feature_refs": json.dumps(list(record.feature_refs)),
        }
        try:
            with self._connect(write=True) as conn, conn.begin():
                conn.execute(datasets_table.insert().values(**row))
        except sa.exc.IntegrityError:
            raise DatasetExists(
                f"dataset '{record.name}' already exists in project '{record.project}'; "
                "datasets are immutable, so choose a new name"
            ) from None

    def get_dataset(self, project: str, name: str) -> DatasetRecord:
        query = sa.select(datasets_table).where(
            datasets_table.c.project == project, datasets_table.c.name == name
        )
        with self._connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise DatasetNotFound(
                f"no dataset '{name}' in project '{project}'; see 'parity dataset list'"
            )
        return _dataset(row._mapping)

    def list_datasets(self, project: str) -> list[DatasetRecord]:
        query = (
            sa.select(datasets_table)
            .where(datasets_table.c.project == project)
            .order_by(datasets_table.c.created_at, datasets_table.c.name)
        )
        with self._connect() as conn:
            return [_dataset(row._mapping) for row in conn.execute(query)]

    def record_materialization(self, record: MaterializationRecord) -> None:
        row = {
            "project": record.project,
            "view": record.view,
            "start_at": _iso(record.start),
            "end_at": _iso(record.end),
            "rows": record.rows,
            "finished_at": _iso(record.finished_at),
        }
        with self._connect(write=True) as conn, conn.begin():
            conn.execute(materializations_table.insert().values(**row))

    def watermark(self, project: str, view: str) -> datetime | None:
        table = materializations_table
        query = (
            sa.select(table.c.end_at)
            .where(table.c.project == project, table.c.view == view)
            .order_by(table.c.id.desc())
            .limit(1)
        )
        with self._connect() as conn:
            end = conn.execute(query).scalar()
        return None if end is None else datetime.fromisoformat(end)

    def close(self) -> None:
        self.engine.dispose()

    def _connect(self, *, write: bool = False) -> Connection:
        return connect(self.engine, write=write)


def _conflict(project: str, expected: int) -> RegistryConflict:
    return RegistryConflict(
        f"the registry of project '{project}' moved past version {expected} while this apply "
        "ran (someone else applied first); nothing was written. Run 'parity plan' to see the "
        "new state, then apply again"
    )


def _iso(moment: datetime) -> str:
    """UTC ISO text (fixed width to the microsecond, so text order is time order)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _dataset(row: Any) -> DatasetRecord:
    values = dict(row)
    values["created_at"] = datetime.fromisoformat(values["created_at"])
    values["feature_refs"] = tuple(json.loads(values["feature_refs"]))
    return DatasetRecord(**values)
