"""`/v2/models/{m}/infer` is as strict as `/v1` predict (QA finding 8): a null in a JSON tensor, a
tensor whose datatype is not the signature's, and an input name the signature does not have are
refused with a 400 naming the input, over real HTTP. Valid requests still get the hand-worked
answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest

from parity.inference.deployment import BatchSettings
from parity.inference.http import ModelApp
from parity.inference.metrics import ModelMetrics
from parity.inference.server import ModelServer
from tests.inference.serving_helpers import Affine, model_registry, running


class Score:
    """amount + 100 n + (10 if flagged) on a DataFrame of float, int and bool columns."""

    def predict(self, frame: Any) -> Any:
        flagged = frame["flagged"].to_numpy().astype(np.float64)
        return frame["amount"].to_numpy() + 100 * frame["n"].to_numpy() + 10 * flagged


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    registry = model_registry(Path(tmp_path_factory.mktemp("strict")))
    x = np.array([[1.0, 2.0], [3.0, -1.0]])
    registry.register_model("affine", Affine([1.0, 2.0], 0.5), flavor="pyfunc", sample_input=x)
    sample = pd.DataFrame({"amount": [1.5, 2.0], "n": [1, 2], "flagged": [True, False]})
    registry.register_model("score", Score(), flavor="pyfunc", sample_input=sample)
    server = ModelServer(registry, metrics=ModelMetrics(), batching=BatchSettings(1))
    with running(ModelApp(server)) as address:
        yield f"http://{address}"


def _tensor(name: str, datatype: str, data: list[Any], shape: list[int] | None = None) -> Any:
    return {"name": name, "shape": shape or [len(data)], "datatype": datatype, "data": data}


def _score_body(**changed: dict[str, Any]) -> dict[str, Any]:
    inputs = {
        "amount": _tensor("amount", "FP64", [2.5]),
        "n": _tensor("n", "INT64", [3]),
        "flagged": _tensor("flagged", "BOOL", [True]),
    }
    inputs.update(changed)
    return {"inputs": list(inputs.values())}


def _refused(reply: httpx.Response, *needles: str) -> None:
    assert reply.status_code == 400, reply.text
    answer = reply.json()
    assert answer["code"] == "invalid_inference_request", answer
    for needle in needles:
        assert needle in answer["error"], answer["error"]


def test_valid_tensors_get_the_hand_worked_answer(url: str) -> None:
    reply = httpx.post(f"{url}/v2/models/score/infer", json=_score_body())
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == [2.5 + 300 + 10]
    # integers for a float column are numbers too, as /v1 takes them
    ints = _score_body(amount=_tensor("amount", "INT64", [2]))
    assert httpx.post(f"{url}/v2/models/score/infer", json=ints).json()["outputs"][0]["data"] == [
        312.0
    ]
    body = {"inputs": [_tensor("input", "FP64", [1, 2], [1, 2])]}
    assert httpx.post(f"{url}/v2/models/affine/infer", json=body).json()["outputs"][0]["data"] == [
        5.5
    ]


@pytest.mark.parametrize("data", [[None], [1.0, None]])
def test_a_null_in_a_json_tensor_is_refused_naming_the_input(url: str, data: list[Any]) -> None:
    body = _score_body(amount=_tensor("amount", "FP64", data))
    if len(data) == 2:
        body = _score_body(
            amount=_tensor("amount", "FP64", data),
            n=_tensor("n", "INT64", [1, 2]),
            flagged=_tensor("flagged", "BOOL", [True, False]),
        )
    _refused(httpx.post(f"{url}/v2/models/score/infer", json=body), "'amount'", "null")
    matrix = {"inputs": [_tensor("input", "FP64", [1.0, None], [1, 2])]}
    _refused(httpx.post(f"{url}/v2/models/affine/infer", json=matrix), "'input'", "null")


@pytest.mark.parametrize(
    ("name", "datatype", "data", "wanted"),
    [
        ("amount", "BYTES", ["1.5"], "FP64"),
        ("amount", "BOOL", [True], "FP64"),
        ("n", "FP64", [1.5], "INT64"),
        ("n", "BYTES", ["3"], "INT64"),
        ("flagged", "INT64", [1], "BOOL"),
    ],
)
def test_a_column_of_another_datatype_is_refused_naming_both_types(
    url: str, name: str, datatype: str, data: list[Any], wanted: str
) -> None:
    body = _score_body(**{name: _tensor(name, datatype, data)})
    reply = httpx.post(f"{url}/v2/models/score/infer", json=body)
    _refused(reply, f"'{name}'", datatype, wanted)


@pytest.mark.parametrize(
    ("datatype", "data"), [("BYTES", ["1", "2", "3", "4"]), ("BOOL", [True, False, True, True])]
)
def test_a_matrix_of_another_datatype_is_refused_naming_both_types(
    url: str, datatype: str, data: list[Any]
) -> None:
    body = {"inputs": [_tensor("input", datatype, data, [2, 2])]}
    reply = httpx.post(f"{url}/v2/models/affine/infer", json=body)
    _refused(reply, "'input'", datatype, "FP64")


def test_an_input_name_the_signature_lacks_is_refused_naming_the_expected_ones(url: str) -> None:
    body = {"inputs": [_tensor("other", "FP64", [1, 2], [1, 2])]}
    _refused(httpx.post(f"{url}/v2/models/affine/infer", json=body), "'other'", "['input']")
    extra = _score_body(zzz=_tensor("zzz", "FP64", [1.0]))
    _refused(
        httpx.post(f"{url}/v2/models/score/infer", json=extra),
        "'zzz'",
        "['amount', 'n', 'flagged']",
    )
