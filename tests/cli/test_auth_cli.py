"""`parity auth token ...` and `parity audit` through typer's runner on a SQLite repo: the token is
printed once, alone on stdout, and authenticates; lists never show it; every bad option is one
error line naming it (exit 1, as the other commands); the audit trail reads back as JSON."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from parity.errors import Unauthenticated
from tests.conftest import DRIVER_REPO, write_repo

runner = CliRunner()
TEXT = re.compile(r"parity_[0-9a-f]{12}_[A-Za-z0-9_\-]{43}")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@dataclass
class Repo:
    path: Path

    def cli(self, *args: str) -> Result:
        result = runner.invoke(
            app, [*args, "--repo", str(self.path)], env={"COLUMNS": "250", "PARITY_REPO": None}
        )
        return Result(result.exit_code, result.stdout, result.stderr)

    def store(self) -> FeatureStore:
        return FeatureStore(self.path)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(write_repo(tmp_path / "repo", DRIVER_REPO))


def one_error(result: Result, code: str, *named: str) -> str:
    assert result.code == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error [{code}]: "), result.stderr
    assert "Traceback" not in result.stderr
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


def now() -> datetime:
    return datetime.now(UTC)


def test_create_prints_the_token_once_alone_on_stdout_and_it_authenticates(repo: Repo) -> None:
    result = repo.cli(
        "auth", "token", "create", "--name", "ci-bot", "--scopes", "features:read models:predict",
        "--expires", "30d", "--rate", "100", "--burst", "200", "--max-in-flight", "8",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert TEXT.fullmatch(result.stdout.strip())
    assert result.stdout.count("\n") == 1
    assert "only time the token is shown" in result.stderr
    assert "Created token 'ci-bot'" in result.stderr
    principal = repo.store().access.tokens.authenticate(result.stdout.strip(), now())
    assert (principal.name, principal.rate_per_second, principal.burst) == ("ci-bot", 100, 200)
    assert principal.max_in_flight == 8 and principal.allows("models:predict", "any")
    assert principal.expires_at is not None
    assert 29.9 * 86400 < principal.expires_at - now().timestamp() <= 30 * 86400


def test_create_json_and_list_never_show_the_token(repo: Repo) -> None:
    created = repo.cli(
        "auth", "token", "create", "--name", "reader", "--scopes", "models:read", "--json"
    )
    body = json.loads(created.stdout)
    text = body["text"]
    assert TEXT.fullmatch(text) and text.split("_")[1] == body["token"]["id"]
    assert body["token"]["scopes"] == "models:read" and body["token"]["expires_at"] is None
    secret = text.split("_", 2)[2]
    listed = repo.cli("auth", "token", "list", "--json")
    (token,) = json.loads(listed.stdout)["tokens"]
    assert token == body["token"]
    table = repo.cli("auth", "token", "list")
    assert body["token"]["id"] in table.stdout and "reader" in table.stdout
    assert "never" in table.stdout  # expires and last used
    for output in (listed.stdout, table.stdout, repo.cli("audit", "--jsonl").stdout):
        assert secret not in output


def test_revoke_by_name_refuses_the_token_and_list_all_shows_it(repo: Repo) -> None:
    text = repo.cli("auth", "token", "create", "--name", "ci-bot", "--scopes", "admin").stdout
    revoked = repo.cli("auth", "token", "revoke", "ci-bot")
    assert revoked.code == 0 and "Revoked token 'ci-bot'" in revoked.stdout
    assert "within 5 s (auth.cache_seconds)" in revoked.stdout
    with pytest.raises(Unauthenticated, match="revoked"):
        repo.store().access.tokens.authenticate(text.strip(), now())
    assert json.loads(repo.cli("auth", "token", "list", "--json").stdout) == {"tokens": []}
    (everything,) = json.loads(repo.cli("auth", "token", "list", "--all", "--json").stdout)[
        "tokens"
    ]
    assert everything["name"] == "ci-bot" and everything["revoked_at"] is not None
    one_error(repo.cli("auth", "token", "revoke", "ci-bot"), "invalid_token_request", "'ci-bot'")


@pytest.mark.parametrize(
    ("options", "code", "named"),
    [
        (["--scopes", "models:fly"], "invalid_token_request", "--scopes: 'models:fly'"),
        (
            ["--scopes", "registry:apply:x"],
            "invalid_token_request",
            "--scopes: registry:apply cannot",
        ),
        (["--scopes", "admin", "--expires", "0d"], "invalid_token_request", "--expires '0d'"),
        (["--scopes", "admin", "--expires", "11y"], "invalid_token_request", "--expires '11y'"),
        (["--scopes", "admin", "--rate", "fast"], "invalid_option", "--rate 'fast'"),
        (["--scopes", "admin", "--rate", "-1"], "invalid_option", "--rate '-1'"),
        (["--scopes", "admin", "--burst", "0"], "invalid_option", "--burst '0'"),
        (["--scopes", "admin", "--max-in-flight", "x"], "invalid_option", "--max-in-flight 'x'"),
    ],
)
def test_a_bad_option_is_one_error_naming_it(
    repo: Repo, options: list[str], code: str, named: str
) -> None:
    one_error(repo.cli("auth", "token", "create", "--name", "ci-bot", *options), code, named)
    assert json.loads(repo.cli("auth", "token", "list", "--all", "--json").stdout) == {"tokens": []}


def test_a_name_in_use_is_refused_naming_it(repo: Repo) -> None:
    repo.cli("auth", "token", "create", "--name", "ci-bot", "--scopes", "admin")
    again = repo.cli("auth", "token", "create", "--name", "ci-bot", "--scopes", "admin")
    one_error(again, "invalid_token_request", "--name 'ci-bot': a token of that name exists")


def test_audit_reads_back_the_token_writes(repo: Repo) -> None:
    created = json.loads(
        repo.cli("auth", "token", "create", "--name", "a", "--scopes", "admin", "--json").stdout
    )
    repo.cli("auth", "token", "create", "--name", "b", "--scopes", "models:read")
    repo.cli("auth", "token", "revoke", "a")
    lines = [json.loads(line) for line in repo.cli("audit", "--jsonl").stdout.splitlines()]
    assert [(r["action"], r["target"]) for r in lines] == [
        ("auth.token.revoke", "a"),
        ("auth.token.create", "b"),
        ("auth.token.create", "a"),
    ]
    assert lines[0]["detail"] == {"id": created["token"]["id"]}
    assert lines[0]["actor_kind"] == "user" and lines[0]["seq"] > lines[1]["seq"]
    only_a = json.loads(repo.cli("audit", "--json", "--target", "a").stdout)["records"]
    assert [r["action"] for r in only_a] == ["auth.token.revoke", "auth.token.create"]
    creates = json.loads(repo.cli("audit", "--json", "--action", "auth.token.create").stdout)
    assert [r["target"] for r in creates["records"]] == ["b", "a"]
    newest = json.loads(repo.cli("audit", "--json", "--limit", "1", "--since", "1h").stdout)
    assert [r["target"] for r in newest["records"]] == ["a"]
    assert json.loads(repo.cli("audit", "--json", "--until", "1h").stdout) == {"records": []}
    assert json.loads(repo.cli("audit", "--json", "--actor", "nobody").stdout) == {"records": []}
    table = repo.cli("audit")
    assert "auth.token.revoke" in table.stdout and created["token"]["id"] in table.stdout


@pytest.mark.parametrize(
    ("options", "code", "named"),
    [
        (["--limit", "0"], "invalid_option", "--limit '0'"),
        (["--since", "yesterday"], "invalid_time", "--since: 'yesterday'"),
        (["--json", "--jsonl"], "invalid_option", "--json and --jsonl"),
        (["--since", "now", "--until", "1h"], "invalid_time", "since"),
    ],
)
def test_a_bad_audit_option_is_one_error_naming_it(
    repo: Repo, options: list[str], code: str, named: str
) -> None:
    one_error(repo.cli("audit", *options), code, named)
