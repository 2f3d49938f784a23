"""The auth gate over a tiny ASGI app: who gets through (open routes, any token, scopes for the
path's name), the verification cache (hits, refusals, expiry mid-cache, revocation seen after
cache_seconds, one verification per token at a time), 401/403/429 bodies and headers in the
server's own error shape, the denial counter, and never the token in a body or a log line."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import orjson
import pytest

from parity.errors import RateLimited, RegistryUnavailable, Unauthenticated
from parity.inference.http import error_body as model_error_body
from parity.serving.auth.gate import AuthGate, TokenCache, principal_of
from parity.serving.auth.rules import AUTHENTICATED, BODY, OPEN, SCOPED, RouteRule
from parity.serving.auth.scopes import Principal, parse_scopes
from parity.serving.errors import body_for
from parity.serving.metrics import ServerMetrics

RULES = (
    RouteRule("GET", "/health", OPEN),
    RouteRule("GET", "/spec", AUTHENTICATED),
    RouteRule("GET", "/models/{model}", SCOPED, ("models:read",), "model", what="model"),
    RouteRule("POST", "/push", SCOPED, ("features:push",), name_from=BODY, what="push source"),
    RouteRule("GET", "/metrics", SCOPED, ("metrics:read",)),
)
SECRET = "parity_0123456789ab_S3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3c"


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Tokens:
    """Token text → Principal; counts verifications; `revoke` drops one."""

    def __init__(self) -> None:
        self.known: dict[str, Principal] = {}
        self.calls = 0
        self.release = threading.Event()
        self.release.set()

    def add(self, text: str, scopes: str, expires_at: float | None = None) -> None:
        name = f"bot-{len(self.known)}"
        principal = Principal(name, "token", parse_scopes(scopes), f"token:{name}", expires_at)
        self.known[text] = principal

    def __call__(self, text: str) -> Principal:
        self.calls += 1
        self.release.wait(5)
        if text == "broken":
            raise RegistryUnavailable("the registry database did not answer")
        try:
            return self.known[text]
        except KeyError:
            raise Unauthenticated(
                "unknown token: ask for one with parity auth token create"
            ) from None


class Limits:
    def __init__(self) -> None:
        self.inside: list[str] = []
        self.left: list[str] = []
        self.refuse = False

    def enter(self, principal: Principal) -> None:
        if self.refuse:
            raise RateLimited(f"token '{principal.name}' is over its rate", 2.5)
        self.inside.append(principal.name)

    def leave(self, principal: Principal) -> None:
        self.left.append(principal.name)


class Denials:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def denied(self, scope: str, reason: str) -> None:
        self.seen.append((scope, reason))


class App:
    """Answers 200 with who it ran as (the principal, and the audit actor in effect)."""

    def __init__(self) -> None:
        self.fail = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from parity.registry.audit import current_actor

        if self.fail:
            raise RuntimeError("boom")
        principal = principal_of(scope)
        actor = current_actor()
        body = orjson.dumps(
            {
                "principal": None if principal is None else principal.name,
                "actor": [actor.name, actor.kind, actor.origin],
                "actor_in_thread": await asyncio.to_thread(lambda: current_actor().name),
            }
        )
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


class Setup:
    def __init__(self, cache_seconds: float = 5.0, error_body: Any = body_for) -> None:
        self.tokens, self.limits, self.denials, self.app = Tokens(), Limits(), Denials(), App()
        self.monotonic, self.wall = Clock(), Clock(1_700_000_000.0)
        self.gate = AuthGate(
            self.app,
            RULES,
            self.tokens,
            self.limits,
            self.denials,
            error_body,
            cache_seconds,
            wall=self.wall,
            monotonic=self.monotonic,
        )

    def call(
        self, method: str, path: str, token: str | None = None, *raw: tuple[bytes, bytes]
    ) -> tuple[int, dict[bytes, bytes], Any]:
        return asyncio.run(self.acall(method, path, token, *raw))

    async def acall(
        self, method: str, path: str, token: str | None = None, *raw: tuple[bytes, bytes]
    ) -> tuple[int, dict[bytes, bytes], Any]:
        headers = list(raw)
        if token is not None:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "headers": headers,
            "client": ("10.1.2.3", 5555),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.gate(scope, receive, send)
        start, body = sent[0], sent[1]["body"]
        return start["status"], dict(start["headers"]), orjson.loads(body)


@pytest.fixture
def setup() -> Setup:
    return Setup()


def test_an_open_route_needs_no_token_and_runs_without_a_principal(setup: Setup) -> None:
    status, _, body = setup.call("GET", "/health")
    assert (status, body["principal"]) == (200, None)
    assert setup.tokens.calls == 0 and setup.denials.seen == []


def test_no_token_is_401_with_www_authenticate_in_the_servers_shape(setup: Setup) -> None:
    status, headers, body = setup.call("GET", "/spec")
    assert status == 401
    assert headers[b"www-authenticate"] == b'Bearer realm="parity"'
    assert body["error"]["code"] == "unauthenticated"
    assert "Authorization: Bearer" in body["error"]["message"]
    assert setup.denials.seen == [("authenticated", "unauthenticated")]
    model = Setup(error_body=model_error_body)
    status, _, body = model.call("GET", "/models/fraud")
    assert (status, body["code"]) == (401, "unauthenticated") and isinstance(body["error"], str)
    assert model.denials.seen == [("models:read", "unauthenticated")]


@pytest.mark.parametrize(
    "header",
    [
        (b"authorization", b"Basic dXNlcjpwYXNz"),
        (b"authorization", b"Bearer"),
        (b"authorization", b"Bearer  "),
        (b"authorization", b"Bearer two parts"),
        (b"authorization", b"Bearer " + b"x" * (16 * 1024 + 1)),  # over MAX_TOKEN_CHARS
    ],
)
def test_a_malformed_authorization_header_is_401_without_a_lookup(
    setup: Setup, header: tuple[bytes, bytes]
) -> None:
    status, _, body = setup.call("GET", "/spec", None, header)
    assert (status, body["error"]["code"]) == (401, "unauthenticated")
    assert setup.tokens.calls == 0
    assert "dXNlcjpwYXNz" not in body["error"]["message"]


def test_two_authorization_headers_are_refused(setup: Setup) -> None:
    setup.tokens.add("good", "admin")
    status, _, _ = setup.call("GET", "/spec", "good", (b"authorization", b"Bearer other"))
    assert status == 401


def test_a_valid_token_runs_the_app_as_its_principal_and_audit_actor(setup: Setup) -> None:
    setup.tokens.add("good", "models:read")
    status, _, body = setup.call("GET", "/models/fraud@champion", "good")
    assert status == 200
    assert body == {
        "principal": "bot-0",
        "actor": ["bot-0", "token", "10.1.2.3"],
        "actor_in_thread": "bot-0",  # a handler's thread sees it too (audit writes run there)
    }
    assert setup.limits.inside == ["bot-0"] and setup.limits.left == ["bot-0"]


def test_verified_tokens_are_cached_for_cache_seconds(setup: Setup) -> None:
    setup.tokens.add("good", "admin")
    for _ in range(5):
        assert setup.call("GET", "/spec", "good")[0] == 200
    assert setup.tokens.calls == 1
    setup.monotonic.now += 5.0  # the entry is as old as cache_seconds: verified again
    assert setup.call("GET", "/spec", "good")[0] == 200
    assert setup.tokens.calls == 2


def test_a_revoked_token_is_refused_once_its_cache_entry_ages_out(setup: Setup) -> None:
    setup.tokens.add("good", "admin")
    assert setup.call("GET", "/spec", "good")[0] == 200
    del setup.tokens.known["good"]  # revoked in the registry
    setup.monotonic.now += 4.9
    assert setup.call("GET", "/spec", "good")[0] == 200  # still within cache_seconds
    setup.monotonic.now += 0.1
    status, _, body = setup.call("GET", "/spec", "good")
    assert (status, body["error"]["code"]) == (401, "unauthenticated")


def test_a_token_expiring_while_cached_is_refused_at_once(setup: Setup) -> None:
    setup.tokens.add("good", "admin", expires_at=setup.wall.now + 1)
    assert setup.call("GET", "/spec", "good")[0] == 200
    setup.wall.now += 1
    status, _, body = setup.call("GET", "/spec", "good")
    assert status == 401 and "expired" in body["error"]["message"]
    assert setup.tokens.calls == 1  # refused from the cache, on the principal's own expiry


def test_refusals_are_cached_too_and_never_echo_the_token(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        status, _, body = setup.call("GET", "/spec", SECRET)
        assert status == 401 and SECRET not in orjson.dumps(body).decode()
    assert setup.tokens.calls == 1
    setup.tokens.add(SECRET, "models:read:other")
    setup.monotonic.now += 5
    status, _, body = setup.call("GET", "/models/fraud", SECRET)
    assert status == 403 and SECRET not in orjson.dumps(body).decode()
    assert SECRET not in caplog.text and "refused" in caplog.text


def test_a_missing_scope_is_403_naming_the_scope_and_the_model(setup: Setup) -> None:
    setup.tokens.add("narrow", "models:read:churn")
    setup.tokens.add("other", "features:read")
    status, _, body = setup.call("GET", "/models/fraud@champion", "narrow")
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert "models:read" in body["error"]["message"] and "'fraud'" in body["error"]["message"]
    assert setup.call("GET", "/models/churn", "narrow")[0] == 200
    status, _, body = setup.call("GET", "/metrics", "other")
    assert status == 403 and "metrics:read" in body["error"]["message"]
    assert setup.denials.seen == [("models:read", "forbidden"), ("metrics:read", "forbidden")]
    assert setup.limits.inside == ["bot-0"]  # refused requests never entered the limits


def test_a_body_named_route_admits_any_grant_of_its_scope_for_the_handler_to_check(
    setup: Setup,
) -> None:
    setup.tokens.add("pusher", "features:push:clicks")
    setup.tokens.add("reader", "features:read")
    assert setup.call("POST", "/push", "pusher")[0] == 200
    status, _, body = setup.call("POST", "/push", "reader")
    assert status == 403 and "features:push" in body["error"]["message"]


def test_an_unknown_route_needs_a_valid_token_then_the_app_answers(setup: Setup) -> None:
    setup.tokens.add("any", "features:read")
    assert setup.call("GET", "/nowhere")[0] == 401
    assert setup.call("GET", "/nowhere", "any")[0] == 200
    assert setup.denials.seen == [("authenticated", "unauthenticated")]


def test_empty_path_segments_do_not_dodge_the_rule(setup: Setup) -> None:
    setup.tokens.add("narrow", "models:read:churn")
    assert setup.call("GET", "//models//fraud", "narrow")[0] == 403
    assert setup.call("HEAD", "/models/fraud", "narrow")[0] == 403  # HEAD reads as GET


def test_over_the_clients_limit_is_429_with_retry_after(setup: Setup) -> None:
    setup.tokens.add("good", "admin")
    setup.limits.refuse = True
    status, headers, body = setup.call("GET", "/spec", "good")
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert headers[b"retry-after"] == b"3"  # 2.5 s rounded up
    assert setup.denials.seen == [("authenticated", "rate_limited")]
    assert setup.limits.left == []


def test_the_client_leaves_its_limit_even_when_the_app_fails(setup: Setup) -> None:
    setup.tokens.add("good", "admin")
    setup.app.fail = True
    with pytest.raises(RuntimeError):
        setup.call("GET", "/spec", "good")
    assert setup.limits.left == ["bot-0"]


def test_a_registry_that_cannot_answer_is_a_503_and_is_not_cached(setup: Setup) -> None:
    for expected_calls in (1, 2):
        status, headers, body = setup.call("GET", "/spec", "broken")
        assert (status, body["error"]["code"]) == (503, "registry_unavailable")
        assert headers[b"retry-after"] == b"1"
        assert setup.tokens.calls == expected_calls
    assert setup.denials.seen == []


def test_concurrent_requests_with_one_new_token_verify_it_once(setup: Setup) -> None:
    setup.tokens.add("good", "admin")
    setup.tokens.release.clear()

    async def many() -> list[int]:
        calls = [asyncio.create_task(setup.acall("GET", "/spec", "good")) for _ in range(8)]
        await asyncio.sleep(0.05)
        setup.tokens.release.set()
        return [status for status, _, _ in await asyncio.gather(*calls)]

    assert asyncio.run(many()) == [200] * 8
    assert setup.tokens.calls == 1


def test_the_denial_counter_is_exported_by_scope_and_reason(setup: Setup) -> None:
    metrics = ServerMetrics(dict, lambda: None)  # type: ignore[arg-type,return-value]
    gate = AuthGate(App(), RULES, setup.tokens, setup.limits, metrics, body_for, 5)
    setup.gate = gate
    setup.tokens.add("reader", "features:read")
    setup.call("GET", "/metrics")
    setup.call("GET", "/metrics", "reader")
    setup.call("GET", "/metrics", "reader")
    text = metrics.render().decode()
    assert 'parity_auth_denied_total{reason="unauthenticated",scope="metrics:read"} 1.0' in text
    assert 'parity_auth_denied_total{reason="forbidden",scope="metrics:read"} 2.0' in text


def test_the_cache_is_bounded_and_drops_stale_entries_first() -> None:
    clock = Clock(0.0)
    cache = TokenCache(5.0, clock=clock, size=3, refusals=2)
    principal = Principal("p", "token", parse_scopes("admin"), "token:p")
    for i in range(3):
        cache.put(f"t{i}", principal)
    cache.put("t3", principal)  # full, nothing stale: the oldest goes
    assert cache.get("t0") is None and cache.get("t3") is principal
    clock.now = 6.0
    assert cache.get("t1") is None  # aged out
    assert len(cache) <= 3
    zero = TokenCache(0.0, clock=clock)
    zero.put("t", principal)
    assert zero.get("t") is None  # cache_seconds 0: every request verifies
