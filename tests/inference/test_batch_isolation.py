"""One bad request fails only itself (issue 12, item 7): over real HTTP, against a batching model,
600 valid concurrent requests mixed with 200 bad ones (1 in 4) all succeed, and each bad request's
error shows its own input and no other client's. Bad request fields are refused before they join
a batch; a batch the model fails is retried one request at a time."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest

from parity import FeatureStore
from parity.inference.app import create_model_app
from parity.inference.deployment import BatchSettings
from parity.inference.http import ModelApp
from parity.inference.metrics import ModelMetrics
from parity.inference.server import ModelServer
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import TripsModel, model_registry, running

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
VALID, BAD = 600, 200  # 1 request in 4 is bad
BATCHING = (
    "models:\n  trusted: true\n  serving:\n    batching: {max_batch_size: 32, max_latency_ms: 5}\n"
)


class Picky:
    """Sums each row; a row whose first value is negative fails the whole call, and the error
    quotes every such value (as real models' errors quote their input)."""

    def predict(self, batch: Any) -> Any:
        rows = np.asarray(batch, dtype=np.float64)
        negative = rows[rows[:, 0] < 0, 0]
        if negative.size:
            raise ValueError(f"cannot score {negative.tolist()}")
        return rows.sum(axis=1)


async def _send_all(url: str, path: str, bodies: list[Any]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=f"http://{url}", limits=limits, timeout=60) as client:
        return await asyncio.gather(*(client.post(path, json=body) for body in bodies))


def _kind(i: int) -> bool:
    """True for a bad request: every 4th."""
    return i % 4 == 3


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    repo = write_repo(tmp_path / "repo", DRIVER_REPO, extra=BATCHING)
    feature_store = FeatureStore(repo, clock=lambda: NOW)
    feature_store.apply()
    feature_store.materialize(datetime(2025, 12, 31, tzinfo=UTC), NOW)
    sample = pd.DataFrame({"trips": [1.0, 2.0], "bonus": [0.0, 1.0]})
    feature_store.models.register_model(
        "trips",
        TripsModel(),
        flavor="pyfunc",
        feature_service="driver_service",
        sample_input=sample,
    )
    return feature_store


def test_v1_bad_fields_never_fail_their_neighbours(store: FeatureStore) -> None:
    bodies = [
        {
            "entities": {"driver_id": [1]},
            "request_context": {"bonus": [f"abc-{i}" if _kind(i) else float(i)]},
        }
        for i in range(VALID + BAD)
    ]
    with running(create_model_app(store)) as url:
        replies = asyncio.run(_send_all(url, "/v1/models/trips/predict", bodies))
    failed_valid = [i for i, r in enumerate(replies) if not _kind(i) and r.status_code != 200]
    assert len(failed_valid) == 0, f"{len(failed_valid)} of {VALID} valid requests failed"
    for i, reply in enumerate(replies):
        if _kind(i):
            assert reply.status_code == 400, reply.text
            assert re.findall(r"abc-(\d+)", reply.json()["error"]) == [str(i)], reply.text
        else:
            assert reply.json()["predictions"] == [3 * 10 + float(i)]  # driver 1 has 3 trips


def test_v2_a_batch_the_model_fails_is_retried_one_request_at_a_time(tmp_path: Path) -> None:
    registry = model_registry(tmp_path)
    registry.register_model("picky", Picky(), flavor="pyfunc", sample_input=np.ones((2, 2)))
    batching = BatchSettings(max_batch_size=32, max_latency_ms=5)
    server = ModelServer(registry, metrics=ModelMetrics(), batching=batching)
    bodies = [
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 2],
                    "datatype": "FP64",
                    "data": [-(1000 + i) if _kind(i) else i, 0.5],
                }
            ]
        }
        for i in range(VALID + BAD)
    ]
    with running(ModelApp(server)) as url:
        replies = asyncio.run(_send_all(url, "/v2/models/picky/infer", bodies))
    failed_valid = [i for i, r in enumerate(replies) if not _kind(i) and r.status_code != 200]
    assert len(failed_valid) == 0, f"{len(failed_valid)} of {VALID} valid requests failed"
    for i, reply in enumerate(replies):
        if _kind(i):
            assert reply.status_code == 400, reply.text
            assert reply.json()["code"] == "predict_failed"
            assert re.findall(r"-(\d+)\.0", reply.json()["error"]) == [str(1000 + i)], reply.text
        else:
            assert reply.json()["outputs"][0]["data"] == [i + 0.5]


class Columns:
    """a + 10 b on a DataFrame; counts the rows of each call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, frame: Any) -> Any:
        self.calls.append(len(frame))
        return (frame["a"] + 10 * frame["b"]).to_numpy()


def _columns_body(a: Any, datatype: str = "FP64") -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "a", "shape": [1], "datatype": datatype, "data": [a]},
            {"name": "b", "shape": [1], "datatype": "FP64", "data": [1.0]},
        ]
    }


def test_v2_a_tensor_the_signature_cannot_take_is_refused_before_the_batch(tmp_path: Path) -> None:
    registry = model_registry(tmp_path)
    sample = pd.DataFrame({"a": [1.0], "b": [2.0]})
    version = registry.register_model("cols", Columns(), flavor="pyfunc", sample_input=sample)
    batching = BatchSettings(max_batch_size=32, max_latency_ms=5)
    server = ModelServer(registry, metrics=ModelMetrics(), batching=batching)
    bodies = [
        _columns_body(f"abc-{i}", "BYTES") if _kind(i) else _columns_body(float(i))
        for i in range(200)
    ]
    with running(ModelApp(server)) as url:
        replies = asyncio.run(_send_all(url, "/v2/models/cols/infer", bodies))
    for i, reply in enumerate(replies):
        if _kind(i):
            assert reply.status_code == 400, reply.text
            assert reply.json()["code"] == "invalid_inference_request"
            assert re.findall(r"abc-(\d+)", reply.json()["error"]) == [str(i)]
        else:
            assert reply.json()["outputs"][0]["data"] == [i + 10.0]
    calls = registry.load(version).native.calls
    assert sum(calls) == 150  # only the valid rows reached the model, each once
