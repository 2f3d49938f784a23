"""`Triggers` (`store.triggers`): retrain triggers that do not storm. Evaluates each applied
`RetrainPolicy` against the monitoring signals, decides (pure, retrain_decide.py), records every
decision with its evidence (retrain_store.py) and submits training jobs through a small queue
interface (`store.jobs` by default). Must not import cli, serving or inference."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from parity.deploy.retrain_decide import (
    Context,
    Observation,
    Outcome,
    TriggerState,
    decide,
    pass_order,
    with_request,
)
from parity.deploy.retrain_state import RetrainDecision
from parity.errors import (
    InvalidOption,
    InvalidTime,
    ParityError,
    RetrainEvaluationBusy,
    RetrainPolicyNotFound,
)
from parity.redaction import redact

if TYPE_CHECKING:
    from parity.definitions.retrain import RetrainPolicy
    from parity.deploy.retrain_store import StoredState, TriggerStore
    from parity.feature_store import FeatureStore
    from parity.jobs.state import JobRecord

log = logging.getLogger(__name__)

LEASE_SECONDS = 300.0  # an evaluation crashed while holding the lease frees it after this
WAIT_SECONDS = 300.0  # how long a second evaluation waits for the first one to finish
_POLL = 0.05
_ATTEMPTS = 20  # a manual request changed the state between read and write: decide again
_KEPT_ERRORS = 10


class JobQueue(Protocol):
    """What the triggers need of `store.jobs` (parity/jobs/service.py)."""

    def submit(
        self,
        name: str,
        *,
        reason: str = "manual",
        trigger_decision: int | None = None,
        now: datetime | None = None,
    ) -> JobRecord: ...

    def active(self, model: str | None = None) -> list[JobRecord]: ...

    def list(
        self, *, status: Any = None, model: str | None = None, limit: int = 100
    ) -> list[JobRecord]: ...


class SignalSource(Protocol):
    """Reads one model's signals as of `now` (retrain_signals.py reads the monitoring history).
    May raise a ParityError (no reference profile): the evaluation records it as the signal's
    error, and decides on the other signals."""

    def drift(self, policy: RetrainPolicy, now: datetime) -> Observation: ...

    def performance(self, policy: RetrainPolicy, now: datetime) -> Observation: ...

    def newest_version_at(self, model: str) -> datetime | None: ...

    def rollout(self, model: str) -> str | None:
        """The model's rollout in progress (its id and status), if any."""
        ...


