"""Retrain decisions as values (pure, no I/O): what a trigger evaluation decided for one model,
with its evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

# fire: a job was submitted; suppress: a signal fired but a rule held it back (cooldown, cap,
# a job already active, sustain not reached, dedup into another decision); hold: nothing fired.
Action = Literal["fire", "suppress", "hold"]


@dataclass(frozen=True)
class RetrainDecision:
    """One evaluation of one model's retrain policy. `signals` maps each signal (drift,
    performance, schedule, manual) to its value and state; `reasons` says why it fired or why
    it was suppressed; `job_id` is the submitted job when it fired."""

    id: int | None
    project: str
    model: str
    policy: str
    at: datetime
    action: Action
    reasons: tuple[str, ...]
    signals: dict[str, Any] = field(default_factory=dict)
    job_id: int | None = None
