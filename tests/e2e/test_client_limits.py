"""Per-client limits over real HTTP: `parity serve` and `parity serve-models` with auth on
(uvicorn subprocesses) and real tokens. A greedy token flooding the server gets 429 with
Retry-After while a second token loses no request; a token holding its in-flight slots with slow
requests is refused more, others are not; the global overload guard (503) still answers on top
of the per-client limits."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest

from parity import FeatureStore
from tests.conftest import BASE_TIME, DRIVER_REPO, write_repo
from tests.inference.serving_helpers import Affine, free_port

pytestmark = pytest.mark.slow

GREEDY_RATE, GREEDY_BURST = 5.0, 5
SERVER_MAX_IN_FLIGHT = 4  # --max-in-flight: per-client default is half, 2
LOOKUP = b'{"features":["driver_stats:trips"],"entities":{"driver_id":[1]}}'
# the driver repo without its view's ttl: the server reads with the real clock, long after the data
REPO = {**DRIVER_REPO, "views.py": DRIVER_REPO["views.py"].replace("ttl=timedelta(days=1),", "")}


@dataclass
class Server:
    url: str
    port: int
    tokens: dict[str, str]  # name -> token text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = write_repo(
        tmp_path_factory.mktemp("limits") / "repo", REPO, extra="auth:\n  enabled: true\n"
    )
    store = FeatureStore(root, clock=lambda: BASE_TIME + timedelta(hours=3))
    store.apply()
    store.materialize(BASE_TIME - timedelta(days=1), BASE_TIME + timedelta(hours=3))
    create = store.access.tokens.create
    tokens = {
        "greedy": create(
            "greedy", "features:read", rate_per_second=GREEDY_RATE, burst=GREEDY_BURST
        )[1],
        "polite": create("polite", "features:read")[1],
        "slow": create("slow", "features:read")[1],
        "other": create("other", "features:read")[1],
        "third": create("third", "features:read")[1],
    }
    store.close()
    flags = ["--max-in-flight", str(SERVER_MAX_IN_FLIGHT)]
    yield from _serving("serve", root, flags, "/health", tokens)


def _serving(
    kind: str, root: Path, flags: list[str], ready: str, tokens: dict[str, str]
) -> Iterator[Server]:
    """`parity <kind>` on a free port (1 worker), until the module's tests are done."""
    port = free_port()
    command = [sys.executable, "-m", "parity.cli.main", kind, "--repo", str(root)]
    log = root / f"{kind}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port), *flags], stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _ready(url + ready):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no {ready} after 60 s: {log.read_text()}"
            time.sleep(0.1)
        yield Server(url, port, tokens)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _lookup(client: httpx.Client, url: str, token: str) -> httpx.Response:
    return client.post(
        f"{url}/get-online-features",
        content=LOOKUP,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=30,
    )


def _trips(reply: httpx.Response) -> list[Any]:
    """The looked-up value (driver 1's trips is 3 in tests.conftest's data)."""
    return list(reply.json()["results"][1]["values"])


def test_greedy_token_gets_429_while_a_polite_one_loses_nothing(server: Server) -> None:
    greedy: list[httpx.Response] = []
    polite: list[httpx.Response] = []
    stop = threading.Event()

    def flood() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                greedy.append(_lookup(client, server.url, server.tokens["greedy"]))

    started = time.monotonic()
    floods = [threading.Thread(target=flood) for _ in range(3)]
    for thread in floods:
        thread.start()
    with httpx.Client() as client:
        for _ in range(40):
            polite.append(_lookup(client, server.url, server.tokens["polite"]))
            time.sleep(0.02)
    stop.set()
    for thread in floods:
        thread.join()
    elapsed = time.monotonic() - started

    assert [r.status_code for r in polite] == [200] * 40  # the polite client lost 0 requests
    assert all(_trips(r) == [3] for r in polite)
    admitted = [r for r in greedy if r.status_code == 200]
    refused = [r for r in greedy if r.status_code == 429]
    assert len(admitted) + len(refused) == len(greedy), {r.status_code for r in greedy}
    # the bucket's bound over the flood's span (the server saw it within the client's span)
    assert len(admitted) <= GREEDY_BURST + GREEDY_RATE * elapsed
    assert len(admitted) >= GREEDY_BURST  # the full bucket at least
    errors = [r.json()["error"] for r in refused]
    assert {e["code"] for e in errors} == {"rate_limited"}
    # most are over the rate; with 3 connections some find its 2 in-flight slots taken
    by_rate = [e["message"] for e in errors if "over its rate limit" in e["message"]]
    assert len(by_rate) > len(admitted)
    assert "token 'greedy'" in by_rate[0] and "--rate/--burst" in by_rate[0]
    assert all(server.tokens["greedy"] not in r.text for r in refused)
    # one token every 0.2 s: Retry-After rounds up to whole seconds, at least 1
    assert {r.headers["retry-after"] for r in refused} == {"1"}


