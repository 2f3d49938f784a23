"""API token text and its record (pure: no I/O). Text is `parity_<12 hex id>_<secret>`; only
sha256(secret) is ever stored, and hashes are compared with `hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from parity.errors import TokenError, Unauthenticated
from parity.timeutil import parse_span

PREFIX = "parity_"
ID_HEX = 12  # 48 random bits: a public lookup key, unique per project (the table's key)
SECRET_BYTES = 32  # 256 random bits: guessing is hopeless, whatever the rate limit
# urlsafe base64 of 32 bytes without padding: 43 characters of [A-Za-z0-9_-]
_TEXT = re.compile(r"parity_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
MAX_EXPIRY = timedelta(days=3650)  # ten years: a longer expiry is a typo for "never"
EXPIRY_EXAMPLES = "30d, 12h, 90m, 1w"


@dataclass(frozen=True)
class TokenRecord:
    """What the registry keeps about one token (never its text or secret). `scopes` is the
    space-separated scope text; limits None mean the server's defaults."""

    id: str
    name: str
    scopes: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    rate_per_second: float | None = None
    burst: int | None = None
    max_in_flight: int | None = None
    last_used_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True)
class NewToken:
    """A freshly generated token: its public id, its text (shown once) and the secret's hash."""

    id: str
    text: str
    secret_hash: str


def generate() -> NewToken:
    """A new random id and secret (from `secrets`, the OS's CSPRNG)."""
    token_id = secrets.token_hex(ID_HEX // 2)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return NewToken(token_id, f"{PREFIX}{token_id}_{secret}", hash_secret(secret))


def hash_secret(secret: str) -> str:
    """sha256 of the secret, hex: a 256-bit random secret needs no salt nor slow hash."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def split(text: str) -> tuple[str, str]:
    """(id, secret) of a token's text; Unauthenticated("malformed") for anything else, without
    repeating the text."""
    match = _TEXT.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise Unauthenticated(
            "malformed token: a Parity API token looks like parity_<12 hex>_<43 characters>; "
            "send the whole text printed by 'parity auth token create'"
        )
    return match.group(1), match.group(2)


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Whether the secret's hash equals the stored one, in time independent of where they differ
    (`hmac.compare_digest`)."""
    return hmac.compare_digest(hash_secret(secret).encode(), stored_hash.encode())


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TokenError(
            f"name {name!r}: give 1 to 100 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit (e.g. ci-bot)"
        )
    if _TEXT.fullmatch(name) or re.fullmatch(r"[0-9a-f]{12}", name):
        raise TokenError(f"name {name!r}: looks like a token or an id; choose a readable name")
    return name


def parse_expiry(value: str | timedelta | None) -> timedelta | None:
    """`30d`, `12h`, `90m`, `1w` (or a timedelta) as a timedelta; None: never expires. TokenError
    naming `expires` for zero, negative or more than ten years."""
    if value is None:
        return None
    span = value if isinstance(value, timedelta) else parse_span(str(value))
    if span is None or not timedelta(0) < span <= MAX_EXPIRY:
        raise TokenError(
            f"expires {str(value)!r}: give a duration above zero and at most 10 years: a whole "
            f"number and a unit, e.g. {EXPIRY_EXAMPLES} (leave it out for a token that never "
            "expires)"
        )
    return span


def check_limits(
    rate_per_second: float | None, burst: int | None, max_in_flight: int | None
) -> None:
    """TokenError naming the limit that is not a positive finite number (None: the defaults)."""
    if rate_per_second is not None and (
        isinstance(rate_per_second, bool)
        or not isinstance(rate_per_second, int | float)
        or not 0 < rate_per_second < float("inf")
    ):
        raise TokenError(f"rate_per_second {rate_per_second!r}: give a number above 0")
    for field, value in (("burst", burst), ("max_in_flight", max_in_flight)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise TokenError(f"{field} {value!r}: give a whole number of at least 1")
