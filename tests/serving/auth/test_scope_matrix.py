"""The scope matrix, generated from both servers' route tables: every rule is called over real HTTP
(uvicorn, a real SQLite or PostgreSQL registry, real tokens from `store.access.tokens`) with no
token, a wrong, a revoked and an expired token, a token lacking the scope, a token whose scope is
narrowed to another model, service or push source, and the right token: 401, 401, 401, 401, 403,
403, and the route's own answer (never 401 or 403). An open route answers every one of them.

A rule this file has no example request for fails the matrix, and a route of either app without
a rule fails `test_every_route_of_*`, so no route can be added without its access rule."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from parity import FeatureStore
from parity.inference.app import create_model_app
from parity.inference.http import allowed_methods
from parity.inference.routes import MODEL_ROUTES
from parity.serving.app import create_app
from parity.serving.auth.gate import AuthGate
from parity.serving.auth.rules import BODY, OPEN, RouteRule, find_rule
from parity.serving.guard import Guard
from parity.serving.routes import FEATURE_ROUTES
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import Affine, TripsModel, running
from tests.inference.test_rollout_http import RANKER_MONITOR
from tests.ingest.test_push import REPO as PUSH_REPO

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
WRONG = "parity_0123456789ab_" + "A" * 43  # well-formed, in no registry
PUSH_ROW = {
    "account_id": [1],
    "event_timestamp": ["2026-01-01T11:00:00Z"],
    "clicks_1h": [3],
    "spend": [1.5],
}
INFER = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]}
PREDICT = {"entities": [{"driver_id": 1}], "request_context": {"bonus": [0.5]}}


@dataclass(frozen=True)
class Example:
    """A request for one rule: `name` is what a narrowed scope must cover; `ok` the statuses the
    route itself may answer the right token (its own 4xx included, never 401 or 403)."""

    path: str
    body: Any = None
    name: str | None = None
    ok: frozenset[int] = frozenset({200})


def _ok(*statuses: int) -> frozenset[int]:
    return frozenset(statuses)


FEATURE_EXAMPLES = {
    ("GET", "/health"): Example("/health"),
    ("POST", "/get-online-features"): Example(
        "/get-online-features",
        {"feature_service": "driver_service", "entities": {"driver_id": [1]}},
        "driver_service",
    ),
    ("POST", "/push"): Example("/push", {"push_source_name": "clicks", "df": PUSH_ROW}, "clicks"),
    ("GET", "/metrics"): Example("/metrics"),
    ("GET", "/openapi.json"): Example("/openapi.json"),
    ("GET", "/docs"): Example("/docs"),
    ("GET", "/docs/oauth2-redirect"): Example("/docs/oauth2-redirect"),
    ("GET", "/redoc"): Example("/redoc"),
}
_ROLLOUT_ACTION = _ok(200, 404, 409)  # the state the rollout is in decides (no 401/403)
MODEL_EXAMPLES = {
    ("GET", "/v2/health/live"): Example("/v2/health/live"),
    ("GET", "/v2/health/ready"): Example("/v2/health/ready"),
    ("GET", "/v2"): Example("/v2"),
    ("GET", "/openapi.json"): Example("/openapi.json"),
    ("GET", "/metrics"): Example("/metrics"),
    ("GET", "/v1/models"): Example("/v1/models", name="affine"),
    ("GET", "/v2/models/{model}"): Example("/v2/models/affine", name="affine"),
    ("GET", "/v2/models/{model}/ready"): Example("/v2/models/affine/ready", name="affine"),
    ("POST", "/v2/models/{model}/infer"): Example("/v2/models/affine/infer", INFER, "affine"),
    ("GET", "/v1/models/{model}"): Example("/v1/models/ranker@champion", name="ranker"),
    ("POST", "/v1/models/{model}/predict"): Example(
        "/v1/models/ranker@champion/predict", PREDICT, "ranker"
    ),
    ("GET", "/v2/models/{model}/versions/{version}"): Example(
        "/v2/models/affine/versions/1", name="affine"
    ),
    ("GET", "/v2/models/{model}/versions/{version}/ready"): Example(
        "/v2/models/affine/versions/1/ready", name="affine"
    ),
    ("POST", "/v2/models/{model}/versions/{version}/infer"): Example(
        "/v2/models/affine/versions/1/infer", INFER, "affine"
    ),
    ("GET", "/v1/models/{model}/versions/{version}"): Example(
        "/v1/models/ranker/versions/2", name="ranker"
    ),
    ("POST", "/v1/models/{model}/versions/{version}/predict"): Example(
        "/v1/models/ranker/versions/2/predict", PREDICT, "ranker"
    ),
    ("GET", "/v1/models/{model}/aliases"): Example("/v1/models/ranker/aliases", name="ranker"),
    # an alias of its own (the rollout examples need the champion where it is); PUT runs first
    ("PUT", "/v1/models/{model}/aliases/{alias}"): Example(
        "/v1/models/ranker/aliases/matrix", {"version": 1, "reason": "matrix"}, "ranker"
    ),
    ("DELETE", "/v1/models/{model}/aliases/{alias}"): Example(
        "/v1/models/ranker/aliases/matrix", {"reason": "matrix"}, "ranker", _ok(200, 404)
    ),
    ("GET", "/v1/rollouts"): Example("/v1/rollouts", name="ranker"),
    ("POST", "/v1/rollouts"): Example(
        "/v1/rollouts", {"model": "ranker", "candidate": 2, "shadow": None}, "ranker", _ok(201)
    ),
    ("GET", "/v1/rollouts/{model}"): Example("/v1/rollouts/ranker", name="ranker", ok=_ok(200)),
    **{
        ("POST", f"/v1/rollouts/{{model}}/{action}"): Example(
            f"/v1/rollouts/ranker/{action}", {"reason": "matrix"}, "ranker", _ROLLOUT_ACTION
        )
        for action in ("pause", "resume", "promote", "abort")
    },
}


class Clock:
    """The store's clock: real time, moved back to mint a token that has already expired."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Minted:
    """Tokens made on demand through `store.access.tokens`, one per (scopes, state)."""

    store: FeatureStore
    clock: Clock
    made: dict[tuple[str, str], str] = field(default_factory=dict)

    def __call__(self, scopes: str, state: str = "live") -> str:
        key = (scopes, state)
        if key not in self.made:
            tokens = self.store.access.tokens
            name = f"m{len(self.made)}-{state}"
            if state == "expired":
                self.clock.offset = -timedelta(hours=2)
                try:
                    _, text = tokens.create(name, scopes, expires_in=timedelta(hours=1))
                finally:
                    self.clock.offset = timedelta()
            else:
                _, text = tokens.create(name, scopes)
                if state == "revoked":
                    tokens.revoke(name)
            self.made[key] = text
        return self.made[key]


