"""Store URLs a backend cannot take are config errors naming the setting, with the password
redacted, when the config is loaded or the store built (QA finding 6 after issue 12). Before,
`redis://u:pw@host/0?token=x` as online.connection_string was an 88-line TypeError traceback in
the CLI and a 500 from the feature server. Every URL points at a closed port on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from parity import FeatureStore
from parity.errors import ConfigError
from parity.repo.config import OnlineConfig, load_config
from parity.serving.app import create_app
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import free_port

SECRET = "pw-S3cret"
AT = f"u:{SECRET}@127.0.0.1"

BAD = [
    ("online.connection_string", f"redis://{AT}:1/0?token=x", "'token' is not a connection option"),
    ("online.connection_string", f"redis://{AT}:notaport/0", "port"),
    ("online.connection_string", f"redis://{AT}:99999/0", "port"),
    ("online.connection_string", f"redis://{AT}:0/0", "port"),
    ("online.connection_string", f"http://{AT}:1/0", "redis://"),
    ("online.connection_string", f"redis://{AT}:1/abc", "'abc' is not a number"),
    ("online.connection_string", f"redis://{AT}:1/0?socket_timeout=soon", "socket_timeout"),
    ("online.connection_string", f"redis://{AT}:1/0?decode_responses=yes", "decode_responses"),
    ("registry.url", f"postgresql://{AT}:1/db?token=x", "'token' is not a PostgreSQL connection"),
    ("registry.url", f"postgresql://{AT}:abc/db", "port"),
    ("registry.url", f"foo://{AT}:1/db", "takes a postgresql:// URL, not foo"),
    ("registry.url", f"mysql://{AT}:1/db", "takes a postgresql:// URL, not mysql"),
    ("models.artifacts", f"nosuch://{AT}:1/models", "'nosuch' is not a filesystem protocol"),
]
GOOD = [
    ("online.connection_string", f"redis://{AT}:1/0"),
    ("online.connection_string", f"rediss://{AT}:1/2?ssl_cert_reqs=none"),
    ("online.connection_string", "redis://127.0.0.1:1/0?socket_timeout=1&health_check_interval=2"),
    ("online.connection_string", "unix:///tmp/no-such.sock?db=1"),
    ("registry.url", f"postgresql://{AT}:1/db?connect_timeout=3&sslmode=disable"),
    ("registry.url", f"postgresql+psycopg://{AT}:1/db"),
    ("models.artifacts", "data/artifacts"),
    ("models.artifacts", "memory://bucket/models"),
    ("models.artifacts", "simplecache::s3://bucket/models"),
]


def settings(setting: str, url: str) -> str:
    """parity.yaml lines setting `setting` to `url` (with the backend type it belongs to)."""
    section, key = setting.split(".")
    kind = {"online": "  type: redis\n", "registry": "  type: postgres\n"}.get(section, "")
    return f"{section}:\n{kind}  {key}: '{url}'\n"


def repo_with(tmp_path: Path, setting: str, url: str) -> Path:
    return write_repo(tmp_path / "repo", DRIVER_REPO, extra=settings(setting, url))


@pytest.mark.parametrize(("setting", "url", "why"), BAD, ids=[u for _, u, _ in BAD])
def test_a_url_the_backend_cannot_take_is_a_config_error_naming_the_setting(
    tmp_path: Path, setting: str, url: str, why: str
) -> None:
    with pytest.raises(ConfigError) as failure:
        load_config(repo_with(tmp_path, setting, url))
    message = str(failure.value)
    assert failure.value.code == "invalid_config"
    assert f"field '{setting}'" in message and why in message, message
    assert SECRET not in message and "u:***@127.0.0.1" in message


@pytest.mark.parametrize(("setting", "url"), GOOD, ids=[u for _, u in GOOD])
def test_urls_the_backend_takes_still_load(tmp_path: Path, setting: str, url: str) -> None:
    config = load_config(repo_with(tmp_path, setting, url))
    section, key = setting.split(".")
    assert getattr(getattr(config, section), key) == url


def parity_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parity.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "PARITY_USER": "t"},
    )


def assert_one_config_error(done: subprocess.CompletedProcess[str], setting: str) -> None:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("Error [invalid_config]: "), done.stderr[-3000:]
    assert f"field '{setting}'" in lines[0]
    assert SECRET not in done.stdout + done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("setting", "url", "command"),
    [
        ("online.connection_string", f"redis://{AT}:1/0?token=x", "materialize"),
        ("registry.url", f"postgresql://{AT}:1/db?token=x", "apply"),
        ("models.artifacts", f"nosuch://{AT}:1/models", "models"),
    ],
    ids=["online", "registry", "artifacts"],
)
def test_the_cli_prints_one_redacted_line_and_exits_1(
    tmp_path: Path, setting: str, url: str, command: str
) -> None:
    repo = str(repo_with(tmp_path, setting, url))
    args = {
        "materialize": ("materialize", "2025-12-31", "2026-01-02", "--repo", repo),
        "apply": ("apply", "--repo", repo),
        "models": ("models", "list", "--repo", repo),
    }[command]
    assert_one_config_error(parity_cli(*args), setting)


def test_parity_serve_refuses_to_start_with_one_redacted_line(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "online.connection_string", f"redis://{AT}:1/0?token=x")
    started = time.monotonic()
    done = parity_cli("serve", "--repo", str(repo), "--port", str(free_port()), timeout=60)
    assert time.monotonic() - started < 60
    assert_one_config_error(done, "online.connection_string")


def test_stores_built_directly_refuse_the_url_naming_the_setting(tmp_path: Path) -> None:
    """A config that skipped validation (model_copy does not validate) or a store built in
    Python: the store refuses the URL when it is built, so the feature server never starts."""
    from parity.models.artifacts import artifact_store
    from parity.online.redis_store import RedisOnlineStore
    from parity.registry.sql import SqlRegistryStore

    cases = [
        (lambda: RedisOnlineStore(f"redis://{AT}:1/0?token=x"), "online.connection_string"),
        (lambda: SqlRegistryStore(f"postgresql://{AT}:1/db?token=x"), "registry.url"),
        (lambda: artifact_store(f"nosuch://{AT}:1/models"), "models.artifacts"),
    ]
    for build, setting in cases:
        with pytest.raises(ConfigError) as failure:
            build()
        assert setting in str(failure.value) and SECRET not in str(failure.value)
    store = FeatureStore(write_repo(tmp_path / "repo", DRIVER_REPO))
    online = OnlineConfig(type="redis", connection_string="redis://127.0.0.1:1/0")
    bad = online.model_copy(update={"connection_string": f"redis://{AT}:1/0?token=x"})
    store.config = store.config.model_copy(update={"online": bad})
    with pytest.raises(ConfigError) as failure:
        create_app(store)
    assert "online.connection_string" in str(failure.value)
    assert SECRET not in str(failure.value)