@dataclass
class TriggerEngine:
    """One project's trigger evaluations on a store, a job queue and a signal source."""

    store: TriggerStore
    queue: JobQueue
    signals: SignalSource
    overall_cap: int
    lease_seconds: float = LEASE_SECONDS
    wait_seconds: float = WAIT_SECONDS
    sleep: Callable[[float], None] = time.sleep
    wall: Callable[[], float] = time.monotonic
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    _renewed_at: float = field(default=0.0, init=False, repr=False)

    def evaluate(self, policies: Sequence[RetrainPolicy], now: datetime) -> list[RetrainDecision]:
        """One pass over `policies` at `now`, holding the project's evaluation lease (a second
        evaluation waits for it, then sees what this one fired). The decisions, in pass order."""
        if not policies:
            return []
        self._take_lease()
        try:
            stored = self.store.states()
            for policy in policies:
                self._repair(policy, stored.get(policy.model), now)
            active = [job for job in self.queue.active() if job.kind == "training"]
            total = len(active)
            by_policy = {policy.model: policy for policy in policies}
            order = pass_order((p.model, _state(stored.get(p.model))) for p in policies)
            decisions = []
            for model in order:
                self._renew_lease()
                mine = tuple(sorted(job.id for job in active if job.model == model))
                decision = self._one(by_policy[model], now, mine, total)
                total += decision.action == "fire"
                decisions.append(decision)
            return decisions
        finally:
            self.store.release(self.owner)

    def request(self, policy: RetrainPolicy, reason: str, now: datetime) -> TriggerState:
        """Record a manual request for the policy's model (decided by the next evaluation)."""
        return self.store.update(policy.model, policy.name, lambda s: with_request(s, reason, now))

    def _take_lease(self) -> None:
        deadline = self.wall() + self.wait_seconds
        self._renewed_at = self.store.wall_time()
        while not self.store.acquire(self.owner, self.lease_seconds):
            if self.wall() >= deadline:
                raise RetrainEvaluationBusy(
                    f"another trigger evaluation of project '{self.store.project}' has held the "
                    f"lease for over {self.wait_seconds:.0f} s; nothing was decided. Run "
                    "'parity monitor evaluate' again later (a crashed one frees it after "
                    f"{self.lease_seconds:.0f} s)"
                )
            self.sleep(_POLL)

    def _renew_lease(self) -> None:
        """Extend the lease before a model once a third of it has passed; a pass that outlived
        it (another evaluation took it over) stops rather than decide beside the other one."""
        moment = self.store.wall_time()
        if moment - self._renewed_at < self.lease_seconds / 3:
            return
        self._renewed_at = moment
        if not self.store.renew(self.owner, self.lease_seconds):
            raise RetrainEvaluationBusy(
                f"this trigger evaluation of project '{self.store.project}' ran past its "
                f"{self.lease_seconds:.0f} s lease and another one took it over; it stopped. "
                "The decisions it recorded stand; the other evaluation decides the rest"
            )

    def _read(self, policy: RetrainPolicy, now: datetime) -> tuple[Observation, Observation]:
        found = []
        for name, read in (
            ("drift", self.signals.drift),
            ("performance", self.signals.performance),
        ):
            try:
                found.append(read(policy, now))
            except ParityError as error:
                log.warning("retrain %s: %s signal unavailable: %s", policy.model, name, error)
                found.append(Observation(None, error=f"{error.code}: {error}"))
        return found[0], found[1]

    def _newest(self, model: str) -> datetime | None:
        """When the model's newest version was registered; None (schedule not due) when the
        model has none yet."""
        try:
            return self.signals.newest_version_at(model)
        except ParityError as error:
            log.warning("retrain %s: no version to age: %s", model, error)
            return None

    def _rollout(self, model: str) -> str | None:
        try:
            return self.signals.rollout(model)
        except ParityError as error:
            log.warning("retrain %s: rollouts unreadable: %s", model, error)
            return None

    def _one(
        self, policy: RetrainPolicy, now: datetime, model_active: tuple[int, ...], total: int
    ) -> RetrainDecision:
        from parity.deploy.retrain_store import StateConflict

        drift, performance = self._read(policy, now)
        ctx = Context(
            now=now,
            model_active=model_active,
            total_active=total,
            overall_cap=self.overall_cap,
            newest_version_at=self._newest(policy.model),
            rollout=self._rollout(policy.model),
        )
        for _ in range(_ATTEMPTS):
            stored = self.store.state(policy.model)
            state = stored.state
            if state.last_fire_job is None:  # a fire whose job is not queued yet is active
                ctx = replace(ctx, unconfirmed_fire=state.last_fire_decision)
            outcome = decide(policy, state, drift, performance, ctx)
            record = outcome.action != "hold" or outcome.changed
            try:
                decision = self.store.commit(
                    policy.model, policy.name, stored.revision, outcome, now, record=record
                )
            except StateConflict:
                continue
            if decision is None:
                return _unrecorded(self.store.project, policy, now, outcome)
            if outcome.action == "fire":
                return self._submit(policy, decision, outcome.asking, now)
            return decision
        raise StateConflict(policy.model)

    def _submit(
        self,
        policy: RetrainPolicy,
        decision: RetrainDecision,
        asking: Sequence[str],
        now: datetime,
    ) -> RetrainDecision:
        """Queue the fire's job and link it to the decision. A failed submission is kept in
        the decision's evidence; the next evaluation submits it again (`_repair`)."""
        if decision.id is None:
            return decision
        reason = "+".join(asking) or "trigger"
        try:
            job = self.queue.submit(
                policy.job, reason=reason, trigger_decision=decision.id, now=now
            )
        except ParityError as error:
            log.error("retrain %s: job %s not queued: %s", policy.model, policy.job, error)
            self.store.link(policy.model, decision.id, None, f"{error.code}: {error}")
            return decision
        self.store.link(policy.model, decision.id, job.id)
        log.info("retrain %s: fired (%s), job #%s", policy.model, reason, job.id)
        return _with_job(decision, job.id)

    def _repair(self, policy: RetrainPolicy, stored: StoredState | None, now: datetime) -> None:
        """A fire whose job was never confirmed (the evaluation died between its record and its
        submission, or the submission failed): link the job it did queue, or queue it now; after
        `_KEPT_ERRORS` failed submissions give it up (the model is not blocked forever)."""
        if stored is None:
            return
        state = stored.state
        if state.last_fire_decision is None or state.last_fire_job is not None:
            return
        ident = state.last_fire_decision
        for job in self.queue.list(model=policy.model, limit=100):
            if job.trigger_decision == ident:
                self.store.link(policy.model, ident, job.id)
                return
        if len(self.store.errors(ident)) >= _KEPT_ERRORS:
            self.store.abandon(policy.model, ident, f"given up after {_KEPT_ERRORS} failures")
            log.error("retrain %s: fire %s given up (see its evidence)", policy.model, ident)
            return
        decision = self.store.decision(ident)
        asking = tuple(decision.signals.get("asking") or ()) if decision else ()
        recorded = decision or RetrainDecision(
            ident, self.store.project, policy.model, policy.name, now, "fire", ()
        )
        self._submit(policy, recorded, asking or ("retry",), now)


