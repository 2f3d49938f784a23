"""What a train function returned, checked before anything is registered: a model (not None),
fields of the declared types, a class the model server can import, input names that match the
feature service (never the label or its time), importance by input name. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity.definitions.training import TrainedModel
from parity.errors import TrainingFailed

if TYPE_CHECKING:
    from parity.definitions.training import TrainingJob


class NotRetryable(TrainingFailed):
    """A failure a retry cannot fix (the repo or the data must change first)."""


def as_trained(returned: Any, function: str) -> TrainedModel:
    """What a train function returned as a TrainedModel; NotRetryable for no model."""
    if isinstance(returned, tuple) and len(returned) == 2:
        model, metrics = returned
        if not isinstance(metrics, Mapping):
            raise NotRetryable(
                f"train function '{function}' returned (model, {type(metrics).__name__}); the "
                "second item must be a dict of metric name -> number"
            )
        returned = TrainedModel(model=model, metrics=metrics)
    if not isinstance(returned, TrainedModel):
        kind = "None" if returned is None else type(returned).__name__
        raise NotRetryable(
            f"train function '{function}' returned {kind}: it must return "
            "TrainedModel(model=..., metrics=...) or a (model, metrics) tuple"
        )
    if returned.model is None:
        raise NotRetryable(
            f"train function '{function}' returned no model (model=None); nothing was registered"
        )
    check_fields(returned, function)
    return returned


def check_fields(trained: TrainedModel, function: str) -> None:
    """The TrainedModel's fields have the types it declares (a list of params failed later as an
    untyped TypeError, and was retried)."""
    expected: dict[str, tuple[type, ...]] = {
        "metrics": (Mapping,),
        "params": (Mapping,),
        "importance": (Mapping, type(None)),
        "flavor": (str, type(None)),
        "description": (str,),
    }
    for name, types in expected.items():
        value = getattr(trained, name)
        if not isinstance(value, types):
            wanted = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            raise NotRetryable(
                f"train function '{function}' gave TrainedModel.{name} of type "
                f"{type(value).__name__}: give a {wanted}"
            )


def check_importable(model: Any, repo_root: Path) -> None:
    """A model whose class lives in a repo file could not be loaded anywhere else (the model
    server does not import the repo, and the loader unloads it): refused with the fix."""
    import sys

    kind = type(model)
    module = sys.modules.get(kind.__module__)
    path = getattr(module, "__file__", None)  # none for builtins: the flavor judges those
    if module is None or (path and Path(path).resolve().is_relative_to(repo_root.resolve())):
        raise NotRetryable(
            f"the model's class {kind.__qualname__} is defined in the repo "
            f"(module '{kind.__module__}'), so the model server could not import it to load the "
            "model; define it in an installed package (or use a library's estimator)"
        )


def check_inputs(
    trained: TrainedModel,
    features: tuple[str, ...],
    label_columns: list[str],
    job: TrainingJob,
) -> tuple[str, ...]:
    """The model's input names (from its sample input); each must be a feature of the job's
    feature service or a column of the label source (a request-time input such as the amount),
    and never the label itself."""
    names = _input_names(trained.sample_input, job.train.name)
    allowed = set(features) | set(label_columns)
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise NotRetryable(
            f"the model's inputs {unknown} are neither features of feature service "
            f"'{job.feature_service}' nor columns of the label source: its signature does not "
            "match the feature service. Train on the service's features (and request-time "
            "columns of the labels) only"
        )
    if job.labels.label in names:
        raise NotRetryable(
            f"the model takes the label '{job.labels.label}' as an input: it would score "
            "with the answer. Drop it from the model's inputs"
        )
    known_at = job.labels.label_timestamp_field
    if known_at is not None and known_at in names:
        raise NotRetryable(
            f"the model takes the label's time '{known_at}' (labels.label_timestamp_field) as an "
            "input: when a label became known tells the label, and no request has it. Drop it "
            "from the model's inputs"
        )
    return names


def check_importance(
    importance: Mapping[str, float] | None, function: str, inputs: tuple[str, ...]
) -> None:
    """Importance weights are finite, non-negative numbers by input name (a retrain policy
    weighs drifted features by them: a NaN would poison the decision, and a misspelt name would
    silently weigh the real feature zero)."""
    import math

    for name, weight in (importance or {}).items():
        ok = isinstance(weight, int | float) and not isinstance(weight, bool)
        if not isinstance(name, str) or not ok or not math.isfinite(weight) or weight < 0:
            raise NotRetryable(
                f"train function '{function}' gave importance[{name!r}] = {weight!r}: give a "
                "finite, non-negative number per feature name"
            )
        if name not in inputs:
            raise NotRetryable(
                f"train function '{function}' gave importance[{name!r}], which is not one of "
                f"the model's inputs {list(inputs)}: a retrain policy would match it to no "
                "input. Name the inputs as the sample input does"
            )


def _input_names(sample: Any, function: str) -> tuple[str, ...]:
    columns = getattr(sample, "columns", None)
    if columns is None:
        raise NotRetryable(
            f"train function '{function}' gave a sample_input of type {type(sample).__name__}: "
            "give a pandas DataFrame whose columns name the model's inputs, so its signature "
            "can be checked against the feature service"
        )
    if len(columns) == 0:
        raise NotRetryable(
            f"train function '{function}' gave a sample_input with no columns: give a pandas "
            "DataFrame whose columns name the model's inputs"
        )
    return tuple(str(name) for name in columns)
