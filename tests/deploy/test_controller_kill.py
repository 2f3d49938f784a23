"""A controller process SIGKILLed mid-ramp (running `Rollouts.run` on an accelerated clock with a
scripted checker): a new controller takes the lease once it expires, resumes at the same step,
checks that step's gates before moving, and finishes the ramp without skipping a step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest

from parity import FeatureStore
from parity.definitions.rollout import Phase
from parity.deploy.service import Rollouts
from tests.deploy.control_support import (
    MINUTE,
    T0,
    Clock,
    Scripted,
    short_rollout,
)

# One simulated minute every 0.05 s of real time: a 10-minute step lasts about half a second.
SPEED = 1200.0

VICTIM = textwrap.dedent(
    """
    import sys, threading, time
    from datetime import datetime, timedelta
    from parity import FeatureStore
    from parity.deploy.service import Rollouts
    from parity.deploy.state import CheckOutcome, GateResult

    repo, start, speed = sys.argv[1], datetime.fromisoformat(sys.argv[2]), float(sys.argv[3])
    began = time.monotonic()
    def clock():
        return start + timedelta(seconds=(time.monotonic() - began) * speed)
    def checker(store, state, now):
        results = tuple(GateResult(g.metric, "pass") for g in state.definition.gates)
        return CheckOutcome(results, {"candidate": 1000, "champion": 1000})
    store = FeatureStore(repo, clock=clock)
    Rollouts(store, clock=clock, checker=checker).run(
        stop=threading.Event(), owner="victim", poll=0.01
    )
    """
)


def wait_for_step(rollouts: Rollouts, step: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120  # a safety net for a hung child, not a timing assertion
    while time.monotonic() < deadline:
        state = rollouts.status("fraud")
        if state.step >= step or state.status != "active":
            return
        assert proc.poll() is None, "the controller process exited on its own"
        time.sleep(0.005)
    raise AssertionError("the controller never reached the step")


@pytest.mark.slow
def test_a_controller_killed_mid_ramp_resumes_at_the_same_step(
    fraud_store: FeatureStore, tmp_path: Path, clock: Clock
) -> None:
    steps = tuple(
        Phase(weight=w, duration=10 * MINUTE, min_samples=10) for w in (1, 5, 25, 50, 100)
    )
    shadow = Phase(weight=0, duration=10 * MINUTE, min_samples=10)
    rollouts = Rollouts(fraud_store, clock=clock, checker=Scripted())
    rollouts.start(short_rollout(shadow=shadow, steps=steps))
    script = tmp_path / "victim.py"
    script.write_text(VICTIM)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(fraud_store.repo_path), T0.isoformat(), str(SPEED)]
    )
    try:
        wait_for_step(rollouts, 2, proc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed = rollouts.status("fraud")
    k = killed.step
    assert killed.status == "active" and 2 <= k < 5, killed  # killed mid-ramp
    before = rollouts.history("fraud")
    assert {e.actor for e in before[1:]} == {"controller:victim"}
    lease = rollouts.db.lease()
    assert lease is not None and lease[0] == "victim"

    # A new controller cannot act while the dead one's lease lasts; after it, it resumes.
    checker = Scripted()
    successor = Rollouts(fraud_store, clock=clock, checker=checker)
    clock.now = lease[1] - timedelta(seconds=1)
    assert successor.step(owner="successor") == []
    clock.now = lease[1]
    resumed = successor.step(owner="successor")
    assert resumed[0].kind == "resumed_after_crash" and resumed[0].step == k
    assert "victim stopped renewing its lease" in resumed[0].reason
    assert checker.calls[0][1] == k  # the gates of step k are checked before any move
    assert resumed[1].kind == "check" and resumed[1].step == k
    for _ in range(100):
        if successor.status("fraud").status != "active":
            break
        clock.advance(MINUTE)
        successor.step(owner="successor")
    assert successor.status("fraud").status == "promoted"

    events = successor.history("fraud")
    advanced = [e.step for e in events if e.kind == "advanced"]
    assert advanced == [1, 2, 3, 4, 5]  # every step once, in order, across both controllers
    for index, event in enumerate(events):
        if event.kind in ("advanced", "promoted"):
            check = events[index - 1]  # a passing check of the step just left, right before
            assert check.kind == "check" and check.reason.startswith(("advance:", "promote:"))
            expected_step = event.step - 1 if event.kind == "advanced" else event.step
            assert check.step == expected_step
            assert [r.verdict for r in check.results] == ["pass"]
    assert [m.version for m in fraud_store.models.history("fraud", "champion")] == [1, 2]
