"""`parity jobs run | list | status | cancel` through typer's runner: exit codes, one-line
errors, JSON, and the filters of `store.jobs.list`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parity.cli.main import app
from tests.jobs.support import NOW, open_store

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.mark.parametrize("backend", ["sqlite"])
def test_run_list_status_and_cancel(tiny_repo: Path) -> None:
    repo = str(tiny_repo)
    code, output = run("jobs", "run", "ok_job", "--repo", repo)
    assert code == 0, output
    assert "Job 1 (ok_job): succeeded" in output and "registered m/1 as @candidate" in output
    code, output = run("jobs", "run", "none_job", "--repo", repo)
    assert code == 1 and "Job 2 (none_job): failed" in output and "returned None" in output
    assert "Its logs: parity jobs status 2 --logs" in output
    code, output = run("jobs", "list", "--repo", repo, "--json")
    assert code == 0
    listed = json.loads(output)["jobs"]
    assert [(j["id"], j["status"]) for j in listed] == [(2, "failed"), (1, "succeeded")]
    assert "logs" not in listed[0]
    code, output = run("jobs", "list", "--repo", repo, "--status", "failed")
    assert code == 0 and "none_job" in output and "ok_job" not in output
    code, output = run("jobs", "status", "1", "--logs", "--repo", repo)
    assert code == 0 and "result.version: 1" in output and "fitted on" in output
    code, output = run("jobs", "status", "1", "--json", "--repo", repo)
    assert json.loads(output)["job"]["result"]["dataset"] == "ok_job_1"
    with open_store(tiny_repo) as store:
        queued = store.jobs.submit("ok_job")
    code, output = run("jobs", "cancel", str(queued.id), "--repo", repo)
    assert code == 0 and f"Job {queued.id} (ok_job) cancelled." in output
    code, output = run("jobs", "run", "--repo", repo)  # a pass: nothing is due
    assert code == 0 and "No job was due." in output


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("jobs", "run", "nope"), "[training_job_not_found]: no training job named 'nope'"),
        (("jobs", "status", "42"), "[job_not_found]: project"),
        (("jobs", "cancel", "42"), "[job_not_found]"),
        (("jobs", "list", "--status", "done"), "--status 'done': give one of queued"),
        (("jobs", "run", "ok_job", "--loop"), "--loop runs the queue"),
    ],
)
def test_bad_input_is_one_clear_line(tiny_repo: Path, args: tuple[str, ...], message: str) -> None:
    code, output = run(*args, "--repo", str(tiny_repo))
    assert code == 1
    assert message in output and "Traceback" not in output


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_failed_pass_exits_non_zero(tiny_repo: Path) -> None:
    with open_store(tiny_repo) as store:
        store.jobs.submit("raises_job")
    code, output = run("jobs", "run", "--repo", str(tiny_repo))
    assert code == 1 and "raised RuntimeError: the fit diverged (retry: job 2)" in output


def test_list_filters_by_status_and_model_newest_first(tiny_repo: Path) -> None:
    with open_store(tiny_repo) as store:
        first = store.jobs.submit("ok_job")
        second = store.jobs.submit("none_job")
        third = store.jobs.submit("ok_job")
        store.jobs.cancel(third.id)
        assert [j.id for j in store.jobs.list()] == [third.id, second.id, first.id]
        assert [j.id for j in store.jobs.list(limit=1)] == [third.id]
        assert [j.id for j in store.jobs.list(status="cancelled")] == [third.id]
        assert [j.id for j in store.jobs.active("m")] == [second.id, first.id]
        assert store.jobs.active("other") == [] and store.jobs.list(model="other") == []
        store.jobs.run_pending(now=lambda: NOW, max_jobs=1)
        assert store.jobs.get(first.id).status == "succeeded"  # the oldest due job first
        assert [j.id for j in store.jobs.active()] == [second.id]
