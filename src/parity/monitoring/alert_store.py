"""Durable alert state and events in the registry database (SQLite, PostgreSQL): one state row
per (project, monitor, rule) so sustain counters survive a restart, one event row per fire or
clear. Decisions come from monitoring/alerts.py; this module only loads, steps and stores."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from parity.background import BackgroundRead
from parity.errors import RegistryConflict
from parity.monitoring.alerts import AlertState, RuleLike, Transition, check_rule, step
from parity.registry.sql import connect, create_tables
from parity.timeutil import utcnow

log = logging.getLogger(__name__)

_WHAT = "alert store"
_ATTEMPTS = 20  # PostgreSQL: retries when a concurrent evaluation created the same state row

metadata = sa.MetaData()
events_table = sa.Table(
    "parity_monitor_alert_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("monitor", sa.String(255), nullable=False),
    sa.Column("rule", sa.String(255), nullable=False),
    sa.Column("signal", sa.String(255), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # "fired" | "cleared"
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("at", sa.String(40), nullable=False),  # the evaluation time (window end)
    sa.Column("recorded_at", sa.String(40), nullable=False),
    sa.Column("definition", sa.Text, nullable=False),  # the rule's fields then, JSON
    sa.Index("ix_parity_monitor_alert_events_rule", "project", "monitor", "rule"),
)
state_table = sa.Table(
    "parity_monitor_alert_state",
    metadata,
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("monitor", sa.String(255), primary_key=True),
    sa.Column("rule", sa.String(255), primary_key=True),
    sa.Column("signal", sa.String(255), nullable=False),
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("firing", sa.Boolean, nullable=False),
    sa.Column("streak", sa.Integer, nullable=False),  # consecutive evaluations towards a change
    sa.Column("last_value", sa.Float),  # None: the last evaluation had insufficient data
    sa.Column("last_at", sa.String(40), nullable=False),
    sa.Column("since", sa.String(40)),  # time of the last fire or clear; None: never changed
)


@dataclass(frozen=True)
class AlertEvent:
    """A rule fired or cleared at `at` (the time of the evaluation), with the signal's value."""

    monitor: str
    rule: str
    signal: str
    state: Transition
    value: float
    at: datetime
    recorded_at: datetime
    fire_at: float
    clear_at: float
    direction: str
    sustain: int


@dataclass(frozen=True)
class AlertStatus:
    """Where a rule stands now: `firing` since `since`, last evaluated at `last_at`."""

    monitor: str
    rule: str
    signal: str
    firing: bool
    streak: int
    last_value: float | None
    last_at: datetime
    since: datetime | None


