"""What every UI route handler gets: the store, the background tasks, whether actions are
enabled, and the access checks for the caller (auth off: everything readable)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from fastapi import Request

from parity.serving.auth.gate import principal_of

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore
    from parity.serving.auth.scopes import Principal
    from parity.ui.tasks import Tasks

T = TypeVar("T")


@dataclass
class UiContext:
    """`enable_actions`: with auth off, rollout actions are refused (403) unless the UI was
    started with `--enable-actions`; with auth on, they need `rollouts:admin`."""

    store: FeatureStore
    tasks: Tasks
    enable_actions: bool = False

    @property
    def secured(self) -> bool:
        return bool(self.store.config.auth.enabled)

    def principal(self, request: Request) -> Principal | None:
        return principal_of(request.scope)

    def can(self, request: Request, scope: str, name: str | None = None) -> bool:
        """May the caller read `name` under `scope` (auth off: yes)."""
        principal = self.principal(request)
        if principal is None:
            return not self.secured
        return principal.allows(scope, name)

    def require(self, request: Request, scope: str, name: str | None, what: str) -> None:
        """Forbidden (403, naming the scope) unless the caller may; auth off: nothing to check."""
        principal = self.principal(request)
        if principal is not None:
            principal.require((scope,), name, what)

    def sees_all(self, request: Request, *scopes: str) -> bool:
        """Whether the caller reads every name under each of `scopes` (auth off, admin, or an
        un-narrowed grant of each): then nothing needs filtering."""
        principal = self.principal(request)
        if principal is None or principal.is_admin:
            return principal is not None or not self.secured
        return all(
            any(g.scope == scope and g.names is None for g in principal.grants) for scope in scopes
        )

    def visible(self, request: Request, scope: str, items: Iterable[T]) -> list[T]:
        """`items` (names, or objects with `.name`) the caller may read under `scope`."""
        return [
            item
            for item in items
            if self.can(request, scope, item if isinstance(item, str) else getattr(item, "name"))  # noqa: B009
        ]
