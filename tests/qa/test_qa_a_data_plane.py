"""QA of the rollout data plane over real HTTP: an aborted rollout stops routing within the
refresh period even on a server that sat idle; a client sending keys of the wrong type is refused
without counting against the arm its key sticks to; a blank routing header means no key."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pandas as pd
import pytest

from parity import FeatureStore
from parity.inference.app import create_model_app, prediction_logger
from parity.inference.routing import Routes
from tests.inference.rollout_helpers import (
    CANDIDATE,
    CHAMPION,
    OTHER_SERVICE,
    RAISING,
    logged_rows,
    rollout_store,
    trips_routes,
)
from tests.inference.serving_helpers import running


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return rollout_store(tmp_path)


class Control:
    """A routes provider whose answer the test changes, counting the server's reads."""

    def __init__(self, routes: Routes | None) -> None:
        self.routes = routes
        self.reads = 0
        self._lock = threading.Lock()

    def __call__(self) -> Mapping[str, Routes]:
        with self._lock:
            self.reads += 1
            return {} if self.routes is None else {self.routes.model: self.routes}


def wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


def predict(url: str, driver: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"entities": {"driver_id": [driver], "bonus": [0.0]}}
    return httpx.post(f"http://{url}/v1/models/trips/predict", json=body, headers=headers)


def test_an_abort_reaches_the_first_request_after_the_server_sat_idle(
    store: FeatureStore,
) -> None:
    control = Control(trips_routes(100.0))  # every key to the candidate
    with running(create_model_app(store, routes=control)) as url:
        assert predict(url, 1).json()["model_version"] == CANDIDATE
        control.routes = None  # the rollout is aborted; no request arrives for a while
        seen = control.reads
        wait_for(lambda: control.reads >= seen + 2)  # the server re-read the routes by itself
        reply = predict(url, 1)  # the first request after the abort
    assert reply.status_code == 200, reply.text
    assert (reply.json()["model_version"], reply.json()["route"]) == (CHAMPION, None)
    assert "x-parity-route" not in reply.headers


def test_keys_of_the_wrong_type_are_refused_without_counting_as_the_arms_errors(
    store: FeatureStore,
) -> None:
    control = Control(trips_routes(100.0))  # the key "1" sticks to the candidate
    app = create_model_app(store, prediction_log=prediction_logger(store), routes=control)
    with running(app) as url:
        refusals = [predict(url, "1") for _ in range(5)]  # a client retrying a bad request
        good = predict(url, 1)
    for reply in refusals:
        assert reply.status_code == 400 and reply.json()["code"] == "invalid_entity_key"
    assert good.json()["route"] == "canary"
    rows = logged_rows(store)  # only the answered request: no "error" rows for the refusals
    assert [(r["version"], r["role"], r["status"]) for r in rows] == [(CANDIDATE, "canary", "ok")]


def test_a_blank_routing_header_is_no_key_and_the_champion_answers(store: FeatureStore) -> None:
    control = Control(trips_routes(100.0, key="x-user", source="header"))
    with running(create_model_app(store, routes=control)) as url:
        blank = predict(url, 1, headers={"x-user": ""})
        missing = predict(url, 1)
        given = predict(url, 1, headers={"x-user": "alice"})
    for reply in (blank, missing):
        assert reply.status_code == 200, reply.text
        assert (reply.json()["model_version"], reply.json()["route"]) == (CHAMPION, "champion")
    assert (given.json()["model_version"], given.json()["route"]) == (CANDIDATE, "canary")


def test_a_failing_canary_answer_names_the_version_and_route_that_failed(
    store: FeatureStore,
) -> None:
    # every caller to a broken candidate, by a header (which /v1 and /v2 requests both carry)
    control = Control(trips_routes(100.0, candidate=RAISING, key="x-user", source="header"))
    user = {"x-user": "alice"}
    tensors = {
        "inputs": [
            {"name": "trips", "datatype": "FP64", "shape": [1], "data": [1.0]},
            {"name": "bonus", "datatype": "FP64", "shape": [1], "data": [0.0]},
        ]
    }
    with running(create_model_app(store, routes=control)) as url:
        v1 = predict(url, 1, headers=user)
        v2 = httpx.post(f"http://{url}/v2/models/trips/infer", json=tensors, headers=user)
        pinned = httpx.post(
            f"http://{url}/v1/models/trips/versions/{RAISING}/predict",
            json={"entities": {"driver_id": [1], "bonus": [0.0]}},
            headers=user,
        )
    for reply in (v1, v2, pinned):
        assert reply.status_code == 400 and reply.json()["code"] == "predict_failed", reply.text
    for reply in (v1, v2):  # the failure says which version failed, as an answer would
        assert reply.headers["x-parity-model-version"] == str(RAISING), reply.headers
        assert reply.headers["x-parity-route"] == "canary"
    assert "x-parity-route" not in pinned.headers  # not routed: nothing to name


