"""Table `parity_auth_tokens` in the registry database (SQLAlchemy Core; SQLite and PostgreSQL):
one row per token with the sha256 of its secret, never its text. Loads and stores only; must not
import a server or the CLI.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from parity.errors import TokenError
from parity.registry.sql import connect, create_tables
from parity.serving.auth.tokens import TokenRecord
from parity.timeutil import from_sortable_text as _time
from parity.timeutil import sortable_text as _text

_WHAT = "token store"

metadata = sa.MetaData()
tokens_table = sa.Table(
    "parity_auth_tokens",
    metadata,
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("id", sa.String(12), primary_key=True),  # public, random: the lookup key
    sa.Column("name", sa.String(100), nullable=False),
    # The name while the token is not revoked, else NULL: the unique constraint keeps a name to
    # one live token even when two creates race (NULLs never collide).
    sa.Column("active_name", sa.String(100)),
    sa.Column("secret_hash", sa.String(64), nullable=False),  # sha256(secret), hex
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("expires_at", sa.String(40)),
    sa.Column("revoked_at", sa.String(40)),
    sa.Column("revoked_by", sa.String(255)),
    sa.Column("rate_per_second", sa.Float),
    sa.Column("burst", sa.Integer),
    sa.Column("max_in_flight", sa.Integer),
    sa.Column("last_used_at", sa.String(40)),
    sa.UniqueConstraint("project", "active_name", name="uq_parity_auth_tokens_active_name"),
)
_t = tokens_table.c


class TokenStore:
    """The tokens of one project, in the registry's engine (the tables are made on first use)."""

    def __init__(self, engine: Engine, project: str) -> None:
        self.engine = engine
        self.project = project
        create_tables(metadata, engine, _WHAT)

    def _connect(self, *, write: bool = False) -> Connection:
        return connect(self.engine, write=write, what=_WHAT)

    def insert(self, record: TokenRecord, secret_hash: str) -> bool:
        """Store a new token; False when its id is taken (the caller draws another). TokenError
        when a live token already has its name."""
        row = {**_row(record), "project": self.project, "secret_hash": secret_hash}
        try:
            with self._connect(write=True) as conn, conn.begin():
                conn.execute(tokens_table.insert().values(**row, active_name=record.name))
            return True
        except sa.exc.IntegrityError:
            if self.active(record.name) is not None:
                raise TokenError(
                    f"name '{record.name}': a token of that name exists and is not revoked; "
                    f"revoke it first ('parity auth token revoke {record.name}') or choose "
                    "another name"
                ) from None
            return False  # the id collided (48 random bits: about never)

    def lookup(self, token_id: str) -> tuple[TokenRecord, str] | None:
        """The record and stored hash of the token with this id (revoked ones too)."""
        query = sa.select(tokens_table).where(_t.project == self.project, _t.id == token_id)
        with self._connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else (_record(row._mapping), str(row.secret_hash))

    def active(self, name: str) -> TokenRecord | None:
        query = sa.select(tokens_table).where(_t.project == self.project, _t.active_name == name)
        with self._connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _record(row._mapping)

    def list(self, *, include_revoked: bool = False) -> builtins.list[TokenRecord]:
        """Tokens by name, then creation time."""
        query = sa.select(tokens_table).where(_t.project == self.project)
        if not include_revoked:
            query = query.where(_t.revoked_at.is_(None))
        with self._connect() as conn:
            rows = conn.execute(query.order_by(_t.name, _t.created_at, _t.id))
            return [_record(row._mapping) for row in rows]

    def revoke(self, token_id: str, at: datetime, by: str) -> bool:
        """Mark a live token revoked (its name is free again); False if it was not live."""
        with self._connect(write=True) as conn, conn.begin():
            done = conn.execute(
                tokens_table.update()
                .where(_t.project == self.project, _t.id == token_id, _t.revoked_at.is_(None))
                .values(revoked_at=_text(at), revoked_by=by[:255], active_name=None)
            )
        return bool(done.rowcount == 1)

    def touch(self, token_id: str, at: datetime) -> None:
        """Record a use of the token (the caller throttles: this is a write)."""
        with self._connect(write=True) as conn, conn.begin():
            conn.execute(
                tokens_table.update()
                .where(_t.project == self.project, _t.id == token_id)
                .values(last_used_at=_text(at))
            )


def _row(record: TokenRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "scopes": record.scopes,
        "created_at": _text(record.created_at),
        "created_by": record.created_by[:255],
        "expires_at": None if record.expires_at is None else _text(record.expires_at),
        "revoked_at": None,
        "revoked_by": None,
        "rate_per_second": record.rate_per_second,
        "burst": record.burst,
        "max_in_flight": record.max_in_flight,
        "last_used_at": None,
    }


def _maybe_time(text: str | None) -> datetime | None:
    return None if text is None else _time(text)


def _record(row: Any) -> TokenRecord:
    return TokenRecord(
        id=row["id"],
        name=row["name"],
        scopes=row["scopes"],
        created_at=_time(row["created_at"]),
        created_by=row["created_by"],
        expires_at=_maybe_time(row["expires_at"]),
        revoked_at=_maybe_time(row["revoked_at"]),
        revoked_by=row["revoked_by"],
        rate_per_second=row["rate_per_second"],
        burst=row["burst"],
        max_in_flight=row["max_in_flight"],
        last_used_at=_maybe_time(row["last_used_at"]),
    )
