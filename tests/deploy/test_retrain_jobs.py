"""The triggers against the real job queue (`store.jobs`): a fire queues one durable job linked to
its decision, the per-model cap reads the real active jobs, two `parity monitor evaluate`
processes at once on one SQLite file queue one job, and the same on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from parity.deploy.retrain import Triggers
from parity.deploy.retrain_store import TriggerStore
from tests.deploy.retrain_repo import (
    HOUR,
    LIFECYCLE,
    T0,
    Clock,
    clock,
    drift_repo,
    open_store,
    register,
    store,
)

__all__ = ["clock", "drift_repo", "store"]


def test_a_fire_queues_one_real_job_linked_to_its_decision(store: FeatureStore) -> None:
    register(store)
    store.triggers.request("scorer", reason="labels backfilled", now=T0)
    [fired] = store.triggers.evaluate(now=T0 + HOUR)
    [job] = store.jobs.list(model="scorer")
    assert fired.action == "fire" and fired.job_id == job.id
    assert job.status == "queued" and job.name == "scorer_training"
    assert job.trigger_decision == fired.id and job.reason == "manual"
    # the job is active: a second request is held by the per-model cap, read from the queue
    store.triggers.request("scorer", reason="again", now=T0 + HOUR)
    [held] = store.triggers.evaluate(now=T0 + 2 * HOUR)
    assert held.action == "suppress" and f"#{job.id}" in held.reasons[0]
    assert len(store.jobs.list(model="scorer")) == 1
    # cancelled, the pending request fires (it skips the cooldown; the cap is free)
    store.jobs.cancel(job.id, now=T0 + 2 * HOUR)
    [again] = store.triggers.evaluate(now=T0 + 3 * HOUR)
    assert again.action == "fire" and len(store.jobs.list(model="scorer")) == 2


def test_two_evaluate_processes_at_once_on_one_sqlite_file_queue_one_job(
    store: FeatureStore,
) -> None:
    register(store)
    runs = 3
    for run in range(runs):
        now = T0 + run * 48 * HOUR
        store.triggers.request("scorer", reason=f"round {run}", now=now)
        for job in store.jobs.active("scorer"):
            store.jobs.cancel(job.id, now=now)  # the previous round's job is done with
        command = [
            sys.executable, "-m", "parity.cli.main", "monitor", "evaluate",
            "--repo", str(store.repo_path), "--now", (now + HOUR).isoformat(), "--json",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(Path.cwd() / "src")}
        procs = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            for _ in range(2)
        ]
        outputs = [proc.communicate(timeout=120) for proc in procs]
        assert all(proc.returncode == 0 for proc in procs), outputs
        actions = sorted(json.loads(out)["decisions"][0]["action"] for out, _ in outputs)
        assert actions == ["fire", "hold"]  # the second found the request already fired
        assert len(store.jobs.list(model="scorer")) == run + 1
    fires = [d for d in store.triggers.history("scorer") if d.action == "fire"]
    assert sorted(d.job_id or 0 for d in fires) == sorted(j.id for j in store.jobs.list())


@pytest.fixture
def pg_store(
    drift_repo: Path, clock: Clock, postgres_url: str, project_name: str
) -> Iterator[FeatureStore]:
    config = drift_repo / "parity.yaml"
    config.write_text(
        f"project: {project_name}\nmodels:\n  trusted: true\n"
        f"registry:\n  type: postgres\n  url: {postgres_url}\n"
    )
    opened = open_store(drift_repo, clock, LIFECYCLE)
    yield opened
    engine: sa.Engine = opened.registry.store.engine  # type: ignore[attr-defined]
    TriggerStore(engine, project_name).clear()
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM parity_jobs WHERE project = :p"), {"p": project_name})
    opened.close()


@pytest.mark.postgres
def test_a_fire_queues_one_real_job_on_postgresql(pg_store: FeatureStore) -> None:
    register(pg_store)
    pg_store.triggers.request("scorer", now=T0)
    [fired] = pg_store.triggers.evaluate(now=T0 + HOUR)
    [job] = pg_store.jobs.list(model="scorer")
    assert fired.job_id == job.id and job.trigger_decision == fired.id
    [held] = pg_store.triggers.evaluate(now=T0 + 2 * HOUR)
    assert held.action == "hold" or f"#{job.id}" in held.reasons[0]
    assert len(pg_store.jobs.list(model="scorer")) == 1


runner = CliRunner()


def invoke(repo: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--repo", str(repo)])
    return result.exit_code, result.output


def test_monitor_evaluate_runs_the_monitors_then_the_triggers_at_now(
    store: FeatureStore, clock: Clock
) -> None:
    register(store, dataset=None)  # no reference profile: a recorded suppress naming the fix
    now = (T0 + 3 * HOUR).isoformat()
    code, output = invoke(store.repo_path, "monitor", "evaluate", "--now", now, "--json")
    assert code == 0, output
    shown = json.loads(output)
    assert shown["at"] == now
    assert any("scorer" in line for line in shown["monitors"])
    [decision] = shown["decisions"]
    assert decision["action"] == "suppress" and "no_reference" in decision["reasons"][0]
    assert Triggers(store).history("scorer")[0].id == decision["id"]


def test_monitor_run_makes_the_passes_asked(store: FeatureStore) -> None:
    register(store, dataset=None)
    code, output = invoke(store.repo_path, "monitor", "run", "--interval", "1s", "--count", "2")
    assert code == 0, output
    assert output.count("pass at") == 2
