"""Builds the model server of a feature repo from its parity.yaml: the registry's models, the online
store for entity-based prediction, the prediction log, and the admission guard in front.

Entry point of each `parity serve-models` worker process (`app_from_environment`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from parity.definitions.rollout import Rollout
from parity.inference.deployment import BatchSettings
from parity.inference.http import ModelApp, error_body
from parity.inference.metrics import DriftGauges, ModelMetrics
from parity.inference.rollout_http import ControllerLoop, RolloutRoutes
from parity.inference.routes import MODEL_ROUTES
from parity.inference.server import ModelServer, ModelTarget, utc_now
from parity.inference.shadow import DEFAULT_QUEUE_SIZE, DEFAULT_TIMEOUT_S
from parity.inference.shadow_process import ShadowProcess, ShadowSettings
from parity.serving.auth.gate import AuthGate, gate_for
from parity.serving.auth.rules import RouteRule
from parity.serving.guard import ASGIApp, Guard

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore
    from parity.inference.predlog import PredictionLogger
    from parity.inference.routes_view import RoutesReader
    from parity.inference.routing import Routes
    from parity.repo.config import BatchingConfig


def _settings(config: BatchingConfig) -> BatchSettings:
    return BatchSettings(config.max_batch_size, config.max_latency_ms)


def prediction_logger(store: FeatureStore) -> PredictionLogger | None:
    """The logger writing rotated Parquet files under the configured folder (None: no log)."""
    serving = store.config.models.serving
    if serving.prediction_log is None:
        return None
    from parity.inference.predlog import ParquetLogSink, PredictionLogger

    path = Path(serving.prediction_log)
    sink = ParquetLogSink(path if path.is_absolute() else store.repo_path / path)
    return PredictionLogger(sink, flush_interval_s=serving.prediction_log_flush_seconds)


def create_model_app(
    store: FeatureStore,
    *,
    preload: list[str] | None = None,
    prediction_log: PredictionLogger | None = None,
    with_features: bool = False,
    enable_push: bool = False,
    max_in_flight: int = 512,
    max_body_bytes: int = 8 << 20,
    freeze_heap: bool = False,
    routes: RoutesReader | None = None,
    shadow_queue_size: int = DEFAULT_QUEUE_SIZE,
    shadow_timeout_s: float = DEFAULT_TIMEOUT_S,
    shadow_executor: str | None = None,
    now: Callable[[], datetime] | None = None,
    enable_rollout_control: bool = False,
    rollout_controller: bool = False,
) -> Guard | AuthGate:
    """The model server of `store`'s project as one ASGI app. `preload` names the models (refs
    such as `fraud@champion`) to load before the server reports ready; others load on first use.
    The prediction log is closed (everything queued written) when the app shuts down.
    `freeze_heap` (server processes only) moves everything loaded by start-up out of the
    garbage collector's reach. `with_features` also serves the feature server's routes, with
    /push only if `enable_push` or auth is on. `routes` reads the active
    rollouts' routes (default: `store.rollouts.routes`, refreshed like aliases); mirrored
    requests wait in a queue of `shadow_queue_size` and get `shadow_timeout_s` each, in a child
    process or on the event loop (`shadow_executor`: "process" or "inline"; default
    `models.serving.shadow_executor`). `now`
    stamps the prediction log's rows (UTC wall clock by default; the demo simulates time).
    `/v1/rollouts` reads rollouts; its POSTs start and steer them only if
    `enable_rollout_control` or auth is on; `rollout_controller` runs the rollout controller
    loop in a thread while the app runs. With `auth.enabled` in parity.yaml, the gate
    (serving/auth/gate.py) is outermost and enforces inference/routes.py's table."""
    metrics, drift, alerts = _metrics(store, prediction_log)
    shadows = (shadow_queue_size, shadow_timeout_s, shadow_executor)
    server = _model_server(store, metrics, prediction_log, routes, shadows, now)
    targets = [ModelTarget.parse(ref) for ref in preload or []]
    controller = ControllerLoop(store.rollouts) if rollout_controller else None

    startup, shutdown = _lifecycle(
        store, server, prediction_log, (drift, alerts), targets, controller, freeze_heap
    )
    secured = store.config.auth.enabled
    fallback = (
        _feature_server(store, max_in_flight, max_body_bytes, enable_push, metrics)
        if with_features
        else None
    )
    rollouts = RolloutRoutes(
        store.rollouts,
        enabled=enable_rollout_control,
        check_model=store.models.versions,
        declared_model=lambda name: _declared_model(store, name),
    )
    app = ModelApp(
        server,
        on_startup=startup,
        on_shutdown=shutdown,
        fallback=fallback,
        rollouts=rollouts,
        secured=secured,
    )
    guard = Guard(
        app,
        metrics=metrics,
        max_in_flight=max_in_flight,
        max_body_bytes=max_body_bytes,
        error_body=error_body,
    )
    if not secured:
        return guard
    rules = model_server_rules(with_features)
    return gate_for(
        store, guard, rules, metrics=metrics, error_body=error_body, max_in_flight=max_in_flight
    )


