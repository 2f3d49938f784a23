"""Schemathesis against the feature server's own OpenAPI spec (issue 12, item 11), over real HTTP:
generated valid and invalid requests for every operation (examples, coverage and fuzzing phases);
no answer is a 5xx, every answer matches the spec (declared status, content type, body schema,
headers), requests that break the schema and undeclared methods are refused.

Not checked: `positive_data_acceptance` (a schema-valid request must get a 2xx or 404). A schema
cannot say which entity keys a feature view has, so a well-formed request naming an unknown key is
rightly a 400. Examples per operation are bounded and the seed fixed, so the run takes seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity import FeatureStore
from parity.serving.app import create_app
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import running
from tests.ingest.test_push import REPO as PUSH_REPO

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
EXAMPLES_PER_OPERATION = 40
SEED = 20261127


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    """A repo with a materialized view and a push source."""
    files = {**DRIVER_REPO, "push_defs.py": PUSH_REPO["defs.py"]}
    feature_store = FeatureStore(write_repo(tmp_path / "repo", files), clock=lambda: NOW)
    feature_store.apply()
    feature_store.materialize(datetime(2025, 12, 31, tzinfo=UTC), NOW, ["driver_stats"])
    return feature_store


def _secured(tmp_path: Path) -> tuple[FeatureStore, str]:
    """The fuzzed repo with auth on, and an admin token's text."""
    files = {**DRIVER_REPO, "push_defs.py": PUSH_REPO["defs.py"]}
    path = write_repo(tmp_path / "secured", files, extra="auth: {enabled: true}\n")
    feature_store = FeatureStore(path, clock=lambda: NOW)
    feature_store.apply()
    feature_store.materialize(datetime(2025, 12, 31, tzinfo=UTC), NOW, ["driver_stats"])
    _, token = feature_store.access.tokens.create("fuzz", "admin")
    return feature_store, token


@pytest.mark.parametrize(("enable_push", "auth"), [(True, False), (False, False), (False, True)])
def test_schemathesis_finds_no_5xx_and_no_spec_violation(
    store: FeatureStore, tmp_path: Path, enable_push: bool, auth: bool
) -> None:
    """With auth on, every request carries an admin token (schemathesis' `ignored_auth` check
    also sends them without one, and expects the 401 the spec declares)."""
    headers: list[str] = []
    if auth:
        store, token = _secured(tmp_path)
        headers = ["--header", f"Authorization: Bearer {token}"]
    app = create_app(store, max_body_bytes=64_000, enable_push=enable_push)
    with running(app) as address:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "schemathesis.cli", "run"),
                f"http://{address}/openapi.json",
                *("--checks", "all", "--exclude-checks", "positive_data_acceptance"),
                *("--phases", "examples,coverage,fuzzing,stateful"),
                *("--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", str(SEED)),
                *("--workers", "1", "--request-timeout", "10"),
                *headers,
            ],
            cwd=tmp_path,  # its cache folder goes there
            capture_output=True,
            text=True,
            timeout=240,
            env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
        )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    assert "Tested: 4" in report and " passed" in report, report[-3000:]


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**70)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["2026-01-01T00:00:00Z", "1e30", "9999-12-31T23:59:59Z", "-0001-01-01"]),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=4,
)
column = st.lists(values, min_size=1, max_size=3)
push_bodies = st.fixed_dictionaries(
    {
        "push_source_name": st.sampled_from(["clicks", "nope"]),
        "df": st.fixed_dictionaries(
            {},
            optional={
                "account_id": column,
                "event_timestamp": column,
                "clicks_1h": column,
                "spend": column,
                "other": column,
            },
        ),
    },
    optional={"to": st.sampled_from(["online", "offline", "both", "nowhere"])},
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=push_bodies)
def test_no_push_body_makes_a_500(store: FeatureStore, body: dict[str, object]) -> None:
    """Bodies schemathesis cannot make: the push source's real columns with any JSON values
    (integers past Int64, non-finite floats, nested values, timestamps as numbers)."""
    client = TestClient(create_app(store, enable_push=True))
    reply = client.post("/push", content=json.dumps(body))
    assert reply.status_code < 500, reply.text
    if reply.status_code != 200:
        assert reply.json()["error"]["code"] and reply.json()["error"]["message"]


def test_the_spec_declares_models_errors_text_metrics_and_non_empty_features(
    store: FeatureStore,
) -> None:
    client = TestClient(create_app(store))
    spec = client.get("/openapi.json").json()
    paths, schemas = spec["paths"], spec["components"]["schemas"]
    online = paths["/get-online-features"]["post"]["responses"]
    assert online["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OnlineResponseBody"
    }
    assert set(online) == {"200", "400", "404", "413", "422", "503"}
    assert set(paths["/push"]["post"]["responses"]) == {
        "200",
        "400",
        "403",
        "404",
        "413",
        "422",
        "503",
    }
    error = {"$ref": "#/components/schemas/ErrorBody"}
    assert online["404"]["content"]["application/json"]["schema"] == error
    assert schemas["ErrorBody"]["required"] == ["error"]
    metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    request = paths["/get-online-features"]["post"]["requestBody"]["content"]["application/json"]
    features = request["schema"]["properties"]["features"]["anyOf"][0]
    assert features["minItems"] == 1
    empty = client.post(
        "/get-online-features", json={"features": [], "entities": {"driver_id": [1]}}
    )
    assert (empty.status_code, empty.json()["error"]["code"]) == (422, "invalid_request")
    unknown = client.get("/no-such-route")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "not_found")
    wrong = client.get("/push")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (405, "method_not_allowed")
    assert wrong.headers["allow"] == "POST"
