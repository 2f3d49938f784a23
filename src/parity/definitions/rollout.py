"""`Rollout`: how a new model version reaches traffic (shadow, sticky canary steps, gates decided in
advance, the failure policy). Declared in the repo and applied with plan/apply, or built by
`parity rollout start`. A value only: the durable state of a running rollout lives in `deploy`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

from pydantic import PrivateAttr, ValidationInfo, field_validator, model_validator

from parity.definitions.base import Definition, NamedDefinition, check_identifier, check_model_name
from parity.definitions.monitor import MetricRef, function_ref, take_functions

GateFunction = Callable[..., Any]
FailureMode = Literal["cumulative", "consecutive"]
KeyKind = Literal["entity", "header"]

# The gate metrics built in; `label:<metric>` and `custom:<function>` name the rest.
BUILTIN_GATES = ("latency_p99", "error_rate", "prediction_drift")
GATE_PREFIXES = ("label:", "custom:")
# Delayed-label metrics a `label:` gate may name besides the Monitor's own metric functions.
LABEL_METRICS = ("precision_at_k", "auc", "average_precision", "precision", "recall", "brier")
DRIFT_TESTS = ("psi", "jensen_shannon", "wasserstein", "ks")
# Defaults per metric, and why (docs/rollout.md repeats them):
DEFAULT_THRESHOLDS = {
    "latency_p99": 0.10,  # candidate p99 at most 10 % above the champion's (same window)
    "error_rate": 0.01,  # at most 1 percentage point more failed requests than the champion
    "prediction_drift": 0.2,  # PSI of candidate vs champion scores: 0.2 is "significant shift"
    "label": 0.05,  # a label metric at most 5 % (relative) worse than the champion's
    "custom": 0.0,  # a custom gate's own verdict decides; the threshold is passed to it
}
# A drift gate without a threshold takes its test's monitoring default (monitoring.stats): a
# distance above it, or (ks) a p-value below it, fails.
DRIFT_DEFAULTS = {"psi": 0.2, "jensen_shannon": 0.1, "wasserstein": 0.1, "ks": 0.05}
# A drift gate without min_samples waits for as many scores per arm as its test needs before two
# samples of one distribution stop crossing its default threshold by chance: at 100 per arm a
# candidate identical to the champion failed psi 0.2 about 40 % of the time, jensen_shannon and
# wasserstein about 90 %; at these counts under 1 %. ks is a calibrated p-value at any count.
DRIFT_MIN_SAMPLES = {"psi": 500, "jensen_shannon": 1000, "wasserstein": 2000, "ks": 100}
DEFAULT_STEPS = (1.0, 5.0, 25.0, 50.0, 100.0)
WEIGHT_STEP = 0.01  # routing splits the key space into 10,000 buckets: weights resolve to 0.01 %
MAX_COUNT = 2**31 - 1  # sample counts, k and failure limits: what every store and JSON reader holds
# Canary steps at most: each lasts at least one check, and every server worker re-reads the
# definition each alias_refresh_seconds (10,000 steps cost 0.18 s of CPU per read).
MAX_STEPS = 100


def _at_most(value: int, field: str) -> int:
    if value > MAX_COUNT:
        raise ValueError(f"{field} must be at most {MAX_COUNT:,}, got {value:,}")
    return value


# The longest phase or interval: a century, as the CLI's durations (timeutil.parse_span). Longer
# is a typo, and the controller's lease (3 x the interval) must stay a representable time.
MAX_DURATION = timedelta(days=100 * 365)


class Phase(Definition):
    """One stage of the ramp: the candidate's share of traffic (percent of the routing-key space;
    0 for the shadow phase), how long it lasts at least, and how many candidate predictions it
    needs before its gates can pass."""

    kind = "rollout_phase"

    weight: float
    duration: timedelta = timedelta(minutes=10)
    min_samples: int = 100

    @field_validator("weight")
    @classmethod
    def _weight(cls, value: float) -> float:
        if not 0 <= value <= 100 or math.isnan(value):
            raise ValueError(f"weight must be a percentage from 0 to 100, got {value}")
        return value

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError(f"duration cannot be negative, got {value}")
        if value > MAX_DURATION:
            raise ValueError(f"duration must be at most a century ({MAX_DURATION}), got {value}")
        return value

    @field_validator("min_samples")
    @classmethod
    def _samples(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"min_samples cannot be negative, got {value}")
        return _at_most(value, "min_samples")


class RoutingKey(Definition):
    """What makes routing sticky: an entity join key of the request (its first row's value routes
    the whole request) or a request header (e.g. `x-user-id`)."""

    kind = "routing_key"

    name: str
    source: KeyKind = "entity"

    @model_validator(mode="after")
    def _name(self) -> RoutingKey:
        if self.source == "entity":
            check_identifier(self.name, "routing key")
        elif not self.name or not all(
            c.isascii() and (c.isalnum() or c in "-_") for c in self.name
        ):
            # HTTP header names are ASCII: a name with 'ü' could never arrive, so never route
            raise ValueError(f"header name {self.name!r}: use ASCII letters, digits, '-' and '_'")
        return self


class Gate(Definition):
    """A check decided before the rollout starts, comparing candidate and champion on the same
    window. `metric` is one of `latency_p99`, `error_rate`, `prediction_drift`,
    `label:<metric>` (matured labels only) or `custom:<function>`. `threshold` None means the
    metric's default (DEFAULT_THRESHOLDS). Too little data is inconclusive: it holds the step."""

    kind = "rollout_gate"

    metric: str
    threshold: float | None = None
    min_samples: int = 100  # per arm; for label gates, labelled rows per arm
    test: str = "psi"  # prediction_drift only
    k: int = 100  # label:precision_at_k only
    output: str | None = None  # the model output compared (None: the first)

    @property
    def name(self) -> str:
        return self.metric

    @property
    def family(self) -> str:
        """'latency_p99', 'error_rate', 'prediction_drift', 'label' or 'custom'."""
        return self.metric.split(":", 1)[0] if ":" in self.metric else self.metric

    @property
    def argument(self) -> str | None:
        """The name after 'label:' or 'custom:'."""
        return self.metric.split(":", 1)[1] if ":" in self.metric else None

    @property
    def limit(self) -> float:
        """The threshold held to: the gate's own, else its metric's (its test's) default."""
        if self.threshold is not None:
            return self.threshold
        if self.family == "prediction_drift":
            return DRIFT_DEFAULTS[self.test]
        return DEFAULT_THRESHOLDS[self.family]

    @model_validator(mode="before")
    @classmethod
    def _drift_samples(cls, data: Any) -> Any:
        """A drift gate's default min_samples is its test's (DRIFT_MIN_SAMPLES)."""
        if not isinstance(data, dict) or data.get("metric") != "prediction_drift":
            return data
        test = data.get("test", "psi")
        if data.get("min_samples") is None and isinstance(test, str) and test in DRIFT_MIN_SAMPLES:
            return {**data, "min_samples": DRIFT_MIN_SAMPLES[test]}
        return data

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value in BUILTIN_GATES:
            return value
        if value.startswith(GATE_PREFIXES) and value.split(":", 1)[1].strip():
            return value
        raise ValueError(
            f"gate metric {value!r} is not known: use one of {', '.join(BUILTIN_GATES)}, "
            f"'label:<metric>' (e.g. label:precision_at_k, or a Monitor metric such as "
            "label:dollar_weighted_recall) or 'custom:<function in the repo>'"
        )

    @model_validator(mode="after")
    def _numbers(self) -> Gate:
        if self.threshold is not None and not (0 <= self.threshold < math.inf):
            raise ValueError(f"threshold must be a finite number >= 0, got {self.threshold}")
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, got {self.min_samples}")
        if self.test not in DRIFT_TESTS:
            raise ValueError(f"test {self.test!r}: use one of {', '.join(DRIFT_TESTS)}")
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        return self

    @field_validator("min_samples", "k")
    @classmethod
    def _counts(cls, value: int, info: ValidationInfo) -> int:
        return _at_most(value, str(info.field_name))


