"""Durable rollout state, its append-only events and the controller lease, in the registry database
(SQLAlchemy Core; SQLite and PostgreSQL). Loads and stores only: decisions come from
deploy/decide.py. Must not import inference servers, gates or the CLI.
"""

from __future__ import annotations

import builtins
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from parity.definitions.rollout import Rollout
from parity.deploy.state import ACTIVE, GateResult, RolloutEvent, RolloutState
from parity.errors import RegistryConflict, RolloutActive
from parity.registry.sql import connect, create_tables
from parity.timeutil import from_sortable_text as _time
from parity.timeutil import sortable_text as _text

log = logging.getLogger(__name__)

_WHAT = "rollout store"
_ATTEMPTS = 20  # PostgreSQL: retries when a concurrent start took the same rollout number

metadata = sa.MetaData()
rollouts_table = sa.Table(
    "parity_rollouts",
    metadata,
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("id", sa.String(300), primary_key=True),  # '<model>-<n>'
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),  # n: the model's n-th rollout
    sa.Column("definition", sa.Text, nullable=False),  # the Rollout's JSON record at start
    sa.Column("candidate", sa.Integer, nullable=False),
    sa.Column("champion", sa.Integer, nullable=False),
    sa.Column("shadows", sa.Text, nullable=False),  # JSON list of versions
    sa.Column("routing_key", sa.String(255), nullable=False),  # resolved at start
    sa.Column("key_source", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("step_started", sa.String(40), nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.Column("checked_at", sa.String(40)),  # the last gate check; None: never checked
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),  # +1 per write: the compare-and-swap key
    # The model while the rollout is active or paused, else NULL: the unique constraint keeps a
    # model to one running rollout even when two starts race (NULLs never collide).
    sa.Column("running_model", sa.String(255)),
    sa.UniqueConstraint("project", "running_model", name="uq_parity_rollouts_running"),
    sa.UniqueConstraint("project", "model", "number", name="uq_parity_rollouts_number"),
)
events_table = sa.Table(
    "parity_rollout_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("rollout", sa.String(300), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
    sa.Column("results", sa.Text, nullable=False),  # JSON list of GateResult fields
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.UniqueConstraint("project", "rollout", "seq", name="uq_parity_rollout_events_seq"),
)
lease_table = sa.Table(
    "parity_rollout_lease",
    metadata,
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),  # seconds since the epoch (UTC)
)


class _Lost(Exception):
    """A compare-and-swap write found the row changed: roll the transaction back."""


@dataclass(frozen=True)
class StoredRollout:
    """A rollout's state as read, with what the store keeps beside it: the revision a write must
    still find (compare-and-swap), the last check's time and the resolved routing key."""

    state: RolloutState
    revision: int
    checked_at: datetime | None
    routing_key: str
    key_source: str


@dataclass(frozen=True)
class LeaseTaken:
    """The lease after an attempt: held by us or not, and the expired owner we took it from."""

    held: bool
    owner: str
    expires_at: datetime
    taken_from: str | None = None