def tensors(*names: str) -> dict[str, Any]:
    data = {"trips": 1.0, "bonus": 0.0, "conv_rate": 0.5}
    return {
        "inputs": [{"name": n, "datatype": "FP64", "shape": [1], "data": [data[n]]} for n in names]
    }


def test_a_v2_request_every_arm_refuses_is_not_counted_against_the_arm(
    store: FeatureStore,
) -> None:
    control = Control(trips_routes(100.0, key="x-user", source="header"))
    app = create_model_app(store, prediction_log=prediction_logger(store), routes=control)
    user = {"x-user": "alice"}
    with running(app) as url:
        warm = f"http://{url}/v2/models/trips/versions/{CHAMPION}/infer"  # the champion serves
        assert httpx.post(warm, json=tensors("trips", "bonus")).status_code == 200
        infer = f"http://{url}/v2/models/trips/infer"
        refusals = [httpx.post(infer, json=tensors("trips"), headers=user) for _ in range(5)]
        good = httpx.post(infer, json=tensors("trips", "bonus"), headers=user)
    for reply in refusals:  # no bonus: the champion and the candidate both refuse it
        assert reply.status_code == 400, reply.text
        assert reply.json()["code"] == "invalid_inference_request"
    assert good.status_code == 200 and good.headers["x-parity-route"] == "canary"
    rows = [r for r in logged_rows(store) if r["role"] is not None]  # not the pinned warm-up
    assert [(r["version"], r["role"], r["status"]) for r in rows] == [(CANDIDATE, "canary", "ok")]


def test_a_v2_request_only_the_candidate_refuses_counts_as_its_error(
    store: FeatureStore,
) -> None:
    # the candidate reads conv_rate, the champion trips: champion-shaped requests fail on it
    control = Control(trips_routes(100.0, candidate=OTHER_SERVICE, key="x-user", source="header"))
    app = create_model_app(store, prediction_log=prediction_logger(store), routes=control)
    with running(app) as url:
        reply = httpx.post(
            f"http://{url}/v2/models/trips/infer",
            json=tensors("trips", "bonus"),
            headers={"x-user": "alice"},
        )
    assert reply.status_code == 400, reply.text
    rows = logged_rows(store)
    assert [(r["version"], r["role"], r["status"]) for r in rows] == [
        (OTHER_SERVICE, "canary", "error")
    ]


def test_a_candidate_that_cannot_load_is_logged_as_failing_its_canary_requests(
    store: FeatureStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A class the server cannot import (trained in a notebook, say): every canary request fails;
    its rows are errors for the error-rate gate, not missing (which held the step forever)."""
    folder = tmp_path / "notebook"
    folder.mkdir()
    (folder / "qa_a_notebook_model.py").write_text(
        "class NotebookModel:\n"
        "    def predict(self, frame):\n"
        "        return frame['trips'].to_numpy() + frame['bonus'].to_numpy()\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    from qa_a_notebook_model import NotebookModel  # type: ignore[import-not-found]

    sample = pd.DataFrame({"trips": [1.0], "bonus": [0.0]})
    broken = store.models.register_model(
        "trips", NotebookModel(), flavor="pyfunc", feature_service="driver_service",
        sample_input=sample,
    ).version  # fmt: skip
    monkeypatch.delitem(sys.modules, "qa_a_notebook_model")
    (folder / "qa_a_notebook_model.py").unlink()  # the server cannot import it any more
    control = Control(trips_routes(100.0, candidate=broken, key="x-user", source="header"))
    app = create_model_app(store, prediction_log=prediction_logger(store), routes=control)
    user = {"x-user": "alice"}
    with running(app) as url:
        v1 = predict(url, 1, headers=user)
        v2 = httpx.post(
            f"http://{url}/v2/models/trips/infer", json=tensors("trips", "bonus"), headers=user
        )
    for reply in (v1, v2):
        assert reply.status_code == 400 and reply.json()["code"] == "invalid_model_artifact"
        assert reply.headers["x-parity-route"] == "canary", reply.headers
        assert reply.headers["x-parity-model-version"] == str(broken)
    rows = logged_rows(store)
    assert [(r["version"], r["role"], r["status"]) for r in rows] == [
        (broken, "canary", "error"),
        (broken, "canary", "error"),
    ]
