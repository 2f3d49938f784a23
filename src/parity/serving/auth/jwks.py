"""An OIDC provider's signing keys (a JSON Web Key Set) read from a file or an http(s) URL, kept
fresh on an injected clock: re-read every refresh interval, and at most once per cooldown when a
token names a key id the set lacks. Only asymmetric signature keys are kept. Imports no server."""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parity.repo.config import jwks_url_problem

logger = logging.getLogger(__name__)

# A fetch of the key set gives up after this long (a hung IdP must not hang requests for longer).
FETCH_TIMEOUT_SECONDS = 3.0
# An unknown key id, or a failed fetch, re-reads the set at most this often per process, so a
# flood of tokens with made-up key ids costs the IdP one request per 10 s per server process.
REFETCH_COOLDOWN_SECONDS = 10.0
# A key set larger than this is refused (real ones are a few KiB; this bounds memory).
MAX_JWKS_BYTES = 1 << 20
# Which key types an algorithm verifies with (and the curve, for EC): no symmetric (`oct`) keys.
KEY_TYPES: dict[str, tuple[str, str | None]] = {
    **{f"{family}{bits}": ("RSA", None) for family in ("RS", "PS") for bits in (256, 384, 512)},
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}


class KeySetUnavailable(Exception):
    """The key set could not be read (unreachable, not JSON, no usable key): why, in words."""


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a URL the key set may come from (never https → http)."""

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if jwks_url_problem(newurl) is not None:
            raise urllib.error.URLError(f"redirected to a URL that is not https ({newurl})")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SafeRedirects)


def read_source(source: str, repo_root: Path) -> dict[str, Any]:
    """The key set's JSON from a file (relative to the repo root) or a URL; KeySetUnavailable
    saying why when it cannot be read."""
    if is_url(source):
        data = _fetch(source)
        where = source
    else:
        path = Path(source) if Path(source).is_absolute() else repo_root / source
        where = str(path)
        try:
            data = path.read_bytes()[: MAX_JWKS_BYTES + 1]
        except OSError as error:
            raise KeySetUnavailable(f"cannot read {where}: {error.strerror}") from None
    if len(data) > MAX_JWKS_BYTES:
        raise KeySetUnavailable(f"{where} holds more than {MAX_JWKS_BYTES} bytes")
    try:
        parsed = json.loads(data)
    except ValueError:
        raise KeySetUnavailable(f"{where} is not JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("keys"), list):
        raise KeySetUnavailable(f"{where} is not a JSON Web Key Set (no 'keys' list)")
    return parsed


def _fetch(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with _OPENER.open(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
            body: bytes = response.read(MAX_JWKS_BYTES + 1)
            return body
    except urllib.error.HTTPError as error:
        raise KeySetUnavailable(f"{url} answered HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise KeySetUnavailable(f"cannot fetch {url}: {reason}") from None


def usable_keys(document: dict[str, Any], algorithms: list[str]) -> list[dict[str, Any]]:
    """The set's keys that can verify one of `algorithms`: asymmetric, for signatures (`use`
    absent or `sig`), with a key type (and curve) one of the algorithms takes."""
    kept = []
    for key in document["keys"]:
        if not isinstance(key, dict) or key.get("use", "sig") != "sig":
            continue
        if any(fits(key, alg) for alg in algorithms):
            kept.append(key)
    return kept


def fits(key: dict[str, Any], alg: str) -> bool:
    """Whether `key` may verify `alg`: its type (and curve) match, and its own `alg`, if any."""
    kty, crv = KEY_TYPES.get(alg, ("", None))
    if key.get("kty") != kty or (crv is not None and key.get("crv") != crv):
        return False
    return bool(key.get("alg", alg) == alg)


class KeyRing:
    """The current keys by `kid`, re-read every `refresh_seconds` (on the next lookup after) and,
    when a lookup misses, at most once per REFETCH_COOLDOWN_SECONDS. A failed re-read keeps the
    keys held (logged); with none ever read, `lookup` raises KeySetUnavailable. Thread-safe:
    one thread reads the source at a time."""

    def __init__(
        self,
        load: Callable[[], list[dict[str, Any]]],
        refresh_seconds: float,
        clock: Callable[[], float],
    ) -> None:
        self._load = load
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._keys: dict[str | None, list[dict[str, Any]]] | None = None
        self._loaded_at = float("-inf")
        self._tried_at = float("-inf")
        self._problem = ""
        self._lock = threading.Lock()

    def lookup(self, kid: str | None) -> list[dict[str, Any]]:
        """The keys with this `kid` (every key when the token names none); [] when none."""
        now = self._clock()
        if now - self._loaded_at >= self._refresh_seconds:
            self._reload(now)
        found = self._find(kid)
        if not found and self._keys is not None:
            self._reload(now)
            found = self._find(kid)
        if self._keys is None:
            raise KeySetUnavailable(self._problem)
        return found

    def retry_after(self) -> float:
        """Seconds until the next re-read may be tried."""
        return max(0.0, self._tried_at + REFETCH_COOLDOWN_SECONDS - self._clock())

    def _find(self, kid: str | None) -> list[dict[str, Any]]:
        if self._keys is None:
            return []
        if kid is None:
            return [key for keys in self._keys.values() for key in keys]
        return self._keys.get(kid, [])

    def _reload(self, now: float) -> None:
        with self._lock:
            if now - self._tried_at < REFETCH_COOLDOWN_SECONDS:
                return  # another lookup re-read it (or tried to) moments ago
            self._tried_at = now
            try:
                keys = self._load()
            except KeySetUnavailable as error:
                self._problem = str(error)
                logger.warning("OIDC key set not refreshed: %s", error)
                return
            by_kid: dict[str | None, list[dict[str, Any]]] = {}
            for key in keys:
                kid = key.get("kid")
                by_kid.setdefault(kid if isinstance(kid, str) else None, []).append(key)
            self._keys, self._loaded_at = by_kid, now
