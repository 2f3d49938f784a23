"""`Rollouts` (`store.rollouts`): the deploy layer's one entry point. Starts, inspects and steers
rollouts, evaluates their gates once (`step`) or in a leased loop (`run`), and tells the model
server how to route (`routes`). Wires deploy's modules to the store; the logic lives in them.
"""

from __future__ import annotations

import builtins
import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from parity.definitions.rollout import GateFunction, Rollout
from parity.deploy import validate
from parity.deploy.controller import Controller, audit_detail, owner_id
from parity.deploy.state import (
    ACTIVE,
    CheckOutcome,
    EventKind,
    RolloutEvent,
    RolloutState,
    Status,
    to_routes,
)
from parity.deploy.store import RolloutStore, StoredRollout
from parity.errors import (
    AliasMoved,
    BackendNotInstalled,
    InvalidRollout,
    ParityError,
    RolloutNotFound,
    RolloutStateError,
)
from parity.inference.routing import Routes
from parity.registry.audit import acting_as, actor_for

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore

log = logging.getLogger(__name__)

# check_gates(store, state, now): parity.deploy.evidence's signature; tests pass their own.
GateChecker = Callable[["FeatureStore", RolloutState, datetime], CheckOutcome]
_ATTEMPTS = 5  # a user action retried when the controller wrote the rollout at the same moment


