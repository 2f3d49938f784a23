"""Request-time transforms: `@on_demand_feature_view` over features and request data.

The decorated function runs in one of three modes, Feast's two and parity's own:
`mode="row"` (the default) takes one row as a dict and returns a dict of its features (an
optional `vectorized` function does the same over a pandas DataFrame, offline);
`mode="pandas"` takes a DataFrame and returns one; `mode="python"` takes a dict of lists and
returns one. The registry keeps the function's name, mode and a hash of its source; the code
itself is run from the repo, and a repo whose function differs from the applied one is refused
until it is applied. No I/O here.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import Field as PydanticField
from pydantic import PrivateAttr, field_validator, model_validator

from parity.definitions.base import Definition, NamedDefinition, check_identifier
from parity.definitions.feature_view import FeatureView, FeatureViewProjection, Field
from parity.errors import InvalidDefinition

Mode = Literal["row", "pandas", "python"]
MODES: tuple[Mode, ...] = ("row", "pandas", "python")
RowFunction = Callable[[dict[str, Any]], dict[str, Any]]
Udf = Callable[[Any], Any]


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
    # Sources given as projections (`stats[["conv_rate"]]`): only these features are inputs.
    source_features: dict[str, tuple[str, ...]] = PydanticField(default_factory=dict)
    request: RequestSource | None = None
    fields: tuple[Field, ...]
    mode: Mode = "row"
    function: str  # the function's qualified name
    code_hash: str  # sha256 of the function's (and the vectorized one's) source
    _udf: Udf | None = PrivateAttr(default=None)
    _vectorized: Callable[[Any], Any] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _projections_name_sources(self) -> OnDemandFeatureView:
        unknown = sorted(set(self.source_features) - set(self.sources))
        if unknown:
            raise ValueError(f"source_features names {unknown}, which are not among its sources")
        return self

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def request_fields(self) -> tuple[str, ...]:
        return () if self.request is None else tuple(f.name for f in self.request.fields)

    def source_inputs(self, source: str, features: tuple[str, ...]) -> tuple[str, ...]:
        """The features of `source` (which has `features`) that the function reads."""
        return self.source_features.get(source, features)

    def __getitem__(self, names: list[str] | tuple[str, ...]) -> FeatureViewProjection:
        return FeatureViewProjection.of(self, names)

    def bind(self, udf: Udf, vectorized: Callable[[Any], Any] | None) -> None:
        self._udf, self._vectorized = udf, vectorized

    @property
    def udf(self) -> Udf | None:
        """The function, once loaded from the repo (see transform.run.bind)."""
        return self._udf

    @property
    def vectorized_function(self) -> Callable[[Any], Any] | None:
        return self._vectorized

    def __call__(self, inputs: Any) -> Any:
        if self._udf is None:
            raise InvalidDefinition(
                f"on-demand feature view '{self.name}' has no function loaded; load the repo"
            )
        return self._udf(inputs)


def code_hash(*functions: Callable[..., Any] | None) -> str:
    digest = hashlib.sha256()
    for function in functions:
        if function is not None:
            digest.update(inspect.getsource(function).encode())
    return digest.hexdigest()


def on_demand_feature_view(
    *,
    sources: Sequence[FeatureView | FeatureViewProjection | RequestSource],
    schema: Sequence[Field],
    mode: str = "row",
    singleton: bool = False,
    vectorized: Callable[[Any], Any] | None = None,
    name: str | None = None,
    description: str = "",
) -> Callable[[Udf], OnDemandFeatureView]:
    """Decorate a function into an OnDemandFeatureView. `mode="row"`: `f(row: dict) -> dict`;
    `mode="pandas"`: `f(DataFrame) -> DataFrame`; `mode="python"`: `f(dict of lists) -> dict
    of lists` (with `singleton=True`, as in Feast, one row's dict: the same as mode="row")."""

    def wrap(function: Udf) -> OnDemandFeatureView:
        label = str(name or getattr(function, "__name__", "?"))
        chosen = _mode(label, mode, singleton, vectorized)
        views, projected, request = _sources(label, sources)
        view = OnDemandFeatureView(
            name=label,
            description=description,
            sources=views,
            source_features=projected,
            request=request,
            fields=tuple(schema),
            mode=chosen,
            function=function.__qualname__,
            code_hash=code_hash(function, vectorized),
        )
        view.bind(function, vectorized)
        return view

    return wrap


def _mode(label: str, mode: str, singleton: bool, vectorized: object) -> Mode:
    if mode not in MODES:
        raise InvalidDefinition(
            f"on-demand feature view '{label}': mode={mode!r}; use 'row' (one row's dict), "
            "'pandas' (a DataFrame) or 'python' (a dict of lists)"
        )
    if singleton and mode != "python":
        raise InvalidDefinition(
            f"on-demand feature view '{label}': singleton=True goes with mode='python'"
        )
    if vectorized is not None and mode != "row" and not singleton:
        raise InvalidDefinition(
            f"on-demand feature view '{label}': vectorized= goes with mode='row' (the "
            f"{mode} function is already vectorized)"
        )
    return "row" if singleton else mode


def _sources(
    label: str, sources: Sequence[FeatureView | FeatureViewProjection | RequestSource]
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]], RequestSource | None]:
    """View names in order, the projected ones' features, and the request source."""
    views: list[str] = []
    projected: dict[str, tuple[str, ...]] = {}
    requests: list[RequestSource] = []
    for source in sources:
        if isinstance(source, RequestSource):
            requests.append(source)
            continue
        if isinstance(source, FeatureView):
            views.append(source.name)
        elif isinstance(source, FeatureViewProjection):
            views.append(source.view)
            projected[source.view] = source.features
        else:
            raise InvalidDefinition(
                f"on-demand feature view '{label}': source {source!r} is not a FeatureView, a "
                "projection of one (view[['feature']]) or a RequestSource"
            )
    if len(set(views)) != len(views):
        raise InvalidDefinition(
            f"on-demand feature view '{label}' lists feature view sources {views} with a "
            "repeat; list each view once"
        )
    if len(requests) > 1:
        raise InvalidDefinition(
            f"on-demand feature view '{label}' has several request sources; merge them into one"
        )
    return tuple(views), projected, requests[0] if requests else None