class FailurePolicy(Definition):
    """How many failed gate checks abort. `cumulative` counts every failed check of the rollout
    (Flagger's threshold); `consecutive` counts failures in a row, a passing check resets it.
    The default, one failure, aborts on the first failed check (Argo Rollouts' default)."""

    kind = "failure_policy"

    mode: FailureMode = "cumulative"
    limit: int = 1

    @field_validator("limit")
    @classmethod
    def _limit(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"limit must be at least 1 failed check, got {value}")
        return _at_most(value, "limit")


class Rollout(NamedDefinition):
    """How `candidate` (a version number or an alias of `model`) replaces the version behind
    `champion_alias`: see docs/rollout.md."""

    kind = "rollout"

    model: str
    candidate: int | str
    champion_alias: str = "champion"
    shadow: Phase | None = Phase(weight=0.0, duration=timedelta(minutes=30), min_samples=500)
    shadow_fraction: float = 1.0  # share of requests mirrored to the shadow(s), by routing key
    steps: tuple[Phase, ...] = tuple(Phase(weight=w) for w in DEFAULT_STEPS)
    routing_key: RoutingKey | None = None  # None: the model's first entity join key
    gates: tuple[Gate, ...] = ()
    failure_policy: FailurePolicy = FailurePolicy()
    interval: timedelta = timedelta(minutes=1)
    also_shadow: tuple[int | str, ...] = ()  # more versions mirrored, without gates
    custom_gates: tuple[MetricRef, ...] = ()
    _functions: dict[str, GateFunction] = PrivateAttr(default_factory=dict)

    def __init__(self, /, **data: Any) -> None:
        functions = take_functions(data, "custom_gates", _gate_ref)
        super().__init__(**data)
        self._functions.update(functions)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return check_model_name(value, "the candidate and champion alias name its versions")

    @field_validator("candidate", mode="before")
    @classmethod
    def _candidate(cls, value: object) -> object:
        return _version_ref(value, "candidate")

    @field_validator("also_shadow", mode="before")
    @classmethod
    def _also_shadow(cls, value: object) -> object:
        """Versions given as digits ('3', as a command line or JSON body may) are versions."""
        if isinstance(value, list | tuple):
            return [_version_ref(item, "also_shadow") for item in value]
        return value

    @field_validator("champion_alias")
    @classmethod
    def _champion(cls, value: str) -> str:
        return check_identifier(value, "champion_alias")

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError(f"interval must be at least 1 second, got {value}")
        if value > MAX_DURATION:
            raise ValueError(f"interval must be at most a century ({MAX_DURATION}), got {value}")
        return value

    @model_validator(mode="after")
    def _ramp(self) -> Rollout:
        if len(self.steps) > MAX_STEPS:
            raise ValueError(
                f"steps' weights: {len(self.steps)} canary steps; give at most {MAX_STEPS} (the "
                "default ramp has 5)"
            )
        if self.shadow is not None and self.shadow.weight != 0:
            raise ValueError("the shadow phase answers no request: its weight must be 0")
        if not 0 < self.shadow_fraction <= 1:
            raise ValueError(f"shadow_fraction must be in (0, 1], got {self.shadow_fraction}")
        weights = [step.weight for step in self.steps]
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError(f"steps' weights must increase, got {weights}")
        if weights and weights[0] <= 0:
            raise ValueError(f"the first canary step needs a weight above 0, got {weights[0]}")
        buckets = [round(w * 100) for w in weights]  # as inference.routing counts them
        if (buckets and buckets[0] < 1) or any(b <= a for a, b in itertools.pairwise(buckets)):
            raise ValueError(
                f"steps' weights resolve to {WEIGHT_STEP} percentage points, got {weights}: each "
                f"step must be at least {WEIGHT_STEP} and {WEIGHT_STEP} above the one before"
            )
        if not weights and self.shadow is None:
            raise ValueError("a rollout needs a shadow phase or at least one canary step")
        names = [gate.metric for gate in self.gates]
        if len(set(names)) != len(names):
            raise ValueError(f"gate metrics repeat: {names}; one gate per metric")
        known = {ref.name for ref in self.custom_gates}
        for gate in self.gates:
            if gate.family == "custom" and gate.argument not in known:
                raise ValueError(
                    f"gate {gate.metric!r}: list the function in custom_gates= (a def in the "
                    f"repo), e.g. custom_gates=[{gate.argument}]"
                )
        return self

    def __eq__(self, other: object) -> bool:
        """Equal as values: bound gate functions are runtime state, not part of the value."""
        if not isinstance(other, Rollout):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = NamedDefinition.__hash__

    @property
    def final_weight(self) -> float:
        return self.steps[-1].weight if self.steps else 0.0

    def bind(self, functions: dict[str, GateFunction]) -> None:
        """Attach the repo's custom gate functions (by name), as loaded from the repo."""
        self._functions.update(functions)

    @property
    def gate_functions(self) -> dict[str, GateFunction]:
        return dict(self._functions)


def _version_ref(value: object, field: str) -> object:
    """A version number or an alias; digits ('7', as a command line or JSON body may give it)
    are version 7 (an alias cannot be all digits)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        value = int(value)
    if isinstance(value, bool) or (isinstance(value, int) and not 1 <= value < 2**31):
        raise ValueError(f"{field} {value!r}: give a version number (1, 2, ...) or an alias")
    if isinstance(value, str) and not value.isdigit():
        check_identifier(value, f"{field} alias")
    return value


def _gate_ref(item: object, functions: dict[str, GateFunction], rollout: object) -> object:
    return function_ref(
        item,
        functions,
        owner=f"Rollout {rollout!r}",
        holds="custom_gates",
        contract="f(evidence) -> GateOutcome",
    )
