"""The CLI through typer's runner: exit codes, one-line errors, and what it prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from parity.cli.main import app
from parity.repo.loader import load_repo
from tests.conftest import write_repo

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200", "PARITY_USER": "cli-test"})
    return result.exit_code, result.output


def test_init_plan_apply_list_describe_history_teardown(tmp_path: Path) -> None:
    repo = tmp_path / "fraud"
    code, output = run("init", str(repo), "--accounts", "50", "--days", "10")
    assert code == 0, output
    assert "data/transactions.parquet" in output
    assert (repo / "parity.yaml").read_text().startswith("# Parity feature repo")
    assert "project: fraud" in (repo / "parity.yaml").read_text()

    code, output = run("plan", "--repo", str(repo))
    assert code == 0, output
    declared = len(load_repo(repo, "fraud").catalog)  # every object the template declares
    assert declared >= 13  # 2 entities, 4 views, 2 services, 1 ODFV, monitor, rollout, job, policy
    assert f"Plan: {declared} to add." in output

    code, output = run("apply", "--repo", str(repo), "-m", "first")
    assert (code, "Applied: registry version 1." in output) == (0, True), output
    code, output = run("apply", "--repo", str(repo))
    assert "No changes" in output and "Applied" not in output

    code, output = run("registry", "list", "--repo", str(repo))
    assert code == 0
    for name in ("account_txn_stats", "device_profile", "fraud_model_v1", "account_id"):
        assert name in output
    assert "On-demand feature views" in output and "amount_vs_history" in output

    code, output = run(
        "registry", "describe", "account_profile", "--repo", str(repo), "--version", "1"
    )
    assert code == 0 and '"credit_limit"' in output

    code, output = run("registry", "history", "--repo", str(repo))
    assert code == 0 and "cli-test" in output and "first" in output

    code, output = run("teardown", "--repo", str(repo), "--yes")
    assert code == 0 and "registry version 1" in output


def test_user_error_is_one_line_with_its_code_and_exit_1(tmp_path: Path) -> None:
    code, output = run("plan", "--repo", str(tmp_path))
    assert code == 1
    assert output.strip().startswith("Error [invalid_config]:")
    assert "Traceback" not in output
    assert "parity init" in output


def test_debug_shows_the_exception(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--debug", "plan", "--repo", str(tmp_path)])
    assert result.exit_code != 0
    assert type(result.exception).__name__ == "ConfigError"


def test_breaking_apply_is_refused_with_advice(tmp_path: Path) -> None:
    from tests.conftest import DRIVER_REPO

    repo = write_repo(tmp_path / "r", DRIVER_REPO)
    assert run("apply", "--repo", str(repo))[0] == 0
    views = repo / "views.py"
    views.write_text(views.read_text().replace("days=1", "days=3"))
    code, output = run("apply", "--repo", str(repo))
    assert code == 1 and "Error [breaking_change]" in output and "--allow-breaking" in output
    code, output = run("apply", "--repo", str(repo), "--allow-breaking")
    assert code == 0 and "registry version 2" in output


def test_describe_unknown_name_and_version(tmp_path: Path) -> None:
    from tests.conftest import DRIVER_REPO

    repo = write_repo(tmp_path / "r", DRIVER_REPO)
    run("apply", "--repo", str(repo))
    assert run("registry", "describe", "nope", "--repo", str(repo))[0] == 1
    code, output = run("registry", "list", "--repo", str(repo), "--version", "9")
    assert code == 1 and "registry_version_not_found" in output


def test_init_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("")
    code, output = run("init", str(tmp_path / "x"), "--no-data")
    assert code == 1 and "not empty" in output


@pytest.mark.parametrize("command", [[], ["registry"], ["apply", "--help"], ["init", "--help"]])
def test_help_everywhere(command: list[str]) -> None:
    _, output = run(*command) if command else run("--help")
    assert "Usage" in output


def test_version_prints_the_package_version() -> None:
    from parity import __version__

    assert run("version") == (0, f"parity {__version__}\n")


def test_dataset_create_list_describe(tmp_path: Path) -> None:
    import pandas as pd

    from tests.conftest import DRIVER_REPO

    repo = write_repo(tmp_path / "r", DRIVER_REPO)
    assert run("apply", "--repo", str(repo))[0] == 0
    entities = tmp_path / "e.parquet"
    pd.DataFrame(
        {"driver_id": [1, 2], "event_timestamp": pd.to_datetime(["2026-01-01 03:00"] * 2, utc=True)}
    ).to_parquet(entities)
    out = tmp_path / "train.parquet"
    code, output = run(
        "dataset",
        "create",
        "--repo",
        str(repo),
        "--entities",
        str(entities),
        "--features",
        "driver_stats:trips,driver_stats:city",
        "--out",
        str(out),
        "--name",
        "t1",
    )
    assert code == 0, output
    assert "2 rows x 4 columns" in output
    assert "driver_stats:trips, driver_stats:city" in output
    assert pd.read_parquet(out)["trips"].tolist() == [3, 3]
    code, output = run("dataset", "list", "--repo", str(repo))
    assert code == 0 and "t1" in output
    code, output = run("dataset", "describe", "t1", "--repo", str(repo))
    assert code == 0 and "registry version  1" in output
    code, output = run("dataset", "describe", "nope", "--repo", str(repo))
    assert code == 1 and "dataset_not_found" in output


def test_materialize_and_incremental(tmp_path: Path) -> None:
    from tests.conftest import DRIVER_REPO

    repo = write_repo(tmp_path / "r", DRIVER_REPO)
    assert run("apply", "--repo", str(repo))[0] == 0
    code, output = run(
        "materialize", "2025-12-31", "2026-01-01T01:30:00+00:00", "--repo", str(repo)
    )
    assert code == 0, output
    # drivers 1 and 2 (hours 0 and 1); entities and tiles in their own columns
    assert "driver_stats" in output and "│        2 │     - │" in output
    assert "entities" in output and "tiles" in output
    code, output = run("materialize-incremental", "2026-01-02", "--repo", str(repo))
    assert code == 0 and "2026-01-01 01:30:00" in output  # starts where the last run ended
    code, output = run("materialize", "yesterday", "2026-01-01", "--repo", str(repo))
    assert code == 1 and "[invalid_time]: start: 'yesterday' is not a time" in output
    assert "ISO 8601" in output and "Traceback" not in output
