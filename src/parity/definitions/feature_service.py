"""FeatureService: the named set of features a model consumes."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from parity.definitions.base import NamedDefinition
from parity.definitions.feature_view import FeatureView, FeatureViewProjection


class FeatureService(NamedDefinition):
    """`FeatureService(name="fraud_v1", features=[account_stats, device[["risk"]]])`."""

    kind = "feature_service"

    features: tuple[FeatureViewProjection, ...]

    @field_validator("features", mode="before")
    @classmethod
    def _projections(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple) or not value:
            raise ValueError("features must be a non-empty list of feature views or projections")
        from parity.definitions.on_demand import OnDemandFeatureView

        items = [
            FeatureViewProjection.of(v) if isinstance(v, FeatureView | OnDemandFeatureView) else v
            for v in value
        ]
        views = [p.view if isinstance(p, FeatureViewProjection) else p.get("view") for p in items]
        if len(set(views)) != len(views):
            raise ValueError("features names the same view twice; merge them into one projection")
        return items

    @property
    def refs(self) -> tuple[str, ...]:
        """`view:feature` refs, in declaration order (all features of a view when none listed)."""
        return tuple(f"{p.view}:{name}" for p in self.features for name in p.features)
