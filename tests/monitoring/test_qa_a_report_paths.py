"""QA: an HTML page path that cannot be written (`--html` of `parity monitor drift`, `--out` of
`parity monitor report`) is one `Error [invalid_option]` line, before the run is recorded, not
an OSError traceback after it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from tests.monitoring.test_drift_runs import HOUR, T0, repo, store
from tests.monitoring.test_report_drift_e2e import shifted_log

__all__ = ["repo", "store"]  # the fixtures


@pytest.mark.parametrize("command", ["drift --html", "report --out"])
@pytest.mark.parametrize("where", ["folder", "missing"])
def test_a_page_path_that_cannot_be_a_file_is_refused_first(
    store: FeatureStore, tmp_path: Path, command: str, where: str
) -> None:
    shifted_log(store)
    path = tmp_path if where == "folder" else tmp_path / "nope" / "d.html"
    name, option = command.split()
    args = ["monitor", name, "--repo", str(store.repo_path), "--model", "scorer@champion"]
    args += ["--since", T0.isoformat(), "--until", (T0 + 4 * HOUR).isoformat(), option, str(path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert f"Error [invalid_option]: {option}" in result.output
    assert "Traceback" not in result.output
    assert store.monitoring.drift_history("scorer") == []  # nothing recorded
