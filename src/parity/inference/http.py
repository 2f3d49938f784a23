"""The model server over HTTP, as a plain ASGI app: Open Inference Protocol v2 REST (`/v2/...`),
entity-based prediction (`POST /v1/models/{m}/predict`), alias moves, rollouts, `/metrics`;
errors are 4xx `{"error": message, "code": code}` bodies. Routing is a split of the path: no
framework layers.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr, ValidationError

from parity import __version__
from parity.errors import (
    BadRequest,
    Forbidden,
    InferenceRequestError,
    InvalidRequestField,
    ParityError,
)
from parity.inference.alias_http import AliasRoutes
from parity.inference.oip import (
    HEADER_LENGTH,
    ServerMetadata,
    binary_output_names,
    parse_request,
    render_response,
)
from parity.inference.rollout_http import RolloutRoutes
from parity.inference.routes import methods_at
from parity.inference.server import ModelServer, ModelTarget
from parity.serving.auth.gate import as_caller, principal_of
from parity.serving.auth.scopes import Principal
from parity.serving.errors import status_for
from parity.serving.guard import ASGIApp, Receive, Scope, Send, read_body
from parity.serving.routes import may_read

logger = logging.getLogger(__name__)

_JSON = [(b"content-type", b"application/json")]
_NOT_FOUND = "no such route; the model server answers /v2/... (Open Inference Protocol), "
_NOT_FOUND += "/v1/models[/{model}[/predict|/aliases[/{alias}]]], "
_NOT_FOUND += "/v1/rollouts[/{model}[/{action}]] and /metrics"


class PredictRequest(BaseModel):
    """Body of POST /v1/models/{model}/predict."""

    model_config = ConfigDict(extra="forbid")
    entities: dict[StrictStr, list[Any]] | list[dict[StrictStr, Any]]
    request_context: dict[StrictStr, list[Any]] | None = None
    id: StrictStr | None = None
    return_features: StrictBool = False


class _Reply(Exception):
    """A finished answer, raised from deep in a handler."""

    def __init__(
        self, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.status, self.body, self.headers = status, body, headers or []


def allowed_methods(parts: list[str]) -> tuple[str, ...]:
    """The methods the route at path `parts` answers; () for no route (a 404). Read from the
    route table (inference/routes.py), so every route has an access rule."""
    return methods_at(tuple(parts))


def error_body(code: str, message: str) -> dict[str, str]:
    """The Open Inference Protocol's error shape, plus Parity's stable code."""
    return {"error": message, "code": code}


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _dumps(body: Any) -> bytes:
    return orjson.dumps(body, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


class ModelApp:
    """ASGI app of the model server; `fallback` (the feature server, say) answers other paths."""

    def __init__(
        self,
        server: ModelServer,
        *,
        on_startup: Callable[[], Awaitable[None]] | None = None,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
        fallback: ASGIApp | None = None,
        rollouts: RolloutRoutes | None = None,
        secured: bool = False,
    ) -> None:
        self.server = server
        self.secured = secured  # auth is on: the spec declares the bearer scheme
        self.rollouts = rollouts or RolloutRoutes(None)
        # alias moves follow the rollout control switch (a promote moves an alias already)
        self.aliases = AliasRoutes(server.registry, enabled=self.rollouts.enabled)
        self.metrics = server.metrics
        self.fallback = fallback
        self._on_startup = on_startup
        self._on_shutdown = on_shutdown
        self.ready = False
        self._spec_bytes: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        parts = [p for p in scope["path"].split("/") if p]
        if parts[:1] not in (["v1"], ["v2"], ["metrics"]) and self.fallback is not None:
            # with the feature server behind, /openapi.json is its spec; this server's is
            # parity.inference.openapi.model_server_spec()
            await self.fallback(scope, receive, send)
            return
        live = self.server.shadows.live  # shadow work waits while a request is in flight
        live.enter()
        try:
            await self._answer(scope, parts, receive, send)
        finally:
            live.leave()

    async def _answer(self, scope: Scope, parts: list[str], receive: Receive, send: Send) -> None:
        model = ""
        try:
            status, body, extra = await self._route(scope, parts, receive)
        except _Reply as reply:
            status, body, extra = reply.status, _dumps(reply.body), reply.headers
        except ParityError as failure:
            model = parts[2] if len(parts) > 2 else ""
            self.metrics.error(failure.code, model)
            if isinstance(failure, Forbidden):  # the model a rollout start names, say
                self.metrics.denied(failure.scope, "forbidden")
            status, extra = status_for(failure), []
            body = _dumps(error_body(failure.code, failure.message))
        except Exception as failure:  # a bug, not the caller's fault: log it, answer 500
            logger.exception("model server failed on %s %s", scope["method"], scope["path"])
            self.metrics.error("internal", model)
            status, extra = 500, []
            body = _dumps(error_body("internal", f"internal error ({type(failure).__name__})"))
        headers = [*extra, (b"content-length", str(len(body)).encode())]
        if not any(name == b"content-type" for name, _ in extra):
            headers += _JSON
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _route(
        self, scope: Scope, parts: list[str], receive: Receive
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        method = scope["method"]
        allowed = allowed_methods(parts)
        if not allowed:
            raise _Reply(404, error_body("not_found", _NOT_FOUND))
        if method not in allowed:
            allow = ", ".join(allowed)
            body = error_body("method_not_allowed", f"{scope['path']} answers {allow} only")
            raise _Reply(405, body, [(b"allow", allow.encode())])
        if parts == ["metrics"]:
            return 200, self.metrics.render(), [(b"content-type", b"text/plain; version=0.0.4")]
        if parts == ["openapi.json"]:
            return 200, self._spec(), []
        if parts[:1] == ["v2"]:
            return await self._v2(method, parts[1:], scope, receive)
        if parts[:2] == ["v1", "rollouts"]:
            raw = await read_body(receive) if method == "POST" else b""
            client = scope.get("client") or ("", 0)
            principal = principal_of(scope)
            actor = f"http:{client[0]}" if principal is None else principal.name
            with as_caller(scope):  # the audit trail's actor and origin
                status, answer = await self.rollouts.handle(
                    method, parts[2:], raw, actor, principal=principal
                )
            return status, _dumps(answer), []
        if parts[:2] == ["v1", "models"] and parts[3:4] == ["aliases"]:
            raw = await read_body(receive) if method in ("PUT", "DELETE") else b""
            with as_caller(scope):  # the audit trail's and the alias history's actor
                status, answer = await self.aliases.handle(
                    method, parts[2:], raw, principal=principal_of(scope)
                )
            return status, _dumps(answer), []
        if parts[:1] == ["v1"] and parts[1:2] == ["models"]:
            return await self._v1(method, parts[2:], scope, receive)
        raise _Reply(404, error_body("not_found", _NOT_FOUND))

    async def _v2(
        self, method: str, parts: list[str], scope: Scope, receive: Receive
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if not parts and method == "GET":
            meta = ServerMetadata(name="parity", version=__version__, extensions=["binary_data"])
            return 200, meta.model_dump_json().encode(), []
        if parts[:1] == ["health"] and len(parts) == 2 and method == "GET":
            return self._health(parts[1])
        if parts[:1] != ["models"] or len(parts) < 2:
            raise _Reply(404, error_body("not_found", _NOT_FOUND))
        target, rest = _target(parts[1:])
        if rest == [] and method == "GET":
            deployment = await self.server.deployment(target)
            return 200, self.server.metadata(deployment).model_dump_json().encode(), []
        if rest == ["ready"] and method == "GET":
            await self.server.deployment(target)
            return 200, _dumps({"name": target.name, "ready": True}), []
        if rest == ["infer"] and method == "POST":
            return await self._infer(target, scope, await read_body(receive))
        raise _Reply(404, error_body("not_found", _NOT_FOUND))

    def _spec(self) -> bytes:
        if self._spec_bytes is None:
            from parity.inference.openapi import model_server_spec

            self._spec_bytes = _dumps(model_server_spec(__version__, secured=self.secured))
        return self._spec_bytes

    def _health(self, which: str) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if which == "live":
            return 200, _dumps({"live": True}), []
        if which == "ready":
            if not self.ready:
                raise _Reply(400, error_body("not_ready", "the server is still loading models"))
            return 200, _dumps({"ready": True}), []
        raise _Reply(404, error_body("not_found", _NOT_FOUND))

    async def _infer(
        self, target: ModelTarget, scope: Scope, raw: bytes
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        request, tensors = parse_request(raw, _json_length(scope), self.server.max_entities)
        routed: list[tuple[int, str]] = []
        with self._naming_the_arm(target, routed):
            response, deployment, route = await self.server.infer_target(
                target, request, tensors, _headers(scope), lambda *arm: routed.append(arm)
            )
        body, json_length = render_response(
            response, binary_output_names(request, deployment.output_names)
        )
        headers = _answered_by(deployment.version.version, route)
        if json_length is None:
            return 200, body, headers
        headers += [
            (b"content-type", b"application/octet-stream"),
            (HEADER_LENGTH.lower().encode(), str(json_length).encode()),
        ]
        return 200, body, headers

    async def _v1(
        self, method: str, parts: list[str], scope: Scope, receive: Receive
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if not parts and method == "GET":
            return 200, _dumps({"models": self._catalog(principal_of(scope))}), []
        target, rest = _target(parts)
        if rest == [] and method == "GET":
            version = self.server.registry.get_version(target.name, self.server.version_of(target))
            return 200, _dumps(dataclasses.asdict(version)), []
        if rest == ["predict"] and method == "POST":
            raw = await read_body(receive)
            return await self._predict(target, raw, _headers(scope), principal_of(scope))
        raise _Reply(404, error_body("not_found", _NOT_FOUND))

    def _catalog(self, principal: Principal | None) -> list[dict[str, Any]]:
        """Every model with its versions and aliases (with auth on: those `principal` may read)."""
        registry = self.server.registry
        return [
            {
                "name": name,
                "versions": [v.version for v in registry.versions(name)],
                "aliases": registry.aliases(name),
            }
            for name in registry.models()
            if principal is None or principal.allows("models:read", name)
        ]

    async def _predict(
        self,
        target: ModelTarget,
        raw: bytes,
        headers: dict[str, str],
        principal: Principal | None = None,
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        try:
            body = PredictRequest.model_validate_json(raw)
        except ValidationError as failure:
            raise BadRequest(_invalid(failure)) from None
        if body.return_features and principal is not None:  # feature values need features:read
            version = self.server.registry.get_version(target.name, self.server.version_of(target))
            self._may_see_features(principal, version.feature_service)
        routed: list[tuple[int, str]] = []
        with self._naming_the_arm(target, routed):
            answer = await self.server.predict_entities(
                target,
                _with_context(body.entities, body.request_context),
                request_id=body.id,
                return_features=body.return_features,
                headers=headers,
                on_route=lambda *arm: routed.append(arm),
            )
        reply: dict[str, Any] = {
            "id": answer.request_id,
            "model_name": answer.version.name,
            "model_version": answer.version.version,
            "alias": answer.alias,
            "predictions": answer.predictions,
            "outputs": answer.outputs,
            "route": answer.route,
        }
        if body.return_features:
            if principal is not None:  # a canary arm may read another service
                self._may_see_features(principal, answer.version.feature_service)
            reply["features"] = answer.features
        return 200, _dumps(reply), _answered_by(answer.version.version, answer.route)

    def _may_see_features(self, principal: Principal, service: str | None) -> None:
        """Forbidden unless `principal` may read the feature values `return_features` would
        answer: `features:read` for the model's feature service (or all of its views)."""
        if service is not None and self.server.features is not None:
            may_read(principal, self.server.features, None, service)

    @contextmanager
    def _naming_the_arm(self, target: ModelTarget, routed: list[tuple[int, str]]) -> Iterator[None]:
        """A failure of a routed request answers with the headers naming the arm that failed
        (`x-parity-model-version`, `x-parity-route`), as a success does."""
        try:
            yield
        except ParityError as failure:
            if not routed:
                raise
            self.metrics.error(failure.code, target.name)
            body = error_body(failure.code, failure.message)
            raise _Reply(status_for(failure), body, _answered_by(*routed[-1])) from None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self._on_startup is not None:
                        await self._on_startup()
                except Exception as failure:
                    logger.exception("model server start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(failure)})
                    return
                self.ready = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                await self.server.close()
                if self._on_shutdown is not None:
                    await self._on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _with_context(
    entities: dict[str, list[Any]] | list[dict[str, Any]], context: dict[str, list[Any]] | None
) -> dict[str, list[Any]] | list[dict[str, Any]]:
    """Entity keys and request-time values as one set of columns (what on-demand views and the
    model's request inputs read)."""
    if not context:
        return entities
    if isinstance(entities, dict):
        columns = dict(entities)
    else:
        names = dict.fromkeys(name for row in entities for name in row)
        columns = {name: [row.get(name) for row in entities] for name in names}
    clash = sorted(set(columns) & set(context))
    if clash:
        raise InvalidRequestField(
            f"{clash} appear in both entities and request_context; send them once"
        )
    rows = {len(column) for column in (*columns.values(), *context.values())}
    if len(rows) > 1:
        raise InvalidRequestField(
            "request columns must all have the same length (entities and request_context)"
        )
    return {**columns, **context}


def _target(parts: list[str]) -> tuple[ModelTarget, list[str]]:
    """`name[@alias]` then, optionally, `versions/N`; returns the rest of the path."""
    if len(parts) >= 3 and parts[1] == "versions":
        return ModelTarget.parse(parts[0], parts[2]), parts[3:]
    return ModelTarget.parse(parts[0]), parts[1:]


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (the rollout routing key may be one)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def _answered_by(version: int, route: str | None) -> list[tuple[bytes, bytes]]:
    """Response headers naming the version that answered, and the rollout arm while routed."""
    headers = [(b"x-parity-model-version", str(version).encode())]
    if route is not None:
        headers.append((b"x-parity-route", route.encode()))
    return headers


def _json_length(scope: Scope) -> int | None:
    wanted = HEADER_LENGTH.lower().encode()
    for name, value in scope["headers"]:
        if name == wanted:
            if not value.isdigit() or len(value) > 19:  # more than any body could hold
                raise InferenceRequestError(f"{HEADER_LENGTH} must be a byte count")
            return int(value)
    return None


def _invalid(failure: ValidationError) -> str:
    problems = failure.errors()[:3]
    text = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in problems
    )
    return f"invalid predict request: {text}"