@dataclass
class Servers:
    features: str
    models: str
    mint: Minted
    store: FeatureStore


def _repo(root: Path, registry: str, project: str) -> Path:
    files = {**DRIVER_REPO, "push_defs.py": PUSH_REPO["defs.py"], "monitors.py": RANKER_MONITOR}
    extra = f"models: {{trusted: true}}\nauth: {{enabled: true}}\n{registry}"
    path = write_repo(root / "repo", files, project=project, extra=extra)
    store = FeatureStore(path)
    store.apply()
    store.materialize(datetime(2025, 12, 31, tzinfo=UTC), NOW, ["driver_stats"])
    models = store.models
    models.register_model(
        "affine", Affine([1.0, 2.0], 0.5), flavor="pyfunc", sample_input=np.ones((2, 2))
    )
    sample = pd.DataFrame({"trips": [1.0, 2.0], "bonus": [0.0, 1.0]})
    for scale in (10.0, 11.0):
        models.register_model(
            "ranker",
            TripsModel(scale),
            flavor="pyfunc",
            feature_service="driver_service",
            sample_input=sample,
            alias="champion" if scale == 10.0 else None,
        )
    store.close()
    return path


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    registry, project = "", "demo"
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        registry, project = (
            f"registry:\n  type: postgres\n  url: {url}\n",
            f"t_{uuid.uuid4().hex[:12]}",
        )
    path = _repo(tmp_path_factory.mktemp(f"matrix-{request.param}"), registry, project)
    clock = Clock()
    owner, for_features, for_models = (FeatureStore(path, clock=clock) for _ in range(3))
    try:
        feature_app, model_app = create_app(for_features), create_model_app(for_models)
        with running(feature_app) as features, running(model_app) as models:
            yield Servers(f"http://{features}", f"http://{models}", Minted(owner, clock), owner)
    finally:
        if request.param == "postgres":
            from tests.deploy.control_support import cleanup

            cleanup(owner)
        for store in (owner, for_features, for_models):
            store.close()


