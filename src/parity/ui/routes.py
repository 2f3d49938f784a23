"""The UI's route table: every HTTP route it answers and the scope each needs when auth is on
(the gate enforces it; the scope-matrix test is generated from it). Pages and their static
files are open (they hold no data); every JSON route needs a token. Must not import a server."""

from __future__ import annotations

from parity.serving.auth.rules import AUTHENTICATED, OPEN, SCOPED, RouteRule

PREFIX = "/ui"
API = f"{PREFIX}/api"
_FEATURES = ("features:read",)
_MODELS = ("models:read",)
_ANY_READ = ("features:read", "models:read")

UI_ROUTES: tuple[RouteRule, ...] = (
    # The pages: the app's shell and its files (no data in them; the data comes from /ui/api).
    RouteRule("GET", "/", OPEN),
    RouteRule("GET", PREFIX, OPEN),
    RouteRule("GET", f"{PREFIX}/static/{{file}}", OPEN),
    RouteRule("GET", f"{API}/health", OPEN),
    RouteRule("GET", f"{API}/openapi.json", AUTHENTICATED),
    RouteRule("GET", f"{API}/whoami", AUTHENTICATED),
    RouteRule("GET", f"{API}/overview", AUTHENTICATED),
    # Catalog, lineage, registry history, duplicates (features:read; narrowed: those names).
    RouteRule("GET", f"{API}/search", SCOPED, _FEATURES, what="feature view or service"),
    RouteRule("GET", f"{API}/entities/{{name}}", SCOPED, _FEATURES, what="entity"),
    RouteRule("GET", f"{API}/views/{{name}}", SCOPED, _FEATURES, "name", what="feature view"),
    RouteRule("GET", f"{API}/services/{{name}}", SCOPED, _FEATURES, "name", what="feature service"),
    RouteRule(
        "GET",
        f"{API}/features/{{view}}/{{feature}}",
        SCOPED,
        _FEATURES,
        "view",
        what="feature view",
    ),
    RouteRule("GET", f"{API}/lineage", SCOPED, _ANY_READ, what="feature view or model"),
    RouteRule("GET", f"{API}/registry/versions", SCOPED, _FEATURES),
    RouteRule("GET", f"{API}/registry/versions/{{version}}", SCOPED, _FEATURES),
    RouteRule("GET", f"{API}/duplicates", SCOPED, _FEATURES),
    RouteRule("POST", f"{API}/duplicates", SCOPED, _FEATURES),
    # Models, rollouts, monitoring (models:read; narrowed: those models).
    RouteRule("GET", f"{API}/models", SCOPED, _MODELS, what="model"),
    RouteRule("GET", f"{API}/models/{{model}}", SCOPED, _MODELS, "model", what="model"),
    RouteRule("GET", f"{API}/models/{{model}}/aliases", SCOPED, _MODELS, "model", what="model"),
    RouteRule("GET", f"{API}/rollouts", SCOPED, _MODELS, what="model"),
    RouteRule("GET", f"{API}/rollouts/{{model}}", SCOPED, _MODELS, "model", what="model"),
    *(
        RouteRule(
            "POST",
            f"{API}/rollouts/{{model}}/{action}",
            SCOPED,
            ("rollouts:admin",),
            "model",
            what="model",
        )
        for action in ("pause", "resume", "promote", "abort")
    ),
    RouteRule("GET", f"{API}/monitoring", SCOPED, _MODELS, what="model"),
    RouteRule("GET", f"{API}/monitoring/{{model}}/drift", SCOPED, _MODELS, "model", what="model"),
    RouteRule(
        "GET", f"{API}/monitoring/{{model}}/performance", SCOPED, _MODELS, "model", what="model"
    ),
    RouteRule(
        "GET", f"{API}/monitoring/{{model}}/triggers", SCOPED, _MODELS, "model", what="model"
    ),
    RouteRule("GET", f"{API}/alerts", SCOPED, _MODELS, what="model"),
    RouteRule(
        "GET",
        f"{API}/consistency/{{service}}",
        SCOPED,
        _FEATURES,
        "service",
        what="feature service",
    ),
    RouteRule(
        "POST",
        f"{API}/consistency/{{service}}",
        SCOPED,
        _FEATURES,
        "service",
        what="feature service",
    ),
)
