"""Route rules: which scope each route of a server needs (pure). Each server declares its routes
as a table of `RouteRule`s; the gate enforces it, and the scope-matrix test is generated from it,
so a route without a rule cannot be added without the test noticing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

OPEN = "open"  # `access=OPEN`: no token needed (health probes only)
AUTHENTICATED = "authenticated"  # any valid token, no particular scope (e.g. the API's spec)
SCOPED = "scoped"  # one of `scopes`, for the name in `name_param` when given
BODY = "body"  # `name_from=BODY`: the handler checks the names the body carries


@dataclass(frozen=True)
class RouteRule:
    """`method` `path` (a template: `{param}` matches one path segment) needs `access`: OPEN,
    AUTHENTICATED, or SCOPED by any one of `scopes`. A narrowed scope must cover the name in the
    path parameter `name_param` (a model's `name@alias` counts as `name`), or, with
    `name_from=BODY`, the names the handler reads from the body. `what` names the object kind in
    a 403 (`model`, `feature service or view`, `push source`)."""

    method: str
    path: str
    access: str
    scopes: tuple[str, ...] = ()
    name_param: str | None = None
    name_from: str | None = None
    what: str = ""
    _pattern: re.Pattern[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.access not in (OPEN, AUTHENTICATED, SCOPED):
            raise ValueError(f"access must be OPEN, AUTHENTICATED or SCOPED, not {self.access!r}")
        if (self.access == SCOPED) != bool(self.scopes):
            raise ValueError(f"{self.method} {self.path}: scopes go with SCOPED access only")
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        object.__setattr__(self, "_pattern", re.compile(f"^{regex}/?$"))

    def match(self, path: str) -> dict[str, str] | None:
        found = self._pattern.match(path)
        return None if found is None else found.groupdict()

    def name_in(self, params: dict[str, str]) -> str | None:
        """The name a narrowed scope must cover, from the path (None: no name there)."""
        if self.name_param is None:
            return None
        return params[self.name_param].split("@", 1)[0]


def find_rule(
    rules: Sequence[RouteRule], method: str, path: str
) -> tuple[RouteRule, dict[str, str]] | None:
    """The rule for (`method`, `path`) and its path parameters; None when no rule matches (the
    gate then asks for any valid token and lets the server answer its 404 or 405)."""
    for rule in rules:
        if rule.method == method:
            params = rule.match(path)
            if params is not None:
                return rule, params
    return None
