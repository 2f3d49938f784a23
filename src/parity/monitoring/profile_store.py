"""Reference profiles in the registry database (table `parity_monitor_profiles`, SQLite and
PostgreSQL): one immutable row per (project, dataset fingerprint, subject), stored as JSON text.

Stores text only: must not import the profile computation, the model registry or DuckDB.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from parity.errors import ProfileNotFound
from parity.registry.sql import connect, create_tables

log = logging.getLogger(__name__)

_WHAT = "monitoring profiles"
FEATURES = "features"  # the subject of a dataset's feature columns
OK, FAILED = "ok", "failed"

metadata = sa.MetaData()
profiles_table = sa.Table(
    "parity_monitor_profiles",
    metadata,
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("subject", sa.String(255), primary_key=True),
    sa.Column("dataset", sa.String(255), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("profile", sa.Text),  # the Profile's JSON; NULL for a failed attempt
    sa.Column("error", sa.Text, nullable=False),
)


def model_subject(name: str, version: int, part: str = "outputs") -> str:
    """The subject of a model version's columns: `model:fraud/3:outputs` (its predictions) or
    `model:fraud/3:inputs` (request-time inputs, such as the amount, that are not features)."""
    return f"model:{name}/{version}:{part}"


@dataclass(frozen=True)
class StoredProfile:
    """One stored profile: `profile` is its JSON (None when `status` is 'failed', with `error`)."""

    project: str
    fingerprint: str
    subject: str
    dataset: str
    created_at: datetime
    status: str
    rows: int
    profile: str | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK


class ProfileStore:
    """Profiles keyed by dataset fingerprint: a computed profile is never replaced (the same
    bytes always give the same profile); a failed attempt is recorded and may be replaced."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_tables(metadata, engine, _WHAT)

    def _connect(self, *, write: bool = False) -> Connection:
        return connect(self.engine, write=write, what=_WHAT)

    def put(self, record: StoredProfile) -> StoredProfile:
        """Store `record` unless a computed profile is already there; returns what is stored.
        A failed attempt on record is replaced by this one (computed or failed again)."""
        try:
            return self._put(record)
        except sa.exc.IntegrityError:  # a concurrent writer stored it first (PostgreSQL)
            return self.get(record.project, record.fingerprint, record.subject)

    def _put(self, record: StoredProfile) -> StoredProfile:
        row = _row(record)
        with self._connect(write=True) as conn, conn.begin():
            found = conn.execute(_select(record.project, record.fingerprint, record.subject))
            existing = found.first()
            if existing is None:
                conn.execute(profiles_table.insert().values(**row))
                return record
            if existing.status == OK:
                return _stored(existing._mapping)
            conn.execute(
                profiles_table.update()
                .where(*_key(record.project, record.fingerprint, record.subject))
                .where(profiles_table.c.status == FAILED)
                .values(**row)
            )
        return record

    def find(self, project: str, fingerprint: str, subject: str) -> StoredProfile | None:
        with self._connect() as conn:
            row = conn.execute(_select(project, fingerprint, subject)).first()
        return None if row is None else _stored(row._mapping)

    def get(self, project: str, fingerprint: str, subject: str) -> StoredProfile:
        """The stored row (computed or failed); ProfileNotFound naming what to run if none."""
        found = self.find(project, fingerprint, subject)
        if found is None:
            raise ProfileNotFound(
                f"no reference profile '{subject}' for dataset fingerprint {fingerprint[:12]} in "
                f"project '{project}'; compute it with 'parity monitor profile --dataset NAME'"
            )
        return found

    def list(self, project: str, fingerprint: str | None = None) -> list[StoredProfile]:
        """The project's profiles (of one fingerprint if given), oldest first."""
        query = sa.select(profiles_table).where(profiles_table.c.project == project)
        if fingerprint is not None:
            query = query.where(profiles_table.c.fingerprint == fingerprint)
        query = query.order_by(profiles_table.c.created_at, profiles_table.c.subject)
        with self._connect() as conn:
            return [_stored(row._mapping) for row in conn.execute(query)]


def _key(project: str, fingerprint: str, subject: str) -> tuple[sa.ColumnElement[bool], ...]:
    table = profiles_table.c
    return (table.project == project, table.fingerprint == fingerprint, table.subject == subject)


def _select(project: str, fingerprint: str, subject: str) -> sa.Select[tuple[object, ...]]:
    return sa.select(profiles_table).where(*_key(project, fingerprint, subject))


def iso(moment: datetime) -> str:
    """UTC ISO text, fixed width to the microsecond so text order is time order; naive is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _row(record: StoredProfile) -> dict[str, object]:
    row: dict[str, object] = {f.name: getattr(record, f.name) for f in fields(StoredProfile)}
    row["created_at"] = iso(record.created_at)
    return row


def _stored(row: object) -> StoredProfile:
    values = {f.name: row[f.name] for f in fields(StoredProfile)}  # type: ignore[index]
    values["created_at"] = datetime.fromisoformat(str(values["created_at"]))
    values["rows"] = int(values["rows"])
    return StoredProfile(**values)
