"""OIDC JWTs: keys generated here (RSA and EC), a key set in a file and on a local HTTP server;
every refusal says why without repeating the token; key rotation, throttled re-reads, scope_map."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from parity.errors import (
    BackendNotInstalled,
    ConfigError,
    IdentityProviderUnavailable,
    Unauthenticated,
)
from parity.repo.config import OidcConfig, parse_config
from parity.serving.auth import jwks
from parity.serving.auth.jwt import JwtAuthenticator
from parity.serving.auth.scopes import Grant, Principal

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
ISSUER = "https://idp.example.test"
AUDIENCE = "parity-api"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key_2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def jwk(key: Any, kid: str) -> dict[str, Any]:
    public = key.public_key()
    algorithm = RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm
    data: dict[str, Any] = algorithm.to_jwk(public, as_dict=True)
    return {**data, "kid": kid, "use": "sig"}


def claims(**overrides: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-123",
        "preferred_username": "ada",
        "iat": int(NOW) - 60,
        "exp": int(NOW) + 600,
        "scope": "openid email features:read models:predict:fraud",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: Any, kid: str | None, alg: str = "RS256", **overrides: Any) -> str:
    headers = {} if kid is None else {"kid": kid}
    return jwt.encode(claims(**overrides), key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def write_jwks(path: Path, *keys: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"keys": list(keys)}))


def oidc(jwks_source: str = "keys/jwks.json", **options: Any) -> OidcConfig:
    options.setdefault("issuer", ISSUER)
    options.setdefault("name_claim", "preferred_username")
    return OidcConfig(jwks=jwks_source, audience=AUDIENCE, **options)


@pytest.fixture
def repo(tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> Path:
    write_jwks(tmp_path / "keys" / "jwks.json", jwk(rsa_key, "rsa-1"), jwk(ec_key, "ec-1"))
    return tmp_path


@pytest.fixture
def auth(repo: Path) -> JwtAuthenticator:
    return JwtAuthenticator(oidc(), repo, clock=Clock())


def refused(authenticator: JwtAuthenticator, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        authenticator.authenticate(token)
    message = str(caught.value)
    assert token not in message
    for part in token.split("."):
        assert len(part) < 8 or part not in message
    return message


# --- accepted ---------------------------------------------------------------------------------


def test_valid_rsa_token_gives_a_principal_with_its_parity_scopes(
    auth: JwtAuthenticator, rsa_key: rsa.RSAPrivateKey
) -> None:
    principal = auth.authenticate(sign(rsa_key, "rsa-1"))
    assert principal == Principal(
        name="ada",
        kind="jwt",
        grants=(Grant("features:read"), Grant("models:predict", frozenset({"fraud"}))),
        key="jwt:user-123",
        expires_at=NOW + 600,
    )
    assert principal.allows("models:predict", "fraud")
    assert not principal.allows("models:predict", "churn")


def test_valid_ec_token_is_accepted(auth: JwtAuthenticator, ec_key: Any) -> None:
    principal = auth.authenticate(sign(ec_key, "ec-1", alg="ES256", scope="admin"))
    assert (principal.grants, principal.key) == ((Grant("admin"),), "jwt:user-123")


def test_token_without_kid_is_checked_against_every_key(
    auth: JwtAuthenticator, ec_key: Any
) -> None:
    assert auth.authenticate(sign(ec_key, None, alg="ES256")).name == "ada"


def test_scope_claim_as_a_list_and_name_falling_back_to_sub(repo: Path, rsa_key: Any) -> None:
    auth = JwtAuthenticator(oidc(scopes_claim="scp", name_claim="email"), repo, clock=Clock())
    token = sign(rsa_key, "rsa-1", scope=None, scp=["models:read", "offline_access"])
    principal = auth.authenticate(token)
    assert (principal.name, principal.grants) == ("user-123", (Grant("models:read"),))


def test_audience_list_containing_ours_is_accepted(auth: JwtAuthenticator, rsa_key: Any) -> None:
    token = sign(rsa_key, "rsa-1", aud=["account", AUDIENCE])
    assert auth.authenticate(token).key == "jwt:user-123"


def test_exp_within_leeway_is_still_accepted(repo: Path, rsa_key: Any) -> None:
    auth = JwtAuthenticator(oidc(leeway_seconds=30), repo, clock=Clock(NOW + 620))
    assert auth.authenticate(sign(rsa_key, "rsa-1")).expires_at == NOW + 600


# --- refused, each with its reason ------------------------------------------------------------


def test_expired_token(repo: Path, rsa_key: Any) -> None:
    auth = JwtAuthenticator(oidc(leeway_seconds=30), repo, clock=Clock(NOW + 631))
    assert "expired at 2027-01-15T08:10:00+00:00" in refused(auth, sign(rsa_key, "rsa-1"))


def test_not_yet_valid_token(auth: JwtAuthenticator, rsa_key: Any) -> None:
    token = sign(rsa_key, "rsa-1", nbf=int(NOW) + 120)
    assert "not valid yet: valid from 2027-01-15T08:02:00+00:00" in refused(auth, token)
    # within the leeway it passes
    assert auth.authenticate(sign(rsa_key, "rsa-1", nbf=int(NOW) + 20)).name == "ada"


def test_wrong_audience(auth: JwtAuthenticator, rsa_key: Any) -> None:
    message = refused(auth, sign(rsa_key, "rsa-1", aud="another-app"))
    assert message.startswith("wrong audience") and AUDIENCE in message


def test_missing_audience(auth: JwtAuthenticator, rsa_key: Any) -> None:
    assert "missing the claim 'aud'" in refused(auth, sign(rsa_key, "rsa-1", aud=None))


def test_wrong_issuer(auth: JwtAuthenticator, rsa_key: Any) -> None:
    message = refused(auth, sign(rsa_key, "rsa-1", iss="https://evil.example"))
    assert message.startswith("wrong issuer") and ISSUER in message


def test_unknown_kid(auth: JwtAuthenticator, rsa_key_2: Any) -> None:
    message = refused(auth, sign(rsa_key_2, "rsa-9"))
    assert message.startswith("unknown signing key") and "'rsa-9'" in message


def test_key_id_of_another_key_type_is_unknown_for_that_algorithm(
    auth: JwtAuthenticator, ec_key: Any
) -> None:
    assert "unknown signing key" in refused(auth, sign(ec_key, "rsa-1", alg="ES256"))


def test_signed_by_another_key_under_a_known_kid(auth: JwtAuthenticator, rsa_key_2: Any) -> None:
    assert refused(auth, sign(rsa_key_2, "rsa-1")).startswith("bad signature")


def test_tampered_payload(auth: JwtAuthenticator, rsa_key: Any) -> None:
    header, _, signature = sign(rsa_key, "rsa-1", scope="features:read").split(".")
    payload = b64(json.dumps(claims(scope="admin")).encode())
    assert refused(auth, f"{header}.{payload}.{signature}").startswith("bad signature")


def test_alg_none(auth: JwtAuthenticator) -> None:
    header = b64(json.dumps({"alg": "none", "kid": "rsa-1", "typ": "JWT"}).encode())
    token = f"{header}.{b64(json.dumps(claims()).encode())}."
    assert "algorithm 'none', which is not allowed" in refused(auth, token)


def test_hs256_signed_with_the_public_key(auth: JwtAuthenticator, rsa_key: Any) -> None:
    """Algorithm confusion: the public key (which anyone has) used as an HMAC secret."""
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims(scope='admin')).encode())}"
    signature = b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    message = refused(auth, f"{signing_input}.{signature}")
    assert "algorithm 'HS256', which is not allowed" in message


def test_rs256_token_when_only_es256_is_allowed(repo: Path, rsa_key: Any) -> None:
    auth = JwtAuthenticator(oidc(algorithms=["ES256"]), repo, clock=Clock())
    assert "algorithm 'RS256', which is not allowed (allowed: ES256)" in refused(
        auth, sign(rsa_key, "rsa-1")
    )


def test_missing_exp(auth: JwtAuthenticator, rsa_key: Any) -> None:
    assert "missing the claim 'exp'" in refused(auth, sign(rsa_key, "rsa-1", exp=None))


def test_missing_sub(auth: JwtAuthenticator, rsa_key: Any) -> None:
    assert "missing the claim 'sub'" in refused(auth, sign(rsa_key, "rsa-1", sub=None))


def test_no_parity_scope(auth: JwtAuthenticator, rsa_key: Any) -> None:
    message = refused(auth, sign(rsa_key, "rsa-1", scope="openid email profile"))
    assert "no Parity scope" in message
    assert "no Parity scope" in refused(auth, sign(rsa_key, "rsa-1", scope=None))


def test_malformed_and_oversized_tokens(auth: JwtAuthenticator) -> None:
    assert refused(auth, "not-a-jwt-at-all").startswith("malformed bearer token")
    assert "longer than" in refused(auth, "a" * 20_000)


def test_bad_narrowed_item_grants_nothing_rather_than_more(
    auth: JwtAuthenticator, rsa_key: Any
) -> None:
    token = sign(rsa_key, "rsa-1", scope="models:predict:bad$name admin:x features:read")
    assert auth.authenticate(token).grants == (Grant("features:read"),)


# --- scope_map ---------------------------------------------------------------------------------

SCOPE_MAP = {
    "fraud-analysts": "features:read:fraud_service models:predict:fraud",
    "platform-admins": "admin",
    "parity.read": "models:read",
}


def test_scope_map_reads_groups_roles_nested_claims_and_scope_items(
    repo: Path, rsa_key: Any
) -> None:
    config = oidc(scope_map=SCOPE_MAP, scope_map_claims=["groups", "realm_access.roles"])
    auth = JwtAuthenticator(config, repo, clock=Clock())
    token = sign(
        rsa_key,
        "rsa-1",
        scope="openid parity.read",
        groups=["fraud-analysts", "everyone"],
        realm_access={"roles": ["platform-admins"]},
    )
    assert auth.authenticate(token).grants == (
        Grant("models:read"),
        Grant("features:read", frozenset({"fraud_service"})),
        Grant("models:predict", frozenset({"fraud"})),
        Grant("admin"),
    )


def test_scope_map_ignores_profile_claims_a_user_may_edit(repo: Path, rsa_key: Any) -> None:
    auth = JwtAuthenticator(oidc(scope_map=SCOPE_MAP), repo, clock=Clock())
    token = sign(rsa_key, "rsa-1", scope="openid", name="platform-admins", email="platform-admins")
    assert "no Parity scope" in refused(auth, token)
    roles = sign(rsa_key, "rsa-1", scope="openid", roles="platform-admins")
    assert auth.authenticate(roles).grants == (Grant("admin"),)


def test_scope_map_with_a_bad_scope_fails_at_start(repo: Path) -> None:
    with pytest.raises(ConfigError, match=r"auth\.oidc\.scope_map\['ops'\]: scopes: 'models:fly'"):
        JwtAuthenticator(oidc(scope_map={"ops": "models:fly"}), repo)


# --- config refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("algorithms", ["HS256"], "never 'none' or HS"),
        ("algorithms", ["RS256", "none"], "never 'none' or HS"),
        ("algorithms", [], "give one or more of RS256"),
        ("jwks", "http://idp.example.com/jwks", "give an https:// URL"),
        ("jwks", "ftp://idp.example.com/jwks", "give an https:// URL"),
        ("audience", "", "at least 1 character"),
    ],
)
def test_config_refuses_unsafe_algorithms_and_urls(key: str, value: Any, expected: str) -> None:
    raw: dict[str, Any] = {"jwks": "keys/jwks.json", "audience": AUDIENCE, key: value}
    with pytest.raises(ConfigError, match=r"auth\.oidc\." + key) as caught:
        parse_config({"project": "demo", "auth": {"oidc": raw}})
    assert expected in str(caught.value)


def test_config_accepts_https_and_loopback_http() -> None:
    for url in ("https://idp.example.com/jwks", "http://127.0.0.1:8080/jwks", "http://localhost/k"):
        assert oidc(url).jwks == url


def test_missing_pyjwt_names_the_extra(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jwt", None)
    with pytest.raises(BackendNotInstalled, match=r"pip install 'parity\[auth\]'"):
        JwtAuthenticator(oidc(), repo)


# --- the key set: file refresh, URL, rotation, throttling, outages -----------------------------


def test_file_key_set_is_reread_every_refresh_interval(
    repo: Path, rsa_key: Any, rsa_key_2: Any
) -> None:
    clock = Clock()
    auth = JwtAuthenticator(oidc(jwks_refresh_seconds=300), repo, clock=clock)
    assert auth.authenticate(sign(rsa_key, "rsa-1")).name == "ada"
    write_jwks(repo / "keys" / "jwks.json", jwk(rsa_key_2, "rsa-2"))  # rsa-1 withdrawn
    clock.now += 299
    assert auth.authenticate(sign(rsa_key, "rsa-1")).name == "ada"  # not re-read yet
    clock.now += 2
    assert "unknown signing key" in refused(auth, sign(rsa_key, "rsa-1"))
    assert auth.authenticate(sign(rsa_key_2, "rsa-2")).name == "ada"


class JwksServer:
    """A key set on a local HTTP server that counts its requests and can change its keys."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def idp(rsa_key: Any) -> Iterator[JwksServer]:
    server = JwksServer()
    server.document = {"keys": [jwk(rsa_key, "rsa-1")]}
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_key_set_from_a_url_and_rotation_after_the_cooldown(
    tmp_path: Path, idp: JwksServer, rsa_key: Any, rsa_key_2: Any
) -> None:
    clock = Clock()
    auth = JwtAuthenticator(oidc(idp.url), tmp_path, clock=clock)
    assert auth.authenticate(sign(rsa_key, "rsa-1")).name == "ada"
    assert idp.requests == 1
    idp.document = {"keys": [jwk(rsa_key, "rsa-1"), jwk(rsa_key_2, "rsa-2")]}  # IdP rotates
    clock.now += jwks.REFETCH_COOLDOWN_SECONDS + 1
    assert auth.authenticate(sign(rsa_key_2, "rsa-2")).name == "ada"  # unknown kid → re-read
    assert idp.requests == 2
    assert auth.authenticate(sign(rsa_key, "rsa-1")).name == "ada"  # both keys held
    assert idp.requests == 2


