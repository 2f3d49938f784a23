"""The feature server's route table (the scope each HTTP route needs when auth is on; the gate
enforces it, the scope-matrix test is generated from it), the lookup's body check, and the
security part of an OpenAPI spec from a route table (both servers'). Must not import a server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from parity.serving.auth.rules import AUTHENTICATED, BODY, OPEN, SCOPED, RouteRule, find_rule

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore
    from parity.serving.auth.scopes import Principal

FEATURE_ROUTES: tuple[RouteRule, ...] = (
    RouteRule("GET", "/health", OPEN),
    RouteRule(
        "POST",
        "/get-online-features",
        SCOPED,
        ("features:read",),
        name_from=BODY,
        what="feature service or view",
    ),
    RouteRule("POST", "/push", SCOPED, ("features:push",), name_from=BODY, what="push source"),
    RouteRule("GET", "/metrics", SCOPED, ("metrics:read",)),
    RouteRule("GET", "/openapi.json", AUTHENTICATED),
    RouteRule("GET", "/docs", AUTHENTICATED),
    RouteRule("GET", "/docs/oauth2-redirect", AUTHENTICATED),
    RouteRule("GET", "/redoc", AUTHENTICATED),
)

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
AUTH_ERRORS = {
    401: "No valid token: none, a malformed one, or one that is unknown, revoked or expired "
    "(`unauthenticated`; see the `WWW-Authenticate` header).",
    403: "The token lacks the scope this route needs, or lacks it for the model, feature service, "
    "view or push source asked for (`forbidden`; the message names the scope).",
    429: "The token is over its rate or in-flight limit (`rate_limited`); retry after the "
    "`Retry-After` header's seconds.",
}


def secure_openapi(
    spec: dict[str, Any], rules: Sequence[RouteRule], error_ref: str
) -> dict[str, Any]:
    """`spec` (changed in place, and returned) with the bearer scheme, and on each operation that
    needs a token (by `rules`) its security requirement and the 401, 403 (scoped routes) and 429
    answers, whose body is `error_ref`. ValueError for an operation no rule covers."""
    components = spec.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A Parity API token (`parity auth token create`) or, when the server is "
        "configured for it, a JWT from the OIDC provider.",
    }
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in _METHODS:
                _secure(operation, find_rule(rules, method.upper(), path), error_ref, path)
    return spec


def _secure(
    operation: dict[str, Any],
    found: tuple[RouteRule, dict[str, str]] | None,
    error_ref: str,
    path: str,
) -> None:
    if found is None:
        raise ValueError(f"{path}: no access rule covers this operation")
    rule = found[0]
    if rule.access == OPEN:
        operation["security"] = []
        return
    operation["security"] = [{"bearer": []}]
    responses = operation.setdefault("responses", {})
    for status in (401, 403, 429) if rule.access == SCOPED else (401, 429):
        text = AUTH_ERRORS[status]
        if str(status) in responses:  # e.g. a 403 the route gives without auth: say both
            described = responses[str(status)]
            described["description"] = f"{described.get('description', '')} Or: {text}".strip()
            continue
        schema = {"$ref": error_ref}
        responses[str(status)] = {
            "description": text,
            "content": {"application/json": {"schema": schema}},
        }


def may_read(
    principal: Principal,
    store: FeatureStore,
    features: Sequence[str] | None,
    service: str | None,
) -> None:
    """Forbidden unless `principal` may read the lookup's features: every view the `features`
    refs name, or the `service` (granted by name, or every one of its views granted). A name
    that is both a view's and a service's names the view in a grant (the narrower reading: a
    grant given for the view never opens the service's other views)."""
    if principal.allows("features:read"):  # a grant for every view and service
        return
    if features is not None:
        named = {ref.split(":", 1)[0] for ref in features}
        principal.require_all("features:read", named, "feature view")
        return
    catalog = store.registry.catalog
    if service is None:
        return
    if principal.allows("features:read", service) and service not in catalog.feature_views:
        return
    found = catalog.feature_services.get(service)
    views = [projection.view for projection in found.features] if found is not None else []
    if not views:
        principal.require(("features:read",), service, "feature service")
        return  # granted by name (a name only a view has): the lookup answers its own 404
    principal.require_all("features:read", views, f"feature service '{service}': feature view")
