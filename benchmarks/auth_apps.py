"""The whole servers in process, auth on against off (issue 17, for bench_auth.py): the feature
server and the model server built from a small repo and from its twin with `auth.enabled`,
driven through ASGI on one event loop (no sockets, no HTTP parsing), 8 requests at a time; the
process's CPU time per request, alternating off and on round by round.

What it adds to the gate alone: whatever the apps do with a principal (the lookup's check of the
names in the body, the audit actor's context around the handler).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import auth_compare

DRIVERS = 1_000
FEATURES = [f"f{i}" for i in range(10)]
CONCURRENT = 8
EVENT_TIME = datetime(2026, 1, 1, tzinfo=UTC)

FEATURE_DEFS = f"""
from parity import Entity, FeatureView, Field, FileSource, Float64

driver = Entity(name="driver", join_keys=["driver_id"])
stats = FeatureView(
    name="stats",
    entities=[driver],
    schema=[Field(name=name, dtype=Float64) for name in {FEATURES!r}],
    source=FileSource(path="data/stats.parquet"),
)
"""


def feature_repo(root: Path) -> Path:
    """`stats`: 10 Float64 features of 1,000 drivers, materialized into SQLite."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from parity import FeatureStore

    shutil.rmtree(root, ignore_errors=True)
    (root / "data").mkdir(parents=True)
    (root / "parity.yaml").write_text("project: bench_auth_features\n")
    (root / "defs.py").write_text(FEATURE_DEFS)
    columns: dict[str, Any] = {
        "driver_id": pa.array(range(DRIVERS), pa.int64()),
        "event_timestamp": pa.array([EVENT_TIME] * DRIVERS, pa.timestamp("us", tz="UTC")),
    }
    columns |= {name: pa.array([float(i) for i in range(DRIVERS)]) for name in FEATURES}
    pq.write_table(pa.table(columns), root / "data" / "stats.parquet")
    store = FeatureStore(root)
    try:
        store.apply()
        store.materialize(EVENT_TIME - timedelta(days=1), EVENT_TIME + timedelta(days=1))
    finally:
        store.close()
    return root


def model_repo(root: Path) -> Path:
    """`lr`: a LogisticRegression over 8 float features, no prediction log."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from parity import FeatureStore

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "parity.yaml").write_text(
        "project: bench_auth_models\nmodels:\n  trusted: true\n  serving:\n"
        "    prediction_log: null\n"
    )
    rng = np.random.default_rng(17)
    x = rng.normal(size=(2_000, 8))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(np.int64))
    store = FeatureStore(root)
    try:
        store.models.register_model("lr", model, flavor="sklearn", sample_input=x[:5])
    finally:
        store.close()
    return root


@dataclass
class Case:
    label: str
    path: str
    body: bytes
    build: Callable[[Any], Any]  # FeatureStore -> ASGI app
    scopes: str


def cases() -> list[Case]:
    from parity.inference.app import create_model_app
    from parity.serving.app import create_app

    lookup = {"features": [f"stats:{f}" for f in FEATURES], "entities": {"driver_id": [7]}}
    tensor = {"name": "input", "shape": [1, 8], "datatype": "FP64", "data": [0.1] * 8}
    return [
        Case(
            "feature server, 1 x 10 lookup",
            "/get-online-features",
            json.dumps(lookup).encode(),
            lambda store: create_app(store),
            "features:read",
        ),
        Case(
            "model server, lr 1-row infer",
            "/v2/models/lr/infer",
            json.dumps({"inputs": [tensor]}).encode(),
            lambda store: create_model_app(store, preload=["lr"]),
            "models:predict:lr",
        ),
    ]


class Lifespan:
    """The app's lifespan protocol: `start` (startup complete), `stop` (shutdown complete)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
        self.task = asyncio.get_running_loop().create_task(
            self.app(scope, self.queue.get, self.answers.put)
        )
        await self.queue.put({"type": "lifespan.startup"})
        answer = await self.answers.get()
        if answer["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the app did not start: {answer}")

    async def stop(self) -> None:
        await self.queue.put({"type": "lifespan.shutdown"})
        await self.answers.get()
        if self.task is not None:
            await self.task


async def _request(app: Any, path: str, body: bytes, token: str | None) -> int:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 6566),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _cpu_us(app: Any, case: Case, token: str | None, number: int) -> float:
    """Process CPU µs per request (every thread: event loop, read threads, model threads)."""
    started = time.process_time()
    for _ in range(number // CONCURRENT):
        statuses = await asyncio.gather(
            *(_request(app, case.path, case.body, token) for _ in range(CONCURRENT))
        )
        if set(statuses) != {200}:
            raise RuntimeError(f"{case.label}: answers {sorted(set(statuses))}, not all 200")
    return (time.process_time() - started) / (number // CONCURRENT * CONCURRENT) * 1e6


@dataclass
class AppResult:
    label: str
    off_us: list[float]
    on_us: list[float]

    @property
    def cost_us(self) -> float:
        return statistics.median(self.on_us) - statistics.median(self.off_us)


async def _compare(case: Case, repo: Path, number: int, rounds: int) -> AppResult:
    from parity import FeatureStore

    twin = auth_compare.auth_twin(repo, repo.with_name(repo.name + "-auth"))
    token = auth_compare.create_token(twin, case.scopes)
    stores = {"off": FeatureStore(repo), "on": FeatureStore(twin)}
    lifespans: list[Lifespan] = []
    try:
        apps = {mode: case.build(store) for mode, store in stores.items()}
        tokens = {"off": None, "on": token}
        for mode, app in apps.items():
            lifespans.append(Lifespan(app))
            await lifespans[-1].start()
            await _cpu_us(app, case, tokens[mode], number // 5)  # warm-up, fills the cache
        result = AppResult(case.label, [], [])
        for mode in auth_compare.modes(rounds):
            us = await _cpu_us(apps[mode], case, tokens[mode], number)
            (result.off_us if mode == "off" else result.on_us).append(us)
        return result
    finally:
        for lifespan in lifespans:
            await lifespan.stop()
        for store in stores.values():
            store.close()


def compare_apps(work: Path, number: int, rounds: int) -> list[AppResult]:
    """Both servers, auth off against on; repos under `work`."""
    repos = {"feature": feature_repo(work / "features"), "model": model_repo(work / "models")}
    results = []
    for case, repo in zip(cases(), repos.values(), strict=True):
        results.append(asyncio.run(_compare(case, repo, number, rounds)))
    return results
