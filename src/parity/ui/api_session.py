"""/ui/api: health, who the caller is (the pages show it and hide what it cannot do), and the
overview the home page opens with."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

router = APIRouter(tags=["session"])


class ErrorDetail(BaseModel):
    code: str
    message: str


class Error(BaseModel):
    """Every refusal: a stable code and a message naming the field or scope."""

    error: ErrorDetail


class Health(BaseModel):
    status: str


class WhoAmI(BaseModel):
    """`secured`: auth is on. `name`/`scopes`: the token's (None with auth off). `actions`: may
    this caller press the rollout buttons at all (the server still checks each model)."""

    secured: bool
    name: str | None
    scopes: list[str]
    actions: bool
    project: str


class Overview(BaseModel):
    project: str
    registry_version: int
    entities: int
    feature_views: int
    features: int
    feature_services: int
    models: int
    active_rollouts: int
    firing_alerts: int


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Error, "description": "No such object"},
    422: {"model": Error, "description": "A query parameter is invalid"},
}


def context(request: Request) -> Any:
    return request.app.state.ui


@router.get("/health", response_model=Health)
def health() -> Health:
    return Health(status="ok")


@router.get("/whoami", response_model=WhoAmI)
def whoami(request: Request) -> WhoAmI:
    ui = context(request)
    principal = ui.principal(request)
    if principal is None:
        return WhoAmI(
            secured=ui.secured,
            name=None,
            scopes=[],
            actions=ui.enable_actions,
            project=ui.store.project,
        )
    return WhoAmI(
        secured=True,
        name=principal.name,
        scopes=[str(g) for g in principal.grants],
        actions=principal.allows_any("rollouts:admin"),
        project=ui.store.project,
    )


@router.get("/overview", response_model=Overview, responses=ERRORS)
def overview(request: Request) -> Overview:
    from parity.ui.api_catalog import catalog_counts  # its router imports this module

    ui = context(request)
    store = ui.store
    _, version = store.registry.current()
    models = [m for m in store.models.models() if ui.can(request, "models:read", m)]
    rollouts = [r for r in store.rollouts.list(active_only=True) if r.model in models]
    watched = {m.name for m in store.monitoring.monitors() if m.model in models}
    firing = [s for s in store.monitoring.alert_statuses() if s.firing and s.monitor in watched]
    counts = catalog_counts(request)
    return Overview(
        project=store.project,
        registry_version=version,
        entities=counts["entity"],
        feature_views=counts["view"],
        features=counts["feature"],
        feature_services=counts["service"],
        models=len(models),
        active_rollouts=len(rollouts),
        firing_alerts=len(firing),
    )
