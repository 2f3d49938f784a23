"""The pure helpers of batch predictions: feature columns handed to the model exactly as the model
server hands an online read's values (np.asarray of Python values), the request-time input rules,
future times and the output rows."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity.errors import InvalidPredictionInput
from parity.inference.request_fields import SIGNATURE, FieldRule
from parity.jobs.batch_rows import as_sent, check_inputs, first_after, output_batch

TYPES = {
    "int64": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "int32": (pa.int32(), st.integers(-(2**31), 2**31 - 1)),
    "float64": (pa.float64(), st.floats(allow_nan=True, allow_infinity=True)),
    "float32": (pa.float32(), st.floats(width=32, allow_nan=True, allow_infinity=True)),
    "bool": (pa.bool_(), st.booleans()),
    "string": (pa.string(), st.text(max_size=5)),
}


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(sorted(TYPES)),
    data=st.data(),
    with_nulls=st.booleans(),
)
def test_columns_reach_the_model_as_the_server_builds_them(
    kind: str, data: st.DataObject, with_nulls: bool
) -> None:
    arrow_type, values = TYPES[kind]
    element = st.one_of(st.none(), values) if with_nulls else values
    column = pa.array(data.draw(st.lists(element, min_size=1, max_size=20)), arrow_type)
    ours = np.asarray(as_sent(column))
    servers = np.asarray(column.to_pylist())  # what the server's np.asarray(values) sees
    assert ours.dtype == servers.dtype
    assert ours.shape == servers.shape
    for mine, theirs in zip(ours.tolist(), servers.tolist(), strict=True):
        if isinstance(theirs, float) and math.isnan(theirs):
            assert isinstance(mine, float) and math.isnan(mine)
        else:
            assert mine == theirs and type(mine) is type(theirs)


def _rule(kind: str, dtype: str = "float64") -> FieldRule:
    return FieldRule("amount", dtype, kind, SIGNATURE)


@pytest.mark.parametrize(
    ("values", "rule", "message"),
    [
        (pa.array([1.0, math.nan]), _rule("float"), "is nan at entity row 11"),
        (pa.array([1.0, math.inf]), _rule("float"), "is inf at entity row 11"),
        (pa.array([1.0, None]), _rule("float"), "null at entity row 11"),
        (pa.array([1.0, 1e39]), _rule("float", "float32"), "at entity row 11"),
        (pa.array(["a", "b"]), _rule("float"), "is string"),
        (pa.array([1, 300]), _rule("int", "int8"), "int8 range .* entity row 11"),
        (pa.array([1.5, 2.0]), _rule("int", "int64"), "is double"),
        (pa.array([True, 1 == 1]), _rule("float"), "is bool"),
    ],
)
def test_request_inputs_follow_the_v1_rules_naming_the_entity_row(
    values: pa.Array, rule: FieldRule, message: str
) -> None:
    batch = pa.RecordBatch.from_arrays([values], names=["amount"])
    with pytest.raises(InvalidPredictionInput, match=message):
        check_inputs(batch, {"amount": rule}, offset=10)


def test_valid_request_inputs_pass() -> None:
    batch = pa.RecordBatch.from_arrays(
        [pa.array([1, 2], pa.int64()), pa.array([0.5, -3.0])], names=["count", "amount"]
    )
    rules = {"count": _rule("int", "int64"), "amount": _rule("float")}
    check_inputs(batch, rules, offset=0)  # no error: integers are valid floats too


def test_first_after_finds_the_first_late_row() -> None:
    stamps = pa.array(
        [datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)] * 2,
        pa.timestamp("us", tz="UTC"),
    )
    limit = int(datetime(2026, 1, 2, tzinfo=UTC).timestamp() * 1_000_000)
    assert first_after(stamps, limit) == 1
    assert first_after(stamps, limit * 2) is None


def test_output_rows_are_keys_time_and_each_output() -> None:
    batch = pa.RecordBatch.from_pydict(
        {
            "driver_id": [1, 2],
            "amount": [1.0, 2.0],
            "event_timestamp": pa.array([0, 1], pa.timestamp("us", tz="UTC")),
        }
    )
    proba = np.array([[0.25, 0.75], [0.5, 0.5]])
    out = output_batch(batch, ["driver_id"], {"label": np.array([1, 0]), "proba": proba})
    assert out.schema.names == ["driver_id", "event_timestamp", "label", "proba"]
    assert out.column("proba").to_pylist() == [[0.25, 0.75], [0.5, 0.5]]
    assert out.column("label").to_pylist() == [1, 0]
