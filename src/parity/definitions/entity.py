"""Entity: the thing features describe (an account, a device), identified by its join keys."""

from __future__ import annotations

from pydantic import field_validator, model_validator

from parity.definitions.base import NamedDefinition, check_identifier
from parity.definitions.types import DType, Int64, String


class Entity(NamedDefinition):
    """`Entity(name="account", join_keys=["account_id"])`; join_keys defaults to `[name]`."""

    kind = "entity"

    join_keys: tuple[str, ...] = ()
    value_type: DType = Int64

    @field_validator("join_keys")
    @classmethod
    def _keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for key in value:
            check_identifier(key, "join key")
        if len(set(value)) != len(value):
            raise ValueError(f"join keys {list(value)} repeat a name; list each key once")
        return value

    @field_validator("value_type")
    @classmethod
    def _value_type(cls, value: DType) -> DType:
        if value not in (Int64, String):
            raise ValueError(f"entity keys are Int64 or String, not {value}; pick one of those")
        return value

    @model_validator(mode="after")
    def _default_join_key(self) -> Entity:
        if not self.join_keys:
            object.__setattr__(self, "join_keys", (self.name,))
        return self
