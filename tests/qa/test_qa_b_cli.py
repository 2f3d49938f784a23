"""QA-B: `parity rollout run` as cron and as a loop with --interval: a clean stop releases the
controller lease, so the next controller acts at once and nobody records a crash that was not."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from parity.deploy.service import Rollouts
from tests.inference.test_rollout_http import rollout_store
from tests.inference.test_rollout_http_serve import wait_for

runner = CliRunner()


def started_long_ago(store: FeatureStore) -> None:
    """A rollout (no shadow, 50 % then 100 %, nothing required) whose checks are all due."""
    long_ago = store.now() - timedelta(hours=1)
    Rollouts(store, clock=lambda: long_ago).start(
        model="ranker",
        candidate=2,
        shadow=None,
        steps=[{"weight": 50, "duration": timedelta(0), "min_samples": 0}, {"weight": 100}],
        interval=timedelta(seconds=1),
    )


def once(path: Path) -> str:
    result = runner.invoke(app, ["rollout", "run", "--once", "--repo", str(path)])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_run_once_releases_its_lease_so_the_next_once_acts_without_a_false_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path, store = rollout_store(tmp_path)
    started_long_ago(store)
    assert "advanced" in once(path)
    assert store.rollouts.db.lease() is None  # released: cron's next --once need not wait
    time.sleep(1.1)  # the rollout's 1 s interval: its next check is due
    second = once(path)  # within the old lease's 3 s: it used to find it held and do nothing
    assert "ranker-1 check" in second, second
    kinds = [event.kind for event in store.rollouts.history("ranker")]
    assert "resumed_after_crash" not in kinds, kinds


def test_run_with_interval_releases_its_lease_when_stopped(tmp_path: Path) -> None:
    path, store = rollout_store(tmp_path)
    started_long_ago(store)
    command = [sys.executable, "-m", "parity.cli.main", "rollout", "run", "--interval", "1s"]
    process = subprocess.Popen(
        [*command, "--repo", str(path)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: store.rollouts.db.lease() is not None)
        wait_for(lambda: "check" in [e.kind for e in store.rollouts.history("ranker")])
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()
    assert store.rollouts.db.lease() is None  # another controller takes over at once