_MAX_REASON = 1000
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _state(stored: StoredState | None) -> TriggerState:
    return TriggerState() if stored is None else stored.state


def _with_job(decision: RetrainDecision, job: int) -> RetrainDecision:
    return replace(decision, job_id=job)


def _unrecorded(
    project: str, policy: RetrainPolicy, now: datetime, outcome: Outcome
) -> RetrainDecision:
    """A hold that changed nothing: returned (and printed), not stored."""
    return RetrainDecision(
        None,
        project,
        policy.model,
        policy.name,
        now,
        outcome.action,
        outcome.reasons,
        outcome.evidence,
    )


def describe_state(policy: RetrainPolicy, state: TriggerState) -> dict[str, Any]:
    """A trigger state in words, for `parity triggers status`."""

    def signal(enabled: bool, firing: bool, streak: int) -> str:
        if not enabled:
            return "off"
        return "firing" if firing else f"{streak}/{policy.sustain}"

    last = None
    if state.last_fire_at is not None:
        job = "not queued" if state.last_fire_job is None else f"job #{state.last_fire_job}"
        last = f"{state.last_fire_at.isoformat()} ({job})"
    pending = None
    if state.deferred_since is not None:
        pending = f"deferred since {state.deferred_since.isoformat()}"
    elif state.request is not None:
        pending = f"manual request ({state.request.reason}) at {state.request.at.isoformat()}"
    return {
        "policy": policy.name,
        "model": policy.model,
        "job": policy.job,
        "drift": signal(policy.drift_fire_at is not None, state.drift.firing, state.drift.streak),
        "performance": signal(
            policy.metric is not None, state.performance.firing, state.performance.streak
        ),
        "last_retrain": last,
        "pending": pending,
    }


@dataclass(frozen=True)
class Tick:
    """One pass of `parity monitor evaluate`: what the monitors did, and the decisions."""

    at: datetime
    monitors: tuple[str, ...]
    decisions: tuple[RetrainDecision, ...]


