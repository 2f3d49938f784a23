"""The feature server's served log survives a SIGKILL: what it answered before the kill is
recovered at the next start and replays through the consistency check, online equal to offline."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from parity import FeatureStore
from tests.conftest import DRIVER_REPO, write_repo

SERVED = 30  # requests answered before the kill


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(repo: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "parity.cli.main", "serve", "--repo", str(repo)]
    server = subprocess.Popen([*command, "--port", str(port)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return server
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)  # waiting for a real process to listen, not for time to pass


def _lookup(port: int, driver: int) -> None:
    body = {"feature_service": "driver_service", "entities": {"driver_id": [driver]}}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/get-online-features",
        json.dumps(body).encode(),
        {"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 200


def test_served_rows_before_a_sigkill_are_recovered_and_replay_equal(tmp_path: Path) -> None:
    extra = "feature_server:\n  log_sample_percent: 100\n"
    repo = write_repo(tmp_path / "repo", DRIVER_REPO, extra=extra)
    with FeatureStore(repo) as store:
        store.apply()
        store.materialize("2025-12-01", "now")
        started = store.now()
    port = _free_port()
    server = _serve(repo, port)
    try:
        for i in range(SERVED):
            _lookup(port, 1 + i % 3)
        time.sleep(1.0)  # the log's writer fsyncs every 0.2 s: let it write what it queued
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
        segments = list((repo / "data" / "served_log").rglob(".*.inprogress"))
        assert segments, "the killed server left its open segment"
        # The next start recovers the segment into Parquet; a clean stop closes its own.
        server = _serve(repo, port)
    finally:
        server.terminate()
        server.wait(10)
    with FeatureStore(repo) as store:
        report = store.monitoring.consistency(
            "driver_service", since=started - timedelta(minutes=1)
        )
    assert report.rows == SERVED  # nothing answered before the kill was lost
    (trips,) = report.features
    assert (trips.counts.total, trips.counts.mismatch) == (SERVED, 0)
