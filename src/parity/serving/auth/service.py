"""`store.access`: the entry point of access control — API tokens (`tokens`: create, list,
revoke, authenticate) and the audit trail (`audit`). Wires the token table and the audit table to
the store; the token format lives in tokens.py. Must not import a server.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from parity.errors import BackendNotInstalled, ParityError, TokenError, Unauthenticated
from parity.registry.audit import AuditTrail, current_actor
from parity.serving.auth import tokens as fmt
from parity.serving.auth.scopes import Principal, format_scopes, parse_scopes
from parity.serving.auth.token_store import TokenStore
from parity.serving.auth.tokens import TokenRecord

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from parity.feature_store import FeatureStore

log = logging.getLogger(__name__)

# A token's last use is written at most this often (a write per request would serialize the
# servers on the registry database; "last used" needs minutes, not milliseconds).
TOUCH_EVERY = timedelta(seconds=60)
_ATTEMPTS = 5  # new ids drawn when one collides (48 random bits: never in practice)
# Compared against when the id is unknown, so an unknown id costs what a wrong secret costs.
_NO_HASH = "0" * 64


class Access:
    """Tokens (`tokens`) and the audit trail (`audit`) of one project."""

    def __init__(self, store: FeatureStore) -> None:
        self._store = store
        self._tokens: Tokens | None = None
        self._audit: AuditTrail | None = None

    @property
    def audit(self) -> AuditTrail:
        """`record(action, target, detail)` after each write; `query(...)`, newest first."""
        if self._audit is None:
            engine = _engine(self._store)
            self._audit = AuditTrail(engine, self._store.project, self._store.now)
        return self._audit

    @property
    def tokens(self) -> Tokens:
        """API tokens: `create`, `list`, `revoke`, `authenticate`."""
        if self._tokens is None:
            engine = _engine(self._store)
            if engine is None:
                raise BackendNotInstalled(
                    f"the registry store {type(self._store.registry.store).__name__} cannot keep "
                    "API tokens; use the SQL registry (sqlite or postgres in parity.yaml)"
                )
            db = TokenStore(engine, self._store.project)
            self._tokens = Tokens(db, self.audit, self._store.now)
        return self._tokens


class Tokens:
    """The API tokens of one project: the text is shown once at creation, only its hash kept."""

    def __init__(self, db: TokenStore, audit: AuditTrail, clock: Callable[[], datetime]) -> None:
        self.db = db
        self._audit = audit
        self._clock = clock

    def create(
        self,
        name: str,
        scopes: str | Iterable[str],
        *,
        expires_in: timedelta | str | None = None,
        rate_per_second: float | None = None,
        burst: int | None = None,
        max_in_flight: int | None = None,
    ) -> tuple[TokenRecord, str]:
        """A new token and its text (shown once: only the hash of its secret is stored).
        TokenError naming the field: a bad name or scope, an expiry that is not above zero and
        at most 10 years, a limit below 1, a name a live token has."""
        fmt.check_name(name)
        text_scopes = format_scopes(parse_scopes(scopes))
        span = fmt.parse_expiry(expires_in)
        fmt.check_limits(rate_per_second, burst, max_in_flight)
        now = self._clock()
        for _ in range(_ATTEMPTS):
            new = fmt.generate()
            record = TokenRecord(
                id=new.id,
                name=name,
                scopes=text_scopes,
                created_at=now,
                created_by=current_actor().name,
                expires_at=None if span is None else now + span,
                rate_per_second=None if rate_per_second is None else float(rate_per_second),
                burst=burst,
                max_in_flight=max_in_flight,
            )
            if self.db.insert(record, new.secret_hash):
                detail = {
                    "id": new.id,
                    "scopes": text_scopes,
                    "expires_at": _iso(record.expires_at),
                }
                self._audit.record("auth.token.create", name, detail, at=now)
                return record, new.text
        raise TokenError(f"name '{name}': could not draw a free token id; create it again")

    def list(self, include_revoked: bool = False) -> builtins.list[TokenRecord]:
        """Live tokens (revoked ones too with `include_revoked`), by name; never their text."""
        return self.db.list(include_revoked=include_revoked)

    def get(self, name_or_id: str) -> TokenRecord:
        """The live token of this name, else the token with this id; TokenError otherwise."""
        if not isinstance(name_or_id, str) or not name_or_id:  # None would match NULL names
            raise TokenError(f"token {name_or_id!r}: give a token's name or id")
        found = self.db.active(name_or_id)
        if found is None:
            hit = self.db.lookup(name_or_id) if _looks_like_id(name_or_id) else None
            found = None if hit is None else hit[0]
        if found is None:
            raise TokenError(
                f"token {name_or_id!r}: no live token has this name or id; see 'parity auth "
                "token list --all'"
            )
        return found

    def revoke(self, name_or_id: str) -> TokenRecord:
        """Revoke the live token of this name (or id); servers refuse it within their
        `auth.cache_seconds`. TokenError for an unknown or already revoked token."""
        record = self.get(name_or_id)
        if record.revoked:
            raise TokenError(f"token {name_or_id!r}: already revoked at {_iso(record.revoked_at)}")
        now, who = self._clock(), current_actor().name
        if not self.db.revoke(record.id, now, who):
            raise TokenError(f"token {name_or_id!r}: already revoked")
        self._audit.record("auth.token.revoke", record.name, {"id": record.id}, at=now)
        return replace(record, revoked_at=now, revoked_by=who)

    def authenticate(self, text: str, now: datetime) -> Principal:
        """The principal a token's text stands for. Unauthenticated saying malformed, unknown,
        revoked or expired (never repeating the text). One read of the token's row (and a
        write of its last use at most every minute): callers cache the answer."""
        token_id, secret = fmt.split(text)
        now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        hit = self.db.lookup(token_id)
        stored = _NO_HASH if hit is None else hit[1]
        if not fmt.secret_matches(secret, stored) or hit is None:
            raise Unauthenticated(
                f"unknown token (id {token_id}): no token has this id and secret; create one "
                "with 'parity auth token create'"
            )
        record = hit[0]
        if record.revoked:
            raise Unauthenticated(f"token '{record.name}' (id {token_id}) was revoked")
        if record.expired(now):
            raise Unauthenticated(
                f"token '{record.name}' (id {token_id}) expired at {_iso(record.expires_at)}"
            )
        self._touch(record, now)
        return principal_of(record)

    def _touch(self, record: TokenRecord, now: datetime) -> None:
        if record.last_used_at is not None and now - record.last_used_at < TOUCH_EVERY:
            return
        try:
            self.db.touch(record.id, now)
        except ParityError as error:  # "last used" is a convenience: never refuse for it
            log.warning("could not record the use of token %s: %s", record.id, error)


def principal_of(record: TokenRecord) -> Principal:
    """The principal of a verified token: its name, grants, limits; key `token:<id>`."""
    return Principal(
        name=record.name,
        kind="token",
        grants=parse_scopes(record.scopes),
        key=f"token:{record.id}",
        expires_at=None if record.expires_at is None else record.expires_at.timestamp(),
        rate_per_second=record.rate_per_second,
        burst=record.burst,
        max_in_flight=record.max_in_flight,
    )


def _engine(store: FeatureStore) -> Engine | None:
    """The registry's SQL engine; None for a registry store that has none."""
    engine: Engine | None = getattr(store.registry.store, "engine", None)
    return engine


def _looks_like_id(text: str) -> bool:
    return len(text) == fmt.ID_HEX and all(c in "0123456789abcdef" for c in text)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
