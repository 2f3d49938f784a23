"""QA pass of issue 17 (access control): defects found by using the servers with auth on, as real
processes over real HTTP, and the audit trail and token CLI on real registries. A test marked
xfail(strict=True) shows a defect still open; the others guard defects fixed in this pass."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx2 as httpx
import pytest

from parity import FeatureStore
from tests.e2e.test_auth_servers import ROW, _bearer, _repo, _serving
from tests.inference.test_rollout_http import SAMPLE, TripsModel

PREDICT = {"entities": [{"driver_id": 1}], "request_context": {"bonus": [0.5]}}


@pytest.mark.slow
def test_a_predict_only_token_cannot_read_features_through_return_features(
    tmp_path: Path,
) -> None:
    """`features:read` guards feature values; a caller holding only `models:predict:ranker` gets
    the model's feature-service values back with `return_features: true` (the same values
    /get-online-features refuses it)."""
    repo = _repo(tmp_path)
    with FeatureStore(repo) as store:
        _, caller = store.access.tokens.create("caller", "models:predict:ranker")
    with _serving("serve-models", repo, "/v2/health/ready", "--with-features") as served:
        lookup = {"feature_service": "driver_service", "entities": {"driver_id": [1]}}
        refused = httpx.post(
            f"{served.url}/get-online-features", json=lookup, headers=_bearer(caller)
        )
        assert refused.status_code == 403  # no features:read: the feature route says so
        body = {**PREDICT, "return_features": True}
        answer = httpx.post(
            f"{served.url}/v1/models/ranker/predict", json=body, headers=_bearer(caller)
        )
        # Refused naming features:read; with it, the same request answers the values.
        assert answer.status_code == 403, answer.text
        assert "features:read" in answer.json()["error"], answer.text
        with FeatureStore(repo) as store:
            _, both = store.access.tokens.create("both", "models:predict:ranker features:read")
        allowed = httpx.post(
            f"{served.url}/v1/models/ranker/predict", json=body, headers=_bearer(both)
        )
        assert allowed.status_code == 200 and allowed.json()["features"], allowed.text


@pytest.mark.slow
def test_denials_of_the_feature_routes_behind_the_model_server_are_counted(
    tmp_path: Path,
) -> None:
    """A 403 for a push source or feature service the token may not use (decided from the body)
    counts on the combined server's /metrics, as it does on `parity serve`'s."""
    repo = _repo(tmp_path)
    with FeatureStore(repo) as store:
        _, pusher = store.access.tokens.create("pusher", "features:push:elsewhere")
        _, scraper = store.access.tokens.create("scraper", "metrics:read")
    with _serving("serve-models", repo, "/v2/health/ready", "--with-features") as served:
        push = {"push_source_name": "clicks", "df": ROW}
        for _ in range(3):
            denied = httpx.post(f"{served.url}/push", json=push, headers=_bearer(pusher))
            assert denied.status_code == 403, denied.text
        text = httpx.get(f"{served.url}/metrics", headers=_bearer(scraper)).text
    counted = [
        line
        for line in text.splitlines()
        if line.startswith("parity_auth_denied_total{")
        and 'scope="features:push"' in line
        and 'reason="forbidden"' in line
    ]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) == 3.0, counted


def test_parity_audit_action_filter_takes_underscore_and_percent_literally(
    tmp_path: Path,
) -> None:
    """`parity audit --action auth_token` must not match `auth.token.*` (`_` is not a wildcard),
    nor `--action %` every action."""
    repo = _repo(tmp_path)
    with FeatureStore(repo) as store:
        store.access.tokens.create("bot", "metrics:read")
        trail = store.access.audit
        assert [r.action for r in trail.query(action="auth.token")] == ["auth.token.create"]
        assert trail.query(action="auth_token") == []
        assert trail.query(action="%") == []
        assert trail.query(action="auth%") == []
        assert len(trail.query(action="models")) == 3  # two registrations and an alias


def test_a_push_over_http_is_audited_as_the_token_from_the_client_address(tmp_path: Path) -> None:
    """Works (kept as a guard): the audit record of a push names the token, its kind and the
    client's address, not a header the client sends (X-Forwarded-For)."""
    repo = _repo(tmp_path)
    with FeatureStore(repo) as store:
        _, pusher = store.access.tokens.create("pusher", "features:push:clicks")
    with _serving("serve", repo, "/health") as served:
        headers = {**_bearer(pusher), "x-forwarded-for": "6.6.6.6"}
        row = {**ROW, "event_timestamp": [datetime.now(UTC).isoformat()]}
        pushed = httpx.post(
            f"{served.url}/push", json={"push_source_name": "clicks", "df": row}, headers=headers
        )
        assert pushed.status_code == 200, pushed.text
    with FeatureStore(repo) as store:
        [record] = store.access.audit.query(action="features.push")
    assert (record.actor.name, record.actor.kind, record.actor.origin) == (
        "pusher",
        "token",
        "127.0.0.1",
    )
    assert (record.target, record.detail["rows"]) == ("clicks", 1)
    assert pusher not in served.said


