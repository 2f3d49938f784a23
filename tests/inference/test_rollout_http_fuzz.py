"""The rollout routes answer as the spec says with rollout control ON (the model server fuzz test
covers them with it off: every POST a 403): schemathesis sends generated valid and invalid
bodies to `/v1/rollouts...` over real HTTP; no answer may be a 5xx or disagree with the spec."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
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


@rollouts.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_rollout_routes_answer_as_the_spec_says(case: Any, control_server: str) -> None:
    # A body the schema allows can still be refused: the model may have a rollout already (409)
    # or none (404), and the registry decides what a candidate is (400).
    excluded = [positive_data_acceptance] if case.method == "POST" else []
    case.call_and_validate(base_url=control_server, excluded_checks=excluded)
