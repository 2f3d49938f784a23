"""`Triggers` (`store.triggers`): retrain triggers that do not storm. Evaluates each applied
`RetrainPolicy` against the monitoring signals, decides (pure, with hysteresis, sustain,
cooldown, caps, dedup), records every decision with its evidence and submits training jobs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from parity.deploy.retrain_state import RetrainDecision
    from parity.feature_store import FeatureStore


class Triggers:
    def __init__(self, store: FeatureStore) -> None:
        self._store = store

    def evaluate(self, *, now: datetime | None = None) -> list[RetrainDecision]:
        """One pass over every applied retrain policy (`parity monitor evaluate`): read its
        signals as of `now`, decide, record, submit; the decisions."""
        raise NotImplementedError

    def request(self, model: str, *, reason: str = "manual", now: datetime | None = None) -> None:
        """A manual retrain request for `model`: taken into account (cooldown and caps still
        apply) by the next evaluation."""
        raise NotImplementedError

    def run(self, *, interval: float, until: Callable[[], bool] | None = None) -> None:
        """`parity monitor run`: evaluate monitors and triggers every `interval` seconds."""
        raise NotImplementedError

    def history(self, model: str | None = None, *, limit: int = 100) -> list[RetrainDecision]:
        """Recorded decisions, newest first (`parity triggers history`)."""
        raise NotImplementedError
