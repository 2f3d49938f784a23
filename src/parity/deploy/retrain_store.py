"""Retrain triggers' tables in the registry database (SQLite, PostgreSQL): every recorded decision
with its evidence (`parity_retrain_decisions`, append-only but for the job id a fire gets once its
job is queued), each model's trigger state with a revision for compare-and-swap writes
(`parity_retrain_state`), and the lease that serialises evaluations (`parity_retrain_lease`).
Rows only: decisions come from deploy/retrain_decide.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from parity.deploy.retrain_decide import Outcome, TriggerState
from parity.deploy.retrain_state import RetrainDecision
from parity.registry.sql import connect, create_tables

_WHAT = "retrain trigger store"
_ATTEMPTS = 20  # a concurrent first writer inserted the same row: read it again

metadata = sa.MetaData()
decisions_table = sa.Table(
    "parity_retrain_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("policy", sa.String(255), nullable=False),
    sa.Column("at", sa.String(40), nullable=False),  # the evaluation's time (injected clock)
    sa.Column("recorded_at", sa.String(40), nullable=False),  # wall clock
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),  # JSON list
    sa.Column("signals", sa.Text, nullable=False),  # JSON: the evidence
    sa.Column("job_id", sa.Integer),
    sa.Index("ix_parity_retrain_decisions_model", "project", "model", "id"),
)
state_table = sa.Table(
    "parity_retrain_state",
    metadata,
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("model", sa.String(255), primary_key=True),
    sa.Column("policy", sa.String(255), nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # JSON of TriggerState
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
)
lease_table = sa.Table(
    "parity_retrain_lease",
    metadata,
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),  # wall-clock seconds since the epoch
)


class StateConflict(Exception):
    """The model's trigger state changed since it was read (a request, another evaluation):
    nothing was written; read it again and decide again."""


@dataclass(frozen=True)
class StoredState:
    state: TriggerState
    revision: int  # 0: no row yet
    policy: str = ""


class TriggerStore:
    """Trigger decisions, states and the evaluation lease of one project."""

    def __init__(
        self, engine: Engine, project: str, *, wall: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self.project = project
        self._wall = wall
        create_tables(metadata, engine, _WHAT)

    def _connect(self, *, write: bool = False) -> Connection:
        return connect(self.engine, write=write, what=_WHAT)

    # --- state ---------------------------------------------------------------------------------

    def states(self) -> dict[str, StoredState]:
        table = state_table
        query = sa.select(table).where(table.c.project == self.project)
        with self._connect() as conn:
            rows = conn.execute(query).all()
        return {str(r.model): _stored(r._mapping) for r in rows}

    def state(self, model: str) -> StoredState:
        with self._connect() as conn:
            return self._read(conn, model)

    def _read(self, conn: Connection, model: str, *, lock: bool = False) -> StoredState:
        table = state_table
        query = sa.select(table).where(table.c.project == self.project, table.c.model == model)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).first()
        return StoredState(TriggerState(), 0) if row is None else _stored(row._mapping)

    def _write(
        self, conn: Connection, model: str, policy: str, revision: int, state: TriggerState
    ) -> None:
        table = state_table
        values = {
            "policy": policy,
            "state": json.dumps(state.to_json(), sort_keys=True),
            "revision": revision + 1,
            "updated_at": _iso(datetime.fromtimestamp(self._wall(), UTC)),
        }
        if revision == 0:  # a concurrent first write fails the transaction (IntegrityError)
            conn.execute(table.insert().values(project=self.project, model=model, **values))
            return
        done = conn.execute(
            table.update()
            .where(
                table.c.project == self.project,
                table.c.model == model,
                table.c.revision == revision,
            )
            .values(**values)
        )
        if done.rowcount != 1:
            raise StateConflict(model)

    def commit(
        self,
        model: str,
        policy: str,
        revision: int,
        outcome: Outcome,
        at: datetime,
        *,
        record: bool = True,
    ) -> RetrainDecision | None:
        """Write the outcome's state if the model's state is still at `revision`, and (with
        `record`, always for a fire) its decision, in one transaction; StateConflict otherwise.
        A fire's state remembers its decision's id (its job is linked by `link`)."""
        try:
            with self._connect(write=True) as conn, conn.begin():
                decision = None
                state = outcome.state
                if record or outcome.action == "fire":
                    decision = self._insert(conn, model, policy, outcome, at)
                    if outcome.action == "fire":
                        state = replace(state, last_fire_decision=decision.id, last_fire_job=None)
                self._write(conn, model, policy, revision, state)
        except sa.exc.IntegrityError:
            raise StateConflict(model) from None
        return decision

    def _insert(
        self, conn: Connection, model: str, policy: str, outcome: Outcome, at: datetime
    ) -> RetrainDecision:
        row = {
            "project": self.project,
            "model": model,
            "policy": policy,
            "at": _iso(at),
            "recorded_at": _iso(datetime.fromtimestamp(self._wall(), UTC)),
            "action": outcome.action,
            "reasons": json.dumps(list(outcome.reasons)),
            "signals": json.dumps(outcome.evidence, sort_keys=True, default=str),
            "job_id": None,
        }
        insert = decisions_table.insert().values(**row).returning(decisions_table.c.id)
        ident = conn.execute(insert).scalar_one()
        return _decision({**row, "id": int(ident)})

    def update(
        self, model: str, policy: str, change: Callable[[TriggerState], TriggerState]
    ) -> TriggerState:
        """Apply `change` to the model's state under its lock (a manual request)."""
        for _ in range(_ATTEMPTS):
            try:
                with self._connect(write=True) as conn, conn.begin():
                    stored = self._read(conn, model, lock=True)
                    state = change(stored.state)
                    self._write(conn, model, policy, stored.revision, state)
                    return state
            except (StateConflict, sa.exc.IntegrityError):
                continue
        raise StateConflict(model)

    def link(self, model: str, decision: int, job: int | None, error: str | None = None) -> None:
        """A fire's job was queued (`job`) or could not be (`error`, kept in its evidence)."""
        with self._connect(write=True) as conn, conn.begin():
            table = decisions_table
            where = (table.c.project == self.project, table.c.id == decision)
            if job is not None:
                conn.execute(table.update().where(*where).values(job_id=job))
            if error is not None:
                found = conn.execute(sa.select(table.c.signals).where(*where)).scalar()
                evidence = json.loads(str(found or "{}"))
                evidence.setdefault("submit_errors", []).append(error)
                conn.execute(table.update().where(*where).values(signals=json.dumps(evidence)))
            stored = self._read(conn, model, lock=True)
            if job is not None and stored.state.last_fire_decision == decision:
                linked = replace(stored.state, last_fire_job=job)
                self._write(conn, model, stored.policy, stored.revision, linked)

    def decision(self, ident: int) -> RetrainDecision | None:
        table = decisions_table
        query = sa.select(table).where(table.c.project == self.project, table.c.id == ident)
        with self._connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _decision(dict(row._mapping))

    def abandon(self, model: str, decision: int, why: str) -> None:
        """Give up an unconfirmed fire: its state no longer waits for its job (the cooldown from
        its time still applies), and its evidence says why."""
        self.link(model, decision, None, why)
        with self._connect(write=True) as conn, conn.begin():
            stored = self._read(conn, model, lock=True)
            if stored.state.last_fire_decision == decision:
                cleared = replace(stored.state, last_fire_decision=None, last_fire_job=None)
                self._write(conn, model, stored.policy, stored.revision, cleared)

    def errors(self, decision: int) -> list[str]:
        """The submission errors kept in a fire decision's evidence."""
        table = decisions_table
        query = sa.select(table.c.signals).where(
            table.c.project == self.project, table.c.id == decision
        )
        with self._connect() as conn:
            found = conn.execute(query).scalar()
        return list(json.loads(str(found or "{}")).get("submit_errors", []))

    # --- history -------------------------------------------------------------------------------

    def history(self, model: str | None = None, *, limit: int = 100) -> list[RetrainDecision]:
        """Recorded decisions, newest first."""
        table = decisions_table
        query = sa.select(table).where(table.c.project == self.project)
        if model is not None:
            query = query.where(table.c.model == model)
        query = query.order_by(table.c.id.desc()).limit(limit)
        with self._connect() as conn:
            return [_decision(dict(r._mapping)) for r in conn.execute(query)]

    # --- lease ---------------------------------------------------------------------------------

    def acquire(self, owner: str, ttl_seconds: float) -> bool:
        """Take the evaluation lease until now + ttl (wall clock) if it is free, ours or expired;
        one conditional write, so two evaluations never both hold it."""
        moment = self._wall()
        table = lease_table
        mine = table.c.project == self.project
        for _ in range(_ATTEMPTS):
            try:
                with self._connect(write=True) as conn, conn.begin():
                    row = conn.execute(sa.select(table).where(mine)).first()
                    values = {"owner": owner, "expires_at": moment + ttl_seconds}
                    if row is None:
                        conn.execute(table.insert().values(project=self.project, **values))
                        return True
                    if str(row.owner) != owner and float(row.expires_at) > moment:
                        return False
                    taken = conn.execute(
                        table.update()
                        .where(mine, table.c.owner == row.owner)
                        .where(table.c.expires_at == row.expires_at)
                        .values(**values)
                    )
                    if taken.rowcount == 1:
                        return True
            except sa.exc.IntegrityError:
                continue
        return False

    def wall_time(self) -> float:
        """The wall clock the lease is measured on (seconds since the epoch)."""
        return self._wall()

    def renew(self, owner: str, ttl_seconds: float) -> bool:
        """Extend the lease if `owner` still holds it (even expired, when nobody took it since);
        False once another owner took it."""
        table = lease_table
        with self._connect(write=True) as conn, conn.begin():
            done = conn.execute(
                table.update()
                .where(table.c.project == self.project, table.c.owner == owner)
                .values(expires_at=self._wall() + ttl_seconds)
            )
        return done.rowcount == 1

    def release(self, owner: str) -> None:
        """Free the lease at once; the row keeps its owner, so an evaluation that lost the lease
        to this one sees it was taken over."""
        table = lease_table
        with self._connect(write=True) as conn, conn.begin():
            conn.execute(
                table.update()
                .where(table.c.project == self.project, table.c.owner == owner)
                .values(expires_at=0.0)
            )

    def clear(self) -> None:
        """Delete this project's rows (tests on a shared PostgreSQL database)."""
        with self._connect(write=True) as conn, conn.begin():
            for table in (decisions_table, state_table, lease_table):
                conn.execute(table.delete().where(table.c.project == self.project))


def _stored(mapping: Any) -> StoredState:
    state = TriggerState.from_json(json.loads(mapping["state"]))
    return StoredState(state, int(mapping["revision"]), str(mapping["policy"]))


def _decision(row: dict[str, Any]) -> RetrainDecision:
    return RetrainDecision(
        id=int(row["id"]),
        project=str(row["project"]),
        model=str(row["model"]),
        policy=str(row["policy"]),
        at=datetime.fromisoformat(str(row["at"])),
        action=row["action"],
        reasons=tuple(json.loads(row["reasons"])),
        signals=json.loads(row["signals"]),
        job_id=None if row["job_id"] is None else int(row["job_id"]),
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
