"""Column-wise encoding (online/columns.py) against the row-by-row encoding it replaces
(rows_from_columns + encode_value + encode_payload): the same bytes for every row."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import Entity, FeatureView, Field, FileSource, Float32, Float64, Int64, String
from parity.definitions import DType
from parity.online.columns import EncodedRows, encode_rows, hex_of
from parity.online.encoding import encode_payload, encode_value, rows_from_columns

account = Entity(name="account", join_keys=["account_id"])
device = Entity(name="device", join_keys=["device_id"], value_type=String)
SPECIAL = [math.nan, -math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 1.7976931348623157e308]


def view_of(
    features: dict[str, DType], entities: list[Entity] | None = None, ttl: timedelta | None = None
) -> FeatureView:
    return FeatureView(
        name="v",
        entities=entities or [account],
        schema=[Field(name=name, dtype=dtype) for name, dtype in features.items()],
        source=FileSource(path="v.parquet"),
        ttl=ttl,
    )


def oracle(view: FeatureView, batch: pa.RecordBatch) -> list[tuple[Any, ...]]:
    rows = rows_from_columns(view, batch.to_pydict())
    return [
        (
            r.entity_key,
            r.event_ts,
            r.created_ts,
            r.expires_at,
            encode_payload(r.values),
            encode_value(r),
        )
        for r in rows
    ]


def encoded(rows: EncodedRows) -> list[tuple[Any, ...]]:
    keys = rows.entity_keys()
    assert rows.hex_keys(b"<", b">") == [b"<" + key.hex().encode() + b">" for key in keys]
    assert len(rows.head(2)) == min(2, len(rows))
    assert rows.head(2).values() == rows.values()[:2]
    return list(
        zip(
            keys,
            rows.event_ts,
            rows.created_ts,
            rows.expires_at,
            rows.payloads(),
            rows.values(),
            strict=True,
        )
    )


def batch_of(columns: dict[str, pa.Array]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(columns)


def times(n: int, base: int = 1_700_000_000_000_000) -> dict[str, pa.Array]:
    return {
        "__ts": pa.array([base + 7 * i - 3 for i in range(n)], pa.int64()),
        "__created": pa.array([-(1 << 63)] + [base + i for i in range(1, n)], pa.int64()),
    }


floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(SPECIAL)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.lists(floats, min_size=3, max_size=3), min_size=1, max_size=40),
    keys=st.lists(st.integers(-(1 << 63), (1 << 63) - 1), min_size=40, max_size=40),
    stamps=st.lists(st.integers(-(1 << 62), 1 << 62), min_size=80, max_size=80),
)
def test_float_features_encode_as_row_by_row(
    values: list[list[float]], keys: list[int], stamps: list[int]
) -> None:
    """The vectorized path: NaN (with its sign), infinities, -0.0, subnormals, any int64 key and
    any event or created time give the bytes msgpack gives row by row."""
    n = len(values)
    view = view_of({"a": Float64, "b": Float64, "c": Float64}, ttl=timedelta(hours=3))
    columns = {
        "account_id": pa.array(keys[:n], pa.int64()),
        "__ts": pa.array(stamps[:n], pa.int64()),
        "__created": pa.array(stamps[40 : 40 + n], pa.int64()),
        **{
            name: pa.array([row[i] for row in values], pa.float64()) for i, name in enumerate("abc")
        },
    }
    batch = batch_of(columns)
    assert encoded(encode_rows(view, batch)) == oracle(view, batch)


def test_float32_and_many_features_take_the_vectorized_path_with_equal_bytes() -> None:
    """Float32 values pack as msgpack doubles; more than 15 features take a map16 header."""
    names = {f"f{i:02d}": (Float32 if i % 2 else Float64) for i in range(20)}
    view = view_of(names)
    n = 9
    columns: dict[str, pa.Array] = {
        "account_id": pa.array(range(-4, n - 4), pa.int32()),
        **times(n),
    }
    for i, name in enumerate(names):
        kind = pa.float32() if i % 2 else pa.float64()
        columns[name] = pa.array([SPECIAL[(i + j) % len(SPECIAL)] for j in range(n)], kind)
    batch = batch_of(columns)
    assert encoded(encode_rows(view, batch)) == oracle(view, batch)


@pytest.mark.parametrize(
    ("features", "columns"),
    [
        # a null among floats: the row-by-row path (nil is one byte, not nine)
        ({"a": Float64, "b": Float64}, {"a": [1.5, None, math.nan], "b": [None, None, None]}),
        # ints, strings, bools, lists: msgpack's variable widths
        ({"n": Int64, "s": String}, {"n": [0, -1, 1 << 40], "s": ["", "é", None]}),
    ],
)
def test_other_features_encode_as_row_by_row(
    features: dict[str, DType], columns: dict[str, list[Any]]
) -> None:
    view = view_of(features)
    arrays = {"account_id": pa.array([3, 1, 2], pa.int64()), **times(3)}
    arrays |= {name: pa.array(values) for name, values in columns.items()}
    batch = batch_of(arrays)
    assert encoded(encode_rows(view, batch)) == oracle(view, batch)


def test_string_composite_and_unsigned_keys_encode_as_row_by_row() -> None:
    view = view_of({"a": Float64}, entities=[account, device])
    batch = batch_of(
        {
            "account_id": pa.array([1, 1, 2], pa.int64()),
            "device_id": pa.array(["a", "bb", "é"]),
            **times(3),
            "a": pa.array([1.0, math.nan, -0.0]),
        }
    )
    assert encoded(encode_rows(view, batch)) == oracle(view, batch)
    unsigned = view_of({"a": Float64})
    big = batch_of(
        {"account_id": pa.array([1, 2], pa.uint32()), **times(2), "a": pa.array([1.0, 2.0])}
    )
    assert encoded(encode_rows(unsigned, big)) == oracle(unsigned, big)


def test_hex_of_equals_bytes_hex_for_equal_and_mixed_widths() -> None:
    same = [bytes([i, 255 - i, 16]) for i in range(256)]
    mixed = [b"", b"\x00", b"\xff\x10"]
    assert hex_of(same) == [item.hex().encode() for item in same]
    assert hex_of(mixed) == [b"", b"00", b"ff10"]
    assert hex_of([]) == []
