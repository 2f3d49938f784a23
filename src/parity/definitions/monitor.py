"""`Monitor`: what to watch for one registered model (drift, delayed-label performance, alerts).

Declared in the repo and applied with plan/apply like every other definition. The registry keeps
user metric functions by name and source hash; their code runs from the repo. No I/O here.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field as PydanticField
from pydantic import PrivateAttr, field_validator, model_validator

from parity.definitions.base import Definition, NamedDefinition, check_identifier, check_model_name
from parity.definitions.on_demand import code_hash
from parity.errors import InvalidDefinition

Correction = Literal["benjamini_hochberg"]
Direction = Literal["above", "below"]
TESTS = ("auto", "ks", "chi_squared", "z_test", "wasserstein", "jensen_shannon", "psi")
EVIDENTLY_TESTS = ("chisquare", "jensenshannon", "wasserstein_normalized", "z")  # stats.ALIASES
SIGNAL_PREFIXES = ("drift:", "metric:", "null_rate:", "freshness:", "consistency:")
SIGNALS = ("drift_share",)
MetricFunction = Callable[..., float]


class LabelSource(Definition):
    """Where a model's labels arrive, later than its predictions: a Parquet file or a SQL query
    (run by DuckDB in the repo root), joined to logged predictions on `join_keys`."""

    kind = "label_source"

    path: str | None = None
    query: str | None = None
    label: str
    join_keys: tuple[str, ...] = ("request_id",)
    timestamp_field: str | None = None  # the prediction's event time, to match on with the keys
    label_timestamp_field: str | None = None  # when the label became known

    @model_validator(mode="after")
    def _one_origin(self) -> LabelSource:
        if (self.path is None) == (self.query is None):
            raise ValueError("give exactly one of path= (a Parquet file) or query= (DuckDB SQL)")
        if not self.join_keys:
            raise ValueError("join_keys is empty: name 'request_id' or the entity key columns")
        for name in (self.label, *self.join_keys):
            check_identifier(name, "label source column")
        return self


class AlertRule(Definition):
    """Fires after `sustain` evaluations in a row past `fire_at`; clears after `sustain` in a row
    back past `clear_at` (hysteresis: `clear_at` lies on the safe side of `fire_at`)."""

    kind = "alert_rule"

    name: str
    signal: str
    fire_at: float
    clear_at: float
    direction: Direction = "above"
    sustain: int = 2

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_identifier(value, "alert rule name")

    @field_validator("signal")
    @classmethod
    def _signal(cls, value: str) -> str:
        if value in SIGNALS or (
            value.startswith(SIGNAL_PREFIXES) and value.split(":", 1)[1].strip()
        ):
            return value
        raise ValueError(
            f"signal {value!r} is not known: use 'drift_share' or one of "
            f"{', '.join(p + '<name>' for p in SIGNAL_PREFIXES)}"
        )

    @field_validator("sustain")
    @classmethod
    def _sustain(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"sustain must be at least 1 evaluation, got {value}")
        return value

    @model_validator(mode="after")
    def _hysteresis(self) -> AlertRule:
        safe = self.clear_at <= self.fire_at if self.direction == "above" else None
        if safe is None:
            safe = self.clear_at >= self.fire_at
        if not safe:
            side = "at or below" if self.direction == "above" else "at or above"
            raise ValueError(
                f"clear_at {self.clear_at} must be {side} fire_at {self.fire_at} for a rule that "
                f"fires {self.direction} it, or the alert would flap"
            )
        return self


class MetricRef(Definition):
    """A user metric `f(labels, scores, rows) -> float` kept by name and source hash."""

    kind = "metric"

    name: str
    function: str  # the function's qualified name
    module: str
    code_hash: str


class Monitor(NamedDefinition):
    """What to watch for the model named `model` (every version): see docs/monitoring.md."""

    kind = "monitor"

    model: str
    window: timedelta = timedelta(hours=1)
    min_samples: int = 100
    drift_share: float = 0.5
    correction: Correction | None = None
    tests: dict[str, str] = PydanticField(default_factory=dict)
    thresholds: dict[str, float] = PydanticField(default_factory=dict)
    columns: tuple[str, ...] | None = None
    labels: LabelSource | None = None
    label_delay: timedelta = timedelta(0)
    score_output: str | None = None
    decision_threshold: float = 0.5
    top_k: int = 100
    metrics: tuple[MetricRef, ...] = ()
    alerts: tuple[AlertRule, ...] = ()
    _functions: dict[str, MetricFunction] = PrivateAttr(default_factory=dict)

    def __init__(self, /, **data: Any) -> None:
        functions = take_functions(data, "metrics", _metric_ref)
        super().__init__(**data)
        self._functions.update(functions)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return check_model_name(value, "a Monitor watches every version: no '@alias' or '/version'")

    @field_validator("window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError(f"window must be at least 1 second, got {value}")
        return value

    @field_validator("label_delay")
    @classmethod
    def _delay(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError(f"label_delay cannot be negative, got {value}")
        return value

    @model_validator(mode="after")
    def _numbers(self) -> Monitor:
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, got {self.min_samples}")
        if not 0 < self.drift_share <= 1:
            raise ValueError(f"drift_share must be in (0, 1], got {self.drift_share}")
        if not 0 <= self.decision_threshold <= 1:
            raise ValueError(f"decision_threshold must be in [0, 1], got {self.decision_threshold}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        for column, test in self.tests.items():
            if test not in TESTS and test not in EVIDENTLY_TESTS:
                raise ValueError(
                    f"tests[{column!r}] = {test!r}: use one of {', '.join(TESTS)} (or "
                    f"Evidently's {', '.join(EVIDENTLY_TESTS)})"
                )
        if self.columns == ():  # every window would be 'insufficient data', never judged
            raise ValueError("columns is empty: list the columns to test, or leave it out (all)")
        for column, threshold in self.thresholds.items():
            if not 0 < threshold < math.inf:  # NaN compares False: never drift, silently
                raise ValueError(
                    f"thresholds[{column!r}] = {threshold}: give a positive finite number (a "
                    "p-value such as 0.05 for ks, chi_squared and z_test; a distance such as 0.1)"
                )
        names = [rule.name for rule in self.alerts]
        if len(set(names)) != len(names):
            raise ValueError(f"alert rule names repeat: {names}")
        metric_names = [m.name for m in self.metrics]
        if len(set(metric_names)) != len(metric_names):
            raise ValueError(f"metric names repeat: {metric_names}")
        return self

    def bind(self, functions: dict[str, MetricFunction]) -> None:
        """Attach the repo's metric functions (by metric name), as loaded from the repo."""
        self._functions.update(functions)

    @property
    def metric_functions(self) -> dict[str, MetricFunction]:
        """The metric functions by name, when this object came from the repo (or was bound)."""
        return dict(self._functions)


