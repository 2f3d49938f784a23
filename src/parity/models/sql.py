"""SQL model store on SQLAlchemy Core (SQLite, PostgreSQL), in the feature registry's database.

Deleted versions stay as tombstones so a version number is never reused. Must not import the
artifact store, the flavors or anything above the models layer.
"""

from __future__ import annotations

import json
import logging
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from parity.errors import (
    AliasMoved,
    AliasNotFound,
    ModelVersionNotFound,
    ObjectNotFound,
    RegistryConflict,
    VersionAliased,
)
from parity.models.store import UNCHECKED, AliasEvent, Expected, ModelVersion, model_not_found
from parity.registry.sql import connect, create_registry_engine, create_tables
from parity.timeutil import utcnow

log = logging.getLogger(__name__)

# Attempts before giving up when concurrent writers keep taking the same key first.
_ATTEMPTS = 100

_WHAT = "model registry"
metadata = sa.MetaData()
versions_table = sa.Table(
    "parity_model_versions",
    metadata,
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("flavor", sa.String(64), nullable=False),
    sa.Column("artifact", sa.String(64), nullable=False),
    sa.Column("artifact_size", sa.BigInteger, nullable=False),
    sa.Column("signature", sa.Text),
    sa.Column("feature_service", sa.String(255)),
    sa.Column("training_dataset", sa.String(255)),
    sa.Column("dataset_fingerprint", sa.String(64)),
    sa.Column("dataset_registry_version", sa.Integer),
    sa.Column("registry_version", sa.Integer),
    sa.Column("code_version", sa.String(255)),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("tags", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("deleted_at", sa.String(40)),  # set: a tombstone, kept so the number is not reused
)
aliases_table = sa.Table(
    "parity_model_aliases",
    metadata,
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("alias", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)
events_table = sa.Table(
    "parity_model_alias_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("alias", sa.String(255), nullable=False),
    sa.Column("version", sa.Integer),
    sa.Column("previous", sa.Integer),
    sa.Column("moved_at", sa.String(40), nullable=False),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Index("ix_parity_model_alias_events_alias", "project", "name", "alias"),
)
_live = versions_table.c.deleted_at.is_(None)


class SqlModelStore:
    """ModelStore on any SQLAlchemy database; pass a URL, or the feature registry's Engine."""

    def __init__(self, url_or_engine: str | Engine) -> None:
        self._owns_engine = not isinstance(url_or_engine, Engine)
        self.engine = (
            url_or_engine
            if isinstance(url_or_engine, Engine)
            else create_registry_engine(url_or_engine)
        )
        create_tables(metadata, self.engine, _WHAT)

    def _connect(self, *, write: bool = False) -> Connection:
        return connect(self.engine, write=write, what=_WHAT)

    def close(self) -> None:
        if self._owns_engine:  # a shared engine belongs to whoever created it
            self.engine.dispose()

    # Versions

    def add_version(self, draft: ModelVersion) -> ModelVersion:
        for _ in range(_ATTEMPTS):
            try:
                with self._connect(write=True) as conn, conn.begin():
                    number = _next_number(conn, draft.project, draft.name)
                    row = _version_row(replace(draft, version=number))
                    conn.execute(versions_table.insert().values(**row))
                log.info("registered model %s/%d in project %s", draft.name, number, draft.project)
                return _version(row)
            except sa.exc.IntegrityError:
                continue  # a concurrent writer took that number first (PostgreSQL): next one
        raise RegistryConflict(
            f"could not number a new version of model '{draft.name}': {_ATTEMPTS} concurrent "
            "registrations took each number first. Nothing was stored; register it again"
        )

    def get_version(self, project: str, name: str, version: int) -> ModelVersion:
        query = sa.select(versions_table).where(_key(versions_table, project, name), _live)
        with self._connect() as conn:
            row = conn.execute(query.where(versions_table.c.version == version)).first()
            if row is None:
                raise _missing_version(conn, project, name, version)
        return _version(row._mapping)

    def latest_version(self, project: str, name: str) -> ModelVersion:
        query = (
            sa.select(versions_table)
            .where(_key(versions_table, project, name), _live)
            .order_by(versions_table.c.version.desc())
            .limit(1)
        )
        with self._connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise model_not_found(project, name)
        return _version(row._mapping)

    def list_versions(self, project: str, name: str) -> list[ModelVersion]:
        query = (
            sa.select(versions_table)
            .where(_key(versions_table, project, name), _live)
            .order_by(versions_table.c.version)
        )
        with self._connect() as conn:
            return [_version(row._mapping) for row in conn.execute(query)]

    def list_models(self, project: str) -> list[str]:
        name = versions_table.c.name
        query = (
            sa.select(name).distinct().where(versions_table.c.project == project, _live)
        ).order_by(name)
        with self._connect() as conn:
            return [str(n) for n in conn.execute(query).scalars()]

    def delete_version(self, project: str, name: str, version: int) -> None:
        with self._connect(write=True) as conn, conn.begin():
            # Tombstoning first locks the row, so a concurrent set_alias (which locks it too)
            # either finishes before the alias check below or finds the version gone.
            gone = conn.execute(
                versions_table.update()
                .where(_key(versions_table, project, name), _live)
                .where(versions_table.c.version == version)
                .values(deleted_at=_iso(utcnow()))
            )
            if gone.rowcount != 1:
                raise _missing_version(conn, project, name, version)
            holders = conn.execute(
                sa.select(aliases_table.c.alias)
                .where(_key(aliases_table, project, name), aliases_table.c.version == version)
                .order_by(aliases_table.c.alias)
            ).scalars()
            aliases = [str(alias) for alias in holders]
            if aliases:  # raising rolls the tombstone back
                raise VersionAliased(
                    f"version {version} of model '{name}' cannot be deleted: the aliases "
                    f"{', '.join(aliases)} point at it. Move or delete them first (see "
                    f"'parity models versions {name}'), then delete the version"
                )
        log.info("deleted model %s/%d in project %s", name, version, project)

    # Aliases

    def set_alias(
        self,
        project: str,
        name: str,
        alias: str,
        version: int,
        *,
        author: str,
        reason: str,
        at: datetime,
        expected: Expected = UNCHECKED,
        moves_seen: int | None = None,
    ) -> AliasEvent:
        for _ in range(_ATTEMPTS):
            try:
                with self._connect(write=True) as conn, conn.begin():
                    _lock_live_version(conn, project, name, version)
                    previous = _current(conn, project, name, alias)  # locked until commit
                    _check_expected(conn, (project, name, alias), previous, expected, moves_seen)
                    _write_alias(conn, project, name, alias, version, previous)
                    event = AliasEvent(project, name, alias, version, previous, at, author, reason)
                    return _record(conn, event)
            except sa.exc.IntegrityError:
                continue  # a concurrent first set of this alias won (PostgreSQL): move it instead
        raise RegistryConflict(
            f"could not move alias '{alias}' of model '{name}': {_ATTEMPTS} concurrent moves "
            "came first. Nothing was changed; set it again"
        )

    def delete_alias(
        self, project: str, name: str, alias: str, *, author: str, reason: str, at: datetime
    ) -> AliasEvent:
        with self._connect(write=True) as conn, conn.begin():
            previous = _current(conn, project, name, alias)
            if previous is None:
                raise _missing_alias(name, alias)
            conn.execute(
                aliases_table.delete().where(
                    _key(aliases_table, project, name), aliases_table.c.alias == alias
                )
            )
            return _record(
                conn, AliasEvent(project, name, alias, None, previous, at, author, reason)
            )

    def get_alias(self, project: str, name: str, alias: str) -> int:
        with self._connect() as conn:
            version = _current(conn, project, name, alias, lock=False)
        if version is None:
            raise _missing_alias(name, alias)
        return version

    def aliases(self, project: str, name: str) -> dict[str, int]:
        query = (
            sa.select(aliases_table.c.alias, aliases_table.c.version)
            .where(_key(aliases_table, project, name))
            .order_by(aliases_table.c.alias)
        )
        with self._connect() as conn:
            return {str(row.alias): int(row.version) for row in conn.execute(query)}

    def alias_history(self, project: str, name: str, alias: str | None = None) -> list[AliasEvent]:
        query = sa.select(events_table).where(_key(events_table, project, name))
        if alias is not None:
            query = query.where(events_table.c.alias == alias)
        with self._connect() as conn:
            return [_event(row._mapping) for row in conn.execute(query.order_by(events_table.c.id))]

    def alias_at(self, project: str, name: str, alias: str, moment: datetime) -> int | None:
        query = (
            sa.select(events_table.c.version)
            .where(_key(events_table, project, name), events_table.c.alias == alias)
            .where(events_table.c.moved_at <= _iso(moment))
            .order_by(events_table.c.moved_at.desc(), events_table.c.id.desc())
            .limit(1)
        )
        with self._connect() as conn:
            version = conn.execute(query).scalar()
        return None if version is None else int(version)


def _key(table: sa.Table, project: str, name: str) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.project == project, table.c.name == name)


def _next_number(conn: Connection, project: str, name: str) -> int:
    """One past the highest number ever given, tombstones included."""
    query = sa.select(sa.func.max(versions_table.c.version)).where(
        _key(versions_table, project, name)
    )
    return int(conn.execute(query).scalar() or 0) + 1


def _missing_version(conn: Connection, project: str, name: str, version: int) -> ObjectNotFound:
    hint = f"see 'parity models versions {name}' for the versions it has"
    deleted_at = conn.execute(
        sa.select(versions_table.c.deleted_at).where(
            _key(versions_table, project, name), versions_table.c.version == version
        )
    ).scalar()
    if deleted_at is not None:
        return ModelVersionNotFound(
            f"version {version} of model '{name}' was deleted at {deleted_at}; {hint}"
        )
    exists = sa.select(versions_table.c.version).where(_key(versions_table, project, name), _live)
    if conn.execute(exists.limit(1)).first() is None:
        return model_not_found(project, name)
    return ModelVersionNotFound(f"model '{name}' has no version {version}; {hint}")


def _missing_alias(name: str, alias: str) -> AliasNotFound:
    return AliasNotFound(
        f"model '{name}' has no alias '{alias}'; see 'parity models versions {name}' for its "
        f"aliases, or set it with 'parity models alias set {name} {alias} VERSION'"
    )


def _check_expected(
    conn: Connection,
    key: tuple[str, str, str],
    found: int | None,
    expected: Expected,
    moves_seen: int | None,
) -> None:
    """Raise AliasMoved unless the alias (held by this transaction) is where the caller saw it."""
    project, name, alias = key
    where = "does not exist" if found is None else f"points at version {found}"
    if expected is not UNCHECKED and found != expected:
        wanted = "absent" if expected is None else f"at version {expected}"
        problem = f"{where}, not {wanted} as expected"
    elif moves_seen is not None:
        count = sa.select(sa.func.count()).where(
            _key(events_table, project, name), events_table.c.alias == alias
        )
        moves = int(conn.execute(count).scalar() or 0)
        if moves == moves_seen:
            return
        problem = f"{where} after {moves - moves_seen} more move(s) than the {moves_seen} seen"
    else:
        return
    raise AliasMoved(
        f"alias '{alias}' of model '{name}' {problem}: another move came first. Nothing was "
        f"changed; see 'parity models history {name} --alias {alias}' and decide again"
    )


def _lock_live_version(conn: Connection, project: str, name: str, version: int) -> None:
    """Check that the version is live, holding a share lock on it until the transaction ends."""
    query = (
        sa.select(versions_table.c.version)
        .where(_key(versions_table, project, name), _live)
        .where(versions_table.c.version == version)
        .with_for_update(read=True)
    )
    if conn.execute(query).first() is None:
        raise _missing_version(conn, project, name, version)


def _current(
    conn: Connection, project: str, name: str, alias: str, *, lock: bool = True
) -> int | None:
    query = sa.select(aliases_table.c.version).where(
        _key(aliases_table, project, name), aliases_table.c.alias == alias
    )
    version = conn.execute(query.with_for_update() if lock else query).scalar()
    return None if version is None else int(version)


def _write_alias(
    conn: Connection, project: str, name: str, alias: str, version: int, previous: int | None
) -> None:
    if previous is None:  # a first set: the primary key decides between concurrent ones
        conn.execute(
            aliases_table.insert().values(project=project, name=name, alias=alias, version=version)
        )
        return
    conn.execute(
        aliases_table.update()
        .where(_key(aliases_table, project, name), aliases_table.c.alias == alias)
        .values(version=version)
    )


def _record(conn: Connection, event: AliasEvent) -> AliasEvent:
    row = {f.name: getattr(event, f.name) for f in fields(AliasEvent)}
    row["moved_at"] = _iso(event.moved_at)
    conn.execute(events_table.insert().values(**row))
    return _event(row)


def _iso(moment: datetime) -> str:
    """UTC ISO text, fixed width to the microsecond so text order is time order; naive is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False)


def _version_row(version: ModelVersion) -> dict[str, Any]:
    row = {f.name: getattr(version, f.name) for f in fields(ModelVersion)}
    row["created_at"] = _iso(version.created_at)
    row["signature"] = None if version.signature is None else _json(version.signature)
    for column in ("metrics", "params", "tags"):
        row[column] = _json(row[column])
    return row


def _version(row: Any) -> ModelVersion:
    values = {f.name: row[f.name] for f in fields(ModelVersion)}
    values["created_at"] = datetime.fromisoformat(values["created_at"])
    for column in ("signature", "metrics", "params", "tags"):
        if values[column] is not None:
            values[column] = json.loads(values[column])
    return ModelVersion(**values)


def _event(row: Any) -> AliasEvent:
    values = {f.name: row[f.name] for f in fields(AliasEvent)}
    values["moved_at"] = datetime.fromisoformat(values["moved_at"])
    return AliasEvent(**values)
