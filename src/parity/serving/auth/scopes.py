"""Scopes and the principal a verified token stands for (pure: no I/O, no clock).

A scope is `resource:action`, optionally narrowed to names: `models:predict:fraud,churn` allows
prediction with the models `fraud` and `churn` only. `admin` allows everything. Scopes travel as
one space-separated string (as OAuth's `scope` claim does).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from parity.errors import Forbidden, TokenError

# What each scope allows, for `parity auth token create --help` and docs/security.md.
SCOPES: dict[str, str] = {
    "features:read": "read online features and the UI's catalog (narrow to services or views)",
    "features:push": "push rows online and to the training data (narrow to push sources)",
    "models:predict": "call models: /v1 predict and /v2 infer (narrow to models)",
    "models:read": "read models, lineage, rollouts, the UI's monitoring (narrow to models)",
    "models:write": "move and delete aliases over HTTP (narrow to models)",
    "rollouts:admin": "start, pause, resume, promote and abort rollouts, in the UI too "
    "(narrow to models)",
    "registry:apply": "apply feature definitions (no HTTP route needs it yet)",
    "metrics:read": "scrape /metrics",
    "admin": "everything above",
}
ADMIN = "admin"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class Grant:
    """One scope a principal holds: `scope` (e.g. `models:predict`), narrowed to `names` if any."""

    scope: str
    names: frozenset[str] | None = None

    def __str__(self) -> str:
        if self.names is None:
            return self.scope
        return f"{self.scope}:{','.join(sorted(self.names))}"


def parse_scopes(text: str | Iterable[str]) -> tuple[Grant, ...]:
    """Grants from `features:read models:predict:fraud,churn` (or a list of such items).
    TokenError naming the item and the known scopes for anything else."""
    if not isinstance(text, str | Iterable):
        raise TokenError(f"scopes: give a space-separated string or a list, not {text!r}")
    items = text.split() if isinstance(text, str) else [i for t in text for i in str(t).split()]
    if not items:
        raise TokenError(f"scopes: give at least one of {', '.join(SCOPES)}")
    return tuple(_grant(item) for item in items)


def _grant(item: str) -> Grant:
    parts = item.split(":", 2)
    scope = ":".join(parts[:2])
    if scope not in SCOPES:
        raise TokenError(
            f"scopes: {item!r} is not a scope; known: {', '.join(SCOPES)} (narrow one to names "
            "with ':', e.g. models:predict:fraud,churn)"
        )
    if len(parts) < 3:
        return Grant(scope)
    if scope in (ADMIN, "registry:apply", "metrics:read"):
        raise TokenError(f"scopes: {scope} cannot be narrowed to names ({item!r})")
    names = [n for n in parts[2].split(",") if n]
    bad = [n for n in names if not _NAME.match(n)]
    if not names or bad:
        raise TokenError(
            f"scopes: {item!r} must end with one or more names separated by commas "
            "(letters, digits, '_', '-', '.')"
        )
    return Grant(scope, frozenset(names))


def format_scopes(grants: Iterable[Grant]) -> str:
    return " ".join(str(g) for g in grants)


@dataclass(frozen=True)
class Principal:
    """Who a verified token stands for: `name` (the token's name, or the JWT's subject), `kind`
    ("token" or "jwt"), what it may do, and its own limits (None: the server's defaults).
    `key` identifies it for per-client limits; `expires_at` is epoch seconds (None: never)."""

    name: str
    kind: str
    grants: tuple[Grant, ...]
    key: str
    expires_at: float | None = None
    rate_per_second: float | None = None
    burst: int | None = None
    max_in_flight: int | None = None
    _by_scope: dict[str, list[Grant]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for grant in self.grants:
            self._by_scope.setdefault(grant.scope, []).append(grant)

    @property
    def is_admin(self) -> bool:
        return ADMIN in self._by_scope

    def allows(self, scope: str, name: str | None = None) -> bool:
        """Whether this principal holds `scope` (for `name`, when the scope is narrowable and
        a name is given; a narrowed grant never allows a request that names nothing)."""
        if self.is_admin:
            return True
        for grant in self._by_scope.get(scope, ()):
            if grant.names is None or (name is not None and name in grant.names):
                return True
        return False

    def allows_any(self, scope: str) -> bool:
        """Whether it holds `scope` for at least one name (a listing is then filtered)."""
        return self.is_admin or scope in self._by_scope

    def require(self, scopes: Iterable[str], name: str | None = None, what: str = "") -> None:
        """Forbidden (403) naming the first of `scopes` unless one of them allows `name`.
        `what` names the object kind for the message (`model`, `feature view`, ...)."""
        wanted = tuple(scopes)
        if any(self.allows(scope, name) for scope in wanted):
            return
        raise Forbidden(_missing(self.name, wanted, name, what), wanted[0])

    def require_all(self, scope: str, names: Iterable[str], what: str) -> None:
        """Forbidden unless `scope` allows every one of `names` (a request naming several)."""
        missing = sorted({n for n in names if not self.allows(scope, n)})
        if missing:
            shown = ", ".join(repr(n) for n in missing[:5])
            raise Forbidden(
                f"token '{self.name}' lacks scope {scope} for {what} {shown}: ask for a token with "
                f"'{scope}' (or '{scope}:{','.join(missing[:5])}')",
                scope,
            )


def _missing(who: str, scopes: tuple[str, ...], name: str | None, what: str) -> str:
    needed = " or ".join(scopes)
    target = f" for {what} '{name}'" if name is not None and what else ""
    hint = scopes[0] if name is None or not what else f"{scopes[0]}:{name}"
    return f"token '{who}' lacks scope {needed}{target}: ask for a token with '{hint}'"