def take_functions(
    data: dict[str, Any],
    field: str,
    ref: Callable[[object, dict[str, Callable[..., Any]], object], object],
) -> dict[str, Callable[..., Any]]:
    """Replace the repo functions listed in `data[field]` by their refs (`ref`), in place, and
    return the functions by name (a definition keeps them as runtime state, not as its value)."""
    functions: dict[str, Callable[..., Any]] = {}
    items = data.get(field)
    if isinstance(items, list | tuple):
        data[field] = tuple(ref(item, functions, data.get("name")) for item in items)
    return functions


def _metric_ref(
    item: object, functions: dict[str, MetricFunction], monitor: object
) -> MetricRef | object:
    return function_ref(
        item,
        functions,
        owner=f"Monitor {monitor!r}",
        holds="metrics",
        contract="f(labels, scores, rows) -> float",
    )


def function_ref(
    item: object,
    functions: dict[str, Callable[..., Any]],
    *,
    owner: str,
    holds: str,
    contract: str,
) -> MetricRef | object:
    """A repo function as a `MetricRef` (name, qualified name, module, code hash), kept in
    `functions` by name; a `MetricRef` or its dict (read back from the registry) as it is."""
    if isinstance(item, MetricRef | dict):
        return item
    if not callable(item):
        raise InvalidDefinition(
            f"{owner}: {holds} holds {item!r}; list functions {contract} defined in the repo"
        )
    name = getattr(item, "__name__", None)
    if not isinstance(name, str) or name == "<lambda>":
        raise InvalidDefinition(
            f"{owner}: {holds} must be named functions defined with def in the repo (the name is "
            "how the definition refers to it), not a lambda"
        )
    try:
        digest = code_hash(item)
    except (OSError, TypeError) as error:
        raise InvalidDefinition(
            f"{owner}: the source of {name!r} cannot be read ({error}); define it with def in a "
            "file of the repo"
        ) from None
    functions[name] = item
    module = inspect.getmodule(item)
    return MetricRef(
        name=name,
        function=getattr(item, "__qualname__", name),
        module=module.__name__ if module is not None else "",
        code_hash=digest,
    )