CLASH = """
from parity import FeatureService
from views import driver_stats

# a feature service that shares its name with the push repo's feature view 'click_stats'
click_stats_service = FeatureService(name="click_stats", features=[driver_stats])
"""


@pytest.mark.slow
def test_a_grant_for_a_view_does_not_open_a_feature_service_of_the_same_name(
    tmp_path: Path,
) -> None:
    """Views and feature services may share a name; `features:read:click_stats`, given for the
    view click_stats, must not read driver_stats through a service named click_stats."""
    repo = _repo(tmp_path)
    (repo / "clash.py").write_text(CLASH)
    with FeatureStore(repo) as store:
        store.apply()
        assert "click_stats" in store.registry.catalog.feature_views
        assert "click_stats" in store.registry.catalog.feature_services
        _, reader = store.access.tokens.create("clicks-reader", "features:read:click_stats")
    with _serving("serve", repo, "/health") as served:
        url = f"{served.url}/get-online-features"
        direct = {"features": ["driver_stats:trips"], "entities": {"driver_id": [1]}}
        assert httpx.post(url, json=direct, headers=_bearer(reader)).status_code == 403
        own = {"features": ["click_stats:clicks_1h"], "entities": {"account_id": [7]}}
        assert httpx.post(url, json=own, headers=_bearer(reader)).status_code == 200
        service = {"feature_service": "click_stats", "entities": {"driver_id": [1]}}
        through = httpx.post(url, json=service, headers=_bearer(reader))
        assert through.status_code == 403, through.text  # driver_stats is not granted


