"""The one rule for on-demand values on both paths: Python values checked against a declared
dtype and normalized (numpy scalars to Python, NaN/NA/NaT to None, ints to floats for Float64).

Pure: values in, values out; a value that does not fit raises BadValue with the reason.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from parity.definitions.types import DType

_INT_RANGES = {"Int32": 2**31, "Int64": 2**63}


class BadValue(ValueError):
    """`values[index]` does not fit the dtype; `reason` says why."""

    def __init__(self, index: int, value: Any, reason: str) -> None:
        super().__init__(f"row {index} has {value!r}: {reason}")
        self.index, self.value, self.reason = index, value, reason


def conform_column(values: Sequence[Any], dtype: DType) -> list[Any]:
    """Each value checked and normalized to `dtype`; raises BadValue at the first misfit."""
    if _already(values, dtype):
        return list(values)
    out: list[Any] = []
    for index, value in enumerate(values):
        try:
            out.append(conform(value, dtype))
        except ValueError as error:
            raise BadValue(index, value, str(error)) from None
    return out


def _already(values: Sequence[Any], dtype: DType) -> bool:
    """Whether every value is None or already the Python value `dtype` stores (the common
    case, checked in one pass without a call per value)."""
    kind = dtype.kind
    if kind == "Float64":
        return all(v is None or (type(v) is float and -math.inf < v < math.inf) for v in values)
    if kind == "Int64":
        return all(v is None or (type(v) is int and -(2**63) <= v < 2**63) for v in values)
    if kind == "String":
        return all(v is None or type(v) is str for v in values)
    if kind == "Bool":
        return all(v is None or type(v) is bool for v in values)
    return False


def conform(value: Any, dtype: DType) -> Any:
    """`value` as the Python value that `dtype` stores, or None for a missing value."""
    value = _plain(value)
    if _missing(value):
        return None
    if dtype.element is not None:
        if hasattr(value, "tolist") and not isinstance(value, list | tuple):
            value = value.tolist()  # a numpy array
        if not isinstance(value, list | tuple):
            raise ValueError(f"not an {dtype} value (a list)")
        return [conform(item, dtype.element) for item in value]
    return _CONVERT[dtype.kind](value, dtype)


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones (without importing numpy)."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")  # pandas.NA, pandas.NaT


def _float(value: Any, dtype: DType) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a {dtype} value")
    number = float(value)
    if math.isinf(number):
        raise ValueError("infinite values are not stored; return None for a missing value")
    if dtype.kind == "Float32":
        try:
            number = struct.unpack("f", struct.pack("f", number))[0]  # as Float32 stores it
        except OverflowError:
            number = math.inf  # some Pythons raise, others round to inf
        if math.isinf(number):
            raise ValueError("out of the Float32 range")
    return number


def _int(value: Any, dtype: DType) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"not an {dtype} value")
    bound = _INT_RANGES[dtype.kind]
    if not -bound <= value < bound:
        raise ValueError(f"out of the {dtype} range")
    return value


def _of(kind: type | tuple[type, ...]) -> Callable[[Any, DType], Any]:
    def check(value: Any, dtype: DType) -> Any:
        if not isinstance(value, kind):
            raise ValueError(f"not a {dtype} value")
        return value

    return check


def _bytes(value: Any, dtype: DType) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ValueError(f"not a {dtype} value")
    return bytes(value)


def _timestamp(value: Any, dtype: DType) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError(f"not a {dtype} value (a datetime)")
    if value.tzinfo is None:
        raise ValueError("a datetime without a timezone; give it one (e.g. UTC)")
    moment = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
    return moment.astimezone(UTC)


_CONVERT: dict[str, Callable[[Any, DType], Any]] = {
    "Int32": _int,
    "Int64": _int,
    "Float32": _float,
    "Float64": _float,
    "String": _of(str),
    "Bool": _of(bool),
    "Bytes": _bytes,
    "UnixTimestamp": _timestamp,
}
