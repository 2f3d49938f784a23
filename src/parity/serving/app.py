"""The feature server: /get-online-features and /push in Feast's JSON shapes, /health, /metrics.

Bad input never yields a 500: ParityError maps to a 4xx JSON body (serving/errors.py), malformed
JSON to 400, a body over the limit to 413, and more than `max_in_flight` requests to a fast 503
(serving/guard.py). A lookup runs on one of a few read threads (serving/admission.py), so the
event loop never waits for the store: parse the body (orjson and the model's checks by hand for a
plainly valid one, else pydantic, which words the 4xx), check the entity limit, read, put the
answer's bytes together column by column (feast_json.response_json). One that cannot get a
thread within the queueing budget is a fast 503.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from parity.errors import (
    BadRequest,
    Forbidden,
    ParityError,
    PushDisabled,
    RegistryUnavailable,
    TooManyEntities,
    Unauthenticated,
)
from parity.feature_store import FeatureStore
from parity.monitoring.served_log import ServedLog, served_log
from parity.online.breaker import CircuitBreaker
from parity.serving.admission import Admission
from parity.serving.auth.gate import AuthGate, as_caller, gate_for, principal_of
from parity.serving.auth.scopes import Principal
from parity.serving.errors import body_for, headers_for, status_for
from parity.serving.feast_json import (
    ErrorBody,
    HealthResponse,
    OnlineRequest,
    OnlineResponseBody,
    PushRequest,
    PushResponse,
    parse_online,
    response_json,
)
from parity.serving.guard import ASGIApp, Guard, Message, Receive, Scope, Send
from parity.serving.metrics import ServerMetrics
from parity.serving.routes import FEATURE_ROUTES, may_read, secure_openapi

logger = logging.getLogger(__name__)

PUSH_DISABLED = (
    "/push is off on this server: it writes the online store and the training data. Turn auth "
    "on in parity.yaml (auth: {enabled: true}; then a token with features:push may push), or "
    "start the server with 'parity serve --enable-push' where only trusted clients reach it"
)


def _encode_other(value: Any) -> Any:
    if isinstance(value, bytes):  # Bytes features travel as base64 text, as Feast's do
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


class _Json(JSONResponse):
    """orjson-encoded JSON (a JSONResponse, so FastAPI's spec declares the models, not strings)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_encode_other, option=orjson.OPT_NON_STR_KEYS)


def _encode_values(values: list[Any]) -> bytes:
    return orjson.dumps(values, default=_encode_other, option=orjson.OPT_NON_STR_KEYS)


class _Encoded(Response):
    """A JSON answer whose bytes are already made (serving/feast_json.py's response_json)."""

    media_type = "application/json"


class _Answers:
    """Error bodies and the lookup itself, shared by the FastAPI routes and the fast path."""

    def __init__(
        self,
        store: FeatureStore,
        metrics: ServerMetrics,
        admission: Admission,
        max_entities: int,
        served_log: ServedLog | None = None,
        denied: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.denied = denied or metrics.denied  # the counter of the server's /metrics
        self.secured = store.config.auth.enabled  # the gate admitted a principal: check names
        self.metrics = metrics
        self.admission = admission
        self.max_entities = max_entities
        self.served_log = served_log  # sampled served rows, for consistency replay

    def error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> _Json:
        self.metrics.error(code)
        return _Json(body_for(code, message), status, headers)

    def failed(self, failure: ParityError) -> _Json:
        if isinstance(failure, Forbidden):  # a name in the body the token may not use
            self.denied(failure.scope, "forbidden")
        return self.error(status_for(failure), failure.code, failure.message, headers_for(failure))

    def invalid(self, problems: list[ErrorDetails] | list[Any]) -> _Json:
        text = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in problems)
        status = 400 if any(e["type"] == "json_invalid" for e in problems) else 422
        return self.error(status, "invalid_request", text)

    def internal(self, failure: Exception, where: str) -> _Json:
        """A bug: logged with its traceback, answered 500 in the standard shape."""
        logger.exception("feature server failed on %s", where)
        return self.error(500, "internal", f"internal error ({type(failure).__name__})")

    async def online(self, raw: bytes, scope: Scope) -> Response:
        """The whole of /get-online-features, from body bytes to the response, run on a read
        thread (a fast 503 when none is free within the queueing budget)."""
        principal = principal_of(scope)
        try:
            return await self.admission.run(lambda: self.lookup(raw, principal))
        except ParityError as failure:
            return self.failed(failure)

    def lookup(self, raw: bytes, principal: Principal | None = None) -> Response:
        body = parse_online(raw)  # the common, valid request, cheaply; else pydantic says why
        if body is None:
            try:
                body = OnlineRequest.model_validate_json(raw)
            except ValidationError as failure:
                return self.invalid(failure.errors())
        try:
            if (body.features is None) == (body.feature_service is None):
                raise BadRequest("give exactly one of 'features' and 'feature_service'")
            if self.secured:
                may_read(_admitted(principal), self.store, body.features, body.feature_service)
            rows = max((len(column) for column in body.entities.values()), default=0)
            if rows > self.max_entities:
                raise TooManyEntities(
                    f"{rows:,} entity rows in one request; the feature server answers at most "
                    f"{self.max_entities:,} (feature_server.max_entities in parity.yaml): "
                    "split the request"
                )
            wanted: Any = body.features if body.features is not None else body.feature_service
            at = self.store.now() if self.served_log is not None else None
            response = self.store.get_online_features(
                wanted, body.entities, full_feature_names=body.full_feature_names
            )
            if at is not None and self.served_log is not None and not body.full_feature_names:
                self.served_log.log_lookup(self.store.registry.catalog, wanted, response, at)
            return _Encoded(response_json(response, _encode_values))
        except ParityError as failure:
            return self.failed(failure)
        except Exception as failure:  # the fast path has no framework to catch it
            return self.internal(failure, "POST /get-online-features")


def create_app(
    store: FeatureStore,
    *,
    max_in_flight: int = 256,
    max_body_bytes: int = 1 << 20,
    enable_push: bool = False,
    max_entities: int | None = None,
    read_threads: int | None = None,
    max_queue_ms: float | None = None,
    gated: bool = True,
    denied: Callable[[str, str], None] | None = None,
) -> Guard | AuthGate:
    """The server as one ASGI app: the admission guard around the FastAPI app (`.app`), and,
    with `auth.enabled` in parity.yaml, the auth gate around both (serving/auth/gate.py,
    enforcing serving/routes.py's table; `gated=False` for a server that gates in front, and
    `denied` its denial counter, so the 403s this app decides count on that server's /metrics).

    The guard is the lookup's fast path, which skips every framework layer (routing,
    dependencies, exception and telemetry middleware). `/push` writes the online store and the
    training data: without auth it answers 403 unless `enable_push`; with auth it needs a token
    with features:push. `max_entities`, `read_threads` and `max_queue_ms` default to the repo's
    `feature_server` settings."""
    _ = store.online_store  # built now: a URL it cannot take stops start-up, not every lookup
    settings = store.config.feature_server
    admission = Admission(
        threads=read_threads or settings.read_threads,
        max_wait_seconds=(max_queue_ms or settings.max_queue_ms) / 1000,
    )
    metrics = ServerMetrics(
        store.monitoring.newest_writes,  # watermarks, this worker's pushes, others' recorded
        store.now,
        store.monitoring.refused_window_reads,
        slos=store.monitoring.freshness_slos,
        values=store.monitoring.newest_values,  # the SLO gauges judge the newest value's age
    )
    metrics.watch(admission, lambda: _breakers(store))
    served = served_log(store.repo_path, settings.served_log, settings.log_sample_percent)
    answers = _Answers(
        store, metrics, admission, max_entities or settings.max_entities, served, denied
    )
    guard = Guard(
        _fastapi_app(store, metrics, answers, enable_push or answers.secured),
        metrics=metrics,
        max_in_flight=max_in_flight,
        max_body_bytes=max_body_bytes,
        fast_routes={("POST", "/get-online-features"): answers.online},
    )
    if not (answers.secured and gated):
        return guard
    return gate_for(
        store,
        guard,
        FEATURE_ROUTES,
        metrics=metrics,
        error_body=body_for,
        max_in_flight=max_in_flight,
    )


def _admitted(principal: Principal | None) -> Principal:
    """The principal the gate admitted (auth is on); Unauthenticated if none did."""
    if principal is None:
        raise Unauthenticated("this server needs a token: send 'Authorization: Bearer <token>'")
    return principal


def _breakers(store: FeatureStore) -> dict[str, CircuitBreaker]:
    """The online store's circuit breakers by store type: Redis has one, a Redis Cluster one per
    node (`redis_cluster:host:port`), SQLite (local) none. Reads the config first, so a scrape
    never opens a SQLite file."""
    kind = store.config.online.type
    if kind == "redis_cluster":
        per_node = getattr(store.online_store, "breakers", {})
        return {f"redis_cluster:{node}": b for node, b in per_node.items()}
    if kind != "redis":
        return {}
    breaker = getattr(store.online_store, "breaker", None)
    return {"redis": breaker} if isinstance(breaker, CircuitBreaker) else {}


def _fastapi_app(
    store: FeatureStore, metrics: ServerMetrics, answers: _Answers, enable_push: bool
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        answers.admission.close()
        if answers.served_log is not None:
            answers.served_log.close()
        await store.close_async()

    app = FastAPI(
        lifespan=lifespan,
        title="Parity feature server",
        version="1",
        description="Online features in Feast's JSON shapes. Errors are "
        '`{"error": {"code", "message"}}` with a 4xx status (503 when overloaded or when the '
        "online store or registry is unreachable).",
        default_response_class=_Json,
    )

    @app.exception_handler(HTTPException)
    async def framework_error(_: Request, failure: HTTPException) -> _Json:
        # An unknown route (404) or method (405) answers in the same error shape.
        code = {404: "not_found", 405: "method_not_allowed"}.get(failure.status_code, "http_error")
        reply = answers.error(failure.status_code, code, str(failure.detail))
        reply.headers.update(failure.headers or {})
        return reply

    @app.exception_handler(ParityError)
    async def parity_error(_: Request, failure: ParityError) -> _Json:
        return answers.failed(failure)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_: Request, failure: RequestValidationError) -> _Json:
        return answers.invalid(list(failure.errors()))

    app.add_middleware(_Internal, answers=answers)
    _add_routes(app, store, metrics, answers, enable_push)
    if answers.secured:
        _secure_spec(app)
    return app


def _secure_spec(app: FastAPI) -> None:
    """The spec declares the bearer scheme, and 401/403/429 on the routes that need a token."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        spec = build()  # FastAPI caches it; securing it twice changes nothing
        return secure_openapi(spec, FEATURE_ROUTES, "#/components/schemas/ErrorBody")

    app.openapi = openapi  # type: ignore[method-assign]


class _Internal:
    """A bug (an exception that is not a ParityError) is logged and answered with a JSON 500 in
    the standard error shape, and the keep-alive connection stays open."""

    def __init__(self, app: ASGIApp, answers: _Answers) -> None:
        self.app = app
        self.answers = answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except Exception as failure:
            if started or scope["type"] != "http":
                raise
            where = f"{scope['method']} {scope['path']}"
            await self.answers.internal(failure, where)(scope, receive, send)


def _add_routes(
    app: FastAPI,
    store: FeatureStore,
    metrics: ServerMetrics,
    answers: _Answers,
    enable_push: bool,
) -> None:
    _add_lookup_routes(app, store, answers)
    _add_push_route(app, store, answers, enable_push)
    _add_metrics_route(app, metrics)


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a route that reads its own body (so FastAPI does not) as JSON of `model`."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _add_lookup_routes(app: FastAPI, store: FeatureStore, answers: _Answers) -> None:
    registry_version = _RegistryVersion(store)

    @app.get("/health", response_model=HealthResponse, responses=_errors(503))
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "project": store.project,
            "registry_version": await registry_version(),
        }

    @app.post(
        "/get-online-features",
        openapi_extra=_json_body(OnlineRequest),
        summary="Latest feature values for entities (Feast's request and response shapes)",
        responses={200: {"model": OnlineResponseBody}, **_errors(400, 404, 413, 422, 503)},
    )
    async def get_online_features(request: Request) -> Response:
        # The guard's fast path serves this; the route documents it (and serves it if the fast
        # path is taken out).
        return await answers.online(await request.body(), request.scope)


def _add_push_route(
    app: FastAPI, store: FeatureStore, answers: _Answers, enable_push: bool
) -> None:
    @app.post(
        "/push",
        openapi_extra=_json_body(PushRequest),
        summary="Write rows of a push source online and/or to its offline folder (Feast's shape)",
        responses={200: {"model": PushResponse}, **_errors(400, 403, 404, 413, 422, 503)},
    )
    async def push(request: Request) -> Response:
        # The body is read here, not by FastAPI, so a body over the limit reaches the ParityError
        # handler (413) instead of FastAPI's generic 400.
        if not enable_push:
            raise PushDisabled(PUSH_DISABLED)
        try:
            body = PushRequest.model_validate_json(await request.body())
        except ValidationError as failure:
            return answers.invalid(failure.errors())
        if answers.secured:
            principal = _admitted(principal_of(request.scope))
            principal.require(("features:push",), body.push_source_name, "push source")
        with as_caller(request.scope):
            rows = await run_in_threadpool(
                store.push,
                body.push_source_name,
                body.df,
                to=body.to,
                bytes_as_base64=True,  # JSON carries Bytes features as base64 text, as answered
            )
        return _Json({"pushed": rows})


def _add_metrics_route(app: FastAPI, metrics: ServerMetrics) -> None:
    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={
            200: {
                "description": "Prometheus text exposition format 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            # The error body is JSON although the 200 is text, so it is declared by reference.
            503: {
                "description": _WHY[503],
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                },
            },
        },
    )
    def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")


HEALTH_REGISTRY_SECONDS = 1.0  # a health probe's usual own timeout (Kubernetes' default is 1 s)


class _RegistryVersion:
    """The registry version for /health, checked on a thread: the head check is a database
    query, and a hung registry database must not hold the event loop or the probe. One check at
    a time; past HEALTH_REGISTRY_SECONDS the probe answers 503 registry_unavailable while the
    check goes on."""

    def __init__(self, store: FeatureStore) -> None:
        self._store = store
        self._check: asyncio.Future[int] | None = None

    async def __call__(self) -> int:
        if self._check is None or self._check.done():
            if self._check is not None and not self._check.cancelled():
                self._check.exception()  # a failure no probe waited for is not logged as lost
            self._check = asyncio.ensure_future(asyncio.to_thread(self._read))
        try:
            return await asyncio.wait_for(asyncio.shield(self._check), HEALTH_REGISTRY_SECONDS)
        except TimeoutError:
            raise RegistryUnavailable(
                f"the registry database did not answer within {HEALTH_REGISTRY_SECONDS:g} s"
            ) from None

    def _read(self) -> int:
        return self._store.registry.version


_WHY = {
    400: "Malformed JSON, or a request that cannot be answered (one of 'features' and "
    "'feature_service' missing, a missing or wrongly typed entity key, an entity column that is "
    "neither a join key nor a request field of the requested views, rows that do not fit)",
    403: "/push is off: start the server with --enable-push (or turn auth on)",
    404: "An unknown feature view, feature, feature service or push source",
    413: "The body is over the server's --max-body-bytes, or a lookup has more entity rows than "
    "feature_server.max_entities",
    422: "The body does not match the request schema",
    503: "Overloaded (--max-in-flight requests already in flight, or no read thread free within "
    "feature_server.max_queue_ms), the online store's circuit is open, or the online store or "
    "registry cannot be reached; retry after the Retry-After header's seconds",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error answers: the standard error body, with why each happens."""
    return {status: {"model": ErrorBody, "description": _WHY[status]} for status in statuses}


def app_from_environment() -> Guard | AuthGate:
    """The app each `parity serve --workers N` worker process builds (uvicorn factory)."""
    store = FeatureStore(os.environ["PARITY_SERVE_REPO"])
    return create_app(
        store,
        max_in_flight=int(os.environ.get("PARITY_SERVE_MAX_IN_FLIGHT", "256")),
        max_body_bytes=int(os.environ.get("PARITY_SERVE_MAX_BODY_BYTES", str(1 << 20))),
        enable_push=os.environ.get("PARITY_SERVE_ENABLE_PUSH") == "1",
    )
