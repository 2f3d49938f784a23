"""No credentials in any error, log line or response (issue 12, item 12): URLs with passwords for
the online store (a password-protected redis-server of the test's own, running and then stopped),
the registry (PostgreSQL) and the artifact store are redacted by one function."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from parity import FeatureStore
from parity.errors import (
    BackendNotInstalled,
    ConfigError,
    OnlineStoreUnavailable,
    ParityError,
    RegistryUnavailable,
)
from parity.redaction import RedactingFilter, redact
from parity.serving.app import create_app
from tests.conftest import DRIVER_REPO, _unreachable, write_repo
from tests.inference.serving_helpers import free_port, running

SECRET = "s3cr3t-Pw"
PORTS = range(6391, 6395)  # this test file's private redis-servers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("at rediss://default:p@ss@h:1 did", "at rediss://default:***@h:1 did"),
        (
            "cannot reach postgresql+psycopg://postgres:x%2Fy@db:5432/test: down",
            "cannot reach postgresql+psycopg://postgres:***@db:5432/test: down",
        ),
        ("'s3://KEY:SECRET@bucket/models'", "'s3://KEY:***@bucket/models'"),
        (
            "gs://b/p?token=abc&x=1 and https://h/p?Password=z",
            "gs://b/p?token=***&x=1 and https://h/p?Password=***",
        ),
        ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test"),
        ("no url here: a=b, time 12:30@home", "no url here: a=b, time 12:30@home"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_redact_hides_passwords_and_secret_parameters_only(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_every_parity_error_message_is_redacted() -> None:
    error = ParityError("the store at redis://:hunter2@h:1/0 did not answer")
    assert "hunter2" not in str(error) and "hunter2" not in error.message
    assert "hunter2" not in repr(error) and "hunter2" not in str(error.args)


def test_the_log_filter_redacts_messages_arguments_and_tracebacks() -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("tests.redaction.filter")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("connecting to %s", "redis://:hunter2@h:1/0")
        try:
            raise RuntimeError("failed: postgresql://u:hunter2@db/x")
        except RuntimeError:
            log.exception("bug")
    finally:
        log.removeHandler(handler)
    assert len(records) == 2 and "redis://:***@h:1/0" in records[0]
    assert "RuntimeError: failed: postgresql://u:***@db/x" in records[1]
    assert not any("hunter2" in r for r in records)


@pytest.fixture
def private_redis() -> Iterator[int]:
    """A redis-server of this test's own, with a password; stopped by the test (or at the end)."""
    if shutil.which("redis-server") is None:
        _unreachable("redis-server", FileNotFoundError("not installed"))  # CI=true: fails
    for port in PORTS:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                break
    else:
        pytest.fail(f"all of this test's Redis ports {list(PORTS)} are busy")
    server = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--requirepass", SECRET, "--save", ""),
            *("--appendonly", "no", "--bind", "127.0.0.1"),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert time.monotonic() < deadline and server.poll() is None, "redis-server did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.terminate()
        server.wait(10)


def _stop(port: int) -> None:
    import redis

    client = redis.Redis(port=port, password=SECRET)
    with contextlib.suppress(redis.exceptions.ConnectionError):  # shutting down closes it
        client.shutdown(nosave=True)
    client.close()
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return
        assert time.monotonic() < deadline, "redis-server did not stop"
        time.sleep(0.05)


def _redis_repo(tmp_path: Path, url: str) -> FeatureStore:
    extra = f"online:\n  type: redis\n  connection_string: {url}\n"
    store = FeatureStore(
        write_repo(tmp_path / "repo", DRIVER_REPO, extra=extra),
        clock=lambda: datetime(2026, 1, 1, 12, tzinfo=UTC),
    )
    store.apply()
    return store


def _post(address: str, body: dict[str, object]) -> tuple[int, str]:
    conn = http.client.HTTPConnection(address, timeout=10)
    try:
        conn.request("POST", "/get-online-features", body=json.dumps(body))
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()


LOOKUP = {"features": ["driver_stats:trips"], "entities": {"driver_id": [1]}}


def test_a_stopped_password_protected_redis_never_shows_its_password(
    tmp_path: Path, private_redis: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = _redis_repo(tmp_path, f"redis://:{SECRET}@127.0.0.1:{private_redis}/0")
    store.materialize(datetime(2025, 12, 31, tzinfo=UTC), datetime(2026, 1, 1, 12, tzinfo=UTC))
    with running(create_app(store)) as address:
        status, text = _post(address, LOOKUP)
        assert status == 200 and json.loads(text)["results"][1]["values"] == [3]
        _stop(private_redis)
        status, text = _post(address, LOOKUP)
    assert status == 503
    error = json.loads(text)["error"]
    assert error["code"] == "online_store_unavailable"
    assert f"redis://:***@127.0.0.1:{private_redis}/0" in error["message"]
    assert SECRET not in text
    assert SECRET not in repr(store.config) and SECRET not in repr(store.online_store)
    with pytest.raises(OnlineStoreUnavailable) as raised:
        store.get_online_features(["driver_stats:trips"], {"driver_id": [1]})
    assert SECRET not in str(raised.value) and "***" in str(raised.value)
    with pytest.raises(OnlineStoreUnavailable) as raised:
        store.materialize(datetime(2025, 12, 31, tzinfo=UTC), datetime(2026, 1, 1, 12, tzinfo=UTC))
    assert SECRET not in str(raised.value)
    logged = [r.getMessage() + str(r.exc_info or "") for r in caplog.records]
    assert not any(SECRET in line for line in logged)


def test_a_wrong_redis_password_is_not_echoed(tmp_path: Path, private_redis: int) -> None:
    wrong = "wr0ng-Secret"
    store = _redis_repo(tmp_path, f"redis://:{wrong}@127.0.0.1:{private_redis}/0")
    client = create_app(store)
    with running(client) as address:
        status, text = _post(address, LOOKUP)
    assert status == 503 and wrong not in text and SECRET not in text


def test_parity_serve_logs_and_answers_without_the_password(
    tmp_path: Path, private_redis: int
) -> None:
    store = _redis_repo(tmp_path, f"redis://:{SECRET}@127.0.0.1:{private_redis}/0")
    _stop(private_redis)
    port = free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "parity.cli.main", "serve", "--repo", str(store.repo_path)),
            *("--port", str(port), "--enable-push"),
        ],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, text = _post(f"127.0.0.1:{port}", LOOKUP)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.1)
        assert status == 503 and SECRET not in text
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=10)
    assert SECRET not in stderr.decode()


