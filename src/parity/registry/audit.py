"""The audit trail: who (`Actor`, carried in a ContextVar by `acting_as`) wrote what, when and from
where; table `parity_audit` in the registry database, and one JSON line per record on logger
`parity.audit`. Must not import anything above the registry layer; never records a secret.
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from parity.errors import BackendNotInstalled, InvalidOption, InvalidTime
from parity.redaction import redact
from parity.registry.sql import connect, create_tables
from parity.timeutil import from_sortable_text, sortable_text

log = logging.getLogger(__name__)
audit_log = logging.getLogger("parity.audit")  # one JSON line per record, for log shippers

KINDS = ("token", "jwt", "user", "system")
MAX_LIMIT = 10_000  # rows one query returns at most (a page of `parity audit`)
_WHAT = "audit trail"
# A Parity token's text, should one ever reach a detail by mistake: kept as its id only.

metadata = sa.MetaData()
audit_table = sa.Table(
    "parity_audit",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("actor_kind", sa.String(16), nullable=False),
    sa.Column("origin", sa.String(255), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(512), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),  # JSON object
    sa.Index("ix_parity_audit_project_at", "project", "at"),
)


@dataclass(frozen=True)
class Actor:
    """Who acts: a token's or JWT subject's `name`, a local user, or a system component;
    `kind` is token | jwt | user | system; `origin` where from (client address or host)."""

    name: str
    kind: str
    origin: str


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    project: str
    at: datetime
    actor: Actor
    action: str
    target: str
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "project": self.project,
            "at": sortable_text(self.at),
            "actor": self.actor.name,
            "actor_kind": self.actor.kind,
            "origin": self.actor.origin,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
        }


_ACTOR: ContextVar[Actor | None] = ContextVar("parity_actor", default=None)


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Writes inside the block (and in tasks and `asyncio.to_thread` calls started from it, which
    copy the context) are recorded as `actor`."""
    reset = _ACTOR.set(actor)
    try:
        yield actor
    finally:
        _ACTOR.reset(reset)


def set_actor(actor: Actor) -> Token[Actor | None]:
    """`acting_as` without a context manager, for the HTTP gate's per-request path (a generator
    context manager costs more than the rest of the check): pair with `reset_actor`."""
    return _ACTOR.set(actor)


def reset_actor(token: Token[Actor | None]) -> None:
    _ACTOR.reset(token)


def current_actor() -> Actor:
    """The actor set by `acting_as`, else the local OS user at this host (kind user)."""
    return _ACTOR.get() or local_actor()


def actor_for(name: str | None, kind: str = "user") -> Actor:
    """The actor of a write whose caller names one (a rollout's `actor` string, an apply's
    author): the `acting_as` actor when one is set, else `name` as `kind` at this host, else
    the local user."""
    chosen = _ACTOR.get()
    if chosen is not None:
        return chosen
    return Actor(name, kind, _hostname()) if name else local_actor()


def local_actor() -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(user, "user", _hostname())


def _hostname() -> str:
    try:
        return socket.gethostname() or "unknown"
    except OSError:
        return "unknown"


class AuditTrail:
    """`store.access.audit`: record writes and query them (newest first). Without a SQL
    registry (`engine` None) records are log lines only."""

    def __init__(self, engine: Engine | None, project: str, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.project = project
        self._clock = clock
        self._ready = False

    def record(
        self,
        action: str,
        target: str,
        detail: Mapping[str, Any] | None = None,
        *,
        actor: Actor | None = None,
        at: datetime | None = None,
    ) -> AuditRecord:
        """Record one write that succeeded (callers record after the write, so the trail never
        holds a write that did not happen), by `actor` (default: the current one) at `at`
        (default: now; writers pass the time they stored). A database that cannot take the row
        is logged as an error with the record and does not undo or fail the write."""
        who = actor or current_actor()
        clean = _clean_detail(detail)
        row = {
            "project": self.project,
            "at": sortable_text(self._clock() if at is None else at),
            "actor": who.name[:255],
            "actor_kind": who.kind,
            "origin": who.origin[:255],
            "action": action,
            "target": _scrub(target)[:512],
            "detail": json.dumps(clean, sort_keys=True),
        }
        seq = self._insert(row)
        record = _record({**row, "seq": seq})
        audit_log.info("%s", json.dumps(record.to_json(), sort_keys=True))
        return record

    def query(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Records from `since` (inclusive) to `until` (exclusive), by actor name, action (exact,
        or a prefix such as `models` for `models.*`) and target; newest first, at most `limit`."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidOption(f"limit {limit!r}: give a whole number from 1 to {MAX_LIMIT:,}")
        if since is not None and until is not None and since >= until:
            raise InvalidTime(f"since {since.isoformat()} is not before until {until.isoformat()}")
        t = audit_table.c
        query = sa.select(audit_table).where(t.project == self.project)
        if since is not None:
            query = query.where(t.at >= sortable_text(since))
        if until is not None:
            query = query.where(t.at < sortable_text(until))
        if actor is not None:
            query = query.where(t.actor == actor)
        if action is not None:
            prefix = t.action.startswith(f"{action}.", autoescape=True)  # `_`, `%` taken literally
            query = query.where(sa.or_(t.action == action, prefix))
        if target is not None:
            query = query.where(t.target == target)
        with connect(self._engine(), what=_WHAT) as conn:
            rows = conn.execute(query.order_by(t.seq.desc()).limit(limit))
            return [_record(row._mapping) for row in rows]

    def _engine(self) -> Engine:
        if self.engine is None:
            raise BackendNotInstalled(
                "this registry store keeps no audit trail (its records are only logged on "
                "'parity.audit'); use the SQL registry (sqlite or postgres in parity.yaml)"
            )
        if not self._ready:
            create_tables(metadata, self.engine, _WHAT)
            self._ready = True
        return self.engine

    def _insert(self, row: dict[str, Any]) -> int:
        if self.engine is None:
            return 0
        try:
            with connect(self._engine(), write=True, what=_WHAT) as conn, conn.begin():
                result = conn.execute(audit_table.insert().values(**row))
                key = result.inserted_primary_key
                return int(key[0]) if key else 0
        except Exception:  # the write itself succeeded: keep it, say loudly what was not stored
            log.exception("audit record not stored: %s", json.dumps(row, sort_keys=True))
            return 0


def _clean_detail(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    """The detail as plain JSON; text that looks like a token or a URL password is redacted."""
    text = json.dumps(dict(detail or {}), sort_keys=True, default=str)
    cleaned: dict[str, Any] = json.loads(_scrub(text))
    return cleaned


def _scrub(text: str) -> str:
    return redact(text)  # URL passwords, token secrets, bearer credentials


def _record(row: Any) -> AuditRecord:
    return AuditRecord(
        seq=int(row["seq"]),
        project=row["project"],
        at=from_sortable_text(row["at"]),
        actor=Actor(row["actor"], row["actor_kind"], row["origin"]),
        action=row["action"],
        target=row["target"],
        detail=json.loads(row["detail"]),
    )
