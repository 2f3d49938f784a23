"""Request-time transforms: `@on_demand_feature_view` over features and request data.

The decorated function takes one row (a dict of its inputs: the source views' features by name
and the request fields) and returns a dict of its outputs; an optional `vectorized` function does
the same over a pandas DataFrame. The registry keeps the function's name and a hash of its source;
the code itself is run from the repo, and a repo whose function differs from the applied one is
refused until it is applied.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import PrivateAttr, field_validator

from parity.definitions.base import Definition, NamedDefinition, check_identifier
from parity.definitions.feature_view import FeatureView, FeatureViewProjection, Field
from parity.errors import InvalidDefinition

RowFunction = Callable[[dict[str, Any]], dict[str, Any]]


class RequestSource(Definition):
    """Values that arrive with the request (online: entity row fields; offline: entity frame
    columns), e.g. the amount of the transaction being scored."""

    kind = "request_source"

    name: str
    fields: tuple[Field, ...]

    def __init__(self, /, **data: Any) -> None:
        if "schema" in data:
            data["fields"] = data.pop("schema")
        super().__init__(**data)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_identifier(value, "request source name")


class OnDemandFeatureView(NamedDefinition):
    """Features computed at request time by a Python function (see the module docstring)."""

    kind = "on_demand_feature_view"

    sources: tuple[str, ...]  # names of the feature views whose features are inputs
    request: RequestSource | None = None
    fields: tuple[Field, ...]
    function: str  # the row function's qualified name
    code_hash: str  # sha256 of the row (and vectorized) functions' source
    _row: RowFunction | None = PrivateAttr(default=None)
    _vectorized: Callable[[Any], Any] | None = PrivateAttr(default=None)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def request_fields(self) -> tuple[str, ...]:
        return () if self.request is None else tuple(f.name for f in self.request.fields)

    def __getitem__(self, names: list[str] | tuple[str, ...]) -> FeatureViewProjection:
        return FeatureViewProjection.of(self, names)

    def bind(self, row: RowFunction, vectorized: Callable[[Any], Any] | None) -> None:
        self._row, self._vectorized = row, vectorized

    @property
    def row_function(self) -> RowFunction | None:
        return self._row

    @property
    def vectorized_function(self) -> Callable[[Any], Any] | None:
        return self._vectorized

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        if self._row is None:
            raise InvalidDefinition(
                f"on-demand feature view '{self.name}' has no function loaded; load the repo"
            )
        return self._row(row)


def code_hash(*functions: Callable[..., Any] | None) -> str:
    digest = hashlib.sha256()
    for function in functions:
        if function is not None:
            digest.update(inspect.getsource(function).encode())
    return digest.hexdigest()


def on_demand_feature_view(
    *,
    sources: Sequence[FeatureView | RequestSource],
    schema: Sequence[Field],
    vectorized: Callable[[Any], Any] | None = None,
    name: str | None = None,
    description: str = "",
) -> Callable[[RowFunction], OnDemandFeatureView]:
    """Decorate a row function `f(row: dict) -> dict` into an OnDemandFeatureView."""

    def wrap(function: RowFunction) -> OnDemandFeatureView:
        views = [s.name for s in sources if isinstance(s, FeatureView)]
        requests = [s for s in sources if isinstance(s, RequestSource)]
        if len(requests) > 1:
            raise InvalidDefinition(
                f"on-demand feature view '{name or function.__name__}' has several request "
                "sources; merge them into one"
            )
        view = OnDemandFeatureView(
            name=name or function.__name__,
            description=description,
            sources=tuple(views),
            request=requests[0] if requests else None,
            fields=tuple(schema),
            function=function.__qualname__,
            code_hash=code_hash(function, vectorized),
        )
        view.bind(function, vectorized)
        return view

    return wrap
