"""`TrainingJob`: how a model is retrained (its feature service, its labels and when they mature,
the training function) and what happens to the new version (alias, rollout). Declared in the repo
and applied with plan/apply; runs are durable job records in `jobs`. A value only: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import PrivateAttr, field_validator, model_validator

from parity.definitions.base import NamedDefinition, check_identifier, check_model_name
from parity.definitions.monitor import LabelSource, MetricRef, function_ref

TrainFunction = Callable[..., Any]
# How long one attempt may run before the runner marks it failed (a hung fit holds a slot of the
# runner's concurrency cap forever otherwise); two hours covers the fits this platform targets.
DEFAULT_TIMEOUT = timedelta(hours=2)
# A failed attempt is retried once (a lost runner, a flaky source); a second failure is a fault
# of the job, and retrying it more often only delays the alert.
DEFAULT_MAX_ATTEMPTS = 2
DEFAULT_RETRY_DELAY = timedelta(minutes=5)
# The longest span a job's fields may hold: a century is beyond any label delay, history or
# retry wait, and keeps now +/- span a representable date (a larger one failed the runner pass).
MAX_SPAN = timedelta(days=36_500)


@dataclass
class TrainedModel:
    """What a training function returns (a `(model, metrics)` tuple is read as one): the fitted
    model, its evaluation metrics, and what `register_model` records with it. `importance` maps
    feature names to weights (recorded as `params["feature_importance"]`; a retrain policy with
    `weighting="importance"` weights drifted features by it). `sample_input` (a few rows of the
    model's inputs) gives the version its signature; without it the training set's first rows of
    the feature service's features are used."""

    model: Any
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    importance: Mapping[str, float] | None = None
    sample_input: Any = None
    flavor: str | None = None
    description: str = ""


class TrainingJob(NamedDefinition):
    """Retrain model `model` on `feature_service`'s point-in-time features for the rows of
    `labels` whose labels have matured (event time at or before now - `label_delay`); see
    docs/lifecycle.md."""

    kind = "training_job"

    model: str
    feature_service: str
    labels: LabelSource
    label_delay: timedelta = timedelta(0)
    lookback: timedelta | None = None  # train on matured rows of this span only; None: all
    train: MetricRef
    alias: str = "candidate"
    rollout: str | None = None  # an applied Rollout started for the new version, or none
    timeout: timedelta = DEFAULT_TIMEOUT
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_delay: timedelta = DEFAULT_RETRY_DELAY
    _functions: dict[str, TrainFunction] = PrivateAttr(default_factory=dict)

    def __init__(self, /, **data: Any) -> None:
        functions: dict[str, TrainFunction] = {}
        if "train" in data:
            data["train"] = function_ref(
                data["train"],
                functions,
                owner=f"TrainingJob {data.get('name')!r}",
                holds="train",
                contract="train(frame, context) -> TrainedModel or (model, metrics)",
            )
        super().__init__(**data)
        self._functions.update(functions)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return check_model_name(value, "a training job registers a new version of it")

    @field_validator("feature_service", "alias")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return check_identifier(value, "name")

    @model_validator(mode="after")
    def _spans(self) -> TrainingJob:
        if self.label_delay < timedelta(0):
            raise ValueError(f"label_delay must not be negative, got {self.label_delay}")
        if self.lookback is not None and self.lookback <= timedelta(0):
            raise ValueError(f"lookback must be positive (None: all rows), got {self.lookback}")
        if self.timeout <= timedelta(0):
            raise ValueError(f"timeout must be positive, got {self.timeout}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.retry_delay < timedelta(0):
            raise ValueError(f"retry_delay must not be negative, got {self.retry_delay}")
        for name in ("label_delay", "lookback", "timeout", "retry_delay"):
            span = getattr(self, name)
            if span is not None and span > MAX_SPAN:
                raise ValueError(
                    f"{name} must be at most {MAX_SPAN.days} days (a century), got {span}"
                )
        if self.labels.timestamp_field is None:
            raise ValueError(
                "labels.timestamp_field is required: the training set is built as of each row's "
                "event time, and label maturity is judged from it"
            )
        return self

    @property
    def train_function(self) -> TrainFunction | None:
        """The training function itself when this object came from the repo (not from the
        registry, which keeps only its name and code hash)."""
        return self._functions.get(self.train.name)

    def bind(self, functions: dict[str, TrainFunction]) -> None:
        """Attach the repo's functions (by name) to a definition read back from the registry."""
        self._functions.update(functions)
