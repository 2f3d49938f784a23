"""`parity serve-models` and rollouts, in a subprocess over HTTP: POSTs to /v1/rollouts only with
--enable-rollout-control; by default the server runs the controller loop (a due rollout gets
checked), and --no-rollout-controller leaves it to `parity rollout run`."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx2 as httpx
import pytest

from parity import FeatureStore
from parity.deploy.service import Rollouts
from parity.inference.app import create_model_app
from tests.inference.serving_helpers import free_port, running
from tests.inference.test_rollout_http import rollout_store


def _serve_models(repo: Path, *flags: str) -> tuple[subprocess.Popen[bytes], str, str]:
    """`parity serve-models` in a subprocess: the process, its start-up line, its address."""
    port = free_port()
    command = [sys.executable, "-m", "parity.cli.main", "serve-models", "--repo", str(repo)]
    server = subprocess.Popen([*command, "--port", str(port), *flags], stderr=subprocess.PIPE)
    assert server.stderr is not None
    line = server.stderr.readline().decode()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(url) or server.poll() is not None)
    assert server.poll() is None, line
    return server, line, url


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(20)
    assert server.stderr is not None
    server.stderr.close()


def _started_an_hour_ago(store: FeatureStore) -> None:
    an_hour_ago = store.now() - timedelta(hours=1)
    Rollouts(store, clock=lambda: an_hour_ago).start(model="ranker", candidate=2, actor="test")


def _kinds(store: FeatureStore) -> list[str]:
    return [event.kind for event in store.rollouts.history("ranker")]


def test_by_default_control_is_off_and_the_controller_loop_runs(tmp_path: Path) -> None:
    path, store = rollout_store(tmp_path)
    _started_an_hour_ago(store)  # a check is due
    server, line, url = _serve_models(path)
    try:
        assert "rollout control off: --enable-rollout-control turns it on" in line, line
        assert "controller loop on" in line
        reply = httpx.post(f"{url}/v1/rollouts/ranker/abort", json={}, timeout=10)
        assert reply.status_code == 403 and reply.json()["code"] == "rollout_control_disabled"
        wait_for(lambda: "check" in _kinds(store))  # the server's own loop checked the gates
        listed = httpx.get(f"{url}/v1/rollouts", timeout=10).json()["rollouts"]
        assert [r["id"] for r in listed] == ["ranker-1"]
    finally:
        _stop(server)
    assert store.rollouts.status("ranker").status == "active"  # the 403 changed nothing


def test_enable_rollout_control_and_no_controller(tmp_path: Path) -> None:
    path, store = rollout_store(tmp_path)
    _started_an_hour_ago(store)
    server, line, url = _serve_models(path, "--enable-rollout-control", "--no-rollout-controller")
    try:
        assert "rollout control on: anyone who reaches the port" in line, line
        assert "controller loop off (--no-rollout-controller)" in line
        paused = httpx.post(f"{url}/v1/rollouts/ranker/pause", json={"reason": "x"}, timeout=10)
        assert paused.status_code == 200, paused.text
        assert paused.json()["rollout"]["status"] == "paused"
    finally:
        _stop(server)
    assert _kinds(store) == ["started", "paused"]  # no controller: no check was recorded


@pytest.mark.parametrize("loop", [True, False])
def test_the_controller_thread_lives_as_long_as_the_app(tmp_path: Path, loop: bool) -> None:
    _, store = rollout_store(tmp_path)
    with running(create_model_app(store, rollout_controller=loop)):
        names = [t.name for t in threading.enumerate()]
        assert names.count("parity-rollout-controller") == (1 if loop else 0)
    assert "parity-rollout-controller" not in [t.name for t in threading.enumerate()]