def _call(base: str, rule: RouteRule, example: Example, token: str | None) -> httpx.Response:
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    return httpx.request(
        rule.method, f"{base}{example.path}", json=example.body, headers=headers, timeout=30
    )


def _lacking(rule: RouteRule) -> str:
    """A valid token with none of the rule's scopes."""
    return next(s for s in ("metrics:read", "features:read") if s not in rule.scopes)


def _cases(rule: RouteRule, example: Example, mint: Minted) -> list[tuple[str, str | None, str]]:
    """(case, token, expectation): expectation is 401, 403, `ok` (the route's own answer) or
    `filtered` (a listing: the route answers, with the other names left out)."""
    scope = rule.scopes[0] if rule.scopes else "features:read"
    named = rule.name_param is not None or rule.name_from == BODY
    right = f"{scope}:{example.name}" if named else scope
    bad = "ok" if rule.access == OPEN else "401"
    cases: list[tuple[str, str | None, str]] = [
        ("no token", None, bad),
        ("wrong token", WRONG, bad),
        ("revoked token", mint(right, "revoked"), bad),
        ("expired token", mint(right, "expired"), bad),
        ("lacking the scope", mint(_lacking(rule)), "ok" if rule.access != "scoped" else "403"),
    ]
    if example.name is not None:
        other = f"{scope}:someone_else"
        cases.append(("narrowed to another", mint(other), "403" if named else "filtered"))
    for each in rule.scopes or (scope,):  # any one of the rule's scopes will do
        mine = f"{each}:{example.name}" if example.name is not None else each
        cases.append((f"right token ({mine})", mint(mine), "ok"))
    return cases


def _check(base: str, rule: RouteRule, example: Example, mint: Minted) -> None:
    for case, token, expected in _cases(rule, example, mint):
        reply = _call(base, rule, example, token)
        where = f"{rule.method} {example.path}, {case}: {reply.status_code} {reply.text[:300]}"
        if expected in ("401", "403"):
            assert reply.status_code == int(expected), where
            assert reply.headers["content-type"] == "application/json", where
            if token is not None:
                assert token not in reply.text, where
        elif expected == "filtered":
            assert reply.status_code == 200, where
            assert example.name not in reply.text, where
        else:
            assert reply.status_code in example.ok, where
        if expected == "401":
            assert reply.headers["www-authenticate"].startswith("Bearer"), where


