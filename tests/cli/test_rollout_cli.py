"""`parity rollout ...` through typer's runner on a SQLite repo: every bad option is one error line
naming the option and the fix (exit 1, no traceback), as the other commands do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from tests.inference.test_rollout_http import rollout_store

runner = CliRunner()


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@dataclass
class Repo:
    path: Path
    store: FeatureStore

    def cli(self, *args: str) -> Result:
        result = runner.invoke(
            app,
            ["rollout", *args, "--repo", str(self.path)],
            env={"COLUMNS": "200", "PARITY_USER": "cli-test", "PARITY_REPO": None},
        )
        return Result(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.chdir(tmp_path)  # outside any git checkout: registration runs no git in ours
    path, store = rollout_store(tmp_path)
    return Repo(path, store)


def one_error(result: Result, code: str, *named: str) -> str:
    assert result.code == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error [{code}]: "), result.stderr
    assert "Traceback" not in result.stderr
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


START = ("start", "--model", "ranker", "--candidate", "2")


@pytest.mark.parametrize(
    ("options", "code", "named"),
    [
        (("--gate", "latency_p50"), "invalid_rollout",
         ("--gate 'latency_p50'", "is not known", "latency_p99")),
        (("--gate", "error_rate", "--gate", "label:accuracy_x:0.1", "--gate", "recall"),
         "invalid_rollout", ("--gate 'recall'", "'recall' is not known")),
        (("--steps", "5,25,25"), "invalid_rollout", ("--steps", "must increase", "1, 5, 25")),
        (("--steps", "50,10"), "invalid_rollout", ("--steps", "must increase")),
        (("--steps", "1,,5"), "invalid_option", ("--steps '1,,5'", "1,5,25,50,100")),
        (("--steps", "1,five"), "invalid_option", ("--steps", "finite number")),
        (("--steps", "1,nan"), "invalid_option", ("--steps", "finite number")),
        (("--steps", "0,5"), "invalid_rollout", ("--steps", "weight above 0")),
        (("--steps", "5,150"), "invalid_rollout", ("--steps", "percentage from 0 to 100")),
        (("--step-duration", "10 minutes"), "invalid_option", ("--step-duration", "30m")),
        (("--step-min-samples", "-3"), "invalid_option", ("--step-min-samples '-3'",)),
        (("--shadow", "1y"), "invalid_option", ("--shadow '1y'", "1d")),
        (("--shadow", "30m", "--no-shadow"), "invalid_option", ("--no-shadow", "drop --shadow")),
        (("--shadow-fraction", "1.5"), "invalid_rollout", ("--shadow-fraction", "(0, 1]")),
        (("--shadow-fraction", "inf"), "invalid_option", ("--shadow-fraction", "finite")),
        (("--routing-key", "driver_id", "--routing-header", "x-user"), "invalid_option",
         ("--routing-key and --routing-header", "not both")),
        (("--routing-header", "x user"), "invalid_rollout",
         ("--routing-key/--routing-header", "header name 'x user'")),
        (("--routing-key", "driver-id"), "invalid_rollout",
         ("--routing-key/--routing-header", "not an identifier")),
        (("--gate", "latency_p99:fast"), "invalid_option", ("--gate 'latency_p99:fast'",)),
        (("--gate", "latency_p99:-1"), "invalid_rollout",
         ("--gate 'latency_p99:-1'", "finite number >= 0")),
        (("--gate", "latency_p99:0.1:0.2"), "invalid_option", ("metric[:threshold]",)),
        (("--gate", "prediction_drift:0.2:test=chi"), "invalid_rollout",
         ("--gate 'prediction_drift:0.2:test=chi'", "psi")),
        (("--gate", "custom:no_such_gate"), "invalid_rollout",
         ("--gate 'custom:no_such_gate'", "custom_gates")),
        (("--gate", "error_rate", "--gate", "error_rate:0.02"), "invalid_rollout",
         ("--gate", "repeat")),
        (("--failure-mode", "sometimes"), "invalid_option", ("--failure-mode", "consecutive")),
        (("--failure-limit", "0"), "invalid_option", ("--failure-limit '0'", "at least 1")),
        (("--interval", "0s"), "invalid_option", ("--interval '0s'", "at least 1s")),
        (("--champion-alias", "the champ"), "invalid_rollout",
         ("--champion-alias", "not an identifier")),
    ],
)  # fmt: skip
def test_bad_start_options_are_one_line_naming_the_option(
    repo: Repo, options: tuple[str, ...], code: str, named: tuple[str, ...]
) -> None:
    one_error(repo.cli(*START, *options), code, *named)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("start",), ("--model is required", "ROLLOUT")),
        (("start", "--model", "ranker"), ("--candidate is required",)),
        (("start", "ranker_ramp", "--model", "ranker"), ("ROLLOUT", "drop --model")),
        (("start", "ranker_ramp", "--steps", "1,2"), ("ROLLOUT", "drop --steps")),
        (("start", "ranker_ramp", "--no-shadow"), ("ROLLOUT", "drop --no-shadow")),
        (("start", "--model", "ranker", "--candidate", "a b"), ("--candidate", "identifier")),
        (("start", "--model", "ranker", "--candidate", "99999999999"), ("--candidate",)),
    ],
)
def test_start_needs_a_declared_rollout_or_model_and_candidate(
    repo: Repo, args: tuple[str, ...], named: tuple[str, ...]
) -> None:
    result = repo.cli(*args)
    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    for text in named:
        assert text in result.stderr, result.stderr


def test_run_rejects_a_bad_interval(repo: Repo) -> None:
    one_error(repo.cli("run", "--interval", "soon"), "invalid_option", "--interval 'soon'")


def test_rollout_commands_are_listed(repo: Repo) -> None:
    result = runner.invoke(app, ["rollout", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("start", "status", "pause", "resume", "promote", "abort", "history", "run"):
        assert f" {name} " in result.stdout
