"""The UI's ASGI app: the page shell and its static files under /ui, JSON under /ui/api (each
part's router), errors as `{"error": {"code", "message"}}`, and the auth gate of ui/routes.py
when `auth.enabled`. Builds nothing itself: the parts' modules compute, the routers wire."""

from __future__ import annotations

import logging
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from parity.errors import Forbidden, ParityError
from parity.serving.errors import body_for, headers_for, status_for
from parity.ui.context import UiContext
from parity.ui.routes import API, PREFIX, UI_ROUTES
from parity.ui.tasks import Tasks

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from parity.feature_store import FeatureStore

logger = logging.getLogger(__name__)

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# The pages run only this package's own scripts and styles and fetch only this server.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


class UiMetrics:
    """The UI's counters (denials, errors), read by tests and `parity ui`'s own /metrics later."""

    def __init__(self) -> None:
        self.denials: dict[tuple[str, str], int] = {}
        self.errors: dict[str, int] = {}

    def denied(self, scope: str, reason: str) -> None:
        self.denials[(scope, reason)] = self.denials.get((scope, reason), 0) + 1

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


def create_ui_app(
    store: FeatureStore,
    *,
    enable_actions: bool = False,
    max_in_flight: int = 64,
    gated: bool = True,
) -> ASGIApp:
    """The UI for `store` as one ASGI app (paths under /ui; `/` redirects there). With
    `auth.enabled` the gate of ui/routes.py is around it (`gated=False`: the caller gates)."""
    context = UiContext(store, Tasks(store.now), enable_actions)
    metrics = UiMetrics()
    app = _fastapi_app(context, metrics)
    if not (context.secured and gated):
        return app
    from parity.serving.auth.gate import gate_for

    return gate_for(
        store, app, UI_ROUTES, metrics=metrics, error_body=body_for, max_in_flight=max_in_flight
    )


def _fastapi_app(context: UiContext, metrics: UiMetrics) -> FastAPI:
    app = FastAPI(
        title="Parity UI API",
        version="1",
        description="The JSON behind the web UI's pages: the same data, scriptable.",
        openapi_url=f"{API}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.ui = context
    app.state.metrics = metrics

    def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Any:
        metrics.error(code)
        return JSONResponse(body_for(code, message), status, headers)

    @app.exception_handler(StarletteHTTPException)
    async def framework_error(_: Request, failure: StarletteHTTPException) -> Any:
        code = {404: "not_found", 405: "method_not_allowed"}.get(failure.status_code, "http_error")
        return error(failure.status_code, code, str(failure.detail), dict(failure.headers or {}))

    @app.exception_handler(ParityError)
    async def parity_error(_: Request, failure: ParityError) -> Any:
        if isinstance(failure, Forbidden):
            metrics.denied(failure.scope, "forbidden")
        return error(status_for(failure), failure.code, failure.message, headers_for(failure))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, failure: RequestValidationError) -> Any:
        text = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in failure.errors()
        )
        return error(422, "invalid_request", text)

    @app.middleware("http")
    async def no_store(request: Request, call_next: Any) -> Any:
        # The data may be a token's to read only: no browser or proxy keeps a copy.
        response = await call_next(request)
        if request.url.path.startswith(API):
            response.headers["cache-control"] = "no-store"
        return response

    _add_pages(app)
    for router in _routers():
        app.include_router(router, prefix=API)
    if context.secured:
        _secure_spec(app)
    return app


def _routers() -> list[Any]:
    """Each part's APIRouter (paths relative to /ui/api)."""
    from parity.ui import api_catalog, api_duplicates, api_models, api_monitoring, api_session

    return [
        api_session.router,
        api_catalog.router,
        api_duplicates.router,
        api_models.router,
        api_monitoring.router,
    ]


def _add_pages(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @app.get(PREFIX, include_in_schema=False)
    @app.get(f"{PREFIX}/", include_in_schema=False)
    async def shell() -> Response:
        return _static("index.html")

    @app.get(f"{PREFIX}/static/{{file}}", include_in_schema=False)
    async def static(file: str) -> Response:
        return _static(file)


def _static(name: str) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    folder = resources.files("parity.ui") / "static"
    target = folder / name
    if "/" in name or "\\" in name or name.startswith(".") or suffix not in _TYPES:
        raise HTTPException(404, f"no UI file {name!r}")
    if not target.is_file():
        raise HTTPException(404, f"no UI file {name!r}")
    headers = {
        "content-security-policy": CSP,
        "x-content-type-options": "nosniff",
        "cache-control": "no-cache",
    }
    return Response(target.read_bytes(), media_type=_TYPES[suffix], headers=headers)


def _secure_spec(app: FastAPI) -> None:
    from parity.serving.routes import secure_openapi

    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = secure_openapi(build(), UI_ROUTES, "#/components/schemas/Error")
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
