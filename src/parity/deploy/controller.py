"""The rollout control loop: under the project's lease, check every due rollout's gates, record the
check, and apply the decision (deploy/decide.py) with compare-and-swap writes (deploy/store.py).
Gate checking and the alias move are injected callables; the clock is passed in.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from parity.deploy.decide import Decision, apply, decide, step_label
from parity.deploy.state import CheckOutcome, GateResult, RolloutEvent, RolloutState
from parity.deploy.store import RolloutStore, StoredRollout
from parity.registry.audit import acting_as, actor_for

log = logging.getLogger(__name__)

Checker = Callable[[RolloutState, datetime], CheckOutcome]
# Moves the champion alias to the candidate with the reason; returns None when it did, or why not.
Promoter = Callable[[RolloutState, str], "str | None"]
# The version the rollout's champion alias names now (None: not set).
AliasReader = Callable[[RolloutState], "int | None"]
# Records a decision once written: (action, model, detail, at=) -> store.access.audit.record.
Auditor = Callable[..., object]

# With no rollout running the lease lasts 3 x the default interval (1 minute): a crashed idle
# controller is replaced within 3 minutes, and nothing waits on it meanwhile.
DEFAULT_LEASE = timedelta(minutes=3)
LEASE_INTERVALS = 3  # a lease outlives 3 missed ticks of the shortest interval
DEFAULT_POLL_SECONDS = 10.0  # the loop wakes at least this often (to see new rollouts)


def owner_id() -> str:
    """A controller's identity: host, process and a random part (two loops of a process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_seconds(running: Sequence[StoredRollout]) -> float:
    """How long a lease lasts: 3 x the shortest interval of the running rollouts, else 3 min."""
    if not running:
        return DEFAULT_LEASE.total_seconds()
    shortest = min(item.state.definition.interval for item in running)
    return LEASE_INTERVALS * shortest.total_seconds()


def poll_seconds(running: Sequence[StoredRollout]) -> float:
    """Real seconds the loop sleeps between ticks: the shortest interval, at most 10 s."""
    intervals = [item.state.definition.interval.total_seconds() for item in running]
    return min([DEFAULT_POLL_SECONDS, *intervals])


def due(item: StoredRollout, now: datetime) -> bool:
    """Active (paused ones are not evaluated) and last checked (or started) an interval ago."""
    if item.state.status != "active":
        return False
    last = item.state.started_at if item.checked_at is None else item.checked_at
    return now - last >= item.state.definition.interval


