"""The model server's route table: every HTTP route it answers and the scope each needs when auth
is on (pure data). `inference/http.py` derives the methods a path answers from it, so a route
cannot exist without a rule; the gate enforces it and the scope-matrix test is generated from it.
"""

from __future__ import annotations

from functools import lru_cache

from parity.inference.rollout_http import ACTIONS
from parity.serving.auth.rules import AUTHENTICATED, BODY, OPEN, SCOPED, RouteRule

_READ = ("models:predict", "models:read")  # metadata and readiness: callers and readers alike


def _model_rules(prefix: str) -> tuple[RouteRule, ...]:
    """The per-model routes under `prefix` (a model, or a model's pinned version)."""
    v2, v1 = f"/v2/models/{prefix}", f"/v1/models/{prefix}"
    return (
        RouteRule("GET", v2, SCOPED, _READ, name_param="model", what="model"),
        RouteRule("GET", f"{v2}/ready", SCOPED, _READ, name_param="model", what="model"),
        RouteRule("POST", f"{v2}/infer", SCOPED, ("models:predict",), "model", what="model"),
        RouteRule("GET", v1, SCOPED, ("models:read",), name_param="model", what="model"),
        RouteRule("POST", f"{v1}/predict", SCOPED, ("models:predict",), "model", what="model"),
    )


MODEL_ROUTES: tuple[RouteRule, ...] = (
    RouteRule("GET", "/v2/health/live", OPEN),
    RouteRule("GET", "/v2/health/ready", OPEN),
    RouteRule("GET", "/v2", AUTHENTICATED),
    RouteRule("GET", "/openapi.json", AUTHENTICATED),
    RouteRule("GET", "/metrics", SCOPED, ("metrics:read",)),
    # the list is filtered to the models the caller may read
    RouteRule("GET", "/v1/models", SCOPED, ("models:read",), what="model"),
    *_model_rules("{model}"),
    *_model_rules("{model}/versions/{version}"),
    # alias moves (inference/alias_http.py): promote and roll back over HTTP
    RouteRule("GET", "/v1/models/{model}/aliases", SCOPED, ("models:read",), "model", what="model"),
    *(
        RouteRule(method, "/v1/models/{model}/aliases/{alias}", SCOPED, ("models:write",), "model",
                  what="model")
        for method in ("PUT", "DELETE")
    ),
    RouteRule("GET", "/v1/rollouts", SCOPED, ("models:read",), what="model"),  # filtered too
    RouteRule("POST", "/v1/rollouts", SCOPED, ("rollouts:admin",), name_from=BODY, what="model"),
    RouteRule("GET", "/v1/rollouts/{model}", SCOPED, ("models:read",), "model", what="model"),
    *(
        RouteRule(
            "POST", f"/v1/rollouts/{{model}}/{action}", SCOPED, ("rollouts:admin",), "model",
            what="model",
        )
        for action in ACTIONS
    ),
)  # fmt: skip


@lru_cache(maxsize=4096)
def methods_at(parts: tuple[str, ...]) -> tuple[str, ...]:
    """The methods the model server answers at the path of `parts` (its non-empty segments),
    from the table; () for no route (a 404)."""
    path = "/" + "/".join(parts)
    return tuple(dict.fromkeys(r.method for r in MODEL_ROUTES if r.match(path) is not None))
