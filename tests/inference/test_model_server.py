"""The model server over real HTTP: Open Inference Protocol v2 with tritonclient, alias moves
without restart, adaptive batching under concurrency, failures kept to their batch, metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from parity.inference.deployment import BatchSettings
from parity.inference.http import ModelApp
from parity.inference.metrics import ModelMetrics
from parity.inference.server import ModelServer
from parity.models.registry import ModelRegistry
from tests.inference.serving_helpers import Affine, Recorder, model_registry, running

X = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.25]])
WEIGHTS, BIAS = [2.0, -3.0], 0.5
EXPECTED = [1 * 2 - 2 * 3 + 0.5, 3 * 2 + 3 + 0.5, 0.5 * 2 - 0.75 + 0.5]  # by hand


def server_for(registry: ModelRegistry, **options: Any) -> ModelServer:
    options.setdefault("batching", BatchSettings(max_batch_size=1))
    return ModelServer(registry, metrics=ModelMetrics(), **options)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    registry = model_registry(tmp_path)
    registry.register_model("affine", Affine(WEIGHTS, BIAS), flavor="pyfunc", sample_input=X)
    return registry


@pytest.fixture
def url(registry: ModelRegistry) -> Iterator[str]:
    app = ModelApp(server_for(registry))
    with running(app) as address:
        yield address


def test_tritonclient_health_metadata_and_json_infer(url: str) -> None:
    client = triton.InferenceServerClient(url)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("affine")
    metadata = client.get_model_metadata("affine")
    assert metadata["name"] == "affine"
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 2]}]
    tensor = triton.InferInput("input", list(X.shape), "FP64")
    tensor.set_data_from_numpy(X, binary_data=False)
    wanted = triton.InferRequestedOutput("output", binary_data=False)
    result = client.infer("affine", [tensor], outputs=[wanted], request_id="req-7")
    assert result.as_numpy("output").tolist() == pytest.approx(EXPECTED)
    response = result.get_response()
    assert response["id"] == "req-7"
    assert response["model_version"] == "1"


def test_tritonclient_binary_tensors_both_ways(url: str) -> None:
    client = triton.InferenceServerClient(url)
    tensor = triton.InferInput("input", list(X.shape), "FP64")
    tensor.set_data_from_numpy(X, binary_data=True)
    result = client.infer(
        "affine", [tensor], model_version="1", outputs=[triton.InferRequestedOutput("output")]
    )
    assert result.as_numpy("output").tolist() == pytest.approx(EXPECTED)


def test_tritonclient_sees_errors_as_messages(url: str) -> None:
    client = triton.InferenceServerClient(url)
    tensor = triton.InferInput("input", [2, 3], "FP64")
    tensor.set_data_from_numpy(np.ones((2, 3)), binary_data=False)
    with pytest.raises(InferenceServerException, match=r"shape \[rows, 2\]"):
        client.infer("affine", [tensor])
    with pytest.raises(InferenceServerException, match="nope"):
        client.get_model_metadata("nope")
    assert not client.is_model_ready("affine", model_version="9")


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v2/models/affine/infer", b"{not json", 400, "invalid_inference_request"),
        ("/v2/models/affine/infer", b'{"inputs": []}', 400, "invalid_inference_request"),
        (
            "/v2/models/affine/infer",
            b'{"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [1]}]}',
            400,
            "invalid_inference_request",
        ),
        (
            "/v2/models/affine/infer",
            b'{"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", '
            b'"data": [1, 2]}], "outputs": [{"name": "proba"}]}',
            400,
            "invalid_inference_request",
        ),
        ("/v2/models/missing/infer", b'{"inputs": []}', 404, "model_not_found"),
        ("/v2/models/affine/versions/x/infer", b"{}", 400, "invalid_model_ref"),
        ("/v2/models/affine/versions/5/infer", b'{"inputs": []}', 404, "model_version_not_found"),
        ("/v2/models/affine@gold/infer", b'{"inputs": []}', 404, "alias_not_found"),
        ("/v2/models/bad@/infer", b"{}", 400, "invalid_model_ref"),
        ("/v1/models/affine/predict", b'{"entities": {"id": [1]}}', 400, "bad_request"),
        ("/v1/models/affine/predict", b'{"entity": 1}', 400, "bad_request"),
        ("/nowhere", b"", 404, "not_found"),
    ],
)
def test_bad_requests_get_4xx_json_with_a_code(
    url: str, path: str, body: bytes, status: int, code: str
) -> None:
    reply = httpx.post(f"http://{url}{path}", content=body)
    assert reply.status_code == status, reply.text
    assert reply.json()["code"] == code
    assert isinstance(reply.json()["error"], str) and reply.json()["error"]


def test_alias_move_is_served_without_restart(tmp_path: Path) -> None:
    registry = model_registry(tmp_path)
    registry.register_model("m", Affine([1.0, 0.0], 0.0), flavor="pyfunc", sample_input=X)
    registry.register_model("m", Affine([0.0, 1.0], 100.0), flavor="pyfunc", sample_input=X)
    registry.set_alias("m", "champion", 1)
    app = ModelApp(server_for(registry, alias_refresh_seconds=0))
    body = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [7, 5]}]}
    with running(app) as url:
        first = httpx.post(f"http://{url}/v2/models/m@champion/infer", json=body).json()
        default = httpx.post(f"http://{url}/v2/models/m/infer", json=body).json()
        registry.set_alias("m", "champion", 2, reason="better")
        second = httpx.post(f"http://{url}/v2/models/m@champion/infer", json=body).json()
        pinned = httpx.post(f"http://{url}/v2/models/m/versions/1/infer", json=body).json()
    assert (first["model_version"], first["outputs"][0]["data"]) == ("1", [7.0])
    assert (default["model_version"], default["outputs"][0]["data"]) == ("1", [7.0])
    assert (second["model_version"], second["outputs"][0]["data"]) == ("2", [105.0])
    assert pinned["outputs"][0]["data"] == [7.0]


def test_bare_name_without_default_alias_is_the_latest_version(tmp_path: Path) -> None:
    registry = model_registry(tmp_path)
    registry.register_model("m", Affine([1.0, 0.0], 0.0), flavor="pyfunc", sample_input=X)
    registry.register_model("m", Affine([1.0, 0.0], 1.0), flavor="pyfunc", sample_input=X)
    server = server_for(registry)
    assert server.version_of(server_target("m")) == 2


def server_target(text: str) -> Any:
    from parity.inference.server import ModelTarget

    return ModelTarget.parse(text)


async def _concurrently(app: ModelApp, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        calls = [client.post("/v2/models/rec/infer", json=body) for body in bodies]
        return await asyncio.gather(*calls)


def _rows_body(rows: list[list[float]]) -> dict[str, Any]:
    flat = [value for row in rows for value in row]
    return {
        "inputs": [{"name": "input", "shape": [len(rows), 2], "datatype": "FP64", "data": flat}]
    }


def test_concurrent_requests_are_batched_within_the_maximum(tmp_path: Path) -> None:
    registry = model_registry(tmp_path)
    version = registry.register_model("rec", Recorder(), flavor="pyfunc", sample_input=X)
    server = server_for(registry, batching=BatchSettings(max_batch_size=8, max_latency_ms=50))
    bodies = [_rows_body([[i, 1.0]] * (1 + i % 3)) for i in range(30)]
    replies = asyncio.run(_concurrently(ModelApp(server), bodies))
    for i, reply in enumerate(replies):
        assert reply.status_code == 200, reply.text
        assert reply.json()["outputs"][0]["data"] == [i + 1.0] * (1 + i % 3)
    recorder = registry.load(version).native
    sizes = recorder.batches  # the server loaded this same instance (the registry caches it)
    assert sum(sizes) == sum(1 + i % 3 for i in range(30))
    assert max(sizes) <= 8
    assert len(sizes) < 30  # requests were merged


def test_a_failing_batch_answers_its_requests_with_errors_and_the_server_goes_on(
    tmp_path: Path,
) -> None:
    registry = model_registry(tmp_path)
    registry.register_model("rec", Recorder(), flavor="pyfunc", sample_input=X)
    server = server_for(registry, batching=BatchSettings(max_batch_size=4, max_latency_ms=50))
    app = ModelApp(server)
    bodies = [_rows_body([[-1.0 if i == 2 else i, 0.0]]) for i in range(8)]
    replies = asyncio.run(_concurrently(app, bodies))
    failed = [i for i, reply in enumerate(replies) if reply.status_code != 200]
    assert 2 in failed
    assert all(replies[i].status_code == 400 for i in failed)
    assert all(replies[i].json()["code"] == "predict_failed" for i in failed)
    assert len(failed) <= 4  # only the poisoned request's batch
    for i in set(range(8)) - set(failed):
        assert replies[i].json()["outputs"][0]["data"] == [float(i)]
    (after,) = asyncio.run(_concurrently(app, [_rows_body([[5.0, 5.0]])]))
    assert after.json()["outputs"][0]["data"] == [10.0]


def test_metrics_count_batches_rows_and_errors(tmp_path: Path) -> None:
    registry = model_registry(tmp_path)
    registry.register_model("rec", Recorder(), flavor="pyfunc", sample_input=X)
    server = server_for(registry, batching=BatchSettings(max_batch_size=4, max_latency_ms=50))
    app = ModelApp(server)
    asyncio.run(_concurrently(app, [_rows_body([[1.0, 1.0]]) for _ in range(6)]))
    asyncio.run(_concurrently(app, [{"inputs": "no"}]))
    text = server.metrics.render().decode()
    lines = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert float(lines['parity_model_rows_total{model="rec",version="1"}']) == 6
    assert float(lines['parity_model_batch_rows_count{model="rec",version="1"}']) >= 2
    assert (
        float(lines['parity_model_request_seconds_count{model="rec",route="infer",version="1"}'])
        == 6
    )
    assert (
        float(lines['parity_model_errors_total{code="invalid_inference_request",model="rec"}']) == 1
    )


def test_v1_models_lists_versions_and_aliases(url: str, registry: ModelRegistry) -> None:
    registry.set_alias("affine", "champion", 1)
    listing = httpx.get(f"http://{url}/v1/models").json()
    assert listing == {"models": [{"name": "affine", "versions": [1], "aliases": {"champion": 1}}]}
    described = httpx.get(f"http://{url}/v1/models/affine@champion").json()
    assert described["version"] == 1 and described["flavor"] == "pyfunc"
    assert json.loads(json.dumps(described["signature"]))["input_kind"] == "ndarray"
