"""Aggregation: one windowed feature of an aggregated view (`count of amount over 5 minutes`).

A value; the window rule itself lives in `parity.aggregation.windows`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import field_validator, model_validator

from parity.definitions.base import Definition, check_identifier
from parity.definitions.types import Array, DType, Float64, Int64

Function = Literal[
    "count", "sum", "mean", "min", "max", "stddev", "last", "last_n", "count_distinct"
]
FUNCTIONS: tuple[str, ...] = Function.__args__  # type: ignore[attr-defined]
_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
_NUMERIC = ("Int32", "Int64", "Float32", "Float64")


def window_label(window: timedelta) -> str:
    """`5m`, `1h`, `30d`: the largest unit that divides the window exactly."""
    seconds = int(window.total_seconds())
    for unit, size in _UNITS:
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable: every whole number of seconds divides by 1")


class Aggregation(Definition):
    """`Aggregation(column="amount", function="sum", window=timedelta(days=30))`.

    Null values are ignored by every function. Over a window with no values `count`,
    `count_distinct` and `sum` are 0, `last_n` is an empty list and the others are null.
    `last_n` (with `n`) lists the n most recent values, newest first; `stddev` is the sample
    standard deviation. The output name defaults to `<column>_<function>_<window>`.
    """

    kind = "aggregation"

    column: str
    function: Function
    window: timedelta
    n: int | None = None
    name: str | None = None

    @field_validator("window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1) or value > timedelta(days=366):
            raise ValueError(f"window {value} must be between 1 second and 366 days")
        if value.microseconds:
            raise ValueError(f"window {value} must be a whole number of seconds")
        return value

    @field_validator("column", "name")
    @classmethod
    def _identifiers(cls, value: str | None) -> str | None:
        return None if value is None else check_identifier(value, "aggregation column or name")

    @model_validator(mode="after")
    def _n(self) -> Aggregation:
        if self.function == "last_n":
            if self.n is None or not 1 <= self.n <= 1000:
                raise ValueError("last_n needs n between 1 and 1000, e.g. n=5")
        elif self.n is not None:
            raise ValueError(f"n is only for last_n, not {self.function}")
        return self

    @property
    def output_name(self) -> str:
        if self.name is not None:
            return self.name
        function = f"last{self.n}" if self.function == "last_n" else self.function
        return f"{self.column}_{function}_{window_label(self.window)}"

    @property
    def window_us(self) -> int:
        return int(self.window.total_seconds()) * 1_000_000

    def output_dtype(self, column: DType) -> DType:
        """The feature's type given the aggregated column's type."""
        if self.function in ("count", "count_distinct"):
            return Int64
        if self.function in ("mean", "stddev"):
            return Float64
        if self.function == "sum":
            return Int64 if column.kind in ("Int32", "Int64") else Float64
        if self.function == "last_n":
            return Array(column)
        return column

    def check_column(self, column: DType) -> str | None:
        """Why this function cannot aggregate a column of that type, or None."""
        if self.function in ("sum", "mean", "stddev") and column.kind not in _NUMERIC:
            return f"{self.function} needs a numeric column, and '{self.column}' is {column}"
        if column.element is not None and self.function not in ("count", "last", "last_n"):
            return f"{self.function} cannot aggregate the array column '{self.column}'"
        return None
