"""Pure helpers of batch predictions: which entity columns a model needs, the request-time input
checks (the `/v1` rules, on Arrow columns), feature values as the model server hands them to the
model, and the output batch. Takes values, returns values; no I/O, no store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from parity.errors import InvalidPredictionInput, PredictFailed

if TYPE_CHECKING:
    from parity.inference.request_fields import FieldRule, RequestSchema
    from parity.offline.request import RetrievalRequest

TIMESTAMP = "event_timestamp"
_FLOAT32_MAX = 3.4028234663852886e38
_INT_RANGES = {
    "Int32": (-(2**31), 2**31 - 1),
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
}


@dataclass(frozen=True)
class Columns:
    """What a batch prediction reads: the entity columns it keeps from the input (keys, then
    request-time inputs), the feature columns in the order the model server builds them, and
    the request-time inputs' rules."""

    keys: tuple[str, ...]
    inputs: tuple[str, ...]
    features: tuple[str, ...]
    rules: Mapping[str, FieldRule]

    @property
    def entity(self) -> tuple[str, ...]:
        return (*self.keys, *self.inputs)


def columns_of(request: RetrievalRequest, schema: RequestSchema) -> Columns:
    """The columns of one model's batch prediction: `request` resolves its feature service,
    `schema` is what its `/v1` predict request may carry."""
    hidden = set(request.hidden)
    features = [name for name in request.output_names if name not in hidden]
    features += [name for demand in request.on_demand for name in demand.output_names]
    keys = tuple(schema.entity_keys)
    inputs = tuple(name for name in schema.inputs if name not in keys)
    return Columns(keys, inputs, tuple(features), dict(schema.inputs))


def missing_columns(columns: Columns, present: Sequence[str], model: str) -> None:
    """Refuse entities without a key or request-time input column, naming it."""
    for name in columns.entity:
        if name not in present:
            if name in columns.keys:
                what = "an entity key of its feature service"
            else:
                rule = columns.rules[name]
                what = f"a request-time input ({rule.dtype}, declared by {rule.by})"
            raise InvalidPredictionInput(
                f"entities have no column '{name}': model {model} needs it, {what}; add it "
                f"(the entities have {sorted(present)})"
            )


def check_inputs(batch: pa.RecordBatch, rules: Mapping[str, FieldRule], offset: int) -> None:
    """The `/v1` request-time input rules on Arrow columns: no nulls, the declared kind, finite
    numbers in range. Row numbers count entity rows from 0 (`offset` is the batch's first)."""
    for name, rule in rules.items():
        if name in batch.schema.names:
            _check_column(batch.column(name), rule, offset)


def _check_column(column: pa.Array, rule: FieldRule, offset: int) -> None:
    where = f"request-time input '{rule.name}'"
    declared = f"{rule.dtype}, declared by {rule.by}"
    if column.null_count:
        row = offset + int(pc.index(column.is_null(), True).as_py())
        raise InvalidPredictionInput(f"{where} is null at entity row {row} ({declared}): fill it")
    values = column
    if rule.array:
        if not (pat.is_list(column.type) or pat.is_large_list(column.type)):
            raise InvalidPredictionInput(
                f"{where} is {column.type}, not a list ({declared}); convert the column"
            )
        values = pc.list_flatten(column)
        if values.null_count:
            raise InvalidPredictionInput(f"{where} holds a null element ({declared})")
    kind = values.type
    if not _kind_accepts(rule.kind, kind):
        raise InvalidPredictionInput(
            f"{where} is {kind}, but model needs {rule.kind} values ({declared}); convert "
            "the column"
        )
    if pat.is_floating(kind) and len(values):
        bad = pc.invert(pc.is_finite(values))
        limit = _FLOAT32_MAX if rule.dtype in ("Float32", "float32") else None
        if limit is not None:
            bad = pc.or_(bad, pc.greater(pc.abs(values), limit))
        if pc.any(bad).as_py():
            row = int(pc.index(bad, True).as_py())
            shown = values[row].as_py()
            raise InvalidPredictionInput(
                f"{where} is {shown} at {_at(rule, offset, row)}: it must be a finite number "
                f"in range ({declared}); drop or fix the row"
            )
    low, high = _INT_RANGES.get(rule.dtype.removeprefix("Array(").removesuffix(")"), (None, None))
    if pat.is_integer(kind) and len(values) and low is not None and high is not None:
        out = pc.or_(pc.less(values, low), pc.greater(values, high))
        if pc.any(out).as_py():
            row = int(pc.index(out, True).as_py())
            raise InvalidPredictionInput(
                f"{where} is outside the {rule.dtype} range [{low}, {high}] at "
                f"{_at(rule, offset, row)}"
            )


