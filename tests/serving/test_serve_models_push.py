"""`parity serve-models --with-features` answers /push only with `--enable-push`, and says which in
its start-up line, as `parity serve` does (issue 12, item 13, for the combined server). Each test
runs the real command in a subprocess and talks to it over HTTP."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from parity import FeatureStore
from tests.conftest import write_repo
from tests.inference.serving_helpers import free_port
from tests.ingest.test_push import REPO as PUSH_REPO
from tests.serving.test_push_http import GOOD, _post


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    feature_store = FeatureStore(
        write_repo(tmp_path / "push", PUSH_REPO), clock=lambda: datetime(2026, 6, 1, tzinfo=UTC)
    )
    feature_store.apply()
    return feature_store


def _command(repo: Path, port: int, *flags: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "parity.cli.main",
        "serve-models",
        "--repo",
        str(repo),
        "--port",
        str(port),
        *flags,
    ]


def _serve_models(repo: Path, *flags: str) -> tuple[subprocess.Popen[bytes], str, str]:
    """`parity serve-models` in a subprocess; its start-up line and its address once it answers."""
    port = free_port()
    server = subprocess.Popen(_command(repo, port, *flags), stderr=subprocess.PIPE)
    assert server.stderr is not None
    line = server.stderr.readline().decode()
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.1)
    return server, line, f"127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("flags", "status", "said"),
    [
        ((), 403, "/push off: --enable-push turns it on"),
        (("--enable-push",), 200, "/push on: anyone who reaches the port can write features"),
    ],
)
def test_serve_models_with_features_says_whether_push_is_on_and_obeys_it(
    store: FeatureStore, flags: tuple[str, ...], status: int, said: str
) -> None:
    server, line, address = _serve_models(store.repo_path, "--with-features", *flags)
    try:
        assert said in line, line
        conn = http.client.HTTPConnection(address, timeout=10)
        # the server's clock is the real one: an event a minute ago is current online
        recent = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        row = {**GOOD, "event_timestamp": [recent]}
        raw = json.dumps({"push_source_name": "clicks", "df": row}).encode()
        answer, media, body = _post(conn, "/push", raw)
        lookup = {"features": ["click_stats:clicks_1h"], "entities": {"account_id": [1]}}
        read, _, online = _post(conn, "/get-online-features", json.dumps(lookup).encode())
        conn.close()
    finally:
        server.terminate()
        server.wait(10)
        assert server.stderr is not None
        server.stderr.close()
    assert (answer, media) == (status, "application/json"), body
    assert read == 200
    clicks = online["results"][1]["values"]
    if status == 200:
        assert body == {"pushed": 1}
        assert clicks == [3]  # the pushed row, read back through the same server
    else:
        assert body["error"]["code"] == "push_disabled"
        assert clicks == [None]  # nothing was written


def test_enable_push_without_with_features_is_refused_in_one_line(store: FeatureStore) -> None:
    done = subprocess.run(
        _command(store.repo_path, free_port(), "--enable-push"),
        capture_output=True,
        timeout=60,
        check=False,
    )
    text = done.stderr.decode()
    assert done.returncode == 1, text
    assert "--enable-push needs --with-features" in text
    assert "Traceback" not in text and "Serving" not in text
    assert len(text.strip().splitlines()) == 1, text
