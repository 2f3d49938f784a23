"""`parity rollout history MODEL --html PATH`: deploy/timeline.py's page of the rollout, written
next to the table (or the JSON, which stays pure JSON); a path that cannot be a file is one error
line naming --html."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parity.cli.main import app
from tests.inference.test_rollout_http import rollout_store

runner = CliRunner()


def cli(repo: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(
        app,
        ["rollout", *args, "--repo", str(repo)],
        env={"COLUMNS": "200", "PARITY_USER": "cli-test", "PARITY_REPO": None},
    )
    return result.exit_code, result.stdout, result.stderr


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path, _ = rollout_store(tmp_path)
    code, _, err = cli(path, "start", "--model", "ranker", "--candidate", "2")
    assert code == 0, err
    return path


def test_history_writes_the_timeline_page(repo: Path, tmp_path: Path) -> None:
    page = tmp_path / "timeline.html"
    code, out, err = cli(repo, "history", "ranker", "--html", str(page))
    assert code == 0, err
    assert f"wrote {page}" in out.replace("\n", "")
    parsed = Tags()
    parsed.feed(page.read_text(encoding="utf-8"))
    assert "script" not in parsed.tags and parsed.tags.count("svg") == 1
    text = " ".join(parsed.text)
    assert "Rollout ranker-1 of ranker" in text and "version 2" in text and "started" in text


def test_with_json_the_output_stays_json(repo: Path, tmp_path: Path) -> None:
    page = tmp_path / "t.html"
    code, out, err = cli(repo, "history", "ranker", "--json", "--html", str(page))
    assert code == 0, err
    assert json.loads(out)["rollout"]["id"] == "ranker-1"
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("where", ["folder", "missing/x.html"])
def test_a_path_that_cannot_be_a_file_is_one_error_line(
    repo: Path, tmp_path: Path, where: str
) -> None:
    target = tmp_path if where == "folder" else tmp_path / where
    code, _, err = cli(repo, "history", "ranker", "--html", str(target))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith("Error [invalid_option]: --html") and "Traceback" not in err
