"""/push over real HTTP (issue 12, items 9 and 13): out-of-range numbers and over-limit chunked
bodies get a 4xx JSON body in each server's error shape on a connection that stays open, and push
is off unless the server is started with it on."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from parity import FeatureStore
from parity.inference.app import create_model_app
from parity.serving.app import create_app
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import free_port, running
from tests.ingest.test_push import REPO as PUSH_REPO

GOOD = {
    "account_id": [1],
    "event_timestamp": ["2026-06-01T00:00:00Z"],
    "clicks_1h": [3],
    "spend": [1.5],
}


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    feature_store = FeatureStore(
        write_repo(tmp_path / "push", PUSH_REPO), clock=lambda: datetime(2026, 6, 1, tzinfo=UTC)
    )
    feature_store.apply()
    return feature_store


@pytest.fixture
def server(store: FeatureStore) -> Iterator[str]:
    with running(create_app(store, max_body_bytes=10_000, enable_push=True)) as address:
        yield address


def _post(conn: http.client.HTTPConnection, path: str, raw: bytes) -> tuple[int, str, Any]:
    conn.request("POST", path, body=raw, headers={"content-type": "application/json"})
    reply = conn.getresponse()
    return reply.status, reply.getheader("content-type") or "", json.loads(reply.read())


@pytest.mark.parametrize(
    ("column", "literal"),
    [
        ("event_timestamp", "1e30"),  # a float far beyond any datetime
        ("event_timestamp", "1000000000000000000000000000000"),  # an integer beyond Int64
        ("event_timestamp", "9223372036854775808"),  # Int64's maximum plus one
        ("account_id", "100000000000000000000"),
        ("clicks_1h", "-9223372036854775809"),
        ("event_timestamp", '"-0001-01-01T00:00:00Z"'),  # before year 1: no datetime holds it
    ],
)
def test_out_of_range_numbers_get_a_4xx_naming_the_column_and_the_connection_stays(
    server: str, column: str, literal: str
) -> None:
    df = json.dumps({**GOOD, column: ["@"]}).replace('["@"]', f"[{literal}]")
    raw = f'{{"push_source_name": "clicks", "df": {df}}}'.encode()
    conn = http.client.HTTPConnection(server, timeout=10)
    try:
        status, media, body = _post(conn, "/push", raw)
        assert 400 <= status < 500
        assert media == "application/json"
        assert body["error"]["code"] in ("invalid_push", "invalid_entity_frame")
        assert f"'{column}'" in body["error"]["message"]
        # The same keep-alive connection answers the next request.
        status, _, body = _post(
            conn, "/push", json.dumps({"push_source_name": "clicks", "df": GOOD}).encode()
        )
        assert (status, body) == (200, {"pushed": 1})
    finally:
        conn.close()


def _chunked(address: str, path: str, size: int) -> tuple[int, str, Any]:
    """POST `size` bytes of a JSON body with Transfer-Encoding: chunked (no Content-Length)."""
    host, port = address.split(":")
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n"
    payload = b'{"push_source_name": "clicks", "df": {"account_id": [' + b"1," * (size // 2)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            for start in range(0, len(payload), 4096):
                piece = payload[start : start + 4096]
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except OSError:  # the server may answer and close before the whole body is sent
            pass
        reply = http.client.HTTPResponse(sock)
        reply.begin()
        return reply.status, reply.getheader("content-type") or "", json.loads(reply.read())


def test_a_chunked_push_body_over_the_limit_is_413_in_the_feature_servers_shape(
    server: str,
) -> None:
    status, media, body = _chunked(server, "/push", 50_000)
    assert (status, media) == (413, "application/json")
    assert body["error"]["code"] == "body_too_large"
    assert "10000 bytes" in body["error"]["message"]


def test_a_chunked_body_over_the_limit_is_413_in_the_model_servers_shape(
    tmp_path: Path,
) -> None:
    store = FeatureStore(write_repo(tmp_path / "repo", DRIVER_REPO))
    store.apply()
    app = create_model_app(store, max_body_bytes=10_000)
    with running(app) as address:
        for path in ("/v2/models/fraud/infer", "/v1/models/fraud/predict"):
            status, media, body = _chunked(address, path, 50_000)
            assert (status, media) == (413, "application/json"), path
            assert body["code"] == "body_too_large"
            assert "10000 bytes" in body["error"]


def test_push_is_off_unless_enabled(store: FeatureStore) -> None:
    with running(create_app(store)) as address:
        conn = http.client.HTTPConnection(address, timeout=10)
        raw = json.dumps({"push_source_name": "clicks", "df": GOOD}).encode()
        status, media, body = _post(conn, "/push", raw)
        conn.close()
    assert (status, media) == (403, "application/json")
    assert body["error"]["code"] == "push_disabled"
    assert "--enable-push" in body["error"]["message"]
    online = store.get_online_features(["click_stats:clicks_1h"], {"account_id": [1]})
    assert online.values["clicks_1h"] == [None]  # nothing was written
    assert not (store.repo_path / "data" / "clicks").exists()


def test_the_python_api_names_the_out_of_range_cell(store: FeatureStore) -> None:
    from parity.errors import PushError

    with pytest.raises(
        PushError, match=r"column 'clicks_1h' row 1: the integer 18446744073709551616"
    ):
        store.push(
            "clicks",
            {
                **GOOD,
                "account_id": [1, 2],
                "clicks_1h": [1, 2**64],
                "event_timestamp": GOOD["event_timestamp"] * 2,
                "spend": [1.0, 2.0],
            },
        )
    with pytest.raises(PushError, match=r"column 'account_id' row 0: the integer of 16610 bits"):
        store.push("clicks", [{**{k: v[0] for k, v in GOOD.items()}, "account_id": 10**5000}])


def _serve(repo: Path, *flags: str) -> tuple[subprocess.Popen[bytes], str, str]:
    """`parity serve` in a subprocess; its start-up line and its address once it answers."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "parity.cli.main",
            "serve",
            "--repo",
            str(repo),
            "--port",
            str(port),
            *flags,
        ],
        stderr=subprocess.PIPE,
    )
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
    ("flags", "status", "said"), [((), 403, "/push off"), (("--enable-push",), 200, "/push on")]
)
def test_parity_serve_says_whether_push_is_on_and_obeys_it(
    store: FeatureStore, flags: tuple[str, ...], status: int, said: str
) -> None:
    server, line, address = _serve(store.repo_path, *flags)
    try:
        assert said in line
        conn = http.client.HTTPConnection(address, timeout=10)
        answer, _, _ = _post(
            conn, "/push", json.dumps({"push_source_name": "clicks", "df": GOOD}).encode()
        )
        conn.close()
        assert answer == status
    finally:
        server.terminate()
        server.wait(10)
        assert server.stderr is not None
        server.stderr.close()


def test_a_bug_answers_a_logged_json_500_and_the_connection_stays(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault injection: the store's methods raise an unexpected error (a stand-in for a bug)."""

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug")

    async def broken_async(*_: object, **__: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(store, "push", broken)
    monkeypatch.setattr(store, "get_online_features_async", broken_async)
    monkeypatch.setattr(store, "get_online_features", broken)  # lookups run on read threads
    lookup = {"features": ["click_stats:clicks_1h"], "entities": {"account_id": [1]}}
    with running(create_app(store, enable_push=True)) as address:
        conn = http.client.HTTPConnection(address, timeout=10)
        for path, body in [
            ("/push", {"push_source_name": "clicks", "df": GOOD}),
            ("/get-online-features", lookup),
        ]:
            status, media, answer = _post(conn, path, json.dumps(body).encode())
            assert (status, media) == (500, "application/json"), path
            assert answer == {
                "error": {"code": "internal", "message": "internal error (RuntimeError)"}
            }
        conn.request("GET", "/health")  # the same connection still answers
        assert conn.getresponse().status == 200
        conn.close()
    assert sum("feature server failed" in r.getMessage() for r in caplog.records) == 2