class RolloutStore:
    """Rollouts, events and the lease of one project, on the registry's SQLAlchemy engine."""

    def __init__(self, engine: Engine, project: str) -> None:
        self.engine = engine
        self.project = project
        create_tables(metadata, engine, _WHAT)

    def _connect(self, *, write: bool = False) -> Connection:
        return connect(self.engine, write=write, what=_WHAT)

    # --- rollouts ------------------------------------------------------------------------------

    def insert(
        self, state: RolloutState, routing_key: str, key_source: str, event: RolloutEvent
    ) -> RolloutState:
        """Store a new rollout numbered after the model's last one (its id becomes '<model>-<n>')
        with its first event; RolloutActive when the model already has one running."""
        for _ in range(_ATTEMPTS):
            try:
                with self._connect(write=True) as conn, conn.begin():
                    _refuse_running(conn, self.project, state.model)
                    number = _next_number(conn, self.project, state.model)
                    stored = replace(state, id=f"{state.model}-{number}")
                    row = _row(stored, routing_key, key_source)
                    conn.execute(rollouts_table.insert().values(**row, number=number))
                    _insert_events(conn, self.project, [replace(event, rollout=stored.id)])
                log.info("rollout %s started in project %s", stored.id, self.project)
                return stored
            except sa.exc.IntegrityError:
                continue  # a concurrent start committed first: the next attempt sees it
        raise RegistryConflict(
            f"could not start a rollout of model '{state.model}': {_ATTEMPTS} concurrent starts "
            "came first. Nothing was stored; check `parity rollout status` and start it again"
        )

    def get(self, rollout: str) -> StoredRollout | None:
        query = sa.select(rollouts_table).where(_mine(self.project), rollouts_table.c.id == rollout)
        with self._connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _stored(row._mapping)

    def latest(self, model: str) -> StoredRollout | None:
        """The model's newest rollout, running or finished."""
        query = (
            sa.select(rollouts_table)
            .where(_mine(self.project), rollouts_table.c.model == model)
            .order_by(rollouts_table.c.number.desc())
            .limit(1)
        )
        with self._connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _stored(row._mapping)

    def list(self, *, running_only: bool = False) -> list[StoredRollout]:
        """Every rollout of the project (or only the active and paused ones), by model, newest
        first within a model: one query."""
        query = sa.select(rollouts_table).where(_mine(self.project))
        if running_only:
            query = query.where(rollouts_table.c.running_model.is_not(None))
        query = query.order_by(rollouts_table.c.model, rollouts_table.c.number.desc())
        with self._connect() as conn:
            rows = conn.execute(query).all()
        return [_stored(row._mapping) for row in rows]

    def write(
        self,
        before: StoredRollout,
        after: RolloutState,
        events: Sequence[RolloutEvent],
        *,
        checked_at: datetime | None = None,
    ) -> StoredRollout | None:
        """Replace the state and append `events` in one transaction, only if the row is still at
        `before`'s revision and step (compare-and-swap); None when another writer came first."""
        table = rollouts_table
        values = _row(after, before.routing_key, before.key_source)
        values["revision"] = before.revision + 1
        checked = before.checked_at if checked_at is None else checked_at
        values["checked_at"] = None if checked is None else _text(checked)
        try:
            with self._connect(write=True) as conn, conn.begin():
                result = conn.execute(
                    table.update()
                    .where(
                        _mine(self.project),
                        table.c.id == before.state.id,
                        table.c.revision == before.revision,
                        table.c.step == before.state.step,
                    )
                    .values(**values)
                )
                if result.rowcount != 1:
                    raise _Lost
                _insert_events(conn, self.project, events)
        except _Lost:
            log.info("rollout %s changed under us (revision %d)", before.state.id, before.revision)
            return None
        return StoredRollout(
            after, before.revision + 1, checked, before.routing_key, before.key_source
        )

    # --- events --------------------------------------------------------------------------------

    def events(self, rollout: str) -> builtins.list[RolloutEvent]:
        """Every event of the rollout, oldest first."""
        query = (
            sa.select(events_table)
            .where(events_table.c.project == self.project, events_table.c.rollout == rollout)
            .order_by(events_table.c.seq)
        )
        with self._connect() as conn:
            rows = conn.execute(query).all()
        return [_event(row._mapping) for row in rows]

    # --- lease ---------------------------------------------------------------------------------

    def acquire(self, owner: str, now: datetime, ttl_seconds: float) -> LeaseTaken:
        """Take or renew the project's controller lease until now + ttl: only if it is free,
        ours or expired (one conditional write, so two controllers never both hold it)."""
        moment = _epoch(now)
        until = moment + ttl_seconds
        table = lease_table
        mine = table.c.project == self.project
        for _ in range(_ATTEMPTS):
            try:
                with self._connect(write=True) as conn, conn.begin():
                    row = conn.execute(sa.select(table).where(mine)).first()
                    if row is None:
                        conn.execute(
                            table.insert().values(
                                project=self.project, owner=owner, expires_at=until
                            )
                        )
                        return LeaseTaken(True, owner, _from_epoch(until))
                    held_by, expires = str(row.owner), float(row.expires_at)
                    if held_by != owner and expires > moment:
                        return LeaseTaken(False, held_by, _from_epoch(expires))
                    taken = conn.execute(
                        table.update()
                        .where(mine, table.c.owner == held_by, table.c.expires_at == expires)
                        .values(owner=owner, expires_at=until)
                    )
                    if taken.rowcount != 1:
                        continue  # another controller took it between our read and write
                    previous = held_by if held_by != owner else None
                    return LeaseTaken(True, owner, _from_epoch(until), previous)
            except sa.exc.IntegrityError:
                continue  # a concurrent first controller inserted the row: read it again
        return LeaseTaken(False, "", now)

    def release(self, owner: str) -> bool:
        """Give the lease up (a clean stop): another controller need not wait for it to expire."""
        table = lease_table
        with self._connect(write=True) as conn, conn.begin():
            gone = conn.execute(
                table.delete().where(table.c.project == self.project, table.c.owner == owner)
            )
        return gone.rowcount == 1

    def lease(self) -> tuple[str, datetime] | None:
        """Who holds the lease and until when (expired or not); None when nobody ever took it."""
        table = lease_table
        with self._connect() as conn:
            row = conn.execute(sa.select(table).where(table.c.project == self.project)).first()
        return None if row is None else (str(row.owner), _from_epoch(float(row.expires_at)))


