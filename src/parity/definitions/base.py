"""The base of every definition: a frozen pydantic model whose validation errors name the object.

No I/O here; a definition is a value.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic import Field as PydanticField

from parity.errors import InvalidDefinition

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_identifier(value: str, what: str = "name") -> str:
    """Names are Python-style identifiers so they work as SQL columns, keys and refs unquoted."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ValueError(
            f"{what} {value!r} is not an identifier: use letters, digits and underscores, "
            "not starting with a digit (e.g. 'txn_count_7d')"
        )
    return value


def check_model_name(value: str, why: str) -> str:
    """A registered model's bare name (`fraud`): definitions that concern every version of a
    model take no `@alias` or `/version`; `why` says so for the definition at hand."""
    if not value or "@" in value or "/" in value:
        raise ValueError(f"model {value!r}: give a registered model's name (e.g. 'fraud'); {why}")
    return value


def describe_validation_error(kind: str, name: object, error: ValidationError) -> str:
    """One readable line per problem: `FeatureView 'x': field 'ttl': must be positive ...`."""
    label = f"{kind} {name!r}" if isinstance(name, str) and name else kind
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        message = item["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if item["type"] == "missing":
            message = "is required"
        elif item["type"] == "extra_forbidden":
            message = "is not a known setting of this object; check the spelling"
        problems.append(f"field '{where}': {message}" if where else message)
    return f"{label}: " + "; ".join(problems)


class Definition(BaseModel):
    """Frozen, validated, I/O-free. Subclasses set `kind` (shown in messages and the registry)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=False, populate_by_name=True
    )
    kind: ClassVar[str] = "definition"

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            message = describe_validation_error(type(self).__name__, data.get("name"), error)
            raise InvalidDefinition(message) from None


class NamedDefinition(Definition):
    """A registered object: an identifier name plus the metadata every such object carries."""

    name: str
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = PydanticField(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_identifier(value)