class AlertStore:
    """Alert state and events of one project, on the registry's SQLAlchemy engine."""

    def __init__(
        self, engine: Engine, project: str, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.engine = engine
        self.project = project
        self._clock = clock
        create_tables(metadata, engine, _WHAT)

    def evaluate(
        self,
        monitor: str,
        rules: Sequence[RuleLike],
        signals: Mapping[str, float | None],
        at: datetime,
    ) -> list[AlertEvent]:
        """Step every rule whose signal is in `signals` once, at `at`; store and return the
        events. A rule already evaluated at or after `at` is left alone, so evaluating the
        same window twice does not count twice towards `sustain`."""
        for rule in rules:
            check_rule(rule)
        at = _utc(at)
        wanted = [r for r in rules if r.signal in signals]
        for _ in range(_ATTEMPTS):
            try:
                with connect(self.engine, write=True, what=_WHAT) as conn, conn.begin():
                    return self._evaluate(conn, monitor, wanted, signals, at)
            except sa.exc.IntegrityError:
                continue  # a concurrent evaluation inserted the same state row first
        raise RegistryConflict(
            f"could not evaluate the alerts of monitor '{monitor}': {_ATTEMPTS} concurrent "
            "evaluations wrote the same rules first. Nothing was stored; evaluate again"
        )

    def _evaluate(
        self,
        conn: Connection,
        monitor: str,
        rules: Sequence[RuleLike],
        signals: Mapping[str, float | None],
        at: datetime,
    ) -> list[AlertEvent]:
        stored = self._locked_states(conn, monitor, [r.name for r in rules])
        events: list[AlertEvent] = []
        for rule in rules:
            row = stored.get(rule.name)
            if row is not None and _time(row["last_at"]) >= at:
                log.debug("alert %s/%s already evaluated at %s", monitor, rule.name, at)
                continue
            key = {"project": self.project, "monitor": monitor, "rule": rule.name}
            event = self._step(conn, key, rule, row, _value(signals[rule.signal]), at)
            if event is not None:
                events.append(event)
        return events

    def _step(
        self,
        conn: Connection,
        key: Mapping[str, str],
        rule: RuleLike,
        row: sa.RowMapping | None,
        value: float | None,
        at: datetime,
    ) -> AlertEvent | None:
        """One rule's evaluation: its state row written, and its event if it fired or cleared."""
        definition = _definition(rule)
        state, since = AlertState(), None
        if row is not None:
            # A changed rule keeps firing or not but restarts its count under the new rule.
            same = row["definition"] == definition
            state = AlertState(bool(row["firing"]), int(row["streak"]) if same else 0)
            since = row["since"]
        state, change = step(rule, state, value)
        values = {
            "signal": rule.signal,
            "definition": definition,
            "firing": state.firing,
            "streak": state.streak,
            "last_value": value,
            "last_at": _iso(at),
            "since": _iso(at) if change else since,
        }
        if row is None:
            conn.execute(state_table.insert().values(**key, **values))
        else:
            conn.execute(state_table.update().where(*_match(key)).values(**values))
        if change is None or value is None:
            return None
        event = _event_row(key, rule, change, value, at, self._clock(), definition)
        conn.execute(events_table.insert().values(**event))
        log.info("alert %s/%s %s at %s (value %s)", key["monitor"], rule.name, change, at, value)
        return _event(event)

    def _locked_states(
        self, conn: Connection, monitor: str, rules: Sequence[str]
    ) -> dict[str, sa.RowMapping]:
        if not rules:
            return {}
        query = (
            sa.select(state_table)
            .where(
                state_table.c.project == self.project,
                state_table.c.monitor == monitor,
                state_table.c.rule.in_(rules),
            )
            .with_for_update()  # PostgreSQL: one evaluation of a rule at a time
        )
        return {row.rule: row._mapping for row in conn.execute(query)}

    def events(
        self,
        *,
        monitor: str | None = None,
        rule: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AlertEvent]:
        """Events newest first (by evaluation time, then by record order)."""
        query = sa.select(events_table).where(events_table.c.project == self.project)
        if monitor is not None:
            query = query.where(events_table.c.monitor == monitor)
        if rule is not None:
            query = query.where(events_table.c.rule == rule)
        if since is not None:
            query = query.where(events_table.c.at >= _iso(since))
        query = query.order_by(events_table.c.at.desc(), events_table.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with connect(self.engine, what=_WHAT) as conn:
            return [_event(row._mapping) for row in conn.execute(query)]

    def statuses(
        self, *, monitor: str | None = None, firing_only: bool = False
    ) -> list[AlertStatus]:
        """Every rule evaluated so far (or only the firing ones), by monitor and rule."""
        query = sa.select(state_table).where(state_table.c.project == self.project)
        if monitor is not None:
            query = query.where(state_table.c.monitor == monitor)
        if firing_only:
            query = query.where(state_table.c.firing.is_(True))
        query = query.order_by(state_table.c.monitor, state_table.c.rule)
        with connect(self.engine, what=_WHAT) as conn:
            return [_status(row._mapping) for row in conn.execute(query)]

    def active(self, *, monitor: str | None = None) -> list[AlertEvent]:
        """The event that started each alert firing now, newest first."""
        firing = {(s.monitor, s.rule) for s in self.statuses(monitor=monitor, firing_only=True)}
        latest: dict[tuple[str, str], AlertEvent] = {}
        for event in self.events(monitor=monitor):
            latest.setdefault((event.monitor, event.rule), event)
        return [e for key, e in latest.items() if key in firing and e.state == "fired"]


ALERT_REFRESH_SECONDS = 30.0  # alerts change at most once per evaluated window: 30 s is current


class AlertGauges:
    """A Prometheus collector: `parity_alert_firing{monitor,rule}` 1 while firing, else 0, for
    every rule evaluated so far. Register it on a server's CollectorRegistry.

    A scrape never waits on the database: it shows the statuses last read and, when they are
    older than `refresh_seconds`, starts one read in the background (`spawn`, a thread by
    default). A failed read keeps the previous values and is logged. `refresh()` reads now."""

    def __init__(
        self,
        statuses: Callable[[], Sequence[AlertStatus]],
        *,
        refresh_seconds: float = ALERT_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        spawn: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self._statuses = BackgroundRead(
            statuses,
            what="alert gauges: reading the alert states",
            refresh_seconds=refresh_seconds,
            clock=clock,
            spawn=spawn,
        )

    def refresh(self) -> None:
        self._statuses.refresh()

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        gauge = GaugeMetricFamily(
            "parity_alert_firing",
            "1 while the monitor's alert rule is firing, else 0",
            labels=["monitor", "rule"],
        )
        for status in self._statuses.current():
            gauge.add_metric([status.monitor, status.rule], 1.0 if status.firing else 0.0)
        yield gauge


def render_alert_gauges(statuses: Sequence[AlertStatus]) -> bytes:
    """The gauges in Prometheus text format, for a server without its own registry."""
    from prometheus_client import CollectorRegistry, generate_latest

    gauges = AlertGauges(lambda: statuses)
    gauges.refresh()
    registry = CollectorRegistry()
    registry.register(gauges)
    result: bytes = generate_latest(registry)
    return result


# --- rows ------------------------------------------------------------------------------------


def _definition(rule: RuleLike) -> str:
    fields = {
        "signal": rule.signal,
        "fire_at": float(rule.fire_at),
        "clear_at": float(rule.clear_at),
        "sustain": int(rule.sustain),
        "direction": rule.direction,
    }
    return json.dumps(fields, sort_keys=True)


def _event_row(
    key: Mapping[str, str],
    rule: RuleLike,
    change: Transition,
    value: float,
    at: datetime,
    now: datetime,
    definition: str,
) -> dict[str, Any]:
    return {
        **key,
        "signal": rule.signal,
        "state": change,
        "value": value,
        "at": _iso(at),
        "recorded_at": _iso(now),
        "definition": definition,
    }


def _event(row: Mapping[str, Any] | sa.RowMapping) -> AlertEvent:
    rule = json.loads(row["definition"])
    return AlertEvent(
        monitor=row["monitor"],
        rule=row["rule"],
        signal=row["signal"],
        state=row["state"],
        value=float(row["value"]),
        at=_time(row["at"]),
        recorded_at=_time(row["recorded_at"]),
        fire_at=rule["fire_at"],
        clear_at=rule["clear_at"],
        direction=rule["direction"],
        sustain=rule["sustain"],
    )


def _status(row: sa.RowMapping) -> AlertStatus:
    last = row["last_value"]
    return AlertStatus(
        monitor=row["monitor"],
        rule=row["rule"],
        signal=row["signal"],
        firing=bool(row["firing"]),
        streak=int(row["streak"]),
        last_value=None if last is None else float(last),
        last_at=_time(row["last_at"]),
        since=None if row["since"] is None else _time(row["since"]),
    )


def _match(key: Mapping[str, str]) -> list[sa.ColumnElement[bool]]:
    return [state_table.c[name] == value for name, value in key.items()]


def _value(value: float | None) -> float | None:
    """NaN is insufficient data, like None (a database would not keep it the same anyway)."""
    if value is None or math.isnan(value):
        return None
    return float(value)


def _utc(moment: datetime) -> datetime:
    """Aware UTC (naive times are UTC, Parity's rule everywhere)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    """UTC ISO text, fixed width to the microsecond, so text order is time order."""
    return _utc(moment).isoformat(timespec="microseconds")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)
