"""Hostile input to the model server is refused with a 4xx in the Open Inference Protocol's error
shape `{"error", "code"}`, never a 500 (issue 12, item 10)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest

from parity.inference.deployment import BatchSettings
from parity.inference.http import ModelApp
from parity.inference.metrics import ModelMetrics
from parity.inference.server import ModelServer
from tests.inference.serving_helpers import Affine, model_registry, running

X = np.array([[1.0, 2.0], [3.0, -1.0]])
HUGE = "99999999999999999999"  # beyond any database integer
OVER_INT32 = str(2**31)  # PostgreSQL INTEGER holds at most 2**31 - 1


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    registry = model_registry(Path(tmp_path_factory.mktemp("refusals")))
    registry.register_model("affine", Affine([1.0, 1.0], 0.0), flavor="pyfunc", sample_input=X)
    server = ModelServer(registry, metrics=ModelMetrics(), batching=BatchSettings(1))
    with running(ModelApp(server)) as address:
        yield address


def _tensor(shape: list[int], data: tuple[float, ...] = (1.0, 2.0)) -> dict[str, object]:
    return {"inputs": [{"name": "input", "shape": shape, "datatype": "FP64", "data": list(data)}]}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        (
            "POST",
            "/v2/models/affine/infer",
            _tensor([1] * 65, (1.0,)),
            400,
            "invalid_inference_request",
        ),
        (
            "POST",
            "/v2/models/affine/infer",
            _tensor([2**62, 2**62]),
            400,
            "invalid_inference_request",
        ),
        ("GET", f"/v2/models/affine/versions/{HUGE}", None, 400, "invalid_model_ref"),
        ("GET", f"/v2/models/affine/versions/{HUGE}/ready", None, 400, "invalid_model_ref"),
        (
            "POST",
            f"/v2/models/affine/versions/{HUGE}/infer",
            _tensor([1, 2]),
            400,
            "invalid_model_ref",
        ),
        ("GET", f"/v1/models/affine/versions/{HUGE}", None, 400, "invalid_model_ref"),
        (
            "POST",
            f"/v1/models/affine/versions/{HUGE}/predict",
            {"entities": {}},
            400,
            "invalid_model_ref",
        ),
        ("GET", "/v2/models/affine/versions/²", None, 400, "invalid_model_ref"),
        ("GET", "/v2/models/affine/versions/٣", None, 400, "invalid_model_ref"),
        ("GET", "/v1/models/affine/versions/²", None, 400, "invalid_model_ref"),
        ("GET", "/v2/models/affine/versions/0", None, 400, "invalid_model_ref"),
        ("GET", f"/v2/models/affine/versions/{OVER_INT32}", None, 400, "invalid_model_ref"),
        ("GET", f"/v2/models/affine/versions/{2**31 - 1}", None, 404, "model_version_not_found"),
        ("GET", "/v2/models/affine/versions/9", None, 404, "model_version_not_found"),
    ],
)
def test_hostile_versions_and_shapes_are_4xx_in_the_oip_error_shape(
    url: str, method: str, path: str, body: object, status: int, code: str
) -> None:
    reply = httpx.request(method, f"http://{url}{path}", json=body)
    assert reply.status_code == status, reply.text
    answer = reply.json()
    assert set(answer) == {"error", "code"}
    assert answer["code"] == code and isinstance(answer["error"], str) and answer["error"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "/v1/models", "GET"),  # a 500 before
        ("DELETE", "/v2/models/affine", "GET"),
        ("GET", "/v2/models/affine/infer", "POST"),
        ("PUT", "/v2/models/affine/versions/1/infer", "POST"),
        ("GET", "/v1/models/affine/predict", "POST"),
        ("POST", "/metrics", "GET"),
        ("PATCH", "/openapi.json", "GET"),
    ],
)
def test_an_undeclared_method_is_405_with_allow(
    url: str, method: str, path: str, allow: str
) -> None:
    reply = httpx.request(method, f"http://{url}{path}")
    assert reply.status_code == 405, reply.text
    assert reply.headers["allow"] == allow
    assert reply.json()["code"] == "method_not_allowed"


@pytest.mark.parametrize("value", ["9" * 5000, "-1", "1e3", "12345678901234567890"])
def test_a_binary_header_length_that_is_not_a_byte_count_is_a_400(url: str, value: str) -> None:
    body = b'{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP64","data":[1,2]}]}'
    headers = {"Inference-Header-Content-Length": value}
    reply = httpx.post(f"http://{url}/v2/models/affine/infer", content=body, headers=headers)
    assert reply.status_code == 400, reply.text
    assert reply.json()["code"] == "invalid_inference_request"


@pytest.mark.parametrize("datatype", ["FP64", "BYTES"])
@pytest.mark.parametrize("depth", [65, 1000])
def test_tensor_data_nested_deeper_than_a_tensor_can_be_is_a_400(
    url: str, datatype: str, depth: int
) -> None:
    leaf = '"a"' if datatype == "BYTES" else "1.0"
    data = "[" * depth + leaf + "]" * depth
    body = f'{{"inputs":[{{"name":"input","shape":[1],"datatype":"{datatype}","data":{data}}}]}}'
    reply = httpx.post(f"http://{url}/v2/models/affine/infer", content=body.encode())
    assert reply.status_code == 400, reply.text
    assert reply.json()["code"] == "invalid_inference_request"