class Rollouts:
    """Rollouts of one project's models; state and every decision in the registry database."""

    def __init__(
        self,
        store: FeatureStore,
        *,
        clock: Callable[[], datetime] | None = None,
        checker: GateChecker | None = None,
    ) -> None:
        self.store = store
        self._clock = clock or store.now
        self._checker = checker
        self._owner = owner_id()
        self._rollout_store: RolloutStore | None = None
        self._functions: dict[tuple[str, tuple[str, ...]], dict[str, GateFunction]] = {}

    @property
    def db(self) -> RolloutStore:
        """The rollout tables in the registry's database (created on first use)."""
        if self._rollout_store is None:
            engine = getattr(self.store.registry.store, "engine", None)
            if engine is None:
                raise BackendNotInstalled(
                    f"the registry store {type(self.store.registry.store).__name__} cannot keep "
                    "rollouts; use the SQL registry (sqlite or postgres in parity.yaml)"
                )
            self._rollout_store = RolloutStore(engine, self.store.project)
        return self._rollout_store

    # --- lifecycle ---------------------------------------------------------------------------

    def start(
        self,
        rollout: Rollout | str | None = None,
        *,
        model: str | None = None,
        candidate: int | str | None = None,
        actor: str = "",
        **options: Any,
    ) -> RolloutState:
        """Start a rollout: a `Rollout` value, the name of one applied in the repo, or (None) the
        defaults for `model` and `candidate` (other Rollout fields as `options`). InvalidRollout
        names the field and the fix (no champion, candidate equal to the champion, unknown gate
        metric, ...); RolloutActive when the model already has one."""
        definition = self._definition(rollout, model, candidate, options)
        resolved = validate.resolve(self.store, definition)
        now = self._clock()
        state = RolloutState(
            id="",
            project=self.store.project,
            model=definition.model,
            definition=definition,
            candidate=resolved.candidate,
            champion=resolved.champion,
            status="active",
            step=0,
            step_started=now,
            failures=0,
            started_at=now,
            updated_at=now,
            shadows=resolved.shadows,
        )
        phase = "shadow" if state.in_shadow else f"canary at {state.weight:g} %"
        reason = (
            f"version {resolved.candidate} against champion {resolved.champion} "
            f"('{definition.champion_alias}'), {phase}, routed by {resolved.key_source} "
            f"'{resolved.routing_key}'"
        )
        event = RolloutEvent("", now, "started", 0, state.weight, (), reason, actor)
        started = self.db.insert(state, resolved.routing_key, resolved.key_source, event)
        self._record("start", started, reason, actor)
        return started

    def status(self, model: str) -> RolloutState:
        """The model's latest rollout (active or finished); RolloutNotFound if it never had one."""
        return self._latest(model).state

    def list(self, *, active_only: bool = False) -> builtins.list[RolloutState]:
        """Every rollout of the project (active and paused ones only with active_only), by model,
        newest first."""
        return [item.state for item in self.db.list(running_only=active_only)]

    def pause(self, model: str, *, reason: str = "", actor: str = "") -> RolloutState:
        """Stop evaluating: the step and its traffic split hold until resume."""
        return self._act(model, "pause", ("active",), "paused", reason or "paused", actor)

    def resume(self, model: str, *, reason: str = "", actor: str = "") -> RolloutState:
        """Evaluate again from the same step and window; the next tick checks its gates."""
        return self._act(model, "resume", ("paused",), "active", reason or "resumed", actor)

    def promote(self, model: str, *, reason: str = "", actor: str = "") -> RolloutState:
        """Move the champion alias to the candidate now (compare-and-swap on the alias). If the
        alias moved during the rollout, the rollout is aborted and RolloutStateError says so
        (the caller asked for a promotion and did not get one)."""
        why = reason or "promoted by hand"
        for _ in range(_ATTEMPTS):
            item = self._running(model, "promote")
            with acting_as(actor_for(actor)):  # the controller audits the promotion as the caller
                done = self._controller().promote(item, why, self._clock(), actor)
            if done:
                state = self._latest(model).state
                if state.status != "promoted":
                    raise RolloutStateError(
                        f"rollout {state.id} was not promoted, and is now {state.status}: "
                        f"{state.reason}"
                    )
                return state
        raise _busy(model)

    def abort(self, model: str, *, reason: str = "", actor: str = "") -> RolloutState:
        """Candidate weight back to 0; the champion alias is not touched."""
        return self._act(model, "abort", ACTIVE, "aborted", reason or "aborted by hand", actor)

    def history(self, model: str, rollout: str | None = None) -> builtins.list[RolloutEvent]:
        """Every event of the model's latest rollout (or of rollout id `rollout`), oldest first."""
        if rollout is None:
            return self.db.events(self._latest(model).state.id)
        item = self.db.get(rollout)
        if item is None or item.state.model != model:
            raise RolloutNotFound(
                f"model '{model}' has no rollout '{rollout}'; list them with parity rollout status"
            )
        return self.db.events(rollout)

    # --- control loop ------------------------------------------------------------------------

    def step(
        self, *, now: datetime | None = None, owner: str | None = None
    ) -> builtins.list[RolloutEvent]:
        """One evaluation of every active rollout (if this process holds the lease): gates
        checked, steps advanced, promoted or aborted. Returns the events it recorded."""
        return self._controller(owner).tick(self._clock() if now is None else now)

    def run(
        self, *, stop: threading.Event, owner: str | None = None, poll: float | None = None
    ) -> None:
        """`step` every interval until `stop` is set (parity rollout run, parity serve-models);
        `poll` overrides the real seconds slept between ticks."""
        self._controller(owner).run(stop, self._clock, poll)

    def release(self, owner: str | None = None) -> bool:
        """Give up this process's controller lease (a clean stop: `parity rollout run --once`),
        so the next controller acts at once instead of waiting for it to expire and taking it
        over as from a crashed one. True when it was held."""
        return self.db.release(owner or self._owner)

    # --- data plane --------------------------------------------------------------------------

    def routes(self) -> Mapping[str, Routes]:
        """Routes of every model with an active rollout, by model name (read by every worker of
        the model server, refreshed like aliases). One query."""
        found: dict[str, Routes] = {}
        for item in self.db.list(running_only=True):
            routes = to_routes(item.state, item.routing_key, item.key_source)
            if routes is not None:
                found[item.state.model] = routes
        return found

    # --- helpers -----------------------------------------------------------------------------

    def _definition(
        self,
        rollout: Rollout | str | None,
        model: str | None,
        candidate: int | str | None,
        options: dict[str, Any],
    ) -> Rollout:
        if isinstance(rollout, Rollout):
            chosen = rollout
        elif isinstance(rollout, str):
            chosen = validate.named(self.store, rollout)
        elif rollout is None:
            return validate.build(model, candidate, options)
        else:
            raise InvalidRollout(
                f"rollout: give a Rollout, the name of an applied one or None, not {rollout!r}"
            )
        if options or (model is not None and model != chosen.model) or candidate is not None:
            raise InvalidRollout(
                f"rollout '{chosen.name}' is already defined: start it as declared, or give "
                "model= and candidate= (and options) without a rollout"
            )
        return chosen

    def _controller(self, owner: str | None = None) -> Controller:
        return Controller(
            self.db,
            checker=self._check,
            promoter=self._move_alias,
            owner=owner or self._owner,
            alias_now=self._alias_now,
            audit=lambda *record, **at: self.store.access.audit.record(*record, **at),
        )

    def _alias_now(self, state: RolloutState) -> int | None:
        """The version the champion alias names now; the champion when it cannot be read (the
        check then goes on and says what it can)."""
        try:
            return self.store.models.aliases(state.model).get(state.definition.champion_alias)
        except ParityError as error:
            log.warning("rollout %s: the champion alias cannot be read: %s", state.id, error)
            return state.champion

    def _check(self, state: RolloutState, now: datetime) -> CheckOutcome:
        self._bind(state.definition)
        checker = self._checker
        if checker is None:
            # gates' module, imported when first needed (it reads the prediction log)
            checker = importlib.import_module("parity.deploy.evidence").check_gates
        return checker(self.store, state, now)

    def _bind(self, definition: Rollout) -> None:
        """Custom gate functions onto a definition read back from the database (which keeps
        only their names and code hashes), from the repo, once per rollout."""
        wanted = [ref.name for ref in definition.custom_gates]
        if not wanted or all(name in definition.gate_functions for name in wanted):
            return
        key = (definition.name, tuple(ref.code_hash for ref in definition.custom_gates))
        if key not in self._functions:
            try:
                self._functions[key] = validate.repo_functions(self.store, definition, wanted)
            except InvalidRollout as error:  # the gate is then inconclusive, saying why
                log.warning("custom gates of rollout %s not bound: %s", definition.name, error)
                self._functions[key] = {}
        definition.bind(self._functions[key])

    def _move_alias(self, state: RolloutState, reason: str) -> str | None:
        alias = state.definition.champion_alias
        try:
            self.store.models.set_alias(
                state.model, alias, state.candidate, reason=reason, expected=state.champion
            )
            return None
        except AliasMoved as error:
            if self.store.models.aliases(state.model).get(alias) == state.candidate:
                return None  # moved by a controller that stopped before recording it
            return (
                f"the '{alias}' alias of '{state.model}' moved during the rollout ({error}); "
                f"not promoted, the alias left where it is"
            )

    def _latest(self, model: str) -> StoredRollout:
        item = self.db.latest(model)
        if item is None:
            raise RolloutNotFound(
                f"model '{model}' has no rollout in project '{self.store.project}'; start one "
                f"with parity rollout start --model {model} --candidate <version>"
            )
        return item

    def _running(
        self, model: str, action: str, allowed: tuple[Status, ...] = ACTIVE
    ) -> StoredRollout:
        item = self._latest(model)
        if item.state.status not in allowed:
            raise RolloutStateError(
                f"cannot {action} rollout {item.state.id}: it is {item.state.status} "
                f"(only a rollout that is {' or '.join(allowed)} can be); see parity rollout "
                f"status {model}"
            )
        return item

    def _act(
        self,
        model: str,
        action: str,
        allowed: tuple[Status, ...],
        status: Status,
        reason: str,
        actor: str,
    ) -> RolloutState:
        kind: EventKind = _KINDS[action]
        for _ in range(_ATTEMPTS):
            item = self._running(model, action, allowed)
            now = self._clock()
            after = replace(item.state, status=status, updated_at=now, reason=reason)
            weight = 0.0 if status == "aborted" else item.state.weight
            event = RolloutEvent(after.id, now, kind, after.step, weight, (), reason, actor)
            if self.db.write(item, after, [event]) is not None:
                self._record(action, after, reason, actor)
                return after
        raise _busy(model)

    def _record(self, action: str, state: RolloutState, reason: str, actor: str) -> None:
        """Audit a user's rollout action once written (`rollouts.<action>`)."""
        detail = audit_detail(state, reason)
        self.store.access.audit.record(
            f"rollouts.{action}", state.model, detail, actor=actor_for(actor), at=state.updated_at
        )


_KINDS: dict[str, EventKind] = {"pause": "paused", "resume": "resumed", "abort": "aborted"}


def _busy(model: str) -> RolloutStateError:
    return RolloutStateError(
        f"rollout of '{model}' kept changing while this action ran (a controller writing it); "
        "run the command again"
    )
