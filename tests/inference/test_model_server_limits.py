"""The model server's per-request row limit (issue 12, item 15 for the MODEL server): a `/v1`
predict with more entity rows than `models.serving.max_entities`, or an OIP infer whose tensor has
more rows (first dimension), is answered 413 `too_many_entities` in the `{"error", "code"}` shape
before any online read or predict; with batching on, a request with more rows than a batch holds
is refused before the read too.

The online store is a Redis on a port where nothing listens: any read answers 503, so a 413 (or
400) instead proves the request never reached the store."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest

from parity import FeatureStore
from parity.inference.app import create_model_app
from parity.repo.config import ServingConfig
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import Affine, TripsModel, running

DEAD_PORT = 6407  # this suite's port range is 6405-6407; nothing may listen here


def _settings(serving: str) -> str:
    return (
        f"online: {{type: redis, connection_string: 'redis://127.0.0.1:{DEAD_PORT}/0', "
        "timeout_seconds: 0.2}\n"
        f"models:\n  trusted: true\n  serving: {serving}\n"
    )


def _server(root: Path, serving: str) -> FeatureStore:
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", DEAD_PORT)) != 0, f"something listens on {DEAD_PORT}"
    repo = write_repo(root, DRIVER_REPO, project=f"limits_{root.name}", extra=_settings(serving))
    store = FeatureStore(repo)
    store.apply()
    sample = pd.DataFrame({"trips": [1.0, 2.0], "bonus": [0.0, 1.0]})
    store.models.register_model(
        "trips",
        TripsModel(),
        flavor="pyfunc",
        feature_service="driver_service",
        sample_input=sample,
        alias="champion",
    )
    store.models.register_model(
        "affine", Affine([1.0, 2.0], 0.5), flavor="pyfunc", sample_input=np.ones((2, 2))
    )
    return store


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """At most 3 rows per request, batching off."""
    root = Path(tmp_path_factory.mktemp("limited"))
    serving = "{max_entities: 3, prediction_log: null, batching: {max_batch_size: 1}}"
    with running(create_model_app(_server(root / "repo", serving))) as address:
        yield f"http://{address}"


def _columns(rows: int) -> dict[str, object]:
    return {"entities": {"driver_id": list(range(rows)), "bonus": [0.0] * rows}}


def _infer(rows: int) -> dict[str, object]:
    data = [1.0] * (rows * 2)
    return {"inputs": [{"name": "input", "shape": [rows, 2], "datatype": "FP64", "data": data}]}


def test_v1_predict_over_the_limit_is_413_before_the_online_read(limited: str) -> None:
    over = httpx.post(f"{limited}/v1/models/trips/predict", json=_columns(4))
    as_rows = httpx.post(
        f"{limited}/v1/models/trips/predict",
        json={"entities": [{"driver_id": i, "bonus": 0.0} for i in range(4)]},
    )
    huge = httpx.post(f"{limited}/v1/models/trips/predict", json=_columns(60_000))
    within = httpx.post(f"{limited}/v1/models/trips/predict", json=_columns(3))
    for reply in (over, as_rows, huge):
        assert reply.status_code == 413, reply.text
        body = reply.json()
        assert set(body) == {"error", "code"}
        assert body["code"] == "too_many_entities"
        assert "models.serving.max_entities" in body["error"]
    assert "4 entity rows" in over.json()["error"] and "at most 3" in over.json()["error"]
    assert "60,000 entity rows" in huge.json()["error"]
    # 3 rows are allowed, so that request reads the (unreachable) online store: a 503
    assert within.status_code == 503, within.text
    assert within.json()["code"].startswith("online_store")


def test_v2_infer_over_the_limit_is_413_by_the_tensors_first_dimension(limited: str) -> None:
    over = httpx.post(f"{limited}/v2/models/affine/infer", json=_infer(4))
    within = httpx.post(f"{limited}/v2/models/affine/infer", json=_infer(3))
    assert over.status_code == 413, over.text
    assert over.json()["code"] == "too_many_entities"
    assert set(over.json()) == {"error", "code"}
    assert "'input' has 4 rows" in over.json()["error"]
    assert within.status_code == 200, within.text
    assert within.json()["outputs"][0]["data"] == [3.5, 3.5, 3.5]


def test_binary_tensors_over_the_limit_are_413_too(limited: str) -> None:
    header = b'{"inputs": [{"name": "input", "shape": [4, 2], "datatype": "FP64", '
    header += b'"parameters": {"binary_data_size": 64}}]}'
    reply = httpx.post(
        f"{limited}/v2/models/affine/infer",
        content=header + np.ones((4, 2)).tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert reply.status_code == 413, reply.text
    assert reply.json()["code"] == "too_many_entities"


def test_batching_refuses_a_request_larger_than_a_batch_before_the_read(tmp_path: Path) -> None:
    serving = "{max_entities: 100, prediction_log: null, batching: {max_batch_size: 2}}"
    with running(create_model_app(_server(tmp_path / "repo", serving))) as address:
        over = httpx.post(f"http://{address}/v1/models/trips/predict", json=_columns(3))
        within = httpx.post(f"http://{address}/v1/models/trips/predict", json=_columns(2))
    assert over.status_code == 400, over.text
    assert over.json()["code"] == "batch_item_too_large"
    assert "max_batch_size=2" in over.json()["error"]
    assert within.status_code == 503, within.text  # allowed, so it reads the unreachable store


def test_the_default_limit_is_the_feature_servers(tmp_path: Path) -> None:
    assert ServingConfig().max_entities == 10_000
    serving = "{prediction_log: null, batching: {max_batch_size: 1}}"
    with running(create_model_app(_server(tmp_path / "repo", serving))) as address:
        over = httpx.post(f"http://{address}/v1/models/trips/predict", json=_columns(10_001))
    assert over.status_code == 413, over.text
    assert "at most 10,000" in over.json()["error"]