def test_registry_urls_with_passwords_are_redacted(tmp_path: Path, postgres_url: str) -> None:
    from sqlalchemy.engine import make_url

    from parity.models.sql import SqlModelStore
    from parity.registry.sql import SqlRegistryStore

    reachable = make_url(postgres_url).set(password=SECRET, database="no_such_db_i12")
    closed = reachable.set(port=1)
    for url in (reachable, closed):
        text = url.render_as_string(hide_password=False)
        assert SECRET in text
        for build in (SqlRegistryStore, SqlModelStore):
            with pytest.raises(RegistryUnavailable) as raised:
                build(text)
            assert SECRET not in str(raised.value), raised.value
    extra = "registry:\n  type: postgres\n  url: " + closed.render_as_string(hide_password=False)
    repo = write_repo(tmp_path / "pg", DRIVER_REPO, extra=extra)
    with pytest.raises(RegistryUnavailable) as raised:
        FeatureStore(repo).apply()
    assert SECRET not in str(raised.value) and "***" in str(raised.value)
    assert SECRET not in repr(FeatureStore(repo).config)


def test_a_config_error_does_not_echo_the_connection_string(tmp_path: Path) -> None:
    extra = f"online:\n  type: redis\n  connection_strin: redis://:{SECRET}@127.0.0.1:1/0\n"
    repo = write_repo(tmp_path / "repo", DRIVER_REPO, extra=extra)
    with pytest.raises(ConfigError) as raised:
        FeatureStore(repo).apply()
    assert SECRET not in str(raised.value)


def test_artifact_store_urls_with_credentials_are_redacted(tmp_path: Path) -> None:
    from parity.errors import ArtifactNotFound
    from parity.models.artifacts import artifact_store

    with pytest.raises(BackendNotInstalled) as raised:
        artifact_store(f"s3://AKIA:{SECRET}@bucket/models")
    assert SECRET not in str(raised.value) and "s3://AKIA:***@bucket" in str(raised.value)
    store = artifact_store(f"memory://user:{SECRET}@host/i12-{time.time_ns()}")
    assert SECRET not in repr(store)
    ref = store.put_bytes(b"model")
    assert SECRET not in ref.uri
    assert store.get_bytes(ref) == b"model"
    with pytest.raises(ArtifactNotFound) as missing:
        store.get_bytes("0" * 64)
    assert SECRET not in str(missing.value)


def test_the_servers_log_config_redacts_library_and_uvicorn_lines() -> None:
    """run_server hands uvicorn `redacted_log_config(LOGGING_CONFIG)`; applied in a fresh
    process, library, uvicorn and traceback lines come out redacted."""
    script = """
import logging, logging.config
from uvicorn.config import LOGGING_CONFIG
from parity.redaction import redacted_log_config
logging.config.dictConfig(redacted_log_config(LOGGING_CONFIG))
logging.getLogger("parity.serving.app").error("store at %s", "redis://:hunter2@h:1/0")
logging.getLogger("uvicorn.error").error("at redis://:hunter2@h:1/0")
try:
    raise RuntimeError("postgresql://u:hunter2@db/x")
except RuntimeError:
    logging.getLogger("parity.inference.http").exception("model server failed")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("redis://:***@h:1/0") == 2
    assert "RuntimeError: postgresql://u:***@db/x" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


def test_api_token_secrets_and_bearer_credentials_are_redacted_everywhere() -> None:
    """A Parity API token keeps its public id and loses its secret; any bearer credential (an
    API token or a JWT in a quoted header) is hidden; names that merely start with parity_
    are left alone."""
    secret = "Zm9vYmFyYmF6cXV4cXV1eC1hYmNkZWZnaGlqa2xtbm9w"
    jwt = "eyJhbGciOi.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    text = f"token parity_0123456789ab_{secret} refused; header 'Authorization: Bearer {jwt}'"
    assert redact(text) == (
        "token parity_0123456789ab_*** refused; header 'Authorization: Bearer ***'"
    )
    assert redact("malformed bearer token: send one") == "malformed bearer token: send one"
    underscored = "eyJhbGciOi.eyJzdWIi_OiJ4In0.c2lnbmF0-dXJl"  # base64url has _ and -
    assert redact(f"Bearer {underscored}") == "Bearer ***"
    assert redact(f"Bearer parity_0123456789ab_{secret}") == "Bearer parity_0123456789ab_***"
    assert redact("table parity_audit, project parity_demo") == (
        "table parity_audit, project parity_demo"
    )
    assert str(ParityError(f"bad parity_abcdef012345_{secret}")) == "bad parity_abcdef012345_***"
