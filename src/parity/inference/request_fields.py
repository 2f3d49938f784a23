"""The declared schema of a `/v1/models/{m}/predict` request and its validation: which fields a
request may carry (entity keys, request-time inputs), and what each request-time value must be.

Pure: takes the resolved retrieval request and the model signature, returns values or raises
`InvalidRequestField`. Entity keys are checked by the online read; only their names are known here.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from parity.errors import InvalidRequestField

if TYPE_CHECKING:
    from parity.models.flavors import Signature
    from parity.offline.request import RetrievalRequest

_INT_RANGES = {
    "Int32": (-(2**31), 2**31 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    **{f"int{bits}": (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) for bits in (8, 16, 32, 64)},
    **{f"uint{bits}": (0, 2**bits - 1) for bits in (8, 16, 32, 64)},
}
_FLOAT32_MAX = 3.4028234663852886e38
_NUMPY_KINDS = {"f": "float", "i": "int", "u": "int", "b": "bool", "O": "string", "U": "string"}
_PARITY_KINDS = {
    "Int32": "int",
    "Int64": "int",
    "Float32": "float",
    "Float64": "float",
    "String": "string",
    "Bytes": "string",
    "Bool": "bool",
    "UnixTimestamp": "timestamp",
}
_NEEDS = {
    "int": "a whole number (JSON integer)",
    "float": "a finite number",
    "bool": "true or false",
    "string": "a string",
    "timestamp": "an ISO 8601 string or epoch seconds",
}


SIGNATURE = "the model signature"  # FieldRule.by of an input no feature view or request source has


@dataclass(frozen=True)
class FieldRule:
    """What one request-time input must be: `dtype` as declared, checked as `kind` (int, float,
    bool, string, timestamp, any), each element if `array`; `by` says who declared it."""

    name: str
    dtype: str
    kind: str
    by: str
    array: bool = False


@dataclass(frozen=True)
class RequestSchema:
    """The fields a predict request for one model version may carry."""

    model: str
    entity_keys: tuple[str, ...]
    inputs: Mapping[str, FieldRule]

    def check(self, columns: Mapping[str, Sequence[Any]]) -> None:
        """Refuse unknown or missing fields, uneven columns and any request-time value that is
        not its declared type (the first problem found, naming the field and row)."""
        unknown = sorted(set(columns) - set(self.entity_keys) - set(self.inputs))
        if unknown:
            raise InvalidRequestField(
                f"request field {_shown(unknown[0])} is not one model {self.model} takes; it "
                f"takes entity keys {list(self.entity_keys)} and request-time inputs "
                f"{list(self.inputs)}"
            )
        missing = [name for name in self.inputs if name not in columns]
        if missing:
            rule = self.inputs[missing[0]]
            raise InvalidRequestField(
                f"request field '{rule.name}' is missing: model {self.model} needs it "
                f"({rule.dtype}, declared by {rule.by}); send it in entities or request_context"
            )
        lengths = {len(column) for column in columns.values()}
        if len(lengths) > 1:
            shown = {name: len(column) for name, column in columns.items()}
            raise InvalidRequestField(f"request columns must all have the same length: {shown}")
        if lengths == {0}:
            raise InvalidRequestField("the request has no rows; send at least one entity row")
        for name, rule in self.inputs.items():
            for row, value in enumerate(columns[name]):
                _check_value(rule, row, value)

    def for_read(self, columns: Mapping[str, Sequence[Any]]) -> dict[str, Sequence[Any]]:
        """The columns the online read takes: all but the inputs only the model signature
        declares (the read refuses columns that are not keys or request fields)."""
        return {
            name: column
            for name, column in columns.items()
            if name not in self.inputs or self.inputs[name].by != SIGNATURE
        }


def request_schema(
    model: str, request: RetrievalRequest, signature: Signature | None
) -> RequestSchema:
    """The schema of a predict request: entity keys of the service's views, the request sources
    of its on-demand views, and signature inputs that no feature of the service provides."""
    inputs: dict[str, FieldRule] = {}
    for demand in request.on_demand:
        source = demand.view.request
        if source is not None:
            for field in source.fields:
                inputs[field.name] = _parity_rule(field.name, str(field.dtype), source.name)
    keys = request.join_keys
    if signature is not None and signature.input_kind == "dataframe":
        features = set(request.output_names) | {
            name for demand in request.on_demand for name in demand.output_names
        }
        for spec in signature.inputs:
            if spec.name not in features and spec.name not in keys and spec.name not in inputs:
                kind = _numpy_kind(spec.dtype)
                inputs[spec.name] = FieldRule(spec.name, spec.dtype, kind, SIGNATURE)
    return RequestSchema(model, keys, inputs)


def _parity_rule(name: str, dtype: str, source: str) -> FieldRule:
    by = f"request source '{source}'"
    if dtype.startswith("Array(") and dtype.endswith(")"):
        return FieldRule(name, dtype, _PARITY_KINDS.get(dtype[6:-1], "any"), by, array=True)
    return FieldRule(name, dtype, _PARITY_KINDS.get(dtype, "any"), by)


def _numpy_kind(dtype: str) -> str:
    try:
        import numpy as np

        return _NUMPY_KINDS.get(np.dtype(dtype).kind, "any")
    except TypeError:
        return "any"


def _check_value(rule: FieldRule, row: int, value: Any) -> None:
    where = f"request field '{rule.name}' row {row}"
    declared = f"{rule.dtype}, declared by {rule.by}"
    if value is None:
        raise InvalidRequestField(
            f"{where} is null; request-time inputs take no nulls ({declared}): send a value"
        )
    if not rule.array:
        if isinstance(value, list | dict):
            raise InvalidRequestField(
                f"{where} is a {'list' if isinstance(value, list) else 'object'}; it must be "
                f"one value per row ({declared})"
            )
        _check_scalar(rule, where, declared, value)
        return
    if not isinstance(value, list):
        raise InvalidRequestField(f"{where} is {_shown(value)}; it must be a list ({declared})")
    for index, element in enumerate(value):
        if element is None or isinstance(element, list | dict):
            raise InvalidRequestField(
                f"{where} element {index} is {_shown(element)}; it must be "
                f"{_NEEDS.get(rule.kind, 'a value')} ({declared})"
            )
        _check_scalar(rule, f"{where} element {index}", declared, element)


def _check_scalar(rule: FieldRule, where: str, declared: str, value: Any) -> None:
    kind = rule.kind
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind == "any":
        return
    if kind == "int":
        ok = is_int
    elif kind == "float":
        ok = is_int or (isinstance(value, float) and math.isfinite(value))
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "string":
        ok = isinstance(value, str)
    else:
        ok = is_int or isinstance(value, str)
    if not ok:
        raise InvalidRequestField(
            f"{where} is {_shown(value)}; it must be {_NEEDS[kind]} ({declared})"
        )
    low, high = _INT_RANGES.get(rule.dtype.removeprefix("Array(").removesuffix(")"), (None, None))
    if is_int and low is not None and high is not None and not low <= value <= high:
        raise InvalidRequestField(f"{where} is outside the {rule.dtype} range [{low}, {high}]")
    limit = _FLOAT32_MAX if rule.dtype in ("Float32", "float32") else sys.float_info.max
    if kind == "float" and abs(value) > limit:
        raise InvalidRequestField(f"{where} is outside the {rule.dtype} range")


def _shown(value: Any) -> str:
    """A value of the caller's own request, short enough for an error message."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} (not a finite number)"
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    kind = "" if isinstance(value, str) else f" ({type(value).__name__})"
    return (text if len(text) <= 40 else f"{text[:40]}...") + kind