def _model_server(
    store: FeatureStore,
    metrics: ModelMetrics,
    prediction_log: PredictionLogger | None,
    routes: RoutesReader | None,
    shadows: tuple[int, float, str | None],
    now: Callable[[], datetime] | None,
) -> ModelServer:
    """The ModelServer of `store`: `shadows` is (queue size, timeout, executor or None for
    `models.serving.shadow_executor`)."""
    size, timeout_s, executor = shadows
    return ModelServer(
        store.models,
        metrics=metrics,
        features=store,
        prediction_log=prediction_log,
        routes=routes or _rollout_routes(store),
        shadow_queue_size=size,
        shadow_timeout_s=timeout_s,
        shadow_process=_shadow_process(
            store,
            executor or store.config.models.serving.shadow_executor,
            prediction_log,
            metrics,
            size,
            timeout_s,
        ),
        now=now or utc_now,
        **_serving_settings(store),
    )


def model_server_rules(with_features: bool) -> tuple[RouteRule, ...]:
    """The model server's route table, and the feature server's routes it also serves with
    `--with-features` (its own /metrics and the spec it forwards already have rules)."""
    if not with_features:
        return MODEL_ROUTES
    from parity.serving.routes import FEATURE_ROUTES

    own = {(rule.method, rule.path) for rule in MODEL_ROUTES}
    return MODEL_ROUTES + tuple(r for r in FEATURE_ROUTES if (r.method, r.path) not in own)


def _declared_model(store: FeatureStore, name: str) -> str:
    """The model of the rollout `name` declared in the repo (RolloutNotFound for none)."""
    rollout = store.registry.catalog.get("rollout", name)
    if not isinstance(rollout, Rollout):  # the catalog holds rollouts under "rollout"
        raise TypeError(f"{name!r} is not a rollout")
    return rollout.model


