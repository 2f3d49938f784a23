"""The ASGI gate both servers put outside their admission guard when `auth.enabled`: bearer token →
Principal (verified through a short cache), the route table's scope check, per-client limits, then
the app with the principal in the scope and as the audit actor. Must not import a server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from parity.errors import Forbidden, ParityError, RateLimited, Unauthenticated
from parity.serving.auth.rules import AUTHENTICATED, OPEN, RouteRule, find_rule
from parity.serving.auth.scopes import Principal
from parity.serving.errors import headers_for, status_for

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore
    from parity.serving.guard import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

PRINCIPAL_KEY = "parity.principal"
# Longer than any Parity token or JWT the authenticator takes (IdPs put groups and roles in
# theirs, past 4 KiB): refused without a lookup.
MAX_TOKEN_CHARS = 16 * 1024
MAX_CACHED = 10_000  # verified tokens kept (one entry per distinct token seen in cache_seconds)
MAX_REFUSALS_CACHED = 1_000  # refused tokens kept apart, so garbage cannot evict good tokens
MAX_ROUTES_CACHED = 4_096  # (method, path) → rule remembered; cleared when full
ANY_TOKEN = "authenticated"  # the metrics' `scope` label of a route that needs any valid token

Authenticator = Callable[[str], Principal]
ErrorBody = Callable[[str, str], Any]


class Limits(Protocol):
    """Per-client limits (`parity.serving.auth.limits.ClientLimits`)."""

    def enter(self, principal: Principal) -> None: ...

    def leave(self, principal: Principal) -> None: ...


class DenialMetrics(Protocol):
    def denied(self, scope: str, reason: str) -> None: ...


def principal_of(scope: Scope) -> Principal | None:
    """Who the gate admitted this request as (None: auth is off, or an open route)."""
    found = scope.get(PRINCIPAL_KEY)
    return found if isinstance(found, Principal) else None


def as_caller(scope: Scope) -> AbstractContextManager[object]:
    """The audit actor of a write over HTTP: with auth on, the gate already runs the request as
    its principal (nothing to do); with auth off, the client's address (`http:<address>`, kind
    user, from that address), never the OS user the server runs as."""
    if principal_of(scope) is not None:
        return nullcontext()
    from parity.registry.audit import Actor, acting_as

    address = str((scope.get("client") or ("", 0))[0])
    return acting_as(Actor(f"http:{address}", "user", address or "unknown"))


@dataclass(frozen=True)
class _Refusal:
    message: str


class TokenCache:
    """Verified tokens (token text → Principal, or the refusal) for `seconds`, at most `size`
    principals and `refusals` refusals; `clock` is monotonic. A principal past its own
    `expires_at` (on `wall`, epoch seconds) is refused even while cached."""

    def __init__(
        self,
        seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        size: int = MAX_CACHED,
        refusals: int = MAX_REFUSALS_CACHED,
    ) -> None:
        self.seconds = seconds
        self._clock = clock
        self._good: dict[str, tuple[float, Principal]] = {}
        self._bad: dict[str, tuple[float, _Refusal]] = {}
        self._sizes = (size, refusals)

    def get(self, token: str) -> Principal | _Refusal | None:
        now = self._clock()
        for entries in (self._good, self._bad):
            entry = entries.get(token)
            if entry is not None:
                if now - entry[0] < self.seconds:
                    return entry[1]
                del entries[token]
        return None

    def put(self, token: str, answer: Principal | _Refusal) -> None:
        if self.seconds <= 0:
            return
        entries: dict[str, Any] = self._good if isinstance(answer, Principal) else self._bad
        limit = self._sizes[0] if isinstance(answer, Principal) else self._sizes[1]
        if token not in entries and len(entries) >= limit:
            self._evict(entries)
        entries[token] = (self._clock(), answer)

    def _evict(self, entries: dict[str, Any]) -> None:
        """Drop the stale entries; if none was stale, the oldest one (insertion order)."""
        now = self._clock()
        stale = [key for key, (at, _) in entries.items() if now - at >= self.seconds]
        for key in stale:
            del entries[key]
        if not stale:
            del entries[next(iter(entries))]

    def __len__(self) -> int:
        return len(self._good) + len(self._bad)


class AuthGate:
    """Plain ASGI middleware enforcing `rules` (see the module docstring). `authenticator` does
    I/O (a registry query), so a cache miss runs it on a thread; `wall` is the clock the
    principals' `expires_at` is read against (epoch seconds)."""

    def __init__(
        self,
        app: ASGIApp,
        rules: Sequence[RouteRule],
        authenticator: Authenticator,
        limits: Limits,
        metrics: DenialMetrics,
        error_body: ErrorBody,
        cache_seconds: float,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.rules = tuple(rules)
        self.authenticator = authenticator
        self.limits = limits
        self.metrics = metrics
        self.error_body = error_body
        self.cache = TokenCache(cache_seconds, clock=monotonic)
        self._wall = wall
        self._pending: dict[str, asyncio.Future[Principal | _Refusal]] = {}
        self._routes: dict[tuple[str, str], tuple[RouteRule | None, dict[str, str]]] = {}
        from parity.registry.audit import Actor, reset_actor, set_actor

        self._actor, self._set_actor, self._reset_actor = Actor, set_actor, reset_actor
        self._actors: dict[tuple[str, str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule, params = self._rule(scope["method"], scope["path"])
        if rule is not None and rule.access == OPEN:
            await self.app(scope, receive, send)
            return
        label = rule.scopes[0] if rule is not None and rule.scopes else ANY_TOKEN
        try:
            principal = await self._principal(scope)
        except Unauthenticated as failure:
            await self._deny(send, failure, label, "unauthenticated")
            return
        except ParityError as failure:  # the registry cannot say (503): retry, nothing cached
            await self._answer(send, failure)
            return
        try:
            if rule is not None:
                _check(rule, params, principal)
            self.limits.enter(principal)
        except Forbidden as failure:
            await self._deny(send, failure, failure.scope or label, "forbidden")
            return
        except RateLimited as failure:
            await self._deny(send, failure, label, "rate_limited")
            return
        try:
            scope[PRINCIPAL_KEY] = principal
            reset = self._set_actor(self._actor_of(principal, scope.get("client")))
            try:
                await self.app(scope, receive, send)
            finally:
                self._reset_actor(reset)
        finally:
            self.limits.leave(principal)

    def _actor_of(self, principal: Principal, client: tuple[str, int] | None) -> Any:
        """The audit actor of `principal` calling from `client` (kept: one per caller and
        address, so a request builds none)."""
        origin = str(client[0]) if client else ""
        key = (principal.key, principal.name, origin)
        actor = self._actors.get(key)
        if actor is None:
            if len(self._actors) >= MAX_CACHED:
                self._actors.clear()
            actor = self._actors[key] = self._actor(principal.name, principal.kind, origin=origin)
        return actor

    def _rule(self, method: str, path: str) -> tuple[RouteRule | None, dict[str, str]]:
        """The rule of (`method`, `path`) and its parameters, remembered (a server sees the same
        few paths again and again, so the table's patterns are matched once per path)."""
        key = (method, path)
        known = self._routes.get(key)
        if known is None:
            found = find_rule(self.rules, "GET" if method == "HEAD" else method, _normal(path))
            known = found if found is not None else (None, {})
            if len(self._routes) >= MAX_ROUTES_CACHED:
                self._routes.clear()  # many distinct paths (names in them): start again
            self._routes[key] = known
        return known

    async def _principal(self, scope: Scope) -> Principal:
        token = _bearer(scope["headers"])
        answer = self.cache.get(token)
        if answer is None:
            answer = await self._verify(token)
        if isinstance(answer, _Refusal):
            raise Unauthenticated(answer.message)
        expires = answer.expires_at
        if expires is not None and self._wall() >= expires:
            where = "the IdP" if answer.kind == "jwt" else "parity auth token create"
            raise Unauthenticated(f"token '{answer.name}' has expired; ask for a new one ({where})")
        return answer

    async def _verify(self, token: str) -> Principal | _Refusal:
        """One verification per token at a time, on a thread; the answer is cached."""
        pending = self._pending.get(token)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this request was cancelled, not the verification it waited on
                return await self._verify(token)
        future: asyncio.Future[Principal | _Refusal] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        try:
            answer: Principal | _Refusal = await asyncio.to_thread(self.authenticator, token)
        except Unauthenticated as failure:
            answer = _Refusal(failure.message)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as failure:  # e.g. the registry is unreachable: not cached
            future.set_exception(failure)
            future.exception()  # retrieved: a failure no other request waited for is not logged
            raise
        finally:
            del self._pending[token]
        self.cache.put(token, answer)
        future.set_result(answer)
        return answer

    async def _deny(self, send: Send, failure: ParityError, scope: str, reason: str) -> None:
        self.metrics.denied(scope, reason)
        logger.debug("refused (%s, scope %s): %s", reason, scope, failure.message)
        await self._answer(send, failure)

    async def _answer(self, send: Send, failure: ParityError) -> None:
        payload = orjson.dumps(self.error_body(failure.code, failure.message))
        headers = [(k.encode(), v.encode()) for k, v in headers_for(failure).items()]
        await send(
            {
                "type": "http.response.start",
                "status": status_for(failure),
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _normal(path: str) -> str:
    """The path with empty segments dropped (`//v2//models/x` is `/v2/models/x`): the model
    server routes on the non-empty segments, so the gate must see the same route."""
    return "/" + "/".join(part for part in path.split("/") if part)


def _bearer(headers: Sequence[tuple[bytes, bytes]]) -> str:
    """The token of `Authorization: Bearer <token>`; Unauthenticated (never quoting the header)
    when it is missing or malformed."""
    found = [value for name, value in headers if name == b"authorization"]
    if not found:
        raise Unauthenticated(
            "this server needs a token: send 'Authorization: Bearer <token>' (create one with "
            "parity auth token create)"
        )
    scheme, _, token = found[0].decode("latin-1").strip().partition(" ")
    token = token.strip()
    if len(found) > 1 or scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthenticated(
            "malformed Authorization header: send exactly one 'Authorization: Bearer <token>'"
        )
    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthenticated(f"the token is over {MAX_TOKEN_CHARS} characters: not a token")
    return token


def _check(rule: RouteRule, params: dict[str, str], principal: Principal) -> None:
    """Forbidden unless `principal` may call `rule`'s route: a scope for the path's name, or,
    for a route naming nothing in its path, the scope for at least one name (the handler then
    checks the names the body carries, or filters what it lists)."""
    if rule.access == AUTHENTICATED:
        return
    name = rule.name_in(params)
    if name is not None:
        principal.require(rule.scopes, name, rule.what)
    elif not any(principal.allows_any(scope) for scope in rule.scopes):
        principal.require(rule.scopes, None, rule.what)


def build_authenticator(store: FeatureStore) -> Authenticator:
    """Token text → Principal for `store`'s servers: Parity API tokens (the registry's token
    table), and, when `auth.oidc` is set, JWTs (three dot-separated parts) from that provider.
    Raises Unauthenticated; does I/O (call it off the event loop)."""
    tokens = store.access.tokens
    jwt: Any = None
    oidc = store.config.auth.oidc
    if oidc is not None:
        from parity.serving.auth.jwt import JwtAuthenticator

        jwt = JwtAuthenticator(oidc, store.repo_path, clock=lambda: store.now().timestamp())

    def authenticate(text: str) -> Principal:
        if jwt is not None and text.count(".") == 2:
            principal: Principal = jwt.authenticate(text)
            return principal
        return tokens.authenticate(text, store.now())

    return authenticate


def gate_for(
    store: FeatureStore,
    app: ASGIApp,
    rules: Sequence[RouteRule],
    *,
    metrics: DenialMetrics,
    error_body: ErrorBody,
    max_in_flight: int,
) -> AuthGate:
    """The gate of one of `store`'s servers (`auth` in parity.yaml): its tokens, its limits
    (defaults `auth.limits`; in flight, per client, out of the server's `max_in_flight`)."""
    from parity.serving.auth.limits import ClientLimits

    auth = store.config.auth
    return AuthGate(
        app,
        rules,
        build_authenticator(store),
        ClientLimits(auth.limits, max_in_flight),
        metrics,
        error_body,
        auth.cache_seconds,
        wall=lambda: store.now().timestamp(),
    )