class Controller:
    """One controller: `tick` evaluates due rollouts when this owner holds the lease."""

    def __init__(
        self,
        store: RolloutStore,
        *,
        checker: Checker,
        promoter: Promoter,
        owner: str,
        alias_now: AliasReader | None = None,
        audit: Auditor | None = None,
    ) -> None:
        self.store = store
        self.audit = audit
        self.checker = checker
        self.promoter = promoter
        self.alias_now = alias_now
        self.owner = owner
        self.actor = f"controller:{owner}"
        self.poll = DEFAULT_POLL_SECONDS

    def tick(self, now: datetime) -> list[RolloutEvent]:
        """Take or renew the lease; if held, evaluate every due rollout. The events recorded.
        A naive `now` is UTC."""
        now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        # Its decisions (and the alias moves they make) are audited as the system's own.
        with acting_as(actor_for(self.actor, "system")):
            return self._tick(now)

    def _tick(self, now: datetime) -> list[RolloutEvent]:
        running = self.store.list(running_only=True)
        self.poll = poll_seconds(running)
        lease = self.store.acquire(self.owner, now, lease_seconds(running))
        if not lease.held:
            log.debug("lease held by %s until %s: not evaluating", lease.owner, lease.expires_at)
            return []
        events: list[RolloutEvent] = []
        if lease.taken_from is not None:
            events += self._resumed(running, lease.taken_from, now)
            running = self.store.list(running_only=True)
        for item in running:
            if due(item, now):
                events += self.evaluate(item, now)
        return events

    def evaluate(self, item: StoredRollout, now: datetime) -> list[RolloutEvent]:
        """Check the rollout's gates once, record the check and apply the decision. A champion
        alias moved since the start ends the rollout first (see `_alias_moved`)."""
        state = item.state
        moved = self._alias_moved(item, now)
        if moved is not None:
            return moved
        outcome = self._check(state, now)
        decision = decide(state, outcome, now)
        check = RolloutEvent(
            state.id,
            now,
            "check",
            state.step,
            state.weight,
            outcome.results,
            f"{decision.action}: {decision.reason}",
            self.actor,
        )
        if decision.action == "promote":
            held = replace(state, failures=decision.failures, updated_at=now)
            claimed = self.store.write(item, held, [check], checked_at=now)
            if claimed is None:
                return []
            return [check, *self.promote(claimed, decision.reason, now, self.actor)]
        after = apply(state, decision, now)
        events = [check, *_follow_up(state, after, decision, outcome, now, self.actor)]
        written = self.store.write(item, after, events, checked_at=now)
        if written is not None and decision.action in ("advance", "abort"):
            self._record(decision.action, after, decision.reason)
        return [] if written is None else events

    def promote(
        self, item: StoredRollout, reason: str, now: datetime, actor: str
    ) -> list[RolloutEvent]:
        """Move the champion alias to the candidate (compare-and-swap on the alias); if it moved
        meanwhile, abort with that reason and leave it alone."""
        state = item.state
        problem = self.promoter(state, f"rollout {state.id}: {reason}")
        if problem is None:
            after = replace(state, status="promoted", reason=reason, updated_at=now)
            event = RolloutEvent(state.id, now, "promoted", state.step, 100.0, (), reason, actor)
        else:
            after = replace(state, status="aborted", reason=problem, updated_at=now)
            event = RolloutEvent(state.id, now, "aborted", state.step, 0.0, (), problem, actor)
        if self.store.write(item, after, [event]) is None:
            log.warning("rollout %s changed while it was promoted; alias event kept", state.id)
            return []
        self._record("promote" if problem is None else "abort", after, after.reason)
        return [event]

    def run(
        self,
        stop: threading.Event,
        clock: Callable[[], datetime],
        poll: float | None = None,
    ) -> None:
        """`tick` until `stop` is set, sleeping `poll` real seconds (default: the shortest running
        interval, at most 10 s); the lease is released on the way out."""
        try:
            while not stop.is_set():
                try:
                    self.tick(clock())
                except Exception:  # the loop outlives a failed tick (e.g. registry unreachable)
                    log.exception("rollout controller tick failed; retrying next tick")
                stop.wait(self.poll if poll is None else poll)
        finally:
            try:
                self.store.release(self.owner)
            except Exception:  # the lease then expires on its own
                log.exception("could not release the rollout controller lease")

    def _alias_moved(self, item: StoredRollout, now: datetime) -> list[RolloutEvent] | None:
        """None while the champion alias names the champion. Moved by hand elsewhere: the model
        server no longer routes the rollout (no champion or canary rows: its gates could never be
        judged), so abort, leaving the alias alone. Already on the candidate (a promotion whose
        record a crash lost): record the promotion."""
        state = item.state
        current = state.champion if self.alias_now is None else self.alias_now(state)
        if current == state.champion:
            return None
        if current == state.candidate:
            why = "the champion alias already names the candidate"
            return self.promote(item, why, now, self.actor)
        alias = state.definition.champion_alias
        reason = (
            f"the '{alias}' alias of '{state.model}' moved during the rollout (it names "
            f"{'nothing' if current is None else f'version {current}'}, not the champion "
            f"{state.champion}); aborted, the alias left where it is"
        )
        after = replace(state, status="aborted", reason=reason, updated_at=now)
        event = RolloutEvent(state.id, now, "aborted", state.step, 0.0, (), reason, self.actor)
        if self.store.write(item, after, [event], checked_at=now) is None:
            return []
        self._record("abort", after, reason)
        return [event]

    def _record(self, kind: str, after: RolloutState, reason: str) -> None:
        """Audit a decision once written (`rollouts.<kind>`), as whoever acts now."""
        if self.audit is not None:
            detail = audit_detail(after, reason)
            self.audit(f"rollouts.{kind}", after.model, detail, at=after.updated_at)

    def _check(self, state: RolloutState, now: datetime) -> CheckOutcome:
        try:
            return self.checker(state, now)
        except Exception as error:  # an unusable check holds the step; it never passes it
            log.exception("checking the gates of rollout %s failed", state.id)
            reason = f"the gates could not be checked: {type(error).__name__}: {error}"
            return CheckOutcome((GateResult("checker", "inconclusive", reason=reason),), {})

    def _resumed(
        self, running: Sequence[StoredRollout], previous: str, now: datetime
    ) -> list[RolloutEvent]:
        events = []
        for item in running:
            state = item.state
            reason = (
                f"controller {previous} stopped renewing its lease; {self.owner} resumes at "
                f"the same step ({step_label(state)}) and checks its gates before any move"
            )
            event = RolloutEvent(
                state.id,
                now,
                "resumed_after_crash",
                state.step,
                state.weight,
                (),
                reason,
                self.actor,
            )
            if self.store.write(item, replace(state, updated_at=now), [event]) is not None:
                events.append(event)
        return events


def audit_detail(state: RolloutState, reason: str) -> dict[str, Any]:
    """A rollout write for the audit trail: which rollout, where it stands, why."""
    detail = {"rollout": state.id, "status": state.status, "step": state.step}
    return {**detail, "weight": state.weight, "reason": reason}


def _follow_up(
    before: RolloutState,
    after: RolloutState,
    decision: Decision,
    outcome: CheckOutcome,
    now: datetime,
    actor: str,
) -> list[RolloutEvent]:
    """The event a decision adds after the check: advanced or aborted (hold adds none)."""
    if decision.action == "advance":
        return [
            RolloutEvent(
                after.id, now, "advanced", after.step, after.weight, (), decision.reason, actor
            )
        ]
    if decision.action == "abort":
        failed = tuple(r for r in outcome.results if r.verdict == "fail")
        return [
            RolloutEvent(
                before.id, now, "aborted", before.step, 0.0, failed, decision.reason, actor
            )
        ]
    return []
