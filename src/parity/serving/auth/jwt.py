"""OIDC JWTs → `Principal`: signature checked against the provider's key set (serving/auth/jwks),
then audience, issuer, expiry and scopes. Every refusal is `Unauthenticated` saying why, never
repeating the token. PyJWT loads when an authenticator is built (the `auth` extra)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from parity.errors import (
    BackendNotInstalled,
    ConfigError,
    IdentityProviderUnavailable,
    TokenError,
    Unauthenticated,
)
from parity.repo.config import OidcConfig
from parity.serving.auth import jwks
from parity.serving.auth.scopes import Grant, Principal, parse_scopes

logger = logging.getLogger(__name__)

# A bearer token longer than this is refused before parsing (IdP tokens are 1-4 KiB).
MAX_TOKEN_BYTES = 16 * 1024
# Claims PyJWT checks itself once the signature holds (exp and nbf are checked on our clock).
_REQUIRED = ["aud", "sub"]


class JwtAuthenticator:
    """Verifies OIDC JWTs issued for `config.audience` (see `OidcConfig` for each default's
    reason). `clock` gives epoch seconds (exp, nbf and key refreshes are judged by it)."""

    def __init__(
        self, config: OidcConfig, repo_root: Path, clock: Callable[[], float] = time.time
    ) -> None:
        self._jwt = _import_jwt()
        self._config = config
        self._clock = clock
        self._mapped = _scope_map(config.scope_map)
        self._keys = jwks.KeyRing(
            lambda: jwks.usable_keys(jwks.read_source(config.jwks, repo_root), config.algorithms),
            config.jwks_refresh_seconds,
            clock,
        )
        self._where = "the IdP's key set" if jwks.is_url(config.jwks) else config.jwks
        self._built: dict[tuple[int, str], Any] = {}  # (id of a JWK dict, alg) → PyJWK

    def authenticate(self, token: str) -> Principal:
        """The principal `token` stands for; Unauthenticated saying why it is refused."""
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated(f"bearer token longer than {MAX_TOKEN_BYTES} bytes")
        header = self._header(token)
        alg = header.get("alg")
        if alg not in self._config.algorithms:
            raise Unauthenticated(
                f"JWT signed with algorithm {str(alg)[:16]!r}, which is not allowed (allowed: "
                f"{', '.join(self._config.algorithms)})"
            )
        claims = self._verify(token, header, str(alg))
        self._check_times(claims)
        return self._principal(claims)

    def _header(self, token: str) -> dict[str, Any]:
        try:
            header: dict[str, Any] = self._jwt.get_unverified_header(token)
        except self._jwt.PyJWTError:
            raise Unauthenticated(
                "malformed bearer token: neither a Parity token (parity_...) nor a JWT"
            ) from None
        return header

    def _verify(self, token: str, header: dict[str, Any], alg: str) -> dict[str, Any]:
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("JWT header 'kid' is not a string")
        candidates = [key for key in self._lookup(kid) if jwks.fits(key, alg)]
        if not candidates:
            named = f"key id {kid[:64]!r}" if kid is not None else "no key id"
            raise Unauthenticated(
                f"unknown signing key: the JWT names {named}, and {self._where} holds no {alg} "
                "key with it (a key the IdP withdrew, or a token from another IdP)"
            )
        error: Exception | None = None
        for key in candidates:
            try:
                return self._decode(token, key, alg)
            except self._jwt.InvalidSignatureError as failed:
                error = failed
        raise Unauthenticated("bad signature: the JWT was not signed by the IdP's key") from error

    def _lookup(self, kid: str | None) -> list[dict[str, Any]]:
        try:
            return self._keys.lookup(kid)
        except jwks.KeySetUnavailable as error:
            raise IdentityProviderUnavailable(
                f"cannot check JWTs now: the OIDC key set is unavailable ({error})",
                retry_after_seconds=self._keys.retry_after(),
            ) from None

    def _decode(self, token: str, key: dict[str, Any], alg: str) -> dict[str, Any]:
        jwt = self._jwt
        options: dict[str, Any] = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}
        options["enforce_minimum_key_length"] = True  # RSA under 2048 bits is refused
        options["require"] = _REQUIRED + (["iss"] if self._config.issuer else [])
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._pyjwk(key, alg),
                algorithms=[alg],
                audience=self._config.audience,
                issuer=self._config.issuer,
                options=options,
            )
        except jwt.InvalidSignatureError:
            raise
        except jwt.MissingRequiredClaimError as error:
            raise Unauthenticated(f"JWT is missing the claim '{error.claim}'") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(
                f"wrong audience: the JWT is not for '{self._config.audience}' (ask the IdP "
                "for a token with this audience)"
            ) from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(
                f"wrong issuer: the JWT was not issued by '{self._config.issuer}'"
            ) from None
        except jwt.InvalidKeyError as error:
            raise Unauthenticated(f"the IdP's key cannot be trusted: {_reason(error)}") from None
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"invalid JWT: {_reason(error)}") from None
        return claims

    def _pyjwk(self, key: dict[str, Any], alg: str) -> Any:
        built = self._built.get((id(key), alg))
        if built is None or built[0] is not key:
            try:
                built = (key, self._jwt.PyJWK(key, alg))
            except self._jwt.PyJWTError as error:
                raise Unauthenticated(f"the IdP's key is unusable: {_reason(error)}") from None
            if len(self._built) > 64:  # keys of earlier reads of the set
                self._built.clear()
            self._built[(id(key), alg)] = built
        return built[1]

    def _check_times(self, claims: dict[str, Any]) -> None:
        now, leeway = self._clock(), self._config.leeway_seconds
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if exp is None:
            raise Unauthenticated("JWT is missing the claim 'exp' (tokens must expire)")
        if not _is_number(exp) or (nbf is not None and not _is_number(nbf)):
            raise Unauthenticated("JWT claims 'exp' and 'nbf' must be numbers (epoch seconds)")
        if now > exp + leeway:
            raise Unauthenticated(f"JWT expired at {_when(exp)}: ask the IdP for a new one")
        if nbf is not None and now < nbf - leeway:
            raise Unauthenticated(f"JWT not valid yet: valid from {_when(nbf)}")

    def _principal(self, claims: dict[str, Any]) -> Principal:
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated("JWT claim 'sub' must be a non-empty string")
        name = claims.get(self._config.name_claim)
        grants = self._grants(claims)
        if not grants:
            raise Unauthenticated(
                f"JWT carries no Parity scope: none in claim '{self._config.scopes_claim}' and no "
                f"value of {', '.join(self._config.scope_map_claims)} in auth.oidc.scope_map"
            )
        return Principal(
            name=name if isinstance(name, str) and name else subject,
            kind="jwt",
            grants=grants,
            key=f"jwt:{subject}",
            expires_at=float(claims["exp"]),
        )

    def _grants(self, claims: dict[str, Any]) -> tuple[Grant, ...]:
        """Parity scopes among the items of `scopes_claim`, plus `scope_map`'s scopes for those
        items and the values of `scope_map_claims`; each grant once, in order of appearance."""
        items = _strings(_claim(claims, self._config.scopes_claim))
        grants = [grant for item in items for grant in _parity_scope(item)]
        values = list(items)
        for name in self._config.scope_map_claims:
            values += _strings(_claim(claims, name))
        for value in values:
            grants += self._mapped.get(value, ())
        return tuple(dict.fromkeys(grants))


def _import_jwt() -> Any:
    try:
        import jwt
        from jwt.algorithms import has_crypto
    except ModuleNotFoundError:
        has_crypto = False
    if not has_crypto:
        raise BackendNotInstalled(
            "OIDC JWTs (auth.oidc) need PyJWT with cryptography: pip install 'parity[auth]'"
        )
    return jwt


def _scope_map(mapping: dict[str, str]) -> dict[str, tuple[Grant, ...]]:
    """Each value of `auth.oidc.scope_map` parsed now, so a typo fails at start-up."""
    parsed = {}
    for value, scopes in mapping.items():
        try:
            parsed[value] = parse_scopes(scopes)
        except TokenError as error:
            raise ConfigError(f"auth.oidc.scope_map[{value!r}]: {error}") from None
    return parsed


def _parity_scope(item: str) -> tuple[Grant, ...]:
    """The grant an item of the scope claim stands for; () for an item that is not a Parity scope
    (`openid`, `email`) or is one written wrongly (it grants nothing rather than failing)."""
    try:
        return parse_scopes(item)
    except TokenError:
        return ()


def _claim(claims: dict[str, Any], name: str) -> Any:
    """Claim `name`, or a nested one by a dotted path (`realm_access.roles`)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _strings(value: Any) -> list[str]:
    """A claim's items: a space-separated string's words, or a list's strings."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _when(epoch: float) -> str:
    try:
        return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"epoch {epoch}"


def _reason(error: Exception) -> str:
    return str(error)[:200] or type(error).__name__