def test_a_flood_of_unknown_kids_reads_the_key_set_once_per_cooldown(
    tmp_path: Path, idp: JwksServer, rsa_key: Any, rsa_key_2: Any
) -> None:
    clock = Clock()
    auth = JwtAuthenticator(oidc(idp.url), tmp_path, clock=clock)
    auth.authenticate(sign(rsa_key, "rsa-1"))
    clock.now += jwks.REFETCH_COOLDOWN_SECONDS + 1
    for n in range(200):
        assert "unknown signing key" in refused(auth, sign(rsa_key_2, f"made-up-{n}"))
        clock.now += 0.01  # 2 s of flood
    assert idp.requests == 2  # the first load, and one re-read for the whole flood
    idp.document = {"keys": [jwk(rsa_key_2, "made-up-0")]}
    assert "unknown signing key" in refused(auth, sign(rsa_key_2, "made-up-0"))  # cooling down
    clock.now += jwks.REFETCH_COOLDOWN_SECONDS
    assert auth.authenticate(sign(rsa_key_2, "made-up-0")).name == "ada"
    assert idp.requests == 3


def test_refused_tokens_do_not_reach_the_idp(tmp_path: Path, idp: JwksServer, rsa_key: Any) -> None:
    clock = Clock()
    auth = JwtAuthenticator(oidc(idp.url), tmp_path, clock=clock)
    auth.authenticate(sign(rsa_key, "rsa-1"))
    clock.now += 3600  # past the refresh interval: only a token worth checking re-reads
    header = b64(json.dumps({"alg": "none", "kid": "x"}).encode())
    refused(auth, f"{header}.{b64(json.dumps(claims()).encode())}.")
    refused(auth, "garbage")
    assert idp.requests == 1


