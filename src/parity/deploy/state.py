"""A running rollout's durable state and its decisions, as values (no I/O).

The controller (deploy/controller.py) writes them to the registry database (deploy/store.py);
every model server worker reads the active ones and routes by them (`to_routes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from parity.definitions.rollout import Rollout
from parity.inference.routing import Routes, Shadow

Status = Literal["active", "paused", "promoted", "aborted"]
ACTIVE: tuple[Status, ...] = ("active", "paused")  # a model has at most one of these
Verdict = Literal["pass", "fail", "inconclusive"]
EventKind = Literal[
    "started",
    "check",
    "advanced",
    "paused",
    "resumed",
    "promoted",
    "aborted",
    "resumed_after_crash",
]


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict on one window, with the numbers behind it."""

    gate: str  # the gate's metric, e.g. 'latency_p99' or 'label:precision_at_k'
    verdict: Verdict
    candidate: float | None = None  # the candidate's value of the metric
    champion: float | None = None
    limit: float | None = None  # the threshold it was held to
    samples: dict[str, int] = field(default_factory=dict)  # rows per arm ('candidate', ...)
    reason: str = ""  # why: 'p99 41.2 ms > 36.3 ms (champion 33.0 ms + 10 %)', 'only 12 rows'


@dataclass(frozen=True)
class CheckOutcome:
    """One evaluation of a rollout's gates (deploy/evidence.py `check_gates`): every gate's result,
    in the definition's order, and the logged rows per arm ('champion', 'candidate') in the
    current step's window."""

    results: tuple[GateResult, ...]
    samples: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RolloutState:
    """Where a rollout is. `step` 0 is the shadow phase when the definition has one; the canary
    steps follow in order. `failures` counts failed checks as the failure policy counts them."""

    id: str  # '<model>-<n>': unique per project, salts the routing hash
    project: str
    model: str
    definition: Rollout  # the copy the rollout started with; later applies do not change it
    candidate: int
    champion: int  # the champion alias's version when the rollout started
    status: Status
    step: int
    step_started: datetime
    failures: int
    started_at: datetime
    updated_at: datetime
    shadows: tuple[int, ...] = ()  # `also_shadow` resolved to versions
    reason: str = ""  # why it was promoted, aborted or paused

    @property
    def phases(self) -> tuple[Any, ...]:
        d = self.definition
        return ((d.shadow,) if d.shadow is not None else ()) + d.steps

    @property
    def phase(self) -> Any:
        return self.phases[self.step]

    @property
    def in_shadow(self) -> bool:
        return self.definition.shadow is not None and self.step == 0

    @property
    def weight(self) -> float:
        """The candidate's share of the champion alias's traffic now (percent)."""
        if self.status not in ACTIVE:
            return 0.0
        return float(self.phase.weight)


@dataclass(frozen=True)
class RolloutEvent:
    """One decision or action, kept forever: what happened, at which step, and the evidence."""

    rollout: str
    at: datetime
    kind: EventKind
    step: int
    weight: float
    results: tuple[GateResult, ...] = ()
    reason: str = ""
    actor: str = ""  # 'controller:<host:pid>' or the user who ran the command


def to_routes(state: RolloutState, routing_key: str, key_source: str = "entity") -> Routes | None:
    """What the model server does for this rollout now; None when it routes nothing."""
    if state.status not in ACTIVE:
        return None
    fraction = state.definition.shadow_fraction
    shadows = [Shadow(v, fraction) for v in state.shadows]
    if state.in_shadow:
        shadows.insert(0, Shadow(state.candidate, fraction))
    return Routes(
        model=state.model,
        rollout=state.id,
        champion_alias=state.definition.champion_alias,
        champion=state.champion,
        candidate=state.candidate,
        weight=state.weight,
        key=routing_key,
        key_source="header" if key_source == "header" else "entity",
        shadows=tuple(shadows),
    )
