"""`RetrainPolicy`: when a model is retrained. Drift (one decision signal: the importance-weighted
share of drifted features), a delayed-label metric regression on matured windows, a schedule as
fallback, and manual requests; with hysteresis, a sustain count, a cooldown after a retrain and a
cap on concurrent retrains per model. Declared in the repo, applied with plan/apply; decisions are
made in `deploy` and recorded there. A value only: no I/O.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import field_validator, model_validator

from parity.definitions.base import NamedDefinition, check_identifier, check_model_name

Weighting = Literal["importance", "equal"]
Better = Literal["higher", "lower"]
# The built-in delayed-label metrics (monitoring/performance.py) whose smaller values are better;
# the others (auc, average_precision, precision_at_k, precision, recall) are better when larger.
LOWER_IS_BETTER = ("brier", "log_loss", "ece")
HIGHER_IS_BETTER = ("auc", "average_precision", "precision_at_k", "precision", "recall")
# A century: a retrain time plus the cooldown stays a date (evaluations run up to year 9000).
MAX_COOLDOWN = timedelta(days=36_500)


class RetrainPolicy(NamedDefinition):
    """Retrain `model` by running training job `job` when the signals say so; see
    docs/lifecycle.md for every default and its reason."""

    kind = "retrain_policy"

    model: str
    job: str
    # Drift: the share of drifted features, weighted by the importance recorded at registration
    # (equal weights when the version has none). Fires at or above fire_at, clears at or below
    # clear_at (hysteresis: a share wobbling around one threshold does not flap).
    drift_fire_at: float | None = 0.5
    drift_clear_at: float = 0.3
    weighting: Weighting = "importance"
    # Delayed labels: fires when `metric` on a final (matured) window falls below the version's
    # reference value (its registration metric `reference_metric`, else its first final window)
    # by more than metric_drop (relative), clears when within metric_clear.
    metric: str | None = None
    reference_metric: str | None = None
    metric_drop: float = 0.10
    metric_clear: float = 0.05
    # Which way `metric` improves: None reads it from the built-in metrics' known direction; a
    # metric of the repo's own (a Monitor metric function) must say.
    metric_better: Better | None = None
    # Fallback: retrain when the newest version is older than this, signals or not.
    schedule: timedelta | None = None
    sustain: int = 2
    cooldown: timedelta = timedelta(days=1)
    max_concurrent: int = 1

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return check_model_name(value, "a retrain policy decides for every version of it")

    @field_validator("job")
    @classmethod
    def _job(cls, value: str) -> str:
        return check_identifier(value, "training job name")

    @model_validator(mode="after")
    def _thresholds(self) -> RetrainPolicy:
        if self.drift_fire_at is not None:
            if not 0 < self.drift_fire_at <= 1:
                raise ValueError(f"drift_fire_at must be in (0, 1], got {self.drift_fire_at}")
            if not 0 <= self.drift_clear_at <= self.drift_fire_at:
                raise ValueError(
                    f"drift_clear_at {self.drift_clear_at} must be in [0, drift_fire_at "
                    f"{self.drift_fire_at}], or the signal would flap"
                )
        if not 0 < self.metric_drop < 1 or not 0 <= self.metric_clear <= self.metric_drop:
            raise ValueError(
                f"metric_drop must be in (0, 1) and metric_clear in [0, metric_drop], got "
                f"{self.metric_drop} and {self.metric_clear}"
            )
        known = LOWER_IS_BETTER + HIGHER_IS_BETTER
        if self.metric is not None and self.metric_better is None and self.metric not in known:
            raise ValueError(
                f"metric_better must say whether metric '{self.metric}' is better 'higher' "
                "or 'lower' (only the built-in metrics' direction is known)"
            )
        if self.sustain < 1:
            raise ValueError(f"sustain must be at least 1 evaluation, got {self.sustain}")
        if not timedelta(0) <= self.cooldown <= MAX_COOLDOWN:
            raise ValueError(
                f"cooldown must be between 0 and {MAX_COOLDOWN.days} days, got {self.cooldown} "
                "(to stop retraining on signals, set drift_fire_at=None and metric=None)"
            )
        if self.schedule is not None and self.schedule <= timedelta(0):
            raise ValueError(f"schedule must be positive (or None), got {self.schedule}")
        if self.max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {self.max_concurrent}")
        return self

    @property
    def higher_is_better(self) -> bool:
        """Which way `metric` improves (the declared `metric_better`, else the built-in's)."""
        if self.metric_better is not None:
            return self.metric_better == "higher"
        return self.metric not in LOWER_IS_BETTER
