"""QA of a slow shadow over real HTTP: mirrored requests whose time limit passed while the shadow's
model was busy are never predicted afterwards. Before, each waited in the model's executor and ran
for no one: 200 requests to a 1 s shadow kept its model busy ~2 minutes after the traffic, and
stopping the server waited for all of it (107 s)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pandas as pd

from parity.inference.app import create_model_app
from parity.inference.routing import Shadow
from tests.inference.rollout_helpers import CHAMPION, rollout_store, trips_routes
from tests.inference.serving_helpers import TripsModel, running

PREDICTED: list[int] = []  # rows of each call of the shadow's model (it runs in this process)
RELEASE = threading.Event()  # the shadow's model holds each call until it is set


class HeldModel(TripsModel):
    def predict(self, frame: Any) -> Any:
        PREDICTED.append(len(frame))
        RELEASE.wait(20)
        return super().predict(frame)


def shadow_timeouts(url: str) -> float:
    text = httpx.get(f"http://{url}/metrics").text
    found = re.findall(r"parity_shadow_requests_total\{([^}]*)\} (\S+)", text)
    return sum(float(v) for labels, v in found if 'status="timeout"' in labels)


def test_mirrored_requests_past_their_time_limit_are_not_predicted_later(
    tmp_path: Path,
) -> None:
    store = rollout_store(tmp_path)
    sample = pd.DataFrame({"trips": [1.0, 2.0], "bonus": [0.0, 1.0]})
    held = store.models.register_model(
        "trips", HeldModel(), flavor="pyfunc", feature_service="driver_service",
        sample_input=sample, sample_output=np.array([0.0, 0.0]),
    )  # fmt: skip
    PREDICTED.clear()
    RELEASE.clear()
    routes = trips_routes(0.0, shadows=(Shadow(held.version),))
    app = create_model_app(
        store, routes=lambda: {"trips": routes}, preload=[f"trips/{held.version}"],
        shadow_timeout_s=0.1,
    )  # fmt: skip
    body = {"entities": {"driver_id": [1], "bonus": [0.0]}}
    try:
        with running(app) as url:
            answers = [
                httpx.post(f"http://{url}/v1/models/trips/predict", json=body) for _ in range(10)
            ]
            deadline = time.monotonic() + 30
            while shadow_timeouts(url) < 10:  # every mirrored request gave up on the shadow
                assert time.monotonic() < deadline, "the shadows never timed out"
                time.sleep(0.05)
            RELEASE.set()  # the model is free: nothing is waiting for it any more
        # the server stopped: every batch that reached the model's executor has run
    finally:
        RELEASE.set()
    assert [a.json()["model_version"] for a in answers] == [CHAMPION] * 10
    assert sum(PREDICTED) == 1, PREDICTED  # the first, sent while the model was free; no other