def test_idp_down_at_start_is_503_type_and_quick(
    tmp_path: Path, rsa_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jwks, "FETCH_TIMEOUT_SECONDS", 0.5)
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/jwks"
        auth = JwtAuthenticator(oidc(url), tmp_path, clock=Clock())
        started = time.monotonic()
        with pytest.raises(IdentityProviderUnavailable) as caught:
            auth.authenticate(sign(rsa_key, "rsa-1"))
        assert time.monotonic() - started < 3
        assert "key set is unavailable" in str(caught.value) and "timed out" in str(caught.value)
        assert 1 <= caught.value.retry_after_seconds <= jwks.REFETCH_COOLDOWN_SECONDS
        started = time.monotonic()  # within the cooldown: refused at once, no second fetch
        with pytest.raises(IdentityProviderUnavailable):
            auth.authenticate(sign(rsa_key, "rsa-1"))
        assert time.monotonic() - started < 0.2


def test_idp_down_later_keeps_the_keys_already_read(
    tmp_path: Path, idp: JwksServer, rsa_key: Any
) -> None:
    clock = Clock()
    auth = JwtAuthenticator(oidc(idp.url), tmp_path, clock=clock)
    auth.authenticate(sign(rsa_key, "rsa-1"))
    idp.server.shutdown()
    idp.server.server_close()
    clock.now += 400  # past jwks_refresh_seconds: the re-read fails, the held keys still verify
    assert auth.authenticate(sign(rsa_key, "rsa-1", exp=int(NOW) + 3600)).name == "ada"


