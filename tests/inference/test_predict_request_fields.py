"""`/v1/models/{m}/predict` validates every request field against the declared request schema:
request sources of the service's on-demand views and the model signature's request-time inputs
(issue 12, item 6). `/v2` already refuses the same values; `/v1` must too."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pandas as pd
import pytest

from parity import FeatureStore
from parity.inference.app import create_model_app
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import running

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
RIDES = """
    from entities import driver
    from views import driver_stats
    from parity import FeatureService, Field, Float64, Int32, RequestSource, on_demand_feature_view

    ride = RequestSource(
        name="ride",
        schema=[Field(name="distance", dtype=Float64), Field(name="passengers", dtype=Int32)],
    )

    @on_demand_feature_view(
        sources=[driver_stats, ride], schema=[Field(name="load", dtype=Float64)]
    )
    def ride_load(row):
        return {"load": row["distance"] * row["passengers"]}

    ride_service = FeatureService(name="ride_service", features=[driver_stats[["trips"]], ride_load])
"""


class RideModel:
    """trips + load + bonus: `load` is on-demand (distance x passengers), `bonus` a request-time
    input known only to the model's signature."""

    def predict(self, frame: Any) -> Any:
        return (frame["trips"].fillna(0) + frame["load"] + frame["bonus"]).to_numpy()


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = Path(tmp_path_factory.mktemp("fields"))
    repo = write_repo(
        root / "repo", {**DRIVER_REPO, "rides.py": RIDES}, extra="models: {trusted: true}\n"
    )
    store = FeatureStore(repo, clock=lambda: NOW)
    store.apply()
    store.materialize(datetime(2025, 12, 31, tzinfo=UTC), NOW)
    sample = pd.DataFrame({"trips": [1.0], "load": [2.0], "bonus": [0.5]})
    store.models.register_model(
        "ride", RideModel(), flavor="pyfunc", feature_service="ride_service", sample_input=sample
    )
    with running(create_model_app(store)) as address:
        yield address


def _post(url: str, raw: str) -> httpx.Response:
    return httpx.post(
        f"http://{url}/v1/models/ride/predict",
        content=raw.encode(),
        headers={"content-type": "application/json"},
    )


def _body(distance: str = "2.5", passengers: str = "2", bonus: str = "0.5") -> str:
    return (
        '{"entities": {"driver_id": [1]}, "request_context": {'
        f'"distance": [{distance}], "passengers": [{passengers}], "bonus": [{bonus}]}}}}'
    )


def test_valid_request_fields_predict_the_hand_worked_value(url: str) -> None:
    reply = _post(url, _body(distance="4", passengers="3", bonus="1"))
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == [3 + 4 * 3 + 1]  # trips of driver 1 is 3


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("distance", "1e400"),  # parses as infinity
        ("distance", "-1e400"),
        ("distance", "true"),
        ("distance", "[[1.0]]"),
        ("distance", "[1.0]"),
        ("distance", '"abc"'),
        ("distance", "null"),
        ("distance", '{"km": 1}'),
        ("passengers", "2.5"),
        ("passengers", "2.0"),
        ("passengers", str(2**31)),
        ("passengers", "false"),
        ("passengers", '"2"'),
        ("bonus", "1e400"),
        ("bonus", "true"),
        ("bonus", "[[1.0]]"),
        ("bonus", '"abc"'),
        ("bonus", "null"),
        ("bonus", str(10**400)),
    ],
)
def test_a_request_field_not_of_its_declared_type_is_a_400_naming_it(
    url: str, field: str, raw: str
) -> None:
    reply = _post(url, _body(**{field: raw}))
    assert reply.status_code == 400, reply.text
    answer = reply.json()
    assert answer["code"] == "invalid_request_field"
    assert f"'{field}' row 0" in answer["error"]


def test_unknown_missing_and_uneven_fields_are_400s_naming_them(url: str) -> None:
    unknown = _post(url, _body().replace('"bonus"', '"bonsu"'))
    missing = _post(url, '{"entities": {"driver_id": [1]}, "request_context": {"distance": [1]}}')
    uneven = _post(
        url,
        '{"entities": {"driver_id": [1, 2]}, "request_context": '
        '{"distance": [1.0, 2.0], "passengers": [1, 2], "bonus": [1.0]}}',
    )
    rows = httpx.post(
        f"http://{url}/v1/models/ride/predict",
        json={
            "entities": [
                {"driver_id": 1, "distance": 1.0, "passengers": 1, "bonus": 0.0},
                {"driver_id": 2, "distance": 1.0, "bonus": 0.0},
            ]
        },
    )
    empty = _post(
        url,
        '{"entities": {"driver_id": []}, "request_context": '
        '{"distance": [], "passengers": [], "bonus": []}}',
    )
    assert empty.status_code == 400 and "no rows" in empty.json()["error"]
    assert unknown.status_code == 400 and "'bonsu'" in unknown.json()["error"]
    assert missing.status_code == 400 and "'passengers'" in missing.json()["error"]
    assert uneven.status_code == 400 and "same length" in uneven.json()["error"]
    assert rows.status_code == 400 and "'passengers' row 1 is null" in rows.json()["error"]
    for reply in (unknown, missing, uneven, rows, empty):
        assert reply.json()["code"] == "invalid_request_field"