class Triggers:
    """Retrain triggers of one FeatureStore (`store.triggers`); `queue` and `signals` default
    to `store.jobs` and the monitoring history (retrain_signals.py)."""

    def __init__(
        self,
        store: FeatureStore,
        *,
        queue: JobQueue | None = None,
        signals: SignalSource | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self._queue = queue
        self._signals = signals
        self._sleep = sleep
        self._engine: TriggerEngine | None = None

    @property
    def engine(self) -> TriggerEngine:
        if self._engine is None:
            from parity.deploy.retrain_signals import MonitoringSignals
            from parity.deploy.retrain_store import TriggerStore

            store = self._store
            engine = getattr(store.registry.store, "engine", None)
            if engine is None:
                from parity.errors import BackendNotInstalled

                raise BackendNotInstalled(
                    "retrain triggers keep their decisions in the SQL registry; use sqlite or "
                    "postgres in parity.yaml"
                )
            self._engine = TriggerEngine(
                store=TriggerStore(engine, store.project),
                queue=self._queue if self._queue is not None else store.jobs,
                signals=self._signals if self._signals is not None else MonitoringSignals(store),
                overall_cap=store.config.jobs.max_concurrent,
                sleep=self._sleep,
            )
        return self._engine

    def _moment(self, now: datetime | None) -> datetime:
        """`now` (the store's clock when None) checked: aware, and within 1970..9000 (the
        evaluation subtracts windows and adds cooldowns to it)."""
        when = self._store.now() if now is None else now
        if not isinstance(when, datetime) or when.tzinfo is None:
            raise InvalidTime(
                f"now={when!r}: give a timezone-aware datetime (UTC), e.g. "
                "datetime(2026, 6, 1, tzinfo=UTC)"
            )
        if not _EARLIEST <= when <= _LATEST:
            raise InvalidTime(
                f"now={when.isoformat()} is outside {_EARLIEST.year}..{_LATEST.year}; give the "
                "time the evaluation stands at"
            )
        return when

    def policies(self) -> list[RetrainPolicy]:
        """The applied retrain policies, by name."""
        catalog = self._store.registry.catalog
        return [catalog.retrain_policies[name] for name in sorted(catalog.retrain_policies)]

    def policy_for(self, model: str) -> RetrainPolicy:
        """The applied policy deciding for model `model`; RetrainPolicyNotFound naming it."""
        for policy in self.policies():
            if policy.model == model:
                return policy
        self._store.models.versions(model)  # ModelNotFound for a model that does not exist
        known = ", ".join(f"{p.name} (model {p.model})" for p in self.policies()) or "none"
        raise RetrainPolicyNotFound(
            f"no retrain policy decides for model '{model}' in '{self._store.project}'; declare "
            f"a RetrainPolicy(model='{model}', job=...) and apply. Applied: {known}"
        )

    def evaluate(self, *, now: datetime | None = None) -> list[RetrainDecision]:
        """One pass over every applied retrain policy (`parity monitor evaluate`): read its
        signals as of `now`, decide, record, submit; the decisions."""
        return self.engine.evaluate(self.policies(), self._moment(now))

    def request(self, model: str, *, reason: str = "manual", now: datetime | None = None) -> None:
        """A manual retrain request for `model`: taken into account by the next evaluation
        (the cooldown does not apply to it, the caps do)."""
        policy = self.policy_for(model)
        if not isinstance(reason, str) or len(reason) > _MAX_REASON:
            shown = f"{len(reason)} characters" if isinstance(reason, str) else repr(reason)
            raise InvalidOption(f"reason {shown}: give text of at most {_MAX_REASON} characters")
        self.engine.request(policy, reason.strip() or "manual", self._moment(now))

    def tick(self, *, now: datetime | None = None) -> Tick:
        """One pass of the monitors (drift of the windows ended by `now`, alerts stepped) and
        then of the triggers."""
        from parity.deploy.retrain_signals import monitor_pass

        when = self._moment(now)
        notes = monitor_pass(self._store, when)
        return Tick(when, tuple(notes), tuple(self.evaluate(now=when)))

    def run(
        self,
        *,
        interval: float,
        until: Callable[[], bool] | None = None,
        on_tick: Callable[[Tick], None] | None = None,
        passes: int | None = None,
    ) -> None:
        """`parity monitor run`: `tick` every `interval` seconds until `until()` says stop or
        `passes` passes were made. A pass that fails is logged and the loop goes on."""
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not (0 < interval < float("inf"))
        ):
            raise InvalidOption(f"interval {interval!r}: give a positive number of seconds")
        done = 0
        while (until is None or not until()) and (passes is None or done < passes):
            try:
                made = self.tick()
            except Exception as error:  # logged; the loop goes on (docs/lifecycle.md)
                kind = error.code if isinstance(error, ParityError) else type(error).__name__
                log.error("monitor pass failed: %s: %s", kind, redact(str(error)))
            else:
                if on_tick is not None:
                    on_tick(made)
            done += 1
            if passes is not None and done >= passes:
                return
            self._sleep(interval)

    def status(self) -> list[dict[str, Any]]:
        """Per applied policy, where its trigger stands (`parity triggers status`)."""
        states = self.engine.store.states()
        found = []
        for policy in self.policies():
            stored = states.get(policy.model)
            state = TriggerState() if stored is None else stored.state
            found.append(describe_state(policy, state))
        return found

    def history(self, model: str | None = None, *, limit: int = 100) -> list[RetrainDecision]:
        """Recorded decisions, newest first (`parity triggers history`)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidOption(f"limit {limit!r}: give a whole number of decisions, at least 1")
        if model is not None and all(p.model != model for p in self.policies()):
            self._store.models.versions(model)  # ModelNotFound, not an empty history
        return self.engine.store.history(model, limit=limit)
