"""QA-B: custom gate functions from the repo through the controller (`store.rollouts.step` with
the real checker over a Parquet log): raising or returning junk fails the gate and aborts with the
error recorded; code changed after the start is not run (a restarted controller holds, saying
why)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from parity import FeatureStore
from tests.deploy.control_support import MINUTE, T0, Clock, cleanup, make_repo, register_versions
from tests.deploy.test_gates_log import row, write_log

ROLLOUTS = """
from datetime import timedelta

from parity import Gate, Phase, Rollout


def verdict(evidence):
    {body}


careful = Rollout(
    name="careful",
    model="fraud",
    candidate=2,
    shadow=Phase(weight=0, duration=timedelta(minutes=5), min_samples=5),
    steps=[Phase(weight=50, duration=timedelta(minutes=5), min_samples=5)],
    gates=[Gate(metric="custom:verdict", min_samples=5)],
    custom_gates=[verdict],
    interval=timedelta(minutes=1),
)
"""


def declare(repo: Path, body: str) -> None:
    (repo / "rollouts.py").write_text(ROLLOUTS.format(body=body))


@pytest.fixture
def repo(tmp_path: Path, backend: str, project_name: str, request: Any) -> Iterator[Path]:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    path = make_repo(tmp_path / "repo", backend, project_name, url)
    yield path
    with FeatureStore(path) as store:
        cleanup(store)


def shadow_rows(repo: Path) -> None:
    """Ten requests in the first minute, each scored by the champion and mirrored to version 2."""
    rows = []
    for i in range(10):
        at = T0 + timedelta(seconds=5 * i)
        rows += [
            row(at, 1, "champion", request_id=f"q{i}"),
            row(at, 2, "shadow", request_id=f"q{i}"),
        ]
    write_log(repo / "data" / "prediction_log", rows, "a")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("raise RuntimeError('feature store down')", "raised RuntimeError: feature store down"),
        ("return 0.7", "returned 0.7; return True, False, None or (that, 'why')"),
        ("return 'pass'", "returned 'pass'"),
        ("return (True, 'ok', 'extra')", "returned (True, 'ok', 'extra')"),
    ],
)
def test_a_raising_or_junk_gate_fails_and_aborts_with_the_error(
    repo: Path, body: str, reason: str
) -> None:
    declare(repo, body)
    with FeatureStore(repo, clock=Clock()) as store:
        store.apply()
        register_versions(store)
        store.rollouts.start("careful")
        shadow_rows(repo)
        events = store.rollouts.step(now=T0 + MINUTE)
        assert [e.kind for e in events] == ["check", "aborted"]
        (result,) = events[1].results
        assert (result.gate, result.verdict) == ("custom:verdict", "fail")
        assert reason in result.reason, result.reason
        assert store.rollouts.status("fraud").status == "aborted"
        assert store.models.aliases("fraud")["champion"] == 1


def test_a_gate_changed_after_the_start_is_not_run_by_a_restarted_controller(repo: Path) -> None:
    declare(repo, "return True, 'fine'")
    with FeatureStore(repo, clock=Clock()) as store:
        store.apply()
        register_versions(store)
        store.rollouts.start("careful")
        shadow_rows(repo)
        (check,) = store.rollouts.step(now=T0 + MINUTE)
        assert check.results[0].verdict == "pass" and check.results[0].reason == "fine"
    declare(repo, "return False, 'changed'")  # edited, even applied: the rollout keeps its own
    with FeatureStore(repo, clock=Clock()) as restarted:
        restarted.apply()
        # after the old controller's lease (3 intervals) expired: it resumes, then checks
        resumed, check = restarted.rollouts.step(now=T0 + 5 * MINUTE)
        assert resumed.kind == "resumed_after_crash"
        (result,) = check.results
        assert result.verdict == "inconclusive", result
        assert "differs from the one the rollout started with" in result.reason
        assert restarted.rollouts.status("fraud").status == "active"
    declare(repo, "return True, 'fine'")  # the code it started with, back: it runs again
    with FeatureStore(repo, clock=Clock()) as again:
        events = again.rollouts.step(now=T0 + 9 * MINUTE)
        check = next(e for e in events if e.kind == "check")
        assert check.results[0].verdict == "pass"