def test_after_retry_after_the_greedy_token_is_admitted_again(server: Server) -> None:
    with httpx.Client() as client:
        while _lookup(client, server.url, server.tokens["greedy"]).status_code == 200:
            pass  # spend the bucket
        refused = _lookup(client, server.url, server.tokens["greedy"])
        assert refused.status_code == 429
        time.sleep(int(refused.headers["retry-after"]))
        again = _lookup(client, server.url, server.tokens["greedy"])
    assert again.status_code == 200 and _trips(again) == [3]


class SlowRequest:
    """A POST whose body is held back: the request stays in flight until `finish`."""

    def __init__(self, port: int, token: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        head = (
            "POST /get-online-features HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(LOOKUP)}\r\n\r\n"
        ).encode()
        self.sock.sendall(head + LOOKUP[:10])

    def finish(self) -> int:
        self.sock.sendall(LOOKUP[10:])
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        self.sock.close()
        return int(answer.split(b" ", 2)[1])


def _hold(server: Server, token: str, count: int) -> list[SlowRequest]:
    time.sleep(0.2)  # an earlier test's last requests have left (leave runs after the answer)
    held = [SlowRequest(server.port, server.tokens[token]) for _ in range(count)]
    time.sleep(1.0)  # the server reads their headers and admits them (a busy machine: slack)
    return held


def test_in_flight_cap_refuses_a_tokens_extra_requests_but_not_others(server: Server) -> None:
    per_client = max(1, SERVER_MAX_IN_FLIGHT // 2)
    held = _hold(server, "slow", per_client)
    try:
        with httpx.Client() as client:
            refused = _lookup(client, server.url, server.tokens["slow"])
            other = _lookup(client, server.url, server.tokens["other"])
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        message = refused.json()["error"]["message"]
        assert f"{per_client} requests in flight" in message and "--max-in-flight" in message
        assert other.status_code == 200 and _trips(other) == [3]
    finally:
        statuses = [request.finish() for request in held]
    assert statuses == [200] * per_client  # the held requests complete normally
    with httpx.Client() as client:
        assert _lookup(client, server.url, server.tokens["slow"]).status_code == 200


def test_global_overload_guard_still_answers_503_on_top(server: Server) -> None:
    per_client = max(1, SERVER_MAX_IN_FLIGHT // 2)
    clients = math.ceil(SERVER_MAX_IN_FLIGHT / per_client)
    held = [r for name in ("slow", "other")[:clients] for r in _hold(server, name, per_client)]
    try:
        with httpx.Client() as client:
            overloaded = _lookup(client, server.url, server.tokens["third"])
            over_own = _lookup(client, server.url, server.tokens["slow"])
        # the server is full (4 in flight) though "third" is within its own limits: 503
        assert overloaded.status_code == 503
        assert overloaded.headers["retry-after"] == "1"
        # a token at its own cap is told so first (the gate runs before the guard)
        assert over_own.status_code == 429
    finally:
        statuses = [request.finish() for request in held]
    assert statuses == [200] * len(held)
    with httpx.Client() as client:
        assert _lookup(client, server.url, server.tokens["third"]).status_code == 200


# --- the model server ---------------------------------------------------------------------------

INFER = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 2], "data": [1.0, 1.0]}]}


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    extra = (
        "auth:\n  enabled: true\nmodels:\n  trusted: true\n  serving:\n    prediction_log: null\n"
    )
    root = write_repo(tmp_path_factory.mktemp("model-limits") / "repo", REPO, extra=extra)
    store = FeatureStore(root)
    store.models.register_model(
        "affine", Affine([1.0, 2.0], 0.5), flavor="pyfunc", sample_input=np.ones((2, 2))
    )
    create = store.access.tokens.create
    tokens = {
        "greedy": create("greedy", "models:predict:affine", rate_per_second=2.0, burst=2)[1],
        "polite": create("polite", "models:predict:affine")[1],
    }
    store.close()
    flags = ["--model", "affine", "--no-rollout-controller"]
    yield from _serving("serve-models", root, flags, "/v2/health/ready", tokens)


def _infer(client: httpx.Client, server: Server, token: str) -> httpx.Response:
    return client.post(
        f"{server.url}/v2/models/affine/infer",
        json=INFER,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_model_server_limits_a_greedy_token_and_not_a_polite_one(model_server: Server) -> None:
    with httpx.Client() as client:
        started = time.monotonic()
        greedy = [_infer(client, model_server, model_server.tokens["greedy"]) for _ in range(20)]
        elapsed = time.monotonic() - started
        polite = [_infer(client, model_server, model_server.tokens["polite"]) for _ in range(20)]
    admitted = [r for r in greedy if r.status_code == 200]
    refused = [r for r in greedy if r.status_code == 429]
    assert len(admitted) + len(refused) == 20
    assert 2 <= len(admitted) <= 2 + 2.0 * elapsed  # burst 2, then 2 a second
    assert {r.headers["retry-after"] for r in refused} == {"1"}
    assert "token 'greedy'" in refused[0].text and "--rate/--burst" in refused[0].text
    assert [r.status_code for r in polite] == [200] * 20
    # 1 x 1 + 1 x 2 + 0.5, computed by hand
    assert {tuple(r.json()["outputs"][0]["data"]) for r in polite + admitted} == {(3.5,)}
