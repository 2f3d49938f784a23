"""Pushed values as the view declares them: NaN is a null (missing, as pandas writes it), an
infinity is refused, and the safe casts a JSON client needs (an integer into Int32 within its
range, a number into Float32 within its range, base64 text into Bytes when asked) are made.

Every refusal names the column and the row; nothing else is converted, so a value is stored as
sent or the push is refused.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as t

from parity.definitions.types import DType
from parity.errors import PushError

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_FLOAT32_MAX = 3.4028234663852886e38


class _BadValue(Exception):
    """The value at `index` (of the array being checked) cannot be stored."""

    def __init__(self, index: int, why: str) -> None:
        super().__init__(why)
        self.index = index
        self.why = why


def fit_column(
    column: pa.ChunkedArray, name: str, dtype: DType, view: str, bytes_as_base64: bool
) -> pa.ChunkedArray:
    """`column` with NaN as null, infinities refused and a safe cast to `dtype` where its type
    is not already accepted; PushError naming the column (and row) otherwise."""
    if column.null_count == len(column):
        return column  # no values (or no rows): nothing to check or convert
    array = column.combine_chunks()
    try:
        array = _finite(array)
        if not dtype.accepts_arrow(array.type):
            cast = _cast(array, dtype, bytes_as_base64)
            if cast is None:
                raise PushError(
                    f"pushed column '{name}' is {array.type}, but feature view '{view}' declares "
                    f"{dtype}; convert it"
                )
            array = cast
    except _BadValue as bad:
        raise PushError(f"pushed column '{name}' row {bad.index}: {bad.why}") from None
    return pa.chunked_array([array])


def _first(mask: Any) -> int:
    return int(pc.index(mask, True).as_py())


def _finite(array: pa.Array) -> pa.Array:
    if t.is_floating(array.type):
        infinite = pc.is_inf(array)
        if pc.any(infinite).as_py():
            raise _BadValue(
                _first(infinite),
                "the value is infinite; Parity stores finite numbers (NaN or null for missing)",
            )
        nan = pc.is_nan(array)
        if pc.any(nan).as_py():
            array = pc.if_else(nan, pa.scalar(None, array.type), array)
        return array
    if t.is_list(array.type) or t.is_large_list(array.type):
        return _per_element(array, _finite)
    return array


def _per_element(array: pa.Array, change: Any) -> pa.Array:
    """A list array with `change` applied to its elements; a bad element names its row."""
    elements = pc.list_flatten(array)
    try:
        changed = change(elements)
    except _BadValue as bad:
        row = pc.list_parent_indices(array)[bad.index].as_py()
        raise _BadValue(row, f"element {bad.index - _start(array, row)}: {bad.why}") from None
    if changed is None:
        return None
    lengths = pc.fill_null(pc.list_value_length(array), 0).cast(pa.int32())
    offsets = pa.concat_arrays([pa.array([0], pa.int32()), pc.cumulative_sum(lengths)])
    return pa.ListArray.from_arrays(offsets, changed, mask=array.is_null())


def _start(array: pa.Array, row: int) -> int:
    """The index (among all the elements) of the first element of list `row`."""
    lengths = pc.fill_null(pc.list_value_length(array.slice(0, row)), 0)
    return int(pc.sum(lengths).as_py() or 0)


def _cast(array: pa.Array, dtype: DType, bytes_as_base64: bool) -> pa.Array | None:
    """`array` as `dtype` by a safe cast, or None when there is none for its type."""
    kind = array.type
    if t.is_null(kind):
        return array.cast(dtype.to_arrow())
    if dtype.element is not None:
        if not (t.is_list(kind) or t.is_large_list(kind)):
            return None
        element = dtype.element
        if element.accepts_arrow(kind.value_type):
            return None  # the elements fit; the list kind does not
        return _per_element(array, lambda values: _cast(values, element, bytes_as_base64))
    if dtype.kind == "Int32" and t.is_integer(kind):
        outside = pc.or_(pc.less(array, _INT32_MIN), pc.greater(array, _INT32_MAX))
        if pc.any(outside).as_py():
            row = _first(outside)
            raise _BadValue(
                row, f"{array[row].as_py()} is outside Int32 ({_INT32_MIN} to {_INT32_MAX})"
            )
        return array.cast(pa.int32())
    if dtype.kind == "Float32" and (t.is_floating(kind) or t.is_integer(kind)):
        outside = pc.greater(pc.abs(array.cast(pa.float64())), _FLOAT32_MAX)
        if pc.any(outside).as_py():
            row = _first(outside)
            raise _BadValue(
                row, f"{array[row].as_py()} is outside Float32 (magnitude up to 3.4e38)"
            )
        return array.cast(pa.float32(), safe=False)  # rounds to the nearest Float32
    if dtype.kind == "Bytes" and bytes_as_base64 and (t.is_string(kind) or t.is_large_string(kind)):
        return pa.array([_decoded(i, v) for i, v in enumerate(array.to_pylist())], pa.binary())
    return None


def _decoded(row: int, text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _BadValue(row, "the text is not base64 (Bytes features travel as base64)") from None
