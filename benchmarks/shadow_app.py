"""The model server bench_shadow.py measures: `create_model_app` of a repo (as `parity serve-models`
builds it), with the rollout routes read from a JSON file instead of the control plane, so one
server process switches between no rollout and shadow mode between phases of one run.

    uvicorn --factory shadow_app:app

with PARITY_BENCH_REPO, PARITY_BENCH_ROUTES and PARITY_BENCH_PRELOAD in the environment (and
PARITY_BENCH_SHADOW_EXECUTOR, "process" or "inline", to override parity.yaml's).

The routes file holds a list of Routes fields (shadows as [version, fraction] pairs); an empty
list means no rollout. Re-read every `alias_refresh_seconds`, in the background, like real routes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def read_routes(path: Path) -> Mapping[str, Any]:
    from parity.inference.routing import Routes, Shadow

    found = {}
    for fields in json.loads(path.read_text()):
        shadows = tuple(Shadow(int(v), float(f)) for v, f in fields.pop("shadows", []))
        routes = Routes(**fields, shadows=shadows)
        found[routes.model] = routes
    return found


def app() -> Any:
    from parity.feature_store import FeatureStore
    from parity.inference.app import create_model_app, prediction_logger

    store = FeatureStore(os.environ["PARITY_BENCH_REPO"])
    routes_file = Path(os.environ["PARITY_BENCH_ROUTES"])
    preload = [ref for ref in os.environ.get("PARITY_BENCH_PRELOAD", "").split(",") if ref]
    return create_model_app(
        store,
        preload=preload,
        prediction_log=prediction_logger(store),
        routes=lambda: read_routes(routes_file),
        freeze_heap=True,
        shadow_executor=os.environ.get("PARITY_BENCH_SHADOW_EXECUTOR") or None,
    )
