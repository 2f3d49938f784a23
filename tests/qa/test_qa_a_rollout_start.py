"""QA of POST /v1/rollouts on a real server: values the definition accepted but that could not be
served (numbers past 64 bits that broke every later GET, weights finer than the routing's 0.01 %,
a routing key no request carries, the candidate or champion listed in also_shadow) are 400s
naming the field, and a rollout-less model's 404 suggests a command that works."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest

from parity.inference.app import create_model_app
from tests.inference.rollout_helpers import rollout_store
from tests.inference.serving_helpers import running

HUGE = 10**30  # past 64 bits: JSON encoders refuse it


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = rollout_store(tmp_path_factory.mktemp("qa_start"))
    with running(create_model_app(store, enable_rollout_control=True)) as address:
        yield f"http://{address}"


def start(url: str, **fields: Any) -> httpx.Response:
    reply = httpx.post(f"{url}/v1/rollouts", json={"model": "trips", **fields}, timeout=30)
    if reply.status_code == 201:  # leave the model free for the next case
        httpx.post(f"{url}/v1/rollouts/trips/abort", json={}, timeout=30).raise_for_status()
    return reply


def refused(reply: httpx.Response, *named: str) -> str:
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body["code"] == "invalid_rollout", body
    for text in named:
        assert text in body["error"], body
    return str(body["error"])


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"steps": [{"weight": 5, "min_samples": HUGE}]}, "steps[0].min_samples"),
        ({"shadow": {"min_samples": 2**63}}, "shadow.min_samples"),
        ({"gates": [{"metric": "error_rate", "min_samples": HUGE}]}, "gates[0].min_samples"),
        ({"gates": [{"metric": "label:precision_at_k", "k": HUGE}]}, "gates[0].k"),
        ({"failure_policy": {"limit": HUGE}}, "failure_policy.limit"),
    ],
)
def test_numbers_too_large_to_store_are_refused_and_reads_keep_working(
    url: str, fields: dict[str, Any], field: str
) -> None:
    refused(start(url, candidate=2, **fields), field, "at most 2,147,483,647")
    listed = httpx.get(f"{url}/v1/rollouts", timeout=30)  # was a 500 for good after one got in
    assert listed.status_code == 200 and listed.json() == {"rollouts": []}, listed.text


@pytest.mark.parametrize("weights", [[0.004], [0.001, 50], [1, 1.004], [1, 5, 5.001]])
def test_weights_finer_than_the_routing_resolution_are_refused(
    url: str, weights: list[float]
) -> None:
    steps = [{"weight": w} for w in weights]
    refused(start(url, candidate=2, steps=steps), "steps", "0.01 percentage points")


def test_the_routing_resolution_itself_is_accepted(url: str) -> None:
    reply = start(url, candidate=2, steps=[{"weight": 0.01}, {"weight": 0.02}, {"weight": 100}])
    assert reply.status_code == 201, reply.text
    assert reply.json()["rollout"]["definition"]["steps"][0]["weight"] == 0.01


def test_an_entity_routing_key_no_request_carries_is_refused(url: str) -> None:
    message = refused(
        start(url, candidate=2, routing_key={"name": "nosuchkey"}), "routing_key", "'nosuchkey'"
    )
    assert "driver_id" in message and "bonus" in message  # what the requests do carry
    for fine in (
        {"name": "driver_id"},
        {"name": "bonus"},
        {"name": "x-anything", "source": "header"},
    ):
        reply = start(url, candidate=2, routing_key=fine)
        assert reply.status_code == 201, reply.text


@pytest.mark.parametrize(
    ("also", "words"),
    [([2], "the candidate's version"), ([1], "the champion's version"), ([5, 5], "listed twice")],
)
def test_also_shadow_must_list_other_versions_once(url: str, also: list[int], words: str) -> None:
    refused(start(url, candidate=2, also_shadow=also), "also_shadow", words)


def test_also_shadow_of_another_version_is_accepted(url: str) -> None:
    reply = start(url, candidate=2, also_shadow=[5])
    assert reply.status_code == 201, reply.text
    assert reply.json()["rollout"]["shadows"] == [5]


def test_no_rollout_suggests_a_start_command_that_works(url: str) -> None:
    reply = httpx.get(f"{url}/v1/rollouts/lonely", timeout=30)
    assert reply.status_code == 404, reply.text
    assert "parity rollout start --model lonely --candidate" in reply.json()["error"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"steps": [{"weight": True}]}, "steps[0].weight"),
        ({"steps": [{"weight": "5"}]}, "steps[0].weight"),
        ({"steps": [{"weight": 5, "min_samples": True}]}, "steps[0].min_samples"),
        ({"shadow": {"min_samples": "500"}}, "shadow.min_samples"),
        ({"shadow_fraction": True}, "shadow_fraction"),
        ({"gates": [{"metric": "error_rate", "threshold": True}]}, "gates[0].threshold"),
        ({"gates": [{"metric": "error_rate", "threshold": "0.1"}]}, "gates[0].threshold"),
        ({"gates": [{"metric": "label:precision_at_k", "k": True}]}, "gates[0].k"),
        ({"failure_policy": {"limit": "2"}}, "failure_policy.limit"),
    ],
)
def test_bools_and_text_are_not_read_as_numbers(
    url: str, fields: dict[str, Any], field: str
) -> None:
    refused(start(url, candidate=2, **fields), f"{field}: give a number")


def test_a_routing_header_name_no_request_can_carry_is_refused(url: str) -> None:
    routing = {"name": "x-\u00fcser", "source": "header"}  # header names are ASCII
    refused(start(url, candidate=2, routing_key=routing), "routing_key", "ASCII")


def test_a_gate_output_the_model_does_not_have_is_refused_at_start(url: str) -> None:
    gates = [{"metric": "prediction_drift", "output": "nosuch"}]
    refused(start(url, candidate=2, gates=gates), "gates", "'nosuch'", "output")
    reply = start(url, candidate=2, gates=[{"metric": "prediction_drift", "output": "output"}])
    assert reply.status_code == 201, reply.text


def test_a_ramp_of_more_than_a_hundred_steps_is_refused(url: str) -> None:
    """Every server worker re-reads the running definition every refresh period: 10,000 steps
    cost 0.18 s of CPU per read. A ramp that long is a typo."""
    steps = [{"weight": round(0.01 * (i + 1), 2)} for i in range(101)]
    refused(start(url, candidate=2, steps=steps), "steps", "at most 100")
    reply = start(url, candidate=2, steps=steps[:100])
    assert reply.status_code == 201, reply.text
