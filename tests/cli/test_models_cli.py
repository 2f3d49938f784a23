"""`parity models ...` through typer's runner, on a SQLite repo with models registered in-process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from parity.models.artifacts import artifact_store
from parity.models.registry import ModelRegistry
from parity.models.sql import SqlModelStore
from parity.registry.sql import SqlRegistryStore
from parity.registry.sqlite_read import SqliteRegistryStore
from tests.conftest import DRIVER_REPO, write_repo

runner = CliRunner()

X_TRAIN = np.array([[0.0, 1.0], [1.0, 0.0], [3.0, 2.0], [4.0, 0.5], [0.5, 0.5], [3.5, 1.0]])
Y_TRAIN = np.array([0, 0, 1, 1, 0, 1])
TRAINER = "trainer"  # the author of in-process registrations (LOGNAME while registering)
CLI_USER = "cli-test"  # the author of moves made through the CLI (LOGNAME while it runs)

# Hand-written: a 2-column float64 array in, one int64 class label per row out.
SKLEARN_SIGNATURE = {
    "input_kind": "ndarray",
    "inputs": [{"name": "input", "dtype": "float64", "shape": [-1, 2]}],
    "outputs": [{"name": "output", "dtype": "int64", "shape": [-1]}],
}
# Doubler: the same input, one float64 row sum (times two) per row out.
PYFUNC_SIGNATURE = {
    "input_kind": "ndarray",
    "inputs": [{"name": "input", "dtype": "float64", "shape": [-1, 2]}],
    "outputs": [{"name": "output", "dtype": "float64", "shape": [-1]}],
}


class Doubler:
    """A user model for the pyfunc flavor: twice the row sums."""

    def predict(self, inputs: Any) -> Any:
        return np.asarray(inputs).sum(axis=1) * 2


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def run(*args: str) -> Result:
    result = runner.invoke(
        app, ["models", *args], env={"COLUMNS": "200", "LOGNAME": CLI_USER, "PARITY_REPO": None}
    )
    return Result(result.exit_code, result.stdout, result.stderr)


def table_rows(output: str) -> list[list[str]]:
    """The body rows of a Rich table, each as its stripped cells (header and rules skipped)."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.strip().startswith("│")
    ]


def assert_user_error(result: Result, code: str) -> None:
    assert result.code == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith(f"Error [{code}]: "), result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@dataclass
class Repo:
    path: Path
    store: FeatureStore

    def cli(self, *args: str) -> Result:
        return run(*args, "--repo", str(self.path))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Repo]:
    """A repo with `fraud` (sklearn, versions 1 and 2) registered, no aliases set yet."""
    monkeypatch.chdir(tmp_path)  # outside any git checkout: registration runs no git in ours
    monkeypatch.setenv("LOGNAME", TRAINER)
    path = write_repo(tmp_path / "repo", DRIVER_REPO, extra="models:\n  trusted: true\n")
    store = FeatureStore(path)
    store.apply()
    for auc, extra in ((0.9, {}), (0.95, {"loss": 0.123456})):
        model = fit_logistic()
        store.models.register_model(
            "fraud",
            model,
            flavor="sklearn",
            feature_service="driver_service",
            metrics={"auc": auc, **extra},
            sample_input=X_TRAIN,
        )
    yield Repo(path, store)
    store.close()


def fit_logistic() -> Any:
    linear_model = pytest.importorskip("sklearn.linear_model")
    return linear_model.LogisticRegression().fit(X_TRAIN, Y_TRAIN)


def test_list_shows_each_model_with_version_count_latest_aliases_and_feature_service(
    repo: Repo,
) -> None:
    repo.store.models.register_model("doubler", Doubler(), flavor="pyfunc", sample_input=X_TRAIN)
    repo.store.models.set_alias("fraud", "champion", 2)
    repo.store.models.set_alias("fraud", "challenger", 1)

    result = repo.cli("list")

    assert result.code == 0, result.stderr
    assert table_rows(result.stdout) == [
        ["doubler", "1", "1", "-", "-"],
        ["fraud", "2", "2", "challenger=1, champion=2", "driver_service"],
    ]


