"""The rollout routes answer as the spec says with rollout control ON (the model server fuzz test
covers them with it off: every POST a 403): schemathesis sends generated valid and invalid
bodies to `/v1/rollouts...` over real HTTP; no answer may be a 5xx or disagree with the spec."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from parity import __version__
from parity.inference.app import create_model_app
from parity.inference.openapi import model_server_spec
from tests.inference.serving_helpers import running
from tests.inference.test_rollout_http import rollout_store


@pytest.fixture(scope="module")
def control_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _, store = rollout_store(Path(tmp_path_factory.mktemp("rollout-fuzz")))
    with running(create_model_app(store, enable_rollout_control=True)) as address:
        yield f"http://{address}"


SPEC = model_server_spec(__version__)
_CONFIG = SchemathesisConfig.from_dict({"parameters": {"path.model_name": "ranker"}})
rollouts = schemathesis.openapi.from_dict(SPEC, config=_CONFIG).include(path_regex="^/v1/rollouts")


@pytest.fixture(scope="module")
def secured_control_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A model server with auth on (rollout control needs no flag then) and a token that may
    steer and read the rollouts."""
    root = Path(tmp_path_factory.mktemp("rollout-fuzz-auth"))
    _, store = rollout_store(root, registry="auth: {enabled: true}\n")
    _, token = store.access.tokens.create("fuzz", "rollouts:admin models:read")
    with running(create_model_app(store)) as address:
        yield f"http://{address}", token


secured_rollouts = schemathesis.openapi.from_dict(
    model_server_spec(__version__, secured=True), config=_CONFIG
).include(path_regex="^/v1/rollouts")


@secured_rollouts.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_with_auth_on_rollout_routes_answer_as_the_spec_says(
    case: Any, secured_control_server: tuple[str, str]
) -> None:
    base_url, token = secured_control_server
    excluded = [positive_data_acceptance] if case.method == "POST" else []
    headers = {"Authorization": f"Bearer {token}"}
    case.call_and_validate(base_url=base_url, headers=headers, excluded_checks=excluded)


@rollouts.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_rollout_routes_answer_as_the_spec_says(case: Any, control_server: str) -> None:
    # A body the schema allows can still be refused: the model may have a rollout already (409)
    # or none (404), and the registry decides what a candidate is (400).
    excluded = [positive_data_acceptance] if case.method == "POST" else []
    case.call_and_validate(base_url=control_server, excluded_checks=excluded)


# Start bodies near the valid ones (schemathesis mostly sends invalid ones): weights, durations,
# gates and policies drawn from values that are valid, borderline or wrong.
_WEIGHT = st.one_of(
    st.floats(-1, 101),
    st.just(math.nan),
    st.sampled_from([0, 1, 5, 25, 50, 100]),
    st.text(max_size=3),
)
_DURATION = st.one_of(
    st.sampled_from(["10m", "0s", "1h", "PT5M", "5", "-1m", "1y", ""]),
    st.integers(-5, 10**12),
    st.floats(allow_nan=True),
)
_STEP = st.fixed_dictionaries(
    {"weight": _WEIGHT}, optional={"duration": _DURATION, "min_samples": st.integers(-1, 10**20)}
)
_GATE = st.fixed_dictionaries(
    {"metric": st.sampled_from(["latency_p99", "error_rate", "prediction_drift", "label:auc",
                                "label:nope", "custom:x", "p50", ""])},
    optional={"threshold": st.one_of(st.none(), st.floats(allow_nan=True)), "k": st.integers(-1, 5)},
)  # fmt: skip
_BODY = st.fixed_dictionaries(
    {"model": st.sampled_from(["ranker", "lonely", "nobody"]),
     "candidate": st.one_of(st.sampled_from([1, 2, 3, 9, "champion", "x y", True]),
                            st.integers(-2, 2**40))},
    optional={
        "steps": st.lists(_STEP, max_size=4),
        "shadow": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"duration": _DURATION})),
        "gates": st.lists(_GATE, max_size=3),
        "interval": _DURATION,
        "failure_policy": st.fixed_dictionaries(
            {}, optional={"mode": st.sampled_from(["cumulative", "consecutive", "x"]),
                          "limit": st.integers(-1, 3)}),
        "routing_key": st.fixed_dictionaries(
            {"name": st.sampled_from(["driver_id", "x-user", "a b", ""])},
            optional={"source": st.sampled_from(["entity", "header", "cookie"])}),
        "shadow_fraction": st.one_of(st.floats(-1, 2), st.just(math.inf)),
    },
)  # fmt: skip


_VALID = st.fixed_dictionaries(
    {"model": st.just("ranker"), "candidate": st.sampled_from([2, 3])},
    optional={
        "steps": st.lists(st.integers(1, 100), min_size=1, max_size=4, unique=True).map(
            lambda weights: [{"weight": w, "duration": "1m"} for w in sorted(weights)]
        ),
        "shadow": st.one_of(st.none(), st.just({"duration": "5m", "min_samples": 10})),
        "gates": st.lists(
            st.sampled_from(["latency_p99", "error_rate", "prediction_drift", "label:auc"]),
            unique=True,
            max_size=3,
        ).map(lambda metrics: [{"metric": m} for m in metrics]),
        "interval": st.sampled_from(["30s", "1m", 90, "PT2M"]),
        "routing_key": st.just({"name": "x-user", "source": "header"}),
    },
)


@given(body=st.one_of(_VALID, _BODY))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_start_bodies_start_or_are_refused_never_a_5xx(control_server: str, body: Any) -> None:
    url = f"{control_server}/v1/rollouts"
    reply = httpx.post(url, content=json.dumps(body).encode(), timeout=30)
    assert reply.status_code in (201, 400, 404, 409), reply.text
    event(f"answer {reply.status_code}")
    if reply.status_code != 201:
        answer = reply.json()
        assert set(answer) == {"error", "code"} and answer["error"], answer
        return
    state = reply.json()["rollout"]
    assert state["model"] == body["model"] and state["status"] == "active"
    if isinstance(body.get("steps"), list):  # what was asked is what runs
        weights = [float(step["weight"]) for step in body["steps"]]
        assert [step["weight"] for step in state["definition"]["steps"]] == weights
    if "gates" in body:
        assert [g["metric"] for g in state["definition"]["gates"]] == [
            g["metric"] for g in body["gates"]
        ]
    assert httpx.get(f"{url}/{body['model']}", timeout=30).json()["rollout"] == state
    abort = httpx.post(f"{url}/{body['model']}/abort", timeout=30)  # the next example may start
    assert abort.json()["rollout"]["status"] == "aborted", abort.text
