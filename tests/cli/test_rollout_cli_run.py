"""`parity rollout run` in a subprocess: it checks due rollouts until SIGTERM or Ctrl-C (SIGINT),
then releases its lease and exits 0 with one line."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.inference.test_rollout_http import rollout_store
from tests.inference.test_rollout_http_serve import _kinds, _started_an_hour_ago, wait_for


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_run_checks_until_signalled(tmp_path: Path, stop: signal.Signals) -> None:
    path, store = rollout_store(tmp_path)
    _started_an_hour_ago(store)
    command = [sys.executable, "-m", "parity.cli.main", "rollout", "run", "--repo", str(path)]
    runner = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        assert runner.stderr is not None
        assert "Rollout controller running" in runner.stderr.readline().decode()
        wait_for(lambda: "check" in _kinds(store))
        runner.send_signal(stop)
        code = runner.wait(30)
        rest = runner.stderr.read().decode()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        assert runner.stderr is not None
        runner.stderr.close()
    assert code == 0, rest
    assert "Rollout controller stopped." in rest
    assert "KeyboardInterrupt" not in rest  # Ctrl-C stops the loop; it is not an error