def _lifecycle(
    store: FeatureStore,
    server: ModelServer,
    prediction_log: PredictionLogger | None,
    gauges: tuple[_Refreshed, _Refreshed],
    targets: list[ModelTarget],
    controller: ControllerLoop | None,
    freeze_heap: bool,
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """The app's start-up (gauges, routes and the shadow process before the first request, the
    preloaded models, the rollout controller) and shutdown (the log written, stores closed)."""

    async def startup() -> None:
        for gauge in gauges:  # the first scrape already shows stored drift and firing alerts
            await asyncio.to_thread(gauge.refresh)
        await asyncio.to_thread(server.refresh_routes)  # the first request is already routed
        server.keep_routes_fresh()  # and routes never go stale while no request comes
        await asyncio.to_thread(server.start_shadow_process)  # when a route mirrors already
        await server.preload(targets)
        if controller is not None:
            controller.start()
        if freeze_heap:  # what is loaded now lives as long as the process: keep it out of the
            gc.freeze()  # collector's full passes, which pause serving ~100 ms under load

    async def shutdown() -> None:
        if controller is not None:
            await asyncio.to_thread(controller.stop)
        if prediction_log is not None:
            prediction_log.close()
        await store.close_async()

    return startup, shutdown


class _Refreshed(Protocol):
    """Gauges read from the registry database in the background; `refresh` reads them now."""

    def refresh(self) -> None: ...


def _metrics(
    store: FeatureStore, prediction_log: PredictionLogger | None
) -> tuple[ModelMetrics, DriftGauges, _Refreshed]:
    """The server's metrics, with the drift and alert gauges read from the registry database."""
    metrics = ModelMetrics(
        None if prediction_log is None else lambda: (prediction_log.logged, prediction_log.dropped)
    )
    drift = DriftGauges(lambda: store.monitoring.latest_drift())  # parity_feature_drift gauges
    metrics.registry.register(drift)
    alerts = store.monitoring.alert_gauges()  # parity_alert_firing{monitor,rule}
    metrics.registry.register(alerts)
    return metrics, drift, alerts


def _serving_settings(store: FeatureStore) -> dict[str, Any]:
    """`ModelServer` keywords from `models.serving` in parity.yaml."""
    serving = store.config.models.serving
    return {
        "default_alias": serving.default_alias,
        "alias_refresh_seconds": serving.alias_refresh_seconds,
        "batching": _settings(serving.batching),
        "batching_by_model": {name: _settings(c) for name, c in serving.models.items()},
        "max_entities": serving.max_entities,
    }


def _feature_server(
    store: FeatureStore,
    max_in_flight: int,
    max_body_bytes: int,
    enable_push: bool,
    metrics: ModelMetrics,
) -> ASGIApp:
    """The feature server's routes, served by the same app (`--with-features`); with auth on,
    this app's gate guards them, and their denials count on this server's /metrics."""
    from parity.serving.app import create_app

    return create_app(
        store,
        max_in_flight=max_in_flight,
        max_body_bytes=max_body_bytes,
        enable_push=enable_push,
        gated=False,
        denied=metrics.denied,
    )


def _shadow_process(
    store: FeatureStore,
    executor: str,
    prediction_log: PredictionLogger | None,
    metrics: ModelMetrics,
    size: int,
    timeout_s: float,
) -> ShadowProcess | None:
    """The shadow process for `executor` "process" (None: "inline"). Its child writes into the
    prediction log's folder, so a log that is not a Parquet folder keeps shadows inline."""
    from parity.inference.predlog import ParquetLogSink

    if executor not in ("process", "inline"):
        raise ValueError(f"shadow_executor must be 'process' or 'inline', not {executor!r}")
    if executor == "inline":
        return None
    log_dir, flush = None, 0.2
    if prediction_log is not None:
        sink = prediction_log.sink
        if not isinstance(sink, ParquetLogSink):
            logger.info("shadows run inline: the prediction log is not a Parquet folder")
            return None
        log_dir, flush = sink.directory.resolve(), prediction_log.flush_interval_s
    offset = (store.now() - utc_now()).total_seconds()
    settings = ShadowSettings(
        store.repo_path, log_dir, flush, timeout_s=timeout_s, clock_offset_s=offset
    )
    return ShadowProcess(settings, metrics, size=size)


def _rollout_routes(store: FeatureStore) -> RoutesReader:
    """The control plane's routes, read through the store's rollouts only when first needed."""

    def read() -> Mapping[str, Routes]:
        return store.rollouts.routes()

    return read


def app_from_environment() -> Guard | AuthGate:
    """The app each `parity serve-models --workers N` worker process builds (uvicorn factory)."""
    from parity.feature_store import FeatureStore

    store = FeatureStore(os.environ["PARITY_SERVE_REPO"])
    preload = [ref for ref in os.environ.get("PARITY_SERVE_PRELOAD", "").split(",") if ref]
    return create_model_app(
        store,
        preload=preload,
        prediction_log=prediction_logger(store),
        with_features=os.environ.get("PARITY_SERVE_WITH_FEATURES") == "1",
        enable_push=os.environ.get("PARITY_SERVE_ENABLE_PUSH") == "1",
        max_in_flight=int(os.environ.get("PARITY_SERVE_MAX_IN_FLIGHT", "512")),
        max_body_bytes=int(os.environ.get("PARITY_SERVE_MAX_BODY_BYTES", str(8 << 20))),
        freeze_heap=True,
        enable_rollout_control=os.environ.get("PARITY_SERVE_ENABLE_ROLLOUT_CONTROL") == "1",
        rollout_controller=os.environ.get("PARITY_SERVE_ROLLOUT_CONTROLLER", "1") == "1",
    )
