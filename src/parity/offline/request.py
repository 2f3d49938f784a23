"""Resolve what a retrieval asks for: feature refs or a service -> per-view requests, output names.

Pure: takes a catalog, returns values; raises typed errors for unknown or ambiguous features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from parity.definitions import FeatureService, FeatureView
from parity.definitions.on_demand import OnDemandFeatureView
from parity.definitions.types import DType
from parity.errors import FeatureNotFound, FeatureViewNotFound, RetrievalError
from parity.registry.catalog import Catalog

FULL_NAME_SEPARATOR = "__"


@dataclass(frozen=True)
class ViewRequest:
    """Features wanted from one view, with the column names they get in the output."""

    view: FeatureView
    features: tuple[str, ...]
    output_names: tuple[str, ...]


@dataclass(frozen=True)
class OnDemandInput:
    """One input of an on-demand function: its name, the result column holding it, its dtype,
    and whether it is a request field (checked against that dtype) or a source feature."""

    name: str
    column: str
    dtype: DType
    request: bool = False


@dataclass(frozen=True)
class OnDemandRequest:
    """Features wanted from an on-demand view, with their output column names and dtypes, and
    the function's inputs."""

    view: OnDemandFeatureView
    features: tuple[str, ...]
    output_names: tuple[str, ...]
    inputs: tuple[OnDemandInput, ...]


@dataclass(frozen=True)
class RetrievalRequest:
    views: tuple[ViewRequest, ...]
    full_feature_names: bool
    on_demand: tuple[OnDemandRequest, ...] = ()
    hidden: tuple[str, ...] = ()  # columns read only as on-demand inputs, dropped at the end

    @property
    def join_keys(self) -> tuple[str, ...]:
        """Every join key any requested view needs, in first-seen order."""
        keys: dict[str, None] = {}
        for request in self.views:
            keys.update(dict.fromkeys(request.view.join_keys))
        return tuple(keys)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(name for request in self.views for name in request.output_names)


def parse_ref(ref: str) -> tuple[str, str]:
    """`"view:feature"` -> ("view", "feature")."""
    view, sep, feature = ref.partition(":") if isinstance(ref, str) else ("", "", "")
    if not sep or not view or not feature or ":" in feature:
        raise RetrievalError(
            f"feature ref {ref!r} is not of the form 'view:feature' "
            "(e.g. 'account_profile:kyc_level')"
        )
    return view, feature


def resolve(
    catalog: Catalog,
    features: Sequence[str] | FeatureService | str,
    *,
    full_feature_names: bool = False,
) -> RetrievalRequest:
    """Group refs by view (views in first-seen order, features in the order asked)."""
    refs = _refs(catalog, features)
    if not refs:
        raise RetrievalError("the feature list is empty; pass 'view:feature' refs or a service")
    wanted: dict[str, list[str]] = {}
    on_demand: dict[str, list[str]] = {}
    for ref in refs:
        view_name, feature = parse_ref(ref)
        if view_name in catalog.on_demand_feature_views:
            _want(on_demand, catalog.on_demand_feature_views[view_name], feature, ref)
            continue
        view = catalog.feature_views.get(view_name)
        if view is None:
            names = [*catalog.feature_views, *catalog.on_demand_feature_views]
            known = ", ".join(sorted(names)) or "none; run 'parity apply'"
            raise FeatureViewNotFound(
                f"feature ref '{ref}': no feature view '{view_name}' (registered: {known})"
            )
        _want(wanted, view, feature, ref)
    requested = {(v, f) for v, names in wanted.items() for f in names}
    hidden_pairs = [
        (source, f)
        for name in on_demand
        for source, f in _source_inputs(catalog, catalog.on_demand_feature_views[name])
        if (source, f) not in requested
    ]
    for source, f in dict.fromkeys(hidden_pairs):
        wanted.setdefault(source, []).append(f)
    requests = tuple(
        ViewRequest(
            catalog.feature_views[name],
            tuple(names),
            tuple(f"{name}{FULL_NAME_SEPARATOR}{f}" if full_feature_names else f for f in names),
        )
        for name, names in wanted.items()
    )
    _check_collisions(requests)
    column = {
        (r.view.name, f): o
        for r in requests
        for f, o in zip(r.features, r.output_names, strict=True)
    }
    demands = []
    for name, names in on_demand.items():
        demand = catalog.on_demand_feature_views[name]
        inputs = [
            OnDemandInput(f, column[(s, f)], catalog.feature_views[s].feature(f).dtype)
            for s, f in _source_inputs(catalog, demand)
        ]
        if demand.request is not None:
            inputs += [OnDemandInput(f.name, f.name, f.dtype, True) for f in demand.request.fields]
        outputs = tuple(
            f"{name}{FULL_NAME_SEPARATOR}{f}" if full_feature_names else f for f in names
        )
        demands.append(OnDemandRequest(demand, tuple(names), outputs, tuple(inputs)))
    hidden = tuple(column[pair] for pair in dict.fromkeys(hidden_pairs))
    return RetrievalRequest(requests, full_feature_names, tuple(demands), hidden)


def _source_inputs(catalog: Catalog, demand: OnDemandFeatureView) -> list[tuple[str, str]]:
    """(view, feature) of each source feature the on-demand function reads."""
    return [
        (source, f)
        for source in demand.sources
        for f in demand.source_inputs(source, catalog.feature_views[source].feature_names)
    ]


def _want(
    wanted: dict[str, list[str]], view: FeatureView | OnDemandFeatureView, feature: str, ref: str
) -> None:
    if feature not in view.feature_names:
        raise FeatureNotFound(
            f"feature ref '{ref}': view '{view.name}' has no feature '{feature}'; "
            f"it has {list(view.feature_names)}"
        )
    listed = wanted.setdefault(view.name, [])
    if feature in listed:
        raise RetrievalError(f"feature ref '{ref}' is listed twice; list it once")
    listed.append(feature)


def _refs(catalog: Catalog, features: Sequence[str] | FeatureService | str) -> list[str]:
    if isinstance(features, FeatureService):
        return list(features.refs)
    if isinstance(features, str):
        if ":" not in features:  # a service name
            service = catalog.feature_services.get(features)
            if service is None:
                raise RetrievalError(
                    f"'{features}' is neither a 'view:feature' ref nor a registered feature "
                    f"service (services: {', '.join(sorted(catalog.feature_services)) or 'none'})"
                )
            return list(service.refs)
        return [features]
    return list(features)


def _check_collisions(requests: tuple[ViewRequest, ...]) -> None:
    seen: dict[str, str] = {}
    for request in requests:
        for name in request.output_names:
            if name in seen:
                raise RetrievalError(
                    f"feature '{name}' is requested from both '{seen[name]}' and "
                    f"'{request.view.name}'; pass full_feature_names=True to get "
                    f"'{seen[name]}{FULL_NAME_SEPARATOR}{name}' and "
                    f"'{request.view.name}{FULL_NAME_SEPARATOR}{name}'"
                )
            seen[name] = request.view.name


def interval_keys(request: RetrievalRequest) -> list[str]:
    """The join keys of a retrieval without an entity frame; every view must have the same."""
    keys = request.join_keys
    for view_request in request.views:
        if set(view_request.view.join_keys) != set(keys):
            raise RetrievalError(
                "retrieval without an entity frame needs views with the same join keys; "
                f"'{view_request.view.name}' has {list(view_request.view.join_keys)}, the "
                f"request needs {list(keys)}. Request those views separately"
            )
    return list(keys)