def test_list_of_a_repo_without_models_is_an_empty_table(repo: Repo, tmp_path: Path) -> None:
    empty = write_repo(tmp_path / "empty", DRIVER_REPO, extra="models:\n  trusted: true\n")
    with FeatureStore(empty) as store:
        store.apply()

    result = run("list", "--repo", str(empty))

    assert result.code == 0, result.stderr
    assert "model" in result.stdout and table_rows(result.stdout) == []


def test_versions_shows_each_versions_metrics_and_the_aliases_pointing_at_it(
    repo: Repo,
) -> None:
    repo.store.models.set_alias("fraud", "champion", 2)
    repo.store.models.set_alias("fraud", "candidate", 2)

    result = repo.cli("versions", "fraud")

    assert result.code == 0, result.stderr
    rows = table_rows(result.stdout)
    # version, author, flavor, metrics (4 significant digits), dataset, aliases (sorted)
    assert [[r[0], *r[2:]] for r in rows] == [
        ["1", TRAINER, "sklearn", "auc=0.9", "-", "-"],
        ["2", TRAINER, "sklearn", "auc=0.95, loss=0.1235", "-", "candidate, champion"],
    ]


def test_describe_by_alias_prints_the_aliased_versions_json(repo: Repo) -> None:
    repo.store.models.set_alias("fraud", "champion", 2)

    result = repo.cli("describe", "fraud@champion")

    assert result.code == 0, result.stderr
    described = json.loads(result.stdout)
    assert {k: described[k] for k in ("name", "version", "flavor", "feature_service")} == {
        "name": "fraud",
        "version": 2,
        "flavor": "sklearn",
        "feature_service": "driver_service",
    }
    assert described["metrics"] == {"auc": 0.95, "loss": 0.123456}
    assert described["signature"] == SKLEARN_SIGNATURE
    assert described["author"] == TRAINER
    assert described["registry_version"] == 1  # the repo was applied once


def test_describe_by_version_prints_that_versions_json(repo: Repo) -> None:
    result = repo.cli("describe", "fraud/1")

    assert result.code == 0, result.stderr
    described = json.loads(result.stdout)
    assert (described["version"], described["flavor"], described["feature_service"]) == (
        1,
        "sklearn",
        "driver_service",
    )
    assert described["metrics"] == {"auc": 0.9}
    assert described["signature"] == SKLEARN_SIGNATURE


def test_describe_of_a_bare_name_is_the_latest_version_and_shows_a_pyfunc_signature(
    repo: Repo,
) -> None:
    repo.store.models.register_model("doubler", Doubler(), flavor="pyfunc", sample_input=X_TRAIN)

    fraud = json.loads(repo.cli("describe", "fraud").stdout)
    doubler = json.loads(repo.cli("describe", "doubler").stdout)

    assert fraud["version"] == 2
    assert (doubler["version"], doubler["flavor"], doubler["feature_service"]) == (
        1,
        "pyfunc",
        None,
    )
    assert doubler["metrics"] == {} and doubler["signature"] == PYFUNC_SIGNATURE


def test_alias_set_rollback_delete_print_each_move_and_history_lists_them_in_order(
    repo: Repo,
) -> None:
    moves = [
        (("set", "fraud", "champion", "1", "--reason", "first"), "(unset) -> version 1"),
        (("set", "fraud", "champion", "2", "--reason", "better auc"), "version 1 -> version 2"),
        (("rollback", "fraud", "champion", "--reason", "auc dropped"), "version 2 -> version 1"),
        (("delete", "fraud", "champion", "--reason", "[red]retired[/]"), "version 1 -> (deleted)"),
    ]
    for args, change in moves:
        result = repo.cli("alias", *args)
        assert result.code == 0, result.stderr
        assert result.stdout.strip() == f"fraud@champion: {change}"

    result = repo.cli("history", "fraud")

    assert result.code == 0, result.stderr
    # alias, from, to, author, reason; a reason in Rich markup shows as typed
    assert [row[1:] for row in table_rows(result.stdout)] == [
        ["champion", "-", "1", CLI_USER, "first"],
        ["champion", "1", "2", CLI_USER, "better auc"],
        ["champion", "2", "1", CLI_USER, "auc dropped"],
        ["champion", "1", "(deleted)", CLI_USER, "[red]retired[/]"],
    ]
    assert repo.store.models.aliases("fraud") == {}