def _at(rule: FieldRule, offset: int, row: int) -> str:
    return "one element" if rule.array else f"entity row {offset + row}"


def _kind_accepts(kind: str, arrow: pa.DataType) -> bool:
    if kind == "int":
        return bool(pat.is_integer(arrow))
    if kind == "float":
        return bool(pat.is_integer(arrow) or pat.is_floating(arrow))
    if kind == "bool":
        return bool(pat.is_boolean(arrow))
    if kind == "string":
        return bool(pat.is_string(arrow) or pat.is_large_string(arrow))
    if kind == "timestamp":
        return bool(pat.is_integer(arrow) or pat.is_string(arrow) or pat.is_timestamp(arrow))
    return True


def as_sent(column: pa.Array | pa.ChunkedArray) -> Any:
    """A column as the model server holds it after an online read: `np.asarray` of it gives what
    `np.asarray` of its Python values (`to_pylist()`) gives, which is what the server's row
    building does. Numbers and booleans without nulls skip the Python objects."""
    kind = column.type
    if column.null_count == 0:
        if pat.is_integer(kind) and not pat.is_uint64(kind):
            return column.to_numpy().astype(np.int64, copy=False)
        if pat.is_floating(kind):
            return column.to_numpy().astype(np.float64, copy=False)
        if pat.is_boolean(kind):
            return column.to_numpy(zero_copy_only=False)
    return column.to_pylist()


def without_features(batch: pa.RecordBatch, features: Sequence[str]) -> int:
    """Rows of `batch` where every feature is null (no feature row at or before their time)."""
    if not features or batch.num_rows == 0:
        return 0
    empty = batch.column(features[0]).is_null()
    for name in features[1:]:
        empty = pc.and_(empty, batch.column(name).is_null())
    return int(pc.sum(empty).as_py() or 0)


def first_after(times: pa.Array, limit_us: int) -> int | None:
    """The index of the first time after `limit_us` (µs since the epoch, UTC), or None."""
    micros = times.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    late = pc.greater(micros, limit_us)
    if not pc.any(late).as_py():
        return None
    return int(pc.index(late, True).as_py())


def output_batch(
    batch: pa.RecordBatch, keys: Sequence[str], outputs: Mapping[str, np.ndarray[Any, Any]]
) -> pa.RecordBatch:
    """The rows written: entity keys, event_timestamp, then each model output."""
    arrays = [batch.column(k) for k in keys] + [batch.column(TIMESTAMP)]
    names = [*keys, TIMESTAMP]
    for name, values in outputs.items():
        arrays.append(_output_array(name, values))
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _output_array(name: str, values: np.ndarray[Any, Any]) -> pa.Array:
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    try:
        if values.ndim == 1:
            return pa.array(values, from_pandas=False)
        if values.ndim == 2:  # e.g. predict_proba: one list of class scores per row
            return pa.array(list(values))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
        raise PredictFailed(
            f"model output '{name}' cannot be stored as one column ({error}): its values must be "
            "of one type (numbers, booleans or text); no output was written"
        ) from None
    raise InvalidPredictionInput(
        f"model output '{name}' has shape {list(values.shape)}; batch predictions write one "
        "value or one list per row"
    )


def empty_output_schema(
    entity: pa.Schema, keys: Sequence[str], outputs: Mapping[str, pa.DataType]
) -> pa.Schema:
    """The output file's columns when there is no row: keys as the entities type them, the
    timestamp as UTC microseconds, then each output with its Arrow type."""
    fields = [entity.field(k) for k in keys]
    fields.append(pa.field(TIMESTAMP, pa.timestamp("us", tz="UTC")))
    fields += [pa.field(name, kind) for name, kind in outputs.items()]
    return pa.schema(fields)
