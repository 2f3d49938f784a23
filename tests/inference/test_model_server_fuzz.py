"""The model server's OpenAPI spec tells the truth (issue 12, item 11): schemathesis, reading the
spec the server serves at /openapi.json, sends generated valid and invalid requests to every
route over real HTTP; no answer may be a 5xx or disagree with the spec (status, content type,
body schema, 405 with Allow for an undeclared method).

The number of examples is bounded so the run stays well under a minute."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from parity import FeatureStore, __version__
from parity.inference.app import create_model_app
from parity.inference.openapi import model_server_spec
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import Affine, TripsModel, running

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A model server with an ndarray model (`affine`) and a feature-backed one (`trips`)."""
    store = _fuzz_store(Path(tmp_path_factory.mktemp("fuzz")))
    with running(create_model_app(store)) as address:
        yield f"http://{address}"


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The same server with auth on, and an admin token's text."""
    store = _fuzz_store(Path(tmp_path_factory.mktemp("fuzz-auth")), "auth: {enabled: true}\n")
    _, token = store.access.tokens.create("fuzz", "admin")
    with running(create_model_app(store)) as address:
        yield f"http://{address}", token


def _fuzz_store(root: Path, extra: str = "") -> FeatureStore:
    repo = write_repo(root / "repo", DRIVER_REPO, extra=f"models: {{trusted: true}}\n{extra}")
    store = FeatureStore(repo, clock=lambda: NOW)
    store.apply()
    store.materialize(datetime(2025, 12, 31, tzinfo=UTC), NOW)
    models = store.models
    models.register_model(
        "affine", Affine([1.0, 2.0], 0.5), flavor="pyfunc", sample_input=np.ones((2, 2))
    )
    sample = pd.DataFrame({"trips": [1.0, 2.0], "bonus": [0.0, 1.0]})
    models.register_model(
        "trips",
        TripsModel(),
        flavor="pyfunc",
        feature_service="driver_service",
        sample_input=sample,
        alias="champion",
    )
    return store


SPEC = model_server_spec(__version__)
schema = schemathesis.openapi.from_dict(SPEC)


def _for_model(name: str) -> Any:
    """The per-model operations, their path naming a registered model (and its version 1), so
    the generated bodies reach a loaded model instead of answering 404."""
    parameters = {"path.model_name": name, "path.model_version": 1}
    config = SchemathesisConfig.from_dict({"parameters": parameters})
    return schemathesis.openapi.from_dict(SPEC, config=config).include(path_regex="model_name")


affine_schema, trips_schema = _for_model("affine"), _for_model("trips")
secured_schema = schemathesis.openapi.from_dict(model_server_spec(__version__, secured=True))


def test_the_server_serves_its_spec(model_server: str) -> None:
    reply = httpx.get(f"{model_server}/openapi.json")
    assert reply.status_code == 200
    assert reply.json() == SPEC


BOUNDED = settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))


def _call_and_validate(case: Any, base_url: str) -> None:
    # A body the schema allows can still be impossible for the model it reaches (a tensor whose
    # data does not fill its shape, an entity key the feature service does not have): the spec
    # declares those answers as 400, so valid-looking POST bodies are not required to succeed.
    excluded = [positive_data_acceptance] if case.method == "POST" else []
    case.call_and_validate(base_url=base_url, excluded_checks=excluded)


@schema.parametrize()
@BOUNDED
def test_model_server_answers_as_its_spec_says(case: Any, model_server: str) -> None:
    _call_and_validate(case, model_server)


@secured_schema.parametrize()
@BOUNDED
def test_with_auth_on_the_server_answers_as_its_spec_says(
    case: Any, secured_server: tuple[str, str]
) -> None:
    """Every operation with an admin token; the spec declares the 401s schemathesis' ignored_auth
    check provokes by leaving the token out."""
    base_url, token = secured_server
    excluded = [positive_data_acceptance] if case.method == "POST" else []
    case.call_and_validate(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, excluded_checks=excluded
    )


def test_with_auth_on_the_server_serves_its_secured_spec(secured_server: tuple[str, str]) -> None:
    base_url, token = secured_server
    assert httpx.get(f"{base_url}/openapi.json").status_code == 401
    reply = httpx.get(f"{base_url}/openapi.json", headers={"Authorization": f"Bearer {token}"})
    assert reply.json() == model_server_spec(__version__, secured=True)


@affine_schema.parametrize()
@BOUNDED
def test_a_tensor_model_answers_as_the_spec_says(case: Any, model_server: str) -> None:
    _call_and_validate(case, model_server)


@trips_schema.parametrize()
@BOUNDED
def test_a_feature_backed_model_answers_as_the_spec_says(case: Any, model_server: str) -> None:
    _call_and_validate(case, model_server)


def _tensor_body(**parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "r1",
        "inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}],
    }
    if parameters:
        body["parameters"] = parameters
    return body


@pytest.mark.parametrize(
    ("path", "template", "body"),
    [
        ("/v2/models/affine/infer", "/v2/models/{model_name}/infer", _tensor_body()),
        (
            "/v2/models/affine/versions/1/infer",
            "/v2/models/{model_name}/versions/{model_version}/infer",
            _tensor_body(binary_data_output=True),
        ),
        (
            "/v1/models/trips@champion/predict",
            "/v1/models/{model_name}/predict",
            {
                "entities": [{"driver_id": 1}, {"driver_id": 99}],
                "request_context": {"bonus": [0.5, 1]},
                "return_features": True,
            },
        ),
    ],
)
def test_successful_predictions_match_the_spec(
    model_server: str, path: str, template: str, body: dict[str, Any]
) -> None:
    reply = httpx.post(f"{model_server}{path}", json=body)
    assert reply.status_code == 200, reply.text
    schema[template]["POST"].validate_response(reply)
    if "binary_data_output" in body.get("parameters", {}):
        assert reply.headers["content-type"] == "application/octet-stream"
    elif path.startswith("/v1"):
        assert reply.json()["predictions"] == [3 * 10 + 0.5, -10 + 1]  # driver 99 is unknown
    else:
        assert reply.json()["outputs"][0]["data"] == [1 + 2 * 2 + 0.5, 3 + 4 * 2 + 0.5]
