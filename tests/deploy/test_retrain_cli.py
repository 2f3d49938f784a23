"""`parity triggers history | request | status` and `parity monitor evaluate | run`: the recorded
decisions as tables and JSON, one-line typed errors (exit 1) for unknown models, bad times and
intervals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from parity.deploy.retrain import Triggers
from tests.deploy.retrain_repo import HOUR, T0, clock, drift_repo, register, store
from tests.deploy.retrain_support import FakeQueue

__all__ = ["clock", "drift_repo", "store"]

runner = CliRunner()


def invoke(repo: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--repo", str(repo)])
    return result.exit_code, result.output


def test_history_shows_each_recorded_decision_as_a_table_and_as_json(store: FeatureStore) -> None:
    register(store)
    triggers = Triggers(store, queue=FakeQueue(models={"scorer_training": "scorer"}))
    triggers.request("scorer", reason="labels backfilled", now=T0)
    triggers.evaluate(now=T0 + HOUR)
    triggers.request("scorer", reason="again", now=T0 + 2 * HOUR)
    triggers.evaluate(now=T0 + 2 * HOUR)  # the first job is still active: suppressed
    expected = triggers.history("scorer")
    code, output = invoke(store.repo_path, "triggers", "history", "scorer", "--json")
    assert code == 0, output
    shown = json.loads(output)
    assert [(d["id"], d["action"], d["job_id"]) for d in shown] == [
        (d.id, d.action, d.job_id) for d in expected
    ]
    assert [d["action"] for d in shown] == ["suppress", "fire"]
    assert shown[1]["signals"]["manual"]["reason"] == "labels backfilled"
    code, output = invoke(store.repo_path, "triggers", "history", "--limit", "1")
    assert code == 0 and "suppress" in output and "fire" not in output.split("suppress")[1]


def test_history_of_nothing_says_how_to_get_some(store: FeatureStore) -> None:
    code, output = invoke(store.repo_path, "triggers", "history")
    assert code == 0 and "parity monitor evaluate" in output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("triggers", "request", "nope"), "[model_not_found]"),
        (("triggers", "history", "nope"), "[model_not_found]"),
        (("monitor", "evaluate", "--now", "yesterday"), "[invalid_time]"),
        (("monitor", "evaluate", "--now", "0001-01-01T00:00:00Z"), "[invalid_time]"),
        (("monitor", "run", "--interval", "0s", "--count", "1"), "[invalid_option]"),
        (("monitor", "run", "--interval", "often", "--count", "1"), "[invalid_option]"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem(
    store: FeatureStore, args: tuple[str, ...], expected: str
) -> None:
    register(store)
    code, output = invoke(store.repo_path, *args)
    assert code == 1
    assert expected in output and "Traceback" not in output


def test_request_then_status_shows_it_pending(store: FeatureStore) -> None:
    register(store)
    code, output = invoke(store.repo_path, "triggers", "request", "scorer", "--reason", "fix")
    assert code == 0 and "requested" in output
    code, output = invoke(store.repo_path, "triggers", "status", "--json")
    assert code == 0, output
    [row] = json.loads(output)
    assert row["model"] == "scorer" and row["pending"].startswith("manual request (fix)")
    assert row["drift"] == "0/1" and row["performance"] == "off"