def test_rollback_twice_returns_the_alias_and_without_reason_records_a_rollback(
    repo: Repo,
) -> None:
    repo.cli("alias", "set", "fraud", "champion", "1")
    repo.cli("alias", "set", "fraud", "champion", "2")

    first = repo.cli("alias", "rollback", "fraud", "champion")
    second = repo.cli("alias", "rollback", "fraud", "champion")

    assert first.stdout.strip() == "fraud@champion: version 2 -> version 1"
    assert second.stdout.strip() == "fraud@champion: version 1 -> version 2"
    reasons = [row[-1] for row in table_rows(repo.cli("history", "fraud").stdout)]
    assert reasons[:2] == ["-", "-"] and all("rollback" in r for r in reasons[2:])


def test_history_with_alias_lists_only_that_alias(repo: Repo) -> None:
    repo.cli("alias", "set", "fraud", "champion", "1")
    repo.cli("alias", "set", "fraud", "candidate", "2")
    repo.cli("alias", "set", "fraud", "champion", "2")

    result = repo.cli("history", "fraud", "--alias", "champion")

    assert result.code == 0, result.stderr
    assert [row[1:4] for row in table_rows(result.stdout)] == [
        ["champion", "-", "1"],
        ["champion", "1", "2"],
    ]


def test_delete_of_an_aliased_version_is_refused_and_succeeds_after_the_alias_is_deleted(
    repo: Repo,
) -> None:
    repo.cli("alias", "set", "fraud", "champion", "1")

    refused = repo.cli("delete", "fraud", "1")

    assert_user_error(refused, "version_aliased")
    assert "champion" in refused.stderr
    assert [row[0] for row in table_rows(repo.cli("versions", "fraud").stdout)] == ["1", "2"]

    assert repo.cli("alias", "delete", "fraud", "champion").code == 0
    deleted = repo.cli("delete", "fraud", "1")

    assert (deleted.code, deleted.stdout.strip()) == (0, "Deleted fraud/1")
    assert [row[0] for row in table_rows(repo.cli("versions", "fraud").stdout)] == ["2"]
    assert table_rows(repo.cli("list").stdout) == [["fraud", "1", "2", "-", "driver_service"]]
    assert_user_error(repo.cli("delete", "fraud", "1"), "model_version_not_found")


def test_deleting_the_last_version_removes_the_model_from_list(repo: Repo) -> None:
    assert repo.cli("delete", "fraud", "1").code == 0
    assert repo.cli("delete", "fraud", "2").code == 0

    assert table_rows(repo.cli("list").stdout) == []
    assert_user_error(repo.cli("versions", "fraud"), "model_not_found")


def test_rollback_to_a_deleted_version_is_refused(repo: Repo) -> None:
    repo.cli("alias", "set", "fraud", "champion", "1")
    repo.cli("alias", "set", "fraud", "champion", "2")
    assert repo.cli("delete", "fraud", "1").code == 0

    result = repo.cli("alias", "rollback", "fraud", "champion")

    assert_user_error(result, "no_rollback_target")
    assert repo.store.models.aliases("fraud") == {"champion": 2}


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("versions", "nosuch"), "model_not_found"),
        (("describe", "nosuch"), "model_not_found"),
        (("describe", "fraud/9"), "model_version_not_found"),
        (("describe", "fraud@nosuch"), "alias_not_found"),
        (("describe", "fraud@@champion"), "invalid_model_ref"),
        (("describe", "fraud/0"), "invalid_model_ref"),
        (("describe", "fraud@champion/2"), "invalid_model_ref"),
        (("delete", "nosuch", "1"), "model_not_found"),
        (("delete", "fraud", "9"), "model_version_not_found"),
        (("alias", "set", "nosuch", "champion", "1"), "model_not_found"),
        (("alias", "set", "fraud", "champion", "9"), "model_version_not_found"),
        (("alias", "set", "fraud", "latest", "1"), "invalid_model_ref"),
        (("alias", "set", "fraud", "bad/alias", "1"), "invalid_model_ref"),
        (("alias", "delete", "fraud", "nosuch"), "alias_not_found"),
        (("alias", "rollback", "fraud", "nosuch"), "alias_not_found"),
        (("alias", "rollback", "nosuch", "champion"), "model_not_found"),
        (("history", "fraud", "--at", "yesterday"), "invalid_time"),
    ],
)
def test_user_errors_exit_1_with_one_line_naming_the_error_code(
    repo: Repo, args: tuple[str, ...], code: str
) -> None:
    assert_user_error(repo.cli(*args), code)


