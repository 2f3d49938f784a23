"""Field, FeatureView and projections of a view (`view[["a", "b"]]`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from functools import cached_property
from typing import Protocol

from pydantic import Field as PydanticField
from pydantic import field_validator, model_validator

from parity.definitions.aggregation import Aggregation
from parity.definitions.base import Definition, NamedDefinition, check_identifier
from parity.definitions.entity import Entity
from parity.definitions.source import BatchSource, DeltaSource, FileSource, PushSource, StreamSource
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
    features. `ttl=None` means a value never goes stale.

    With `aggregations`, the view is aggregated: the schema's non-key fields are the events'
    input columns, and the features are the aggregations' outputs, computed over sliding windows
    made of `tile_interval` tiles (see parity.aggregation.windows; every window is a multiple of
    the tile interval, which defaults to the largest of 1 day, 1 hour, 5 minutes, 1 minute and
    1 second dividing every window). Aggregated views take no ttl.
    """

    kind = "feature_view"

    entities: tuple[Entity, ...]
    fields: tuple[Field, ...] = PydanticField(alias="schema")
    source: FileSource | DeltaSource | PushSource | StreamSource = PydanticField(
        discriminator="type"
    )
    ttl: timedelta | None = None
    online: bool = True
    aggregations: tuple[Aggregation, ...] = ()
    tile_interval: timedelta | None = None
    # How old the newest online value may be before the view counts as stale (monitoring).
    freshness_slo: timedelta | None = None

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError(
                f"ttl must be positive, got {value}; use ttl=None for values that never expire"
            )
        return value

    @field_validator("freshness_slo")
    @classmethod
    def _freshness_slo(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError(
                f"freshness_slo must be positive, got {value}; leave it out for no freshness SLO"
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
        if self.aggregations:
            self._check_aggregations(keys)
        elif self.tile_interval is not None:
            raise ValueError("tile_interval is only for views with aggregations")
        return self

    def _check_aggregations(self, keys: dict[str, Entity]) -> None:
        if self.ttl is not None:
            raise ValueError(
                "an aggregated view takes no ttl: its windows say how far back to look"
            )
        tile = self.tile_interval or default_tile(a.window for a in self.aggregations)
        if self.tile_interval is None:
            object.__setattr__(self, "tile_interval", tile)
        if tile < timedelta(seconds=1) or tile.microseconds:
            raise ValueError(f"tile_interval {tile} must be a whole number of seconds, >= 1 s")
        inputs = {f.name: f.dtype for f in self.fields if f.name not in keys}
        outputs: set[str] = set()
        for aggregation in self.aggregations:
            if aggregation.column not in inputs:
                raise ValueError(
                    f"aggregation '{aggregation.output_name}' reads column "
                    f"'{aggregation.column}', which is not in the schema; declare it (schema "
                    f"has {sorted(inputs)})"
                )
            problem = aggregation.check_column(inputs[aggregation.column])
            if problem:
                raise ValueError(f"aggregation '{aggregation.output_name}': {problem}")
            if aggregation.window % tile:
                raise ValueError(
                    f"aggregation '{aggregation.output_name}': window {aggregation.window} is not "
                    f"a multiple of tile_interval {tile}"
                )
            if aggregation.output_name in outputs or aggregation.output_name in keys:
                raise ValueError(
                    f"two aggregations are named '{aggregation.output_name}'; give one a name="
                )
            outputs.add(aggregation.output_name)

    @property
    def batch_source(self) -> BatchSource:
        """Where the view's rows are offline: the source, or a push source's batch source."""
        if isinstance(self.source, FileSource | DeltaSource):
            return self.source
        return self.source.batch_source

    @cached_property
    def join_keys(self) -> tuple[str, ...]:
        return tuple(key for entity in self.entities for key in entity.join_keys)

    @property
    def entity_names(self) -> tuple[str, ...]:
        return tuple(entity.name for entity in self.entities)

    @property
    def is_aggregated(self) -> bool:
        return bool(self.aggregations)

    @cached_property
    def inputs(self) -> tuple[Field, ...]:
        """The source columns the view reads besides its keys (for a plain view, its features)."""
        keys = set(self.join_keys)
        return tuple(f for f in self.fields if f.name not in keys)

    @cached_property
    def features(self) -> tuple[Field, ...]:
        if not self.aggregations:
            return self.inputs
        types = {f.name: f.dtype for f in self.inputs}
        return tuple(
            Field(name=a.output_name, dtype=a.output_dtype(types[a.column]))
            for a in self.aggregations
        )

    @cached_property
    def tile_us(self) -> int:
        """The tile interval in µs (aggregated views only)."""
        if self.tile_interval is None:
            raise InvalidDefinition(f"feature view '{self.name}' has no aggregations, so no tiles")
        return int(self.tile_interval.total_seconds()) * 1_000_000

    @cached_property
    def aggregation_by_output(self) -> dict[str, Aggregation]:
        return {a.output_name: a for a in self.aggregations}

    def input(self, name: str) -> Field:
        for f in self.inputs:
            if f.name == name:
                return f
        raise FeatureNotFound(f"feature view '{self.name}' has no input column '{name}'")

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


_TILES = (
    timedelta(days=1),
    timedelta(hours=1),
    timedelta(minutes=5),
    timedelta(minutes=1),
    timedelta(seconds=1),
)


def default_tile(windows: Iterable[timedelta]) -> timedelta:
    """The largest standard tile interval dividing every window."""
    listed = list(windows)
    return next(t for t in _TILES if all(w % t == timedelta(0) for w in listed))


def _check_entities(entities: tuple[Entity, ...]) -> None:
    if not entities:
        raise ValueError("entities is empty: a feature view needs at least one Entity")
    names = [e.name for e in entities]
    if len(set(names)) != len(names):
        raise ValueError(f"entities {names} repeat an entity; list each once")
    keys = [k for e in entities for k in e.join_keys]
    if len(set(keys)) != len(keys):
        raise ValueError(f"entities {names} share a join key name; composite keys must differ")


class OnDemandLike(Protocol):
    """What a projection needs of a view (an OnDemandFeatureView has these too)."""

    @property
    def name(self) -> str: ...

    @property
    def feature_names(self) -> tuple[str, ...]: ...


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
        cls, view: FeatureView | OnDemandLike, names: list[str] | tuple[str, ...] | None = None
    ) -> FeatureViewProjection:
        if names is not None and not isinstance(names, list | tuple):
            raise InvalidDefinition(
                f"select features of '{view.name}' with a list, e.g. view[['a', 'b']]"
            )
        selected = tuple(names) if names is not None else view.feature_names
        for name in selected:
            if name not in view.feature_names:
                raise FeatureNotFound(
                    f"'{view.name}' has no feature '{name}'; it has {list(view.feature_names)}"
                )
        if len(set(selected)) != len(selected):
            raise InvalidDefinition(f"projection of '{view.name}' repeats a feature name")
        return cls(view=view.name, features=selected)
