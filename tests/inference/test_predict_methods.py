"""Registration chooses the methods a model serves (predict_proba, decision_function, ...): each
becomes an output with its own name, datatype and shape, over OIP and /v1, compared with the
scikit-learn model's own answers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest

from parity import FeatureStore
from parity.errors import ModelRegistrationError, UnknownPredictMethod
from parity.inference.app import create_model_app
from parity.inference.deployment import BatchSettings
from parity.inference.http import ModelApp
from parity.inference.metrics import ModelMetrics
from parity.inference.server import ModelServer
from parity.models.registry import ModelRegistry
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import model_registry, running

linear_model = pytest.importorskip("sklearn.linear_model")
svm = pytest.importorskip("sklearn.svm")

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
X = np.array([[0.0, 1.0], [1.0, 0.0], [3.0, 2.0], [4.0, 0.5], [0.5, 0.5], [3.5, 1.0], [2, 2]])
Y = np.array([0, 0, 1, 1, 0, 1, 2])
LABEL_AND_PROBABILITY = {"label": "predict", "probability": "predict_proba"}


def classifier() -> Any:
    return linear_model.LogisticRegression().fit(X, Y)


def serve(registry: ModelRegistry, batching: int) -> ModelApp:
    server = ModelServer(
        registry, metrics=ModelMetrics(), batching=BatchSettings(max_batch_size=batching)
    )
    return ModelApp(server)


def infer_body(rows: np.ndarray, **extra: Any) -> dict[str, Any]:
    tensor = {"name": "input", "datatype": "FP64", "shape": list(rows.shape)}
    return {"inputs": [{**tensor, "data": rows.ravel().tolist()}], **extra}


@pytest.mark.parametrize("batching", [1, 16])
def test_oip_infer_returns_labels_and_probabilities_as_named_tensors(
    tmp_path: Path, batching: int
) -> None:
    model = classifier()
    registry = model_registry(tmp_path)
    version = registry.register_model(
        "clf", model, predict_method=LABEL_AND_PROBABILITY, sample_input=X[:2]
    )
    with running(serve(registry, batching)) as url:
        reply = httpx.post(f"http://{url}/v2/models/clf/infer", json=infer_body(X))
        only = httpx.post(
            f"http://{url}/v2/models/clf/infer",
            json=infer_body(X[:3], outputs=[{"name": "probability"}]),
        )
        metadata = httpx.get(f"http://{url}/v2/models/clf").json()

    assert reply.status_code == 200, reply.text
    outputs = {out["name"]: out for out in reply.json()["outputs"]}
    assert list(outputs) == ["label", "probability"]
    assert (outputs["label"]["datatype"], outputs["label"]["shape"]) == ("INT64", [7])
    assert outputs["label"]["data"] == model.predict(X).tolist()
    assert (outputs["probability"]["datatype"], outputs["probability"]["shape"]) == (
        "FP64",
        [7, 3],
    )
    expected = model.predict_proba(X)
    assert np.allclose(np.reshape(outputs["probability"]["data"], (7, 3)), expected)
    assert [out["name"] for out in only.json()["outputs"]] == ["probability"]
    assert np.allclose(np.reshape(only.json()["outputs"][0]["data"], (3, 3)), expected[:3])
    assert metadata["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probability", "datatype": "FP64", "shape": [-1, 3]},
    ]
    outputs_recorded = version.signature["outputs"] if version.signature else []
    assert [(o["name"], o["method"]) for o in outputs_recorded] == [
        ("label", "predict"),
        ("probability", "predict_proba"),
    ]


def test_one_method_is_served_as_the_output_and_loads_back_in_python(tmp_path: Path) -> None:
    model = svm.SVC().fit(X, Y)
    registry = model_registry(tmp_path)
    registry.register_model("svc", model, predict_method="decision_function", sample_input=X[:2])
    loaded = registry.load("svc")
    assert np.allclose(loaded.predict(X), model.decision_function(X))
    with running(serve(registry, 1)) as url:
        reply = httpx.post(f"http://{url}/v2/models/svc/infer", json=infer_body(X[:2]))
    [output] = reply.json()["outputs"]
    assert (output["name"], output["shape"]) == ("output", [2, 3])
    assert np.allclose(np.reshape(output["data"], (2, 3)), model.decision_function(X[:2]))


def test_an_unknown_method_is_refused_naming_it_and_the_models_methods(tmp_path: Path) -> None:
    registry = model_registry(tmp_path)
    with pytest.raises(UnknownPredictMethod) as caught:
        registry.register_model("clf", classifier(), predict_method="predict_probability")
    message = str(caught.value)
    assert "'predict_probability'" in message
    for available in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
        assert f"'{available}'" in message
    # SVC without probability=True has no predict_proba: refused, not served as a 400 later
    with pytest.raises(UnknownPredictMethod, match="predict_proba"):
        registry.register_model(
            "svc", svm.SVC().fit(X, Y), predict_method="predict_proba", sample_input=X
        )
    assert registry.models() == []
    assert caught.value.code == "unknown_predict_method"


@pytest.mark.parametrize(
    "methods",
    [[], {"": "predict"}, {"a/b": "predict"}, ["_private"], ["predict", "predict"], [3]],
)
def test_malformed_method_choices_are_registration_errors(tmp_path: Path, methods: Any) -> None:
    with pytest.raises(ModelRegistrationError):
        model_registry(tmp_path).register_model(
            "clf", classifier(), predict_method=methods, sample_input=X
        )


class Odd:
    """A model whose extra methods are not prediction methods: one raises on the sample, one
    returns a scalar, one a dict, one the wrong number of rows."""

    def predict(self, batch: Any) -> Any:
        return np.zeros(len(batch))

    def explode(self, batch: Any) -> Any:
        raise KeyError("boom")

    def total(self, batch: Any) -> Any:
        return float(np.sum(batch))

    def describe(self, batch: Any) -> Any:
        return {"rows": len(batch)}

    def first(self, batch: Any) -> Any:
        return np.asarray(batch)[:1]


@pytest.mark.parametrize(
    ("model", "methods", "named"),
    [
        (classifier, {"x": "fit"}, "fit"),
        (classifier, "get_params", "get_params"),
        (classifier, ["predict", "set_params"], "set_params"),
        (classifier, "score", "score"),
        (Odd, "explode", "explode"),
        (Odd, "total", "total"),
        (Odd, {"d": "describe"}, "describe"),
        (Odd, "first", "first"),
    ],
)
def test_a_method_that_is_not_a_prediction_method_is_refused_naming_it(
    tmp_path: Path, model: Any, methods: Any, named: str
) -> None:
    registry = model_registry(tmp_path)
    with pytest.raises(UnknownPredictMethod, match=f"'{named}'") as caught:
        registry.register_model(
            "m", model(), flavor="pyfunc", predict_method=methods, sample_input=X
        )
    assert caught.value.code == "unknown_predict_method"
    assert registry.models() == []


def test_chosen_methods_need_a_sample_input(tmp_path: Path) -> None:
    with pytest.raises(ModelRegistrationError, match="sample_input"):
        model_registry(tmp_path).register_model("clf", classifier(), predict_method="predict_proba")


def test_v1_predict_returns_every_output_by_name(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", DRIVER_REPO, extra="models:\n  trusted: true\n")
    store = FeatureStore(repo, clock=lambda: NOW)
    store.apply()
    store.materialize(datetime(2025, 12, 31, tzinfo=UTC), NOW)
    frame = pd.DataFrame({"trips": X[:, 0], "bonus": X[:, 1]})
    model = linear_model.LogisticRegression().fit(frame, Y)
    store.models.register_model(
        "clf",
        model,
        feature_service="driver_service",
        predict_method=LABEL_AND_PROBABILITY,
        sample_input=frame.head(2),
    )
    body = {"entities": {"driver_id": [1, 2], "bonus": [0.5, 2.0]}, "return_features": True}
    with running(create_model_app(store)) as url:
        reply = httpx.post(f"http://{url}/v1/models/clf/predict", json=body)
    store.close()

    assert reply.status_code == 200, reply.text
    answer = reply.json()
    used = pd.DataFrame({"trips": answer["features"]["trips"], "bonus": [0.5, 2.0]})
    assert set(answer["outputs"]) == {"label", "probability"}
    assert answer["outputs"]["label"] == model.predict(used).tolist()
    assert np.allclose(answer["outputs"]["probability"], model.predict_proba(used))
    assert answer["predictions"] == answer["outputs"]["label"]  # the first output, as before