def test_idp_answering_an_error_or_not_a_key_set(tmp_path: Path, rsa_key: Any) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "jwks.json").write_text("<html>not json</html>")
    auth = JwtAuthenticator(oidc(), tmp_path, clock=Clock())
    with pytest.raises(IdentityProviderUnavailable, match="is not JSON"):
        auth.authenticate(sign(rsa_key, "rsa-1"))
    missing = JwtAuthenticator(oidc("keys/none.json"), tmp_path, clock=Clock())
    with pytest.raises(IdentityProviderUnavailable, match=r"cannot read .*none\.json"):
        missing.authenticate(sign(rsa_key, "rsa-1"))


def test_a_short_rsa_key_in_the_set_is_refused(tmp_path: Path) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    write_jwks(tmp_path / "keys" / "jwks.json", jwk(weak, "weak"))
    auth = JwtAuthenticator(oidc(), tmp_path, clock=Clock())
    with pytest.warns(jwt.InsecureKeyLengthWarning):  # PyJWT warns when signing with it
        token = sign(weak, "weak")
    message = refused(auth, token)
    assert "key cannot be trusted" in message and "1024 bits" in message


def test_symmetric_and_encryption_keys_in_the_set_are_ignored(tmp_path: Path, rsa_key: Any) -> None:
    secret = {"kty": "oct", "kid": "rsa-1", "k": b64(b"0" * 32), "alg": "HS256"}
    encryption = {**jwk(rsa_key, "enc-1"), "use": "enc"}
    assert jwks.usable_keys({"keys": [secret, encryption, "junk"]}, ["RS256", "ES256"]) == []