def test_rollback_of_an_alias_that_does_not_exist_says_alias_not_found(repo: Repo) -> None:
    """QA finding 13: not "has no earlier version to roll back to"."""
    repo.cli("alias", "set", "fraud", "champion", "1")
    result = repo.cli("alias", "rollback", "fraud", "nope")
    assert_user_error(result, "alias_not_found")
    assert "has no alias 'nope'" in result.stderr and "earlier version" not in result.stderr


def test_rollback_of_an_alias_set_once_has_no_target(repo: Repo) -> None:
    repo.cli("alias", "set", "fraud", "champion", "1")

    assert_user_error(repo.cli("alias", "rollback", "fraud", "champion"), "no_rollback_target")


def test_history_of_an_unknown_model_is_model_not_found(repo: Repo) -> None:
    assert_user_error(repo.cli("history", "nosuch"), "model_not_found")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def clocked_registry(store: FeatureStore, clock: Clock) -> ModelRegistry:
    """The repo's model registry (same database, same artifacts) on the given clock."""
    backend = store.registry.store
    assert isinstance(backend, SqlRegistryStore | SqliteRegistryStore)
    return ModelRegistry(
        SqlModelStore(backend.engine),
        artifact_store(store.config.models.artifacts_url(store.repo_path)),
        project=store.project,
        trusted=True,
        clock=clock,
        author="ann",
    )


def test_history_at_shows_the_version_each_alias_held_at_that_time(repo: Repo) -> None:
    t0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
    clock = Clock(t0)
    registry = clocked_registry(repo.store, clock)
    registry.register_model("fraud", fit_logistic(), flavor="sklearn", sample_input=X_TRAIN)
    for hours, alias, version in ((0, "champion", 1), (1, "champion", 2), (2, "champion", 3)):
        clock.now = t0 + timedelta(hours=hours)
        registry.set_alias("fraud", alias, version)
    clock.now = t0 + timedelta(hours=1, minutes=30)
    registry.set_alias("fraud", "candidate", 3)
    clock.now = t0 + timedelta(hours=3)
    registry.delete_alias("fraud", "champion")

    def champion_at(moment: str) -> str:
        result = repo.cli("history", "fraud", "--alias", "champion", "--at", moment)
        assert result.code == 0, result.stderr
        return result.stdout.strip()

    assert champion_at("2026-04-01T08:59:59Z") == (
        "fraud@champion at 2026-04-01 08:59:59: (not set)"
    )
    assert champion_at("2026-04-01T09:00:00Z") == "fraud@champion at 2026-04-01 09:00:00: version 1"
    assert champion_at("2026-04-01T09:30:00") == "fraud@champion at 2026-04-01 09:30:00: version 1"
    # 12:30 at +02:00 is 10:30 UTC, after the second move
    assert champion_at("2026-04-01T12:30:00+02:00") == (
        "fraud@champion at 2026-04-01 10:30:00: version 2"
    )
    assert champion_at("2026-04-01T11:59:00Z") == "fraud@champion at 2026-04-01 11:59:00: version 3"
    assert champion_at("2026-04-01T12:00:00Z") == (
        "fraud@champion at 2026-04-01 12:00:00: (not set)"
    )

    every_alias = repo.cli("history", "fraud", "--at", "2026-04-01T10:45:00Z")
    assert every_alias.code == 0, every_alias.stderr
    assert every_alias.stdout.splitlines() == [
        "fraud@candidate at 2026-04-01 10:45:00: version 3",
        "fraud@champion at 2026-04-01 10:45:00: version 2",
    ]
    versions = table_rows(repo.cli("versions", "fraud").stdout)
    assert versions[2][:3] == ["3", "2026-04-01 09:00:00", "ann"]
    registry.close()


def test_alias_set_from_moves_only_from_that_version(repo: Repo) -> None:
    repo.cli("alias", "set", "fraud", "champion", "1")

    refused = repo.cli("alias", "set", "fraud", "champion", "2", "--from", "2")
    moved = repo.cli("alias", "set", "fraud", "champion", "2", "--from", "1")

    assert_user_error(refused, "alias_moved")
    assert moved.stdout.strip() == "fraud@champion: version 1 -> version 2"
    assert repo.store.models.aliases("fraud") == {"champion": 2}
