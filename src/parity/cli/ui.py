"""`parity ui`: the web UI over this repo's registry, models, rollouts and monitoring
(docs/ui.md). Only argv and printing here; the app is parity.ui's."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from parity.cli.common import (
    RepoOption,
    TlsCertOption,
    TlsKeyOption,
    base_url,
    check_port,
    check_tls,
    command,
    err,
    run_server,
    store_at,
)
from parity.cli.serve_notes import open_warning
from parity.errors import BackendNotInstalled

PAGES = (
    ("catalog and search", "/ui/#/catalog"),
    ("lineage", "/ui/#/lineage"),
    ("duplicate features", "/ui/#/duplicates"),
    ("registry history", "/ui/#/history"),
    ("models", "/ui/#/models"),
    ("rollouts", "/ui/#/rollouts"),
    ("monitoring", "/ui/#/monitoring"),
)


@command
def ui(
    repo: RepoOption = Path("."),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 6570,
    enable_actions: Annotated[
        bool,
        typer.Option(
            "--enable-actions",
            help="With auth off, allow the rollout buttons (pause, resume, promote, abort) to "
            "anyone who reaches the port. With auth on it is not needed: tokens with "
            "rollouts:admin may act.",
        ),
    ] = False,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Serve the web UI: catalog, lineage, duplicates, registry history, models, rollouts and
    monitoring (docs/ui.md)."""
    try:
        from parity.ui import server
    except ModuleNotFoundError as error:
        raise BackendNotInstalled(
            f"the UI needs {error.name}: pip install 'parity[serve]'"
        ) from None
    tls = check_tls(tls_cert, tls_key)
    check_port(host, port)
    store = store_at(repo)
    secured = store.config.auth.enabled
    url = base_url(host, port, tls)
    if secured:
        access = "auth on: the pages ask for a token; data needs features:read or models:read"
    elif enable_actions:
        access = "auth off: anyone reaching the port reads everything and may press rollout actions"
    else:
        access = "auth off: read-only, rollout actions refused (--enable-actions allows them)"
    err.print(f"UI of project '{store.project}' on {url}/ui/ ({access})", soft_wrap=True)
    for what, path in PAGES:
        err.print(f"  {what:<20} {url}{path}", soft_wrap=True, markup=False)
    warning = open_warning(secured, host, port)
    if warning is not None:
        err.print(warning, style="bold yellow", markup=False, soft_wrap=True)
    os.environ.update(
        PARITY_UI_REPO=str(store.repo_path),
        PARITY_UI_ENABLE_ACTIONS="1" if enable_actions else "0",
    )
    store.close()
    run_server(server.ui_from_environment, host=host, port=port, workers=1, tls=tls)
