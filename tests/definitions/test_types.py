from __future__ import annotations

import pyarrow as pa
import pytest

from parity import Array, Bool, Bytes, DType, Float32, Float64, Int32, Int64, String, UnixTimestamp

CASES = [
    (Int32, pa.int16(), True),
    (Int32, pa.int64(), False),
    (Int64, pa.int32(), True),
    (Int64, pa.uint64(), False),
    (Float32, pa.float64(), False),
    (Float64, pa.int64(), True),
    (Float64, pa.string(), False),
    (String, pa.large_string(), True),
    (Bool, pa.bool_(), True),
    (Bool, pa.int8(), False),
    (Bytes, pa.binary(), True),
    (UnixTimestamp, pa.timestamp("ns", tz="UTC"), True),
    (UnixTimestamp, pa.int64(), False),
    (Array(Float32), pa.list_(pa.float32()), True),
    (Array(Float32), pa.list_(pa.string()), False),
    (Array(Int64), pa.int64(), False),
]


@pytest.mark.parametrize(("dtype", "arrow_type", "ok"), CASES)
def test_dtype_accepts_only_lossless_arrow_columns(
    dtype: DType, arrow_type: pa.DataType, ok: bool
) -> None:
    assert dtype.accepts_arrow(arrow_type) is ok


@pytest.mark.parametrize(
    ("dtype", "arrow_type"),
    [
        (Int64, pa.int64()),
        (String, pa.string()),
        (UnixTimestamp, pa.timestamp("us", tz="UTC")),
        (Array(Bool), pa.list_(pa.bool_())),
    ],
)
def test_dtype_storage_type(dtype: DType, arrow_type: pa.DataType) -> None:
    assert dtype.to_arrow() == arrow_type
    assert dtype.accepts_arrow(dtype.to_arrow())
