"""Feature value types (Int64, Float64, Array(String), ...): names, parsing and Arrow mapping.

Pure value objects; pyarrow is imported only inside `to_arrow`/`accepts_arrow`, so
`import parity` stays light.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from parity.errors import InvalidDefinition

if TYPE_CHECKING:
    import pyarrow as pa

PRIMITIVES = ("Int32", "Int64", "Float32", "Float64", "String", "Bool", "Bytes", "UnixTimestamp")
_ARRAY = re.compile(r"^Array\((.+)\)$")


@dataclass(frozen=True, slots=True)
class DType:
    """A feature's value type. `element` is set only for arrays (`Array(Float64)`)."""

    kind: str
    element: DType | None = None

    def __post_init__(self) -> None:
        if self.kind == "Array":
            if self.element is None or self.element.kind == "Array":
                raise InvalidDefinition(
                    "Array(...) takes one primitive type, e.g. Array(Float64); nested arrays "
                    "are not supported"
                )
        elif self.kind not in PRIMITIVES or self.element is not None:
            raise InvalidDefinition(
                f"unknown dtype {self.kind!r}: use one of {', '.join(PRIMITIVES)} or Array(...)"
            )

    def __str__(self) -> str:
        return f"Array({self.element})" if self.element is not None else self.kind

    def __repr__(self) -> str:
        return str(self)

    @classmethod
    def parse(cls, text: str) -> DType:
        """Parse the string form written by `str()` ("Int64", "Array(String)")."""
        text = text.strip()
        match = _ARRAY.match(text)
        if match:
            return Array(cls.parse(match.group(1)))
        return cls(text)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def coerce(value: Any) -> DType:
            if isinstance(value, DType):
                return value
            if isinstance(value, str):
                return cls.parse(value)
            raise ValueError(f"expected a parity dtype such as Float64, got {value!r}")

        return core_schema.no_info_plain_validator_function(
            coerce, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    def to_arrow(self) -> pa.DataType:
        """The Arrow type this dtype is stored as."""
        import pyarrow as pa

        if self.element is not None:
            return pa.list_(self.element.to_arrow())
        return {
            "Int32": pa.int32(),
            "Int64": pa.int64(),
            "Float32": pa.float32(),
            "Float64": pa.float64(),
            "String": pa.string(),
            "Bool": pa.bool_(),
            "Bytes": pa.binary(),
            "UnixTimestamp": pa.timestamp("us", tz="UTC"),
        }[self.kind]

    def accepts_arrow(self, arrow_type: pa.DataType) -> bool:
        """Whether a source column of `arrow_type` can be read as this dtype without loss."""
        import pyarrow.types as t

        if self.element is not None:
            if not (t.is_list(arrow_type) or t.is_large_list(arrow_type)):
                return False
            return self.element.accepts_arrow(arrow_type.value_type)
        checks = {
            "Int32": lambda a: (
                t.is_int8(a) or t.is_int16(a) or t.is_int32(a) or t.is_uint8(a) or t.is_uint16(a)
            ),
            "Int64": lambda a: t.is_integer(a) and not t.is_uint64(a),
            "Float32": lambda a: t.is_float16(a) or t.is_float32(a),
            "Float64": lambda a: t.is_floating(a) or t.is_integer(a) or t.is_decimal(a),
            "String": lambda a: t.is_string(a) or t.is_large_string(a) or t.is_dictionary(a),
            "Bool": t.is_boolean,
            "Bytes": lambda a: t.is_binary(a) or t.is_large_binary(a) or t.is_fixed_size_binary(a),
            "UnixTimestamp": lambda a: t.is_timestamp(a) or t.is_date(a),
        }
        return bool(checks[self.kind](arrow_type))


def Array(element: DType) -> DType:
    """An array of a primitive dtype, e.g. `Array(Float32)` for an embedding."""
    if not isinstance(element, DType):
        raise InvalidDefinition(f"Array(...) takes a parity dtype such as Float64, got {element!r}")
    return DType("Array", element)


Int32 = DType("Int32")
Int64 = DType("Int64")
Float32 = DType("Float32")
Float64 = DType("Float64")
String = DType("String")
Bool = DType("Bool")
Bytes = DType("Bytes")
UnixTimestamp = DType("UnixTimestamp")