# --- rows <-> values ---------------------------------------------------------------------------


def _mine(project: str) -> sa.ColumnElement[bool]:
    return rollouts_table.c.project == project


def _refuse_running(conn: Connection, project: str, model: str) -> None:
    table = rollouts_table
    query = sa.select(table.c.id, table.c.status).where(
        _mine(project), table.c.running_model == model
    )
    row = conn.execute(query).first()
    if row is not None:
        raise RolloutActive(
            f"model '{model}' already has a rollout {row.status} ({row.id}): promote or abort it "
            f"first (parity rollout abort {model}), then start again"
        )


def _next_number(conn: Connection, project: str, model: str) -> int:
    table = rollouts_table
    query = sa.select(sa.func.max(table.c.number)).where(_mine(project), table.c.model == model)
    return int(conn.execute(query).scalar() or 0) + 1


def _row(state: RolloutState, routing_key: str, key_source: str) -> dict[str, Any]:
    return {
        "project": state.project,
        "id": state.id,
        "model": state.model,
        "definition": json.dumps(state.definition.model_dump(mode="json", by_alias=True)),
        "candidate": state.candidate,
        "champion": state.champion,
        "shadows": json.dumps(list(state.shadows)),
        "routing_key": routing_key,
        "key_source": key_source,
        "status": state.status,
        "step": state.step,
        "step_started": _text(state.step_started),
        "failures": state.failures,
        "started_at": _text(state.started_at),
        "updated_at": _text(state.updated_at),
        "reason": state.reason,
        "revision": 0,
        "running_model": state.model if state.status in ACTIVE else None,
    }


def _stored(row: Any) -> StoredRollout:
    state = RolloutState(
        id=row["id"],
        project=row["project"],
        model=row["model"],
        definition=Rollout.model_validate(json.loads(row["definition"])),
        candidate=int(row["candidate"]),
        champion=int(row["champion"]),
        status=row["status"],
        step=int(row["step"]),
        step_started=_time(row["step_started"]),
        failures=int(row["failures"]),
        started_at=_time(row["started_at"]),
        updated_at=_time(row["updated_at"]),
        shadows=tuple(int(v) for v in json.loads(row["shadows"])),
        reason=row["reason"],
    )
    checked = row["checked_at"]
    return StoredRollout(
        state,
        int(row["revision"]),
        None if checked is None else _time(checked),
        row["routing_key"],
        row["key_source"],
    )


def _insert_events(conn: Connection, project: str, events: Iterable[RolloutEvent]) -> None:
    table = events_table
    seqs: dict[str, int] = {}
    for event in events:
        if event.rollout not in seqs:
            query = sa.select(sa.func.max(table.c.seq)).where(
                table.c.project == project, table.c.rollout == event.rollout
            )
            seqs[event.rollout] = int(conn.execute(query).scalar() or 0)
        seqs[event.rollout] += 1
        conn.execute(
            table.insert().values(
                project=project,
                rollout=event.rollout,
                seq=seqs[event.rollout],
                at=_text(event.at),
                kind=event.kind,
                step=event.step,
                weight=event.weight,
                results=json.dumps([asdict(r) for r in event.results]),
                reason=event.reason,
                actor=event.actor,
            )
        )


def _event(row: Any) -> RolloutEvent:
    results = tuple(GateResult(**item) for item in json.loads(row["results"]))
    return RolloutEvent(
        rollout=row["rollout"],
        at=_time(row["at"]),
        kind=cast(Any, row["kind"]),
        step=int(row["step"]),
        weight=float(row["weight"]),
        results=results,
        reason=row["reason"],
        actor=row["actor"],
    )


def _epoch(moment: datetime) -> float:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.timestamp()


def _from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
