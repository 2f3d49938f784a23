"""The prediction log survives SIGKILL: a real `parity serve-models` is killed mid-traffic,
restarted (which recovers the unfinished segment), and the log then holds every prediction
answered more than one second before the kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pyarrow.dataset as ds
import pytest

from parity import ConfigError, FeatureStore
from parity.repo.config import load_config
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import Affine, free_port

PARITY = str(Path(sys.executable).parent / "parity")
ROOT = Path(__file__).resolve().parents[2]  # the server imports the test model from tests/
TRAFFIC_SECONDS = 2.5


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)  # outside any git checkout
    extra = "models:\n  trusted: true\n  serving:\n    prediction_log: data/predlog\n"
    path = write_repo(tmp_path / "repo", DRIVER_REPO, extra=extra)
    store = FeatureStore(path)
    store.models.register_model(
        "affine", Affine([1.0, 2.0], 0.5), flavor="pyfunc", sample_input=np.ones((2, 2))
    )
    store.close()
    yield path


def start_server(repo: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [PARITY, "serve-models", "--repo", str(repo), "--port", str(port), "-m", "affine"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PARITY_REPO": ""}
    with log.open("ab") as errors:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.kill()
    raise RuntimeError(f"the server did not get ready: {log.read_text()}")


def send_traffic(port: int, seconds: float) -> dict[str, float]:
    """One client, request after request; the monotonic time each answer arrived, by id."""
    answered: dict[str, float] = {}
    url = f"http://127.0.0.1:{port}/v2/models/affine/infer"
    with httpx.Client() as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            request_id = f"req-{len(answered):06d}"
            body = {
                "id": request_id,
                "inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 2], "data": [1, 2]}],
            }
            response = client.post(url, json=body)
            assert response.status_code == 200, response.text
            answered[request_id] = time.monotonic()
    return answered


def logged_ids(folder: Path) -> list[str]:
    table = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
    return [str(value) for value in table.column("request_id").to_pylist()]


def test_sigkill_loses_at_most_the_last_second_of_predictions(repo: Path, tmp_path: Path) -> None:
    port, server_log = free_port(), tmp_path / "server.log"
    server = start_server(repo, port, server_log)
    try:
        answered = send_traffic(port, TRAFFIC_SECONDS)
        killed_at = time.monotonic()
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
    finally:
        if server.poll() is None:
            server.kill()
    folder = repo / "data" / "predlog"
    assert list(folder.rglob("*.inprogress"))  # the killed server left its open segment

    restarted = start_server(repo, free_port(), server_log)  # recovers at start-up
    restarted.send_signal(signal.SIGTERM)  # a graceful stop (uvicorn re-raises the signal)
    assert restarted.wait(30) in (0, -signal.SIGTERM), server_log.read_text()

    logged = logged_ids(folder)
    assert len(logged) == len(set(logged))  # nothing twice
    assert set(logged) <= set(answered)
    lost = set(answered) - set(logged)
    last_second = {rid for rid, at in answered.items() if at > killed_at - 1.0}
    assert lost <= last_second, (len(answered), len(logged), sorted(lost - last_second)[:5])
    assert len(answered) > 100  # the traffic was real
    assert list(folder.rglob("*.inprogress")) == []
    assert "recovered" in server_log.read_text()


@pytest.mark.parametrize("seconds", ["0", "1.5", ".nan"])
def test_a_flush_interval_outside_0_to_1_second_is_a_config_error(
    tmp_path: Path, seconds: str
) -> None:
    (tmp_path / "parity.yaml").write_text(
        f"project: p\nmodels:\n  serving:\n    prediction_log_flush_seconds: {seconds}\n"
    )
    with pytest.raises(ConfigError, match="prediction_log_flush_seconds"):
        load_config(tmp_path)
    (tmp_path / "parity.yaml").write_text("project: p\n")
    assert load_config(tmp_path).models.serving.prediction_log_flush_seconds == 0.2