@pytest.mark.parametrize("rule", FEATURE_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_the_feature_server_enforces_its_route_table(servers: Servers, rule: RouteRule) -> None:
    example = FEATURE_EXAMPLES[(rule.method, rule.path)]  # a new rule needs its example here
    _check(servers.features, rule, example, servers.mint)


@pytest.mark.parametrize("rule", MODEL_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_the_model_server_enforces_its_route_table(servers: Servers, rule: RouteRule) -> None:
    example = MODEL_EXAMPLES[(rule.method, rule.path)]  # a new rule needs its example here
    _check(servers.models, rule, example, servers.mint)


def test_every_rule_has_an_example_and_every_example_a_rule() -> None:
    assert set(FEATURE_EXAMPLES) == {(r.method, r.path) for r in FEATURE_ROUTES}
    assert set(MODEL_EXAMPLES) == {(r.method, r.path) for r in MODEL_ROUTES}


def test_every_route_of_the_feature_server_has_a_rule(tmp_path: Path) -> None:
    store = FeatureStore(_repo(tmp_path, "", "demo"))
    gate = create_app(store)
    assert isinstance(gate, AuthGate) and isinstance(gate.app, Guard)
    fastapi = gate.app.app
    routes = [r for r in fastapi.routes if isinstance(r, APIRoute | Route)]  # type: ignore[attr-defined]
    assert {r.path for r in routes} >= {"/health", "/push", "/get-online-features", "/docs"}
    for route in routes:
        for method in sorted((route.methods or set()) - {"HEAD"}):
            assert find_rule(FEATURE_ROUTES, method, route.path), f"{method} {route.path}: no rule"
    store.close()


def test_every_model_server_route_is_a_rule_of_its_table() -> None:
    """The server answers exactly the methods its table has at each rule's path (a route can
    only be added to the table), and every operation of its spec has a rule."""
    from parity import __version__
    from parity.inference.openapi import model_server_spec

    for rule in MODEL_ROUTES:
        path = rule.path.replace("{model}", "m").replace("{version}", "1").replace("{alias}", "a")
        parts = [p for p in path.split("/") if p]
        expected = {r.method for r in MODEL_ROUTES if r.match(path) is not None}
        assert set(allowed_methods(parts)) == expected
    spec = model_server_spec(__version__, secured=True)  # raises for an operation without rule
    for path, item in spec["paths"].items():
        for method in item:
            if method in ("get", "post", "put", "delete"):
                assert find_rule(MODEL_ROUTES, method.upper(), path), f"{method} {path}"


def test_lookups_by_view_need_every_view_and_a_service_is_covered_by_its_views(
    servers: Servers,
) -> None:
    url = f"{servers.features}/get-online-features"

    def lookup(scopes: str, **body: Any) -> int:
        token = servers.mint(scopes)
        headers = {"authorization": f"Bearer {token}"}
        body = {"entities": {"driver_id": [1]}, **body}
        return httpx.post(url, json=body, headers=headers, timeout=30).status_code

    before = _denied(servers, "forbidden", "features:read")
    refs = {"features": ["driver_stats:trips", "driver_stats:conv_rate"]}
    assert lookup("features:read:driver_stats", **refs) == 200
    assert lookup("features:read:driver_stats", feature_service="driver_service") == 200
    assert lookup("features:read:driver_service", **refs) == 403  # a service grant: that service
    assert lookup("features:read:click_stats", **refs) == 403
    assert lookup("features:read:driver_service", feature_service="no_such_service") == 403
    assert lookup("features:read", feature_service="no_such_service") == 400  # as without auth
    # the handler's refusals (names in the body) are counted as the gate's are
    assert _denied(servers, "forbidden", "features:read") == before + 3


def _denied(servers: Servers, reason: str, scope: str) -> float:
    headers = {"authorization": f"Bearer {servers.mint('metrics:read')}"}
    text = httpx.get(f"{servers.features}/metrics", headers=headers, timeout=30).text
    line = f'parity_auth_denied_total{{reason="{reason}",scope="{scope}"}} '
    return float(text.split(line, 1)[1].split()[0]) if line in text else 0.0


def test_writes_are_recorded_as_the_token_that_made_them(servers: Servers) -> None:
    token = servers.mint("features:push:clicks rollouts:admin:ranker")
    name = next(n for n, text in _names(servers.mint).items() if text == token)
    headers = {"authorization": f"Bearer {token}"}
    body = {"push_source_name": "clicks", "df": PUSH_ROW}
    reply = httpx.post(f"{servers.features}/push", json=body, headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    pushes = servers.store.access.audit.query(action="features.push", actor=name)
    assert len(pushes) == 1 and pushes[0].actor.kind == "token"
    assert pushes[0].actor.origin == "127.0.0.1"


def _names(mint: Minted) -> dict[str, str]:
    """Token name → text, from the order tokens were minted in."""
    return {f"m{i}-{state}": text for i, ((_, state), text) in enumerate(mint.made.items())}


def test_the_model_servers_list_shows_only_the_models_the_token_may_read(servers: Servers) -> None:
    def names(scopes: str) -> list[str]:
        headers = {"authorization": f"Bearer {servers.mint(scopes)}"}
        reply = httpx.get(f"{servers.models}/v1/models", headers=headers, timeout=30)
        assert reply.status_code == 200, reply.text
        return [m["name"] for m in reply.json()["models"]]

    assert names("models:read:affine") == ["affine"]
    assert sorted(names("models:read")) == ["affine", "ranker"]
    assert names("models:read:affine,nothing") == ["affine"]


def test_denials_are_counted_by_scope_and_reason(servers: Servers) -> None:
    httpx.get(f"{servers.models}/v2/models/affine", timeout=30)
    headers = {"authorization": f"Bearer {servers.mint('metrics:read')}"}
    text = httpx.get(f"{servers.models}/metrics", headers=headers, timeout=30).text
    line = 'parity_auth_denied_total{reason="unauthenticated",scope="models:predict"}'
    assert line in text
    assert float(text.split(line, 1)[1].split()[0]) >= 1


def test_the_specs_declare_the_bearer_scheme_on_protected_routes(servers: Servers) -> None:
    headers = {"authorization": f"Bearer {servers.mint('admin')}"}
    for base, open_path in ((servers.features, "/health"), (servers.models, "/v2/health/live")):
        spec = httpx.get(f"{base}/openapi.json", headers=headers, timeout=30).json()
        assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        assert spec["paths"][open_path]["get"]["security"] == []
        metrics = spec["paths"]["/metrics"]["get"]
        assert metrics["security"] == [{"bearer": []}]
        assert {"401", "403", "429"} <= set(metrics["responses"])


def test_a_model_server_with_features_gates_the_feature_routes_too(servers: Servers) -> None:
    store = FeatureStore(servers.store.repo_path)
    try:
        with running(create_model_app(store, with_features=True)) as address:
            url = f"http://{address}"
            push = {"push_source_name": "clicks", "df": PUSH_ROW}

            def post(path: str, body: Any, scopes: str | None) -> httpx.Response:
                headers = (
                    {} if scopes is None else {"authorization": f"Bearer {servers.mint(scopes)}"}
                )
                return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=30)

            assert httpx.get(f"{url}/health", timeout=30).status_code == 200
            assert post("/push", push, None).status_code == 401
            assert post("/push", push, "features:push:other").status_code == 403
            assert post("/push", push, "features:push:clicks").status_code == 200
            lookup = {"feature_service": "driver_service", "entities": {"driver_id": [1]}}
            assert post("/get-online-features", lookup, "models:read").status_code == 403
            refused = post("/get-online-features", lookup, "features:read:click_stats")
            assert refused.status_code == 403 and "driver_service" in refused.text
            assert post("/get-online-features", lookup, "features:read").status_code == 200
    finally:
        store.close()


def test_jwts_from_the_configured_provider_and_parity_tokens_both_work(tmp_path: Path) -> None:
    """With `auth.oidc`, a JWT (three dot-separated parts) is verified against the provider's
    keys (a JWKS file made here), and the project's API tokens still work beside it."""
    import json
    import time

    pytest.importorskip("parity.serving.auth.jwt", reason="workstream C's JwtAuthenticator")
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    key = ec.generate_private_key(ec.SECP256R1())
    public: dict[str, Any] = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    oidc = "{jwks: keys.json, audience: parity-api, issuer: https://idp.example.test}"
    path = write_repo(
        tmp_path / "repo", DRIVER_REPO, extra=f"auth: {{enabled: true, oidc: {oidc}}}\n"
    )
    (path / "keys.json").write_text(json.dumps({"keys": [{**public, "kid": "k1", "use": "sig"}]}))

    def signed(scope: str, audience: str = "parity-api") -> str:
        now = int(time.time())
        claims = {"iss": "https://idp.example.test", "aud": audience, "sub": "ada", "iat": now,
                  "exp": now + 600, "scope": scope}  # fmt: skip
        return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1"})

    store = FeatureStore(path)
    store.apply()
    _, token = store.access.tokens.create("scraper", "metrics:read")
    try:
        with running(create_app(store)) as address:

            def status(credential: str) -> int:
                headers = {"authorization": f"Bearer {credential}"}
                return httpx.get(
                    f"http://{address}/metrics", headers=headers, timeout=30
                ).status_code

            assert status(signed("openid metrics:read")) == 200
            assert status(signed("openid features:read")) == 403
            assert status(signed("metrics:read", audience="someone-else")) == 401
            assert status(token) == 200
    finally:
        store.close()
