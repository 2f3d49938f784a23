"""QA of `parity rollout start` counts: a number too large to store is refused with the range
that fits (it said "give a whole number of at least 0" of a whole number above 0)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from parity.cli.main import app
from tests.inference.test_rollout_http import rollout_store


@pytest.mark.parametrize(
    ("option", "value", "least"),
    [
        ("--step-min-samples", "99999999999999999999999", 0),
        ("--step-min-samples", "2147483648", 0),
        ("--shadow-min-samples", "3000000000", 0),
        ("--failure-limit", "99999999999999999999", 1),
        ("--failure-limit", "0", 1),
    ],
)
def test_counts_out_of_range_name_the_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str, value: str, least: int
) -> None:
    monkeypatch.chdir(tmp_path)
    path, store = rollout_store(tmp_path)
    result = CliRunner().invoke(
        app,
        ["rollout", "start", "--model", "ranker", "--candidate", "2", option, value,
         "--repo", str(path)],
        env={"COLUMNS": "200", "PARITY_REPO": None},
    )  # fmt: skip
    assert result.exit_code == 1, result.stdout
    line = result.stderr.strip()
    assert line == (
        f"Error [invalid_option]: {option} {value!r}: give a whole number from {least} to "
        "2,147,483,647"
    ), line
    assert store.rollouts.list() == []
