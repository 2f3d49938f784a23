"""The feature server app: /get-online-features and /push in Feast's JSON shapes, /health, /metrics.

Bad input never yields a 500: ParityError maps to a 4xx JSON body (serving/errors.py), malformed
JSON to 400, a body over the limit to 413, and more than `max_in_flight` requests to a fast 503.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict

from parity.errors import BadRequest, ParityError
from parity.feature_store import FeatureStore
from parity.serving.errors import body_for, status_for

EPOCH_TEXT = "1970-01-01T00:00:00Z"


class OnlineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: list[str] | None = None
    feature_service: str | None = None
    entities: dict[str, list[Any]]
    full_feature_names: bool = False


class PushRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    push_source_name: str
    df: dict[str, list[Any]]
    to: str = "online"


def _stamp(moment: datetime | None) -> str:
    return EPOCH_TEXT if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def online_body(store: FeatureStore, request: OnlineRequest) -> dict[str, Any]:
    if (request.features is None) == (request.feature_service is None):
        raise BadRequest("give exactly one of 'features' and 'feature_service'")
    wanted: Any = request.features if request.features is not None else request.feature_service
    response = store.get_online_features(
        wanted, request.entities, full_feature_names=request.full_feature_names
    )
    names = [*response.entities, *response.feature_names]
    results = [
        {
            "values": values,
            "statuses": ["PRESENT"] * len(values),
            "event_timestamps": [EPOCH_TEXT] * len(values),
        }
        for values in response.entities.values()
    ]
    for name in response.feature_names:
        results.append(
            {
                "values": response.values[name],
                "statuses": [s.value for s in response.statuses[name]],
                "event_timestamps": [_stamp(t) for t in response.event_timestamps[name]],
            }
        )
    return {"metadata": {"feature_names": names}, "results": results}


def create_app(
    store: FeatureStore, *, max_in_flight: int = 256, max_body_bytes: int = 1 << 20
) -> FastAPI:
    app = FastAPI(title="Parity feature server", version="1")
    metrics = CollectorRegistry()
    latency = Histogram(
        "parity_request_seconds",
        "Request latency",
        ["path"],
        registry=metrics,
        buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    )
    errors = Counter("parity_errors_total", "Errors by code", ["code"], registry=metrics)
    state = {"in_flight": 0}

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if state["in_flight"] >= max_in_flight:
            errors.labels("overloaded").inc()
            return JSONResponse(body_for("overloaded", "too many requests in flight; retry"), 503)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            errors.labels("body_too_large").inc()
            return JSONResponse(
                body_for("body_too_large", f"request body over {max_body_bytes} bytes"), 413
            )
        state["in_flight"] += 1
        started = time.perf_counter()
        try:
            return await call_next(request)  # type: ignore[no-any-return]
        finally:
            state["in_flight"] -= 1
            latency.labels(request.url.path).observe(time.perf_counter() - started)

    @app.exception_handler(ParityError)
    async def parity_error(_: Request, error: ParityError) -> JSONResponse:
        errors.labels(error.code).inc()
        return JSONResponse(body_for(error.code, error.message), status_for(error))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        status = 400 if any(e["type"] == "json_invalid" for e in error.errors()) else 422
        errors.labels("invalid_request").inc()
        return JSONResponse(body_for("invalid_request", problems), status)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "project": store.project,
            "registry_version": store.registry.version,
        }

    @app.post("/get-online-features")
    def get_online_features(body: OnlineRequest) -> dict[str, Any]:
        return online_body(store, body)

    @app.post("/push")
    def push(body: PushRequest) -> dict[str, Any]:
        rows = store.push(body.push_source_name, body.df, to=body.to)  # type: ignore[arg-type]
        return {"pushed": rows}

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics), media_type="text/plain; version=0.0.4")

    return app
