"""The UI as a server process: `parity ui`'s uvicorn factory, and the UI mounted under /ui in
front of the feature server (`parity serve --ui`): paths under /ui go to the UI (with its own
gate), everything else to the feature server, untouched."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from parity.ui.routes import PREFIX

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from parity.feature_store import FeatureStore


class WithUi:
    """ASGI dispatch by path: `/ui` and below to `ui`, the rest to `app`. Lifespan events go to
    `app` (the feature server's start-up and shutdown); the UI needs none."""

    def __init__(self, app: ASGIApp, ui: ASGIApp) -> None:
        self.app = app
        self.ui = ui

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == PREFIX or path.startswith(PREFIX + "/"):
            await self.ui(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def features_with_ui_from_environment() -> ASGIApp:
    """The app of `parity serve --ui` (a uvicorn factory): the feature server as `parity serve`
    builds it, with the UI over the same store mounted under /ui."""
    from parity.serving.app import app_from_environment
    from parity.ui.app import create_ui_app

    store = _store("PARITY_SERVE_REPO")
    warm_up(store)
    return WithUi(app_from_environment(), create_ui_app(store))


def warm_up(store: FeatureStore) -> None:
    """Open what the pages read (the model registry, rollouts, monitoring's tables) before the
    first request, so no visitor waits for it (about a second on a cold process)."""
    store.registry.refresh()
    store.models.models()
    store.rollouts.list(active_only=True)
    store.monitoring.alert_statuses()
    store.monitoring.freshness_slo()
    store.datasets.list()


def _store(variable: str) -> FeatureStore:
    from parity.feature_store import FeatureStore

    return FeatureStore(os.environ[variable])


def ui_from_environment() -> ASGIApp:
    """The app of `parity ui` (a uvicorn factory: settings from the environment `parity ui` set)."""
    from parity.ui.app import create_ui_app

    store = _store("PARITY_UI_REPO")
    warm_up(store)
    return create_ui_app(store, enable_actions=os.environ.get("PARITY_UI_ENABLE_ACTIONS") == "1")
