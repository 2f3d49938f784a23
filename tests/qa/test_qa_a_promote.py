"""QA of a promotion by hand when the champion alias moved during the rollout: the rollout is
aborted and the alias left alone (as the controller does), and the caller is told so: HTTP 409 and
a CLI error (exit 1), not 200 / "Promoted rollout ..." with exit 0."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx
import pytest
from typer.testing import CliRunner

from parity.cli.main import app
from parity.inference.app import create_model_app
from tests.inference.serving_helpers import running
from tests.inference.test_rollout_http import rollout_store


def test_promote_over_http_after_the_alias_moved_answers_409(tmp_path: Path) -> None:
    _, store = rollout_store(tmp_path)
    store.rollouts.start(model="ranker", candidate=2)
    store.models.set_alias("ranker", "champion", 3, reason="hotfix")
    with running(create_model_app(store, enable_rollout_control=True)) as address:
        reply = httpx.post(f"http://{address}/v1/rollouts/ranker/promote", json={}, timeout=30)
        status = httpx.get(f"http://{address}/v1/rollouts/ranker", timeout=30).json()
    assert reply.status_code == 409, reply.text
    body = reply.json()
    assert body["code"] == "rollout_state"
    assert "was not promoted" in body["error"] and "'champion' alias" in body["error"]
    assert status["rollout"]["status"] == "aborted"
    assert store.models.aliases("ranker")["champion"] == 3  # left where it was put


def test_promote_on_the_command_line_after_the_alias_moved_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path, store = rollout_store(tmp_path)
    store.rollouts.start(model="ranker", candidate=2)
    store.models.set_alias("ranker", "champion", 3, reason="hotfix")
    result = CliRunner().invoke(
        app,
        ["rollout", "promote", "ranker", "--reason", "looks good", "--repo", str(path)],
        env={"COLUMNS": "200", "PARITY_REPO": None},
    )
    assert result.exit_code == 1, result.stdout
    assert "Promoted" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error [rollout_state]: "), result.stderr
    assert "was not promoted" in lines[0]
    assert store.rollouts.status("ranker").status == "aborted"
    assert store.models.aliases("ranker")["champion"] == 3
