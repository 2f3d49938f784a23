"""The request-field checks of /v1 predict as pure functions: each declared dtype against values a
JSON body can carry (hand-worked table; the HTTP behaviour is in test_predict_request_fields)."""

from __future__ import annotations

from typing import Any

import pytest

from parity.errors import InvalidRequestField
from parity.inference.request_fields import FieldRule, RequestSchema

KINDS = {
    "Float64": "float",
    "Float32": "float",
    "float64": "float",
    "Int32": "int",
    "Int64": "int",
    "uint8": "int",
    "Bool": "bool",
    "String": "string",
    "UnixTimestamp": "timestamp",
}


VALID: dict[str, Any] = {
    "Bool": True,
    "String": "s",
    "Array(Float64)": [],
    "Array(Int64)": [1],
}
VALID.update({dtype: 0 for dtype in KINDS if dtype not in VALID})


def schema_for(dtype: str) -> RequestSchema:
    array = dtype.startswith("Array(")
    element = dtype[6:-1] if array else dtype
    rule = FieldRule("x", dtype, KINDS[element], "a test", array=array)
    return RequestSchema("m/1", ("id",), {"x": rule})


@pytest.mark.parametrize(
    ("dtype", "value"),
    [
        ("Float64", 1.5),
        ("Float64", 3),
        ("Float64", -1.7976931348623157e308),
        ("Float32", 3.0e38),
        ("Int32", -(2**31)),
        ("Int64", 2**63 - 1),
        ("uint8", 255),
        ("Bool", False),
        ("String", ""),
        ("UnixTimestamp", "2026-01-01T00:00:00Z"),
        ("UnixTimestamp", 1767225600),
        ("Array(Float64)", [1.0, 2]),
        ("Array(String)", []),
    ],
)
def test_values_of_the_declared_type_pass(dtype: str, value: Any) -> None:
    schema_for(dtype).check({"id": [1], "x": [value]})


@pytest.mark.parametrize(
    ("dtype", "value", "says"),
    [
        ("Float64", float("inf"), "not a finite number"),
        ("Float64", float("nan"), "not a finite number"),
        ("Float64", 10**400, "outside the Float64 range"),
        ("Float64", True, "finite number"),
        ("Float64", "1.5", "finite number"),
        ("Float64", [1.0], "one value per row"),
        ("Float64", {"a": 1}, "one value per row"),
        ("Float64", None, "is null"),
        ("Float32", 3.5e38, "outside the Float32 range"),
        ("Int32", 2**31, "outside the Int32 range"),
        ("Int64", -(2**63) - 1, "outside the Int64 range"),
        ("uint8", -1, "outside the uint8 range"),
        ("Int64", 1.0, "whole number"),
        ("Int64", False, "whole number"),
        ("Bool", 1, "true or false"),
        ("String", 5, "a string"),
        ("UnixTimestamp", 1.5, "ISO 8601"),
        ("Array(Float64)", 1.0, "must be a list"),
        ("Array(Float64)", [1.0, None], "element 1"),
        ("Array(Float64)", [[1.0]], "element 0"),
        ("Array(Int64)", [1, 2.5], "element 1"),
    ],
)
def test_values_not_of_the_declared_type_are_refused_naming_field_and_row(
    dtype: str, value: Any, says: str
) -> None:
    with pytest.raises(InvalidRequestField) as refused:
        schema_for(dtype).check({"id": [1, 2], "x": [VALID[dtype], value]})
    assert "'x' row 1" in str(refused.value)
    assert says in str(refused.value)


def test_a_long_value_is_cut_in_the_message() -> None:
    with pytest.raises(InvalidRequestField) as refused:
        schema_for("Float64").check({"id": [1], "x": ["y" * 10_000]})
    assert len(str(refused.value)) < 200
