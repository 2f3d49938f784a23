"""`parity serve` and `parity serve-models` with auth on, as real uvicorn processes over real HTTP:
401 without a token, 403 with one lacking the scope, 200 with the right one; /push with
features:push needs no --enable-push, rollout control with rollouts:admin no
--enable-rollout-control; the start-up line says auth is on; a revoked token is refused within
auth.cache_seconds; with auth off on a non-loopback address, the server warns."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx2 as httpx
import pytest

from parity import FeatureStore
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import free_port
from tests.inference.test_rollout_http import RANKER_MONITOR, SAMPLE, TripsModel
from tests.ingest.test_push import REPO as PUSH_REPO

ROW = {
    "account_id": [7],
    "event_timestamp": [datetime.now(UTC).isoformat()],
    "clicks_1h": [4],
    "spend": [2.5],
}
LOOKUP = {"features": ["click_stats:clicks_1h"], "entities": {"account_id": [7]}}


def _repo(root: Path, auth: str = "auth: {enabled: true, cache_seconds: 0.5}\n") -> Path:
    files = {**DRIVER_REPO, "push_defs.py": PUSH_REPO["defs.py"], "monitors.py": RANKER_MONITOR}
    path = write_repo(root / "repo", files, extra=f"models: {{trusted: true}}\n{auth}")
    store = FeatureStore(path)
    store.apply()
    for scale in (10.0, 11.0):
        store.models.register_model(
            "ranker",
            TripsModel(scale),
            flavor="pyfunc",
            feature_service="driver_service",
            sample_input=SAMPLE,
            alias="champion" if scale == 10.0 else None,
        )
    store.close()
    return path


@dataclass
class Served:
    url: str
    said: str = ""  # what the server printed on stderr, once it stopped
    out: str = ""  # ... and on stdout (the audit trail's JSON lines)


@contextmanager
def _serving(
    command: str, repo: Path, ready: str, *flags: str, host: str = "127.0.0.1"
) -> Iterator[Served]:
    """`parity <command>` in a subprocess, once it answers; `said` is filled when it stops."""
    port = free_port()
    args = [sys.executable, "-m", "parity.cli.main", command, "--repo", str(repo)]
    server = subprocess.Popen(
        [*args, "--host", host, "--port", str(port), *flags],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    served = Served(f"http://127.0.0.1:{port}")
    try:
        _wait(lambda: _answers(f"{served.url}{ready}") or server.poll() is not None)
        assert server.poll() is None, "the server stopped"
        yield served
    finally:
        server.terminate()
        server.wait(20)
        assert server.stderr is not None
        served.said = server.stderr.read().decode()
        server.stderr.close()
        assert server.stdout is not None
        served.out = server.stdout.read().decode()
        server.stdout.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(condition: Callable[[], bool], seconds: float = 40) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.mark.slow
def test_parity_serve_with_auth_on_enforces_scopes_and_pushes_without_enable_push(
    tmp_path: Path,
) -> None:
    repo = _repo(tmp_path)
    with FeatureStore(repo) as store:
        _, pusher = store.access.tokens.create("pusher", "features:push:clicks")
        _, reader = store.access.tokens.create("reader", "features:read:click_stats")
    with _serving("serve", repo, "/health") as served:
        url = served.url
        assert httpx.get(f"{url}/health").status_code == 200  # open
        push = {"push_source_name": "clicks", "df": ROW}
        none = httpx.post(f"{url}/push", json=push)
        assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Bearer")
        assert none.json()["error"]["code"] == "unauthenticated"
        denied = httpx.post(f"{url}/push", json=push, headers=_bearer(reader))
        assert denied.status_code == 403
        assert "features:push" in denied.json()["error"]["message"]
        pushed = httpx.post(f"{url}/push", json=push, headers=_bearer(pusher))
        assert (pushed.status_code, pushed.json()) == (200, {"pushed": 1})
        assert httpx.post(f"{url}/get-online-features", json=LOOKUP).status_code == 401
        assert httpx.post(f"{url}/get-online-features", json=LOOKUP, headers=_bearer(pusher))
        read = httpx.post(f"{url}/get-online-features", json=LOOKUP, headers=_bearer(reader))
        assert read.status_code == 200, read.text
        values = {r["values"][0] for r in read.json()["results"]}
        assert values == {7, 4}  # the entity key and the pushed clicks
        with FeatureStore(repo) as store:
            store.access.tokens.revoke("reader")
        time.sleep(0.6)  # auth.cache_seconds (0.5 s here) later the revoke holds everywhere
        again = httpx.post(f"{url}/get-online-features", json=LOOKUP, headers=_bearer(reader))
        assert again.status_code == 401
    said = served.said
    assert "auth on" in said and "WARNING" not in said
    assert pusher not in said and reader not in said
    # The push's audit record, exported as one JSON line on the server's stdout.
    lines = [json.loads(line) for line in served.out.splitlines() if line.startswith("{")]
    pushes = [line for line in lines if line["action"] == "features.push"]
    assert len(pushes) == 1, served.out
    assert (pushes[0]["actor"], pushes[0]["actor_kind"]) == ("pusher", "token")
    assert (pushes[0]["target"], pushes[0]["origin"]) == ("clicks", "127.0.0.1")
    assert pusher not in served.out and pusher.split("_")[2] not in served.out


@pytest.mark.slow
def test_parity_serve_models_with_auth_on_enforces_scopes_and_steers_rollouts(
    tmp_path: Path,
) -> None:
    repo = _repo(tmp_path)
    with FeatureStore(repo) as store:
        _, caller = store.access.tokens.create("caller", "models:predict:ranker")
        _, admin = store.access.tokens.create("ops", "rollouts:admin:ranker models:read")
    predict = {"entities": [{"driver_id": 1}], "request_context": {"bonus": [0.5]}}
    with _serving("serve-models", repo, "/v2/health/ready") as served:
        url = served.url
        path = f"{url}/v1/models/ranker@champion/predict"
        assert httpx.post(path, json=predict).status_code == 401
        denied = httpx.post(path, json=predict, headers=_bearer(admin))
        assert denied.status_code == 403 and denied.json()["code"] == "forbidden"
        assert "models:predict" in denied.json()["error"]
        answer = httpx.post(path, json=predict, headers=_bearer(caller))
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [10 * -1 + 0.5]  # nothing materialized: trips -1
        start = {"model": "ranker", "candidate": 2, "shadow": None}
        refused = httpx.post(f"{url}/v1/rollouts", json=start, headers=_bearer(caller))
        assert refused.status_code == 403
        started = httpx.post(f"{url}/v1/rollouts", json=start, headers=_bearer(admin))
        assert started.status_code == 201, started.text  # no --enable-rollout-control
        detail = httpx.get(f"{url}/v1/rollouts/ranker", headers=_bearer(admin)).json()
        assert detail["events"][0]["actor"] == "ops"
    assert "auth on" in served.said


@pytest.mark.slow
def test_with_auth_off_on_an_open_address_the_server_warns(tmp_path: Path) -> None:
    repo = _repo(tmp_path, auth="")
    with _serving("serve", repo, "/health", host="0.0.0.0") as served:
        url = served.url
        assert httpx.get(f"{url}/health").status_code == 200
    said = served.said
    assert "auth off" in said
    assert "WARNING: auth is off and the server listens on 0.0.0.0" in said