def test_a_jwt_inside_its_exp_leeway_passes_the_gate_as_the_authenticator_accepts_it(
    tmp_path: Path,
) -> None:
    """docs/security.md: `exp` is checked with `leeway_seconds` (30 s) of clock skew. The
    authenticator accepts a JWT 10 s past its exp; the gate in front of it must agree (and its
    refusal of an expired JWT must not send the caller to parity auth token create)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from parity.serving.auth.gate import AuthGate
    from parity.serving.auth.jwt import JwtAuthenticator
    from parity.serving.errors import body_for
    from tests.serving.auth.test_gate import RULES, App, Denials, Limits, Setup
    from tests.serving.auth.test_jwt import NOW, Clock, jwk, oidc, sign, write_jwks

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_jwks(tmp_path / "keys" / "jwks.json", jwk(key, "k1"))
    wall = Clock(NOW + 610)  # the JWT's exp is NOW + 600: 10 s ago, inside the 30 s leeway
    authenticator = JwtAuthenticator(oidc(leeway_seconds=30), tmp_path, clock=wall)
    token = sign(key, "k1", scope="models:read")
    assert authenticator.authenticate(token).name == "ada"  # accepted on its own
    setup = Setup()
    setup.gate = AuthGate(
        App(), RULES, authenticator.authenticate, Limits(), Denials(), body_for, 5.0, wall=wall
    )
    status, _, body = setup.call("GET", "/models/fraud", token)
    assert status == 200, body
    wall.now = NOW + 640  # past the leeway: refused, with advice that fits a JWT
    setup.gate.cache = type(setup.gate.cache)(5.0)  # a fresh cache: verified again
    status, _, body = setup.call("GET", "/models/fraud", token)
    assert status == 401 and "parity auth token create" not in body["error"]["message"]


@pytest.mark.slow
def test_path_tricks_and_header_variants_do_not_widen_a_narrowed_token(tmp_path: Path) -> None:
    """Works (kept as a guard): a token for `ranker` only, against `parity serve-models`, through
    empty segments, trailing slashes, percent-encoding, case, HEAD, versions and aliases of
    another model; and Authorization headers that are not exactly one bearer token."""
    repo = _repo(tmp_path)
    with FeatureStore(repo) as store:
        _, caller = store.access.tokens.create("caller", "models:predict:ranker")
        store.models.register_model(
            "other", TripsModel(1.0), flavor="pyfunc", sample_input=SAMPLE, alias="champion"
        )
    with _serving("serve-models", repo, "/v2/health/ready") as served:
        url = served.url
        ok = [
            "/v1/models/ranker/predict",
            "//v1//models//ranker//predict/",
            "/v1/models/ranker%40champion/predict",
        ]
        for path in ok:
            answer = httpx.post(f"{url}{path}", json=PREDICT, headers=_bearer(caller))
            assert answer.status_code == 200, (path, answer.text)
        refused = [
            ("POST", "/v1/models/other/predict"),
            ("POST", "/v1/models/Ranker/predict"),
            ("POST", "/v1/models/other%40champion/predict"),
            ("POST", "//v1/models/other/versions/1/predict"),
            ("POST", "/v2/models/other/versions/1/infer"),
            ("GET", "/v1/models/ranker"),  # metadata and lineage need models:read
            ("HEAD", "/v1/models/ranker"),
            ("GET", "/v1/models"),
            ("GET", "/metrics"),
        ]
        for method, path in refused:
            answer = httpx.request(method, f"{url}{path}", json=PREDICT, headers=_bearer(caller))
            assert answer.status_code == 403, (method, path, answer.status_code)
        predict = f"{url}/v1/models/ranker/predict"
        assert httpx.post(predict, json=PREDICT, headers={"authorization": f"bearer {caller}"})
        for value in (
            f"Bearer\t{caller}",
            f"Basic {caller}",
            f"Bearer {caller} x",
            "Bearer " + "a" * 5000,
        ):
            answer = httpx.post(predict, json=PREDICT, headers={"authorization": value})
            assert answer.status_code == 401, value[:20]
            assert caller not in answer.text
        two = [("authorization", f"Bearer {caller}"), ("authorization", f"Bearer {caller}")]
        assert httpx.post(predict, json=PREDICT, headers=two).status_code == 401
        latin = httpx.post(predict, json=PREDICT, headers={"authorization": b"Bearer \xe9\xff"})
        assert latin.status_code == 401
    assert caller not in served.said


def test_a_large_jwt_the_authenticator_accepts_is_not_refused_by_the_gate(tmp_path: Path) -> None:
    """IdPs put groups and roles in their JWTs, and such tokens pass 4 KiB; the JWT authenticator
    takes up to 16 KiB, so the gate in front of it must not refuse them as 'not a token'."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from parity.serving.auth.gate import AuthGate
    from parity.serving.auth.jwt import JwtAuthenticator
    from parity.serving.errors import body_for
    from tests.serving.auth.test_gate import RULES, App, Denials, Limits, Setup
    from tests.serving.auth.test_jwt import NOW, Clock, jwk, oidc, sign, write_jwks

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_jwks(tmp_path / "keys" / "jwks.json", jwk(key, "k1"))
    authenticator = JwtAuthenticator(oidc(), tmp_path, clock=Clock(NOW))
    groups = [f"team-{i:04d}-with-a-long-directory-name" for i in range(120)]
    token = sign(key, "k1", scope="models:read", groups=groups)
    assert 5_000 < len(token) < 16 * 1024
    assert authenticator.authenticate(token).name == "ada"  # accepted on its own
    setup = Setup()
    setup.gate = AuthGate(
        App(), RULES, authenticator.authenticate, Limits(), Denials(), body_for, 5.0,
        wall=Clock(NOW),
    )  # fmt: skip
    status, _, body = setup.call("GET", "/models/fraud", token)
    assert status == 200, body


