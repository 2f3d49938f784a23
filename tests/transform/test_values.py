"""The on-demand value rule (transform/values.py): what each dtype accepts and stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from parity.definitions.types import (
    Array,
    Bool,
    Bytes,
    DType,
    Float32,
    Float64,
    Int32,
    Int64,
    String,
    UnixTimestamp,
)
from parity.transform.values import BadValue, conform, conform_column

PARIS = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("value", "dtype", "stored"),
    [
        (3, Float64, 3.0),
        (np.float64(0.25), Float64, 0.25),
        (float("nan"), Float64, None),
        (pd.NA, Int64, None),
        (pd.NaT, UnixTimestamp, None),
        (np.int64(7), Int64, 7),
        (4.0, Int64, 4),
        (np.bool_(True), Bool, True),
        ("x", String, "x"),
        (bytearray(b"ab"), Bytes, b"ab"),
        (0.1, Float32, float(np.float32(0.1))),
        (datetime(2026, 1, 1, 1, tzinfo=PARIS), UnixTimestamp, datetime(2026, 1, 1, tzinfo=UTC)),
        (np.array([1.0, np.nan]), Array(Float64), [1.0, None]),
        ((1, None), Array(Int32), [1, None]),
    ],
)
def test_values_are_stored_as_their_dtype(value: Any, dtype: DType, stored: Any) -> None:
    result = conform(value, dtype)
    assert result == stored and type(result) is type(stored)
    if stored is not None and not isinstance(stored, list):
        assert pa.array([result], type=dtype.to_arrow()).to_pylist() == [stored]  # offline


@pytest.mark.parametrize(
    ("value", "dtype", "reason"),
    [
        ("1.0", Float64, "not a Float64 value"),
        (True, Int64, "not an Int64 value"),
        (1.5, Int64, "not an Int64 value"),
        (2**63, Int64, "out of the Int64 range"),
        (2**31, Int32, "out of the Int32 range"),
        (float("-inf"), Float64, "infinite"),
        (1e39, Float32, "out of the Float32 range"),
        (1, Bool, "not a Bool value"),
        (b"x", String, "not a String value"),
        (datetime(2026, 1, 1), UnixTimestamp, "without a timezone"),
        ("2026-01-01", UnixTimestamp, "not a UnixTimestamp value"),
        (1.0, Array(Float64), "not an Array\\(Float64\\) value"),
    ],
)
def test_misfits_are_refused_with_the_reason(value: Any, dtype: DType, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        conform(value, dtype)


def test_a_column_names_the_first_bad_row() -> None:
    with pytest.raises(BadValue) as caught:
        conform_column([1.0, None, "x", "y"], Float64)
    assert (caught.value.index, caught.value.value) == (2, "x")
