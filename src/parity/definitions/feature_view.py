"""Field, FeatureView and projections of a view (`view[["a", "b"]]`)."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property

from pydantic import Field as PydanticField
from pydantic import field_validator, model_validator

from parity.definitions.base import Definition, NamedDefinition, check_identifier
from parity.definitions.entity import Entity
from parity.definitions.source import FileSource, PushSource
from parity.definitions.types import DType
from parity.errors import FeatureNotFound, InvalidDefinition

RESERVED_NAMES = frozenset({"event_timestamp", "created_timestamp"})


class Field(Definition):
    """One column of a view's schema: a feature, or a join key typed explicitly."""

    kind = "field"

    name: str
    dtype: DType
    description: str = ""
    tags: dict[str, str] = PydanticField(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_identifier(value, "field name")


class FeatureView(NamedDefinition):
    """Features of one or more entities from one source, valid for `ttl` after their event time.

    Schema fields named like a join key of the view's entities are key columns; the rest are
    features.
    `ttl=None` means a value never goes stale.
    """

    kind = "feature_view"

    entities: tuple[Entity, ...]
    fields: tuple[Field, ...] = PydanticField(alias="schema")
    source: FileSource | PushSource = PydanticField(discriminator="type")
    ttl: timedelta | None = None
    online: bool = True

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError(
                f"ttl must be positive, got {value}; use ttl=None for values that never expire"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FeatureView:
        _check_entities(self.entities)
        names = [f.name for f in self.fields]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"schema repeats {repeated}; declare each field once")
        keys = {key: entity for entity in self.entities for key in entity.join_keys}
        for f in self.fields:
            if f.name in keys and f.dtype != keys[f.name].value_type:
                raise ValueError(
                    f"schema field '{f.name}' is {f.dtype} but entity '{keys[f.name].name}' "
                    f"keys are {keys[f.name].value_type}; make them match"
                )
            if f.name in RESERVED_NAMES:
                raise ValueError(f"'{f.name}' is reserved for timestamps; rename the feature")
        if not any(f.name not in keys for f in self.fields):
            raise ValueError("schema declares no features (only join keys); add at least one")
        return self

    @property
    def batch_source(self) -> FileSource:
        """Where the view's rows are offline: the source, or a push source's batch source."""
        return self.source if isinstance(self.source, FileSource) else self.source.batch_source

    @cached_property
    def join_keys(self) -> tuple[str, ...]:
        return tuple(key for entity in self.entities for key in entity.join_keys)

    @property
    def entity_names(self) -> tuple[str, ...]:
        return tuple(entity.name for entity in self.entities)

    @cached_property
    def features(self) -> tuple[Field, ...]:
        keys = set(self.join_keys)
        return tuple(f for f in self.fields if f.name not in keys)

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def feature(self, name: str) -> Field:
        for f in self.features:
            if f.name == name:
                return f
        raise FeatureNotFound(
            f"feature view '{self.name}' has no feature '{name}'; it has {list(self.feature_names)}"
        )

    def __getitem__(self, names: list[str] | tuple[str, ...]) -> FeatureViewProjection:
        return FeatureViewProjection.of(self, names)


def _check_entities(entities: tuple[Entity, ...]) -> None:
    if not entities:
        raise ValueError("entities is empty: a feature view needs at least one Entity")
    names = [e.name for e in entities]
    if len(set(names)) != len(names):
        raise ValueError(f"entities {names} repeat an entity; list each once")
    keys = [k for e in entities for k in e.join_keys]
    if len(set(keys)) != len(keys):
        raise ValueError(f"entities {names} share a join key name; composite keys must differ")


class FeatureViewProjection(Definition):
    """A subset of one view's features, as used by a FeatureService."""

    kind = "projection"

    view: str
    features: tuple[str, ...]

    @field_validator("features")
    @classmethod
    def _non_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("a projection selects at least one feature")
        return value

    @classmethod
    def of(
        cls, view: FeatureView, names: list[str] | tuple[str, ...] | None = None
    ) -> FeatureViewProjection:
        if names is not None and not isinstance(names, list | tuple):
            raise InvalidDefinition(
                f"select features of '{view.name}' with a list, e.g. view[['a', 'b']]"
            )
        selected = tuple(names) if names is not None else view.feature_names
        for name in selected:
            view.feature(name)
        if len(set(selected)) != len(selected):
            raise InvalidDefinition(f"projection of '{view.name}' repeats a feature name")
        return cls(view=view.name, features=selected)