@pytest.mark.parametrize("bad", [None, "", 5])
def test_get_or_revoke_without_a_name_is_a_typed_error_not_some_revoked_token(
    tmp_path: Path, bad: object
) -> None:
    """`active_name` is NULL on revoked tokens, so a None name matched one of them: `get(None)`
    returned a revoked token's record and `revoke(None)` said 'already revoked'."""
    from parity.errors import TokenError

    repo = _repo(tmp_path)
    with FeatureStore(repo) as store:
        tokens = store.access.tokens
        tokens.create("gone", "metrics:read")
        tokens.revoke("gone")
        for call in (tokens.get, tokens.revoke):
            with pytest.raises(TokenError) as caught:
                call(bad)  # type: ignore[arg-type]
            assert "give a token's name or id" in str(caught.value)
        assert [t.name for t in tokens.list(include_revoked=True)] == ["gone"]


@pytest.mark.parametrize("bad", [None, 5])
def test_scopes_of_the_wrong_type_are_a_token_error_naming_scopes(bad: object) -> None:
    """The Python API's `tokens.create(name, scopes)` with scopes that are no string or list: a
    TokenError naming `scopes` (it was a TypeError)."""
    from parity.errors import TokenError
    from parity.serving.auth.scopes import parse_scopes

    with pytest.raises(TokenError, match="scopes"):
        parse_scopes(bad)  # type: ignore[arg-type]


@pytest.mark.slow
def test_with_auth_off_a_push_over_http_is_audited_as_its_client_not_the_servers_user(
    tmp_path: Path,
) -> None:
    """With auth off (`--enable-push`), anyone who reaches the port may push; the record must say
    so (`http:<client address>`, as rollout actions over HTTP do), not name the OS user the
    server runs as, at the server's host, as if the operator had pushed."""
    from parity.registry.audit import local_actor

    repo = _repo(tmp_path, auth="")
    with _serving("serve", repo, "/health", "--enable-push") as served:
        row = {**ROW, "event_timestamp": [datetime.now(UTC).isoformat()]}
        pushed = httpx.post(f"{served.url}/push", json={"push_source_name": "clicks", "df": row})
        assert pushed.status_code == 200, pushed.text
    with FeatureStore(repo) as store:
        [record] = store.access.audit.query(action="features.push")
    assert (record.actor.name, record.actor.origin) == ("http:127.0.0.1", "127.0.0.1")
    assert record.actor != local_actor()


@pytest.mark.slow
def test_with_auth_off_a_rollout_action_over_http_is_audited_from_the_client_address(
    tmp_path: Path,
) -> None:
    """The actor of a rollout started over HTTP with auth off is `http:<client address>`; its
    origin ('from where') must be that address too, not the host the server runs on."""
    repo = _repo(tmp_path, auth="")
    with _serving("serve-models", repo, "/v2/health/ready", "--enable-rollout-control") as served:
        start = {"model": "ranker", "candidate": 2, "shadow": None}
        started = httpx.post(f"{served.url}/v1/rollouts", json=start)
        assert started.status_code == 201, started.text
    with FeatureStore(repo) as store:
        [record] = store.access.audit.query(action="rollouts.start")
    assert (record.actor.name, record.actor.origin) == ("http:127.0.0.1", "127.0.0.1")
