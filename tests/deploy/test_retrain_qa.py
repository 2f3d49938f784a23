"""Retrain triggers replayed as a user would (QA of issue 15): each test is a defect found by
using `store.triggers` and `parity triggers | monitor evaluate | run` on a real repo, and fails
without its fix."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from parity.deploy.retrain import Triggers
from parity.deploy.retrain_decide import Context, Observation, TriggerState, decide
from parity.errors import InvalidDefinition, InvalidOption
from tests.deploy.retrain_repo import (
    HOUR,
    LIFECYCLE,
    T0,
    Clock,
    clock,
    drift_repo,
    open_store,
    store,
)
from tests.deploy.retrain_repo import register as register_scorer
from tests.deploy.retrain_support import DAY, FakeQueue, policy
from tests.monitoring.test_drift_runs import log_window, write_log

__all__ = ["clock", "drift_repo", "store"]

runner = CliRunner()


def invoke(repo: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--repo", str(repo)])
    return result.exit_code, result.output


def test_a_stale_firing_drift_signal_does_not_retrain_again_after_the_cooldown() -> None:
    # docs: "a monitor that stopped running cannot keep a model firing". Drift fired once; the
    # monitor then stopped, so every later read is stale (no value). Before the fix the kept
    # firing state asked again once the cooldown ended: a retrain a week, on no evidence.
    chosen = policy(sustain=1, cooldown=DAY)
    fired = decide(chosen, TriggerState(), Observation(0.9, T0, {"version": 1}), NO, Context(T0))
    assert fired.action == "fire"
    stale = Observation(None, None, {"version": 1, "why": "no complete drift window"})
    state = fired.state
    for day in range(2, 30, 7):
        later = decide(chosen, state, stale, NO, Context(T0 + day * DAY))
        assert later.action == "hold", later.reasons
        assert "without current evidence" in later.reasons[0]
        state = later.state
    assert state.drift.firing  # the state is kept: neither fired nor cleared
    # the monitor runs again and the window still drifts: it asks again
    again = Observation(0.9, T0 + 40 * DAY, {"version": 1})
    assert decide(chosen, state, again, NO, Context(T0 + 40 * DAY)).action == "fire"


def test_a_new_champion_without_a_reference_does_not_fire_on_the_old_ones_drift() -> None:
    # version 1 drifted and was retrained; version 2 (registered without a training set) is
    # promoted: its drift cannot be read (no_reference, no version in the detail). The firing
    # state of version 1 must not fire a retrain of version 2.
    chosen = policy(sustain=1, cooldown=DAY)
    fired = decide(chosen, TriggerState(), Observation(0.9, T0, {"version": 1}), NO, Context(T0))
    broken = Observation(None, error="no_reference: model scorer/2 has no reference profile")
    later = decide(chosen, fired.state, broken, NO, Context(T0 + 3 * DAY))
    assert later.action == "suppress" and "drift unavailable: no_reference" in later.reasons[0]


NO = Observation(None)


def test_history_of_a_model_with_a_policy_but_no_version_yet(store: FeatureStore) -> None:
    # docs: "A model with a policy but no version yet may be requested". Its request is
    # decided and recorded; `parity triggers history scorer` refused it as an unknown model.
    triggers = Triggers(store, queue=FakeQueue(models={"scorer_training": "scorer"}))
    triggers.request("scorer", reason="first version", now=T0)
    [fired] = triggers.evaluate(now=T0)
    assert fired.action == "fire"
    assert [d.id for d in triggers.history("scorer")] == [fired.id]
    code, output = invoke(store.repo_path, "triggers", "history", "scorer", "--json")
    assert code == 0, output
    assert [d["id"] for d in json.loads(output)] == [fired.id]
    code, output = invoke(store.repo_path, "triggers", "history", "nope")
    assert code == 1 and "[model_not_found]" in output


def test_a_monitor_that_breaks_is_one_line_and_the_pass_still_decides(
    drift_repo: Path, clock: Clock
) -> None:
    # A damaged file in the prediction log (a copy cut short): the performance query raised
    # DuckDB's own InvalidInputException, not a ParityError, and `parity monitor evaluate`
    # ended with a traceback before any retrain policy was decided (and `monitor run` died).
    labelled = LIFECYCLE.replace(
        "min_samples=50)",
        "min_samples=50,\n                             labels=LabelSource(path='data/entities.parquet', "
        "label='label', join_keys=('driver_id',)))",
    )
    opened = open_store(drift_repo, clock, labelled)
    try:
        register_scorer(opened)
        records: list[Any] = []
        log_window(records, np.random.default_rng(3), T0, 300)
        write_log(opened, records)
        damaged = opened.repo_path / "data" / "prediction_log" / "date=2026-03-02" / "cut.parquet"
        damaged.write_bytes(b"PAR1 not really")
        triggers = Triggers(opened, queue=FakeQueue(models={"scorer_training": "scorer"}))
        triggers.request("scorer", reason="after the damage", now=T0)
        clock.now = T0 + 2 * HOUR + timedelta(minutes=5)
        tick = triggers.tick()
        broken = [line for line in tick.monitors if "not run" in line]
        assert broken and all(line.count("\n") == 0 for line in broken), tick.monitors
        assert [d.action for d in tick.decisions] == ["fire"]  # the request is still decided
    finally:
        opened.close()


class BrokenOnce(FakeQueue):
    """A queue whose first `active()` fails the way a database outside Parity's errors does."""

    calls: int = 0

    def active(self, model: str | None = None) -> list[Any]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("database is locked")
        return super().active(model)


def test_monitor_run_logs_a_failed_pass_of_any_kind_and_goes_on(store: FeatureStore) -> None:
    # docs: "a failed pass is logged and the loop goes on"; only ParityError was caught.
    register_scorer(store)
    naps: list[float] = []
    triggers = Triggers(store, queue=BrokenOnce(), sleep=naps.append)
    ticks: list[Any] = []
    triggers.run(interval=60.0, passes=2, on_tick=ticks.append)
    assert len(ticks) == 1 and naps == [60.0]


def test_a_huge_cooldown_is_refused_at_definition_not_an_overflow_at_every_evaluation() -> None:
    # cooldown=timedelta(days=999_999_999) ("never again") was accepted; the evaluation after
    # the first fire computed last_fire_at + cooldown and raised OverflowError, failing the
    # whole pass (every model) from then on.
    with pytest.raises(InvalidDefinition, match="cooldown must be between 0 and 36500 days"):
        policy(cooldown=timedelta(days=999_999_999))
    chosen = policy(sustain=1, cooldown=timedelta(days=36_500))  # the longest accepted
    fired = decide(chosen, TriggerState(), Observation(0.9, T0, {"version": 1}), NO, Context(T0))
    later = decide(chosen, fired.state, Observation(0.9, T0, {"version": 1}), NO, Context(T0))
    assert later.action == "suppress" and "cooldown until 2126" in later.reasons[0]


def test_sigterm_stops_monitor_run_as_ctrl_c_does(store: FeatureStore, tmp_path: Path) -> None:
    # SIGTERM (a process manager's stop) ended `parity monitor run` at once (exit -15): a pass
    # cut inside its evaluation kept the project's lease, and the next evaluation waited up to
    # 300 s for it. Now it ends as Ctrl-C: the pass's `finally` releases the lease, exit 0.
    register_scorer(store)
    out = tmp_path / "out.txt"
    root = Path(__file__).resolve().parents[2]
    with out.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "parity.cli.main", "monitor", "run", "--interval", "1h",
             "--repo", str(store.repo_path)],
            cwd=root, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while "pass at" not in out.read_text():
            assert process.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, out.read_text()
    assert "stopped" in out.read_text() and "Traceback" not in out.read_text()


@pytest.mark.parametrize("interval", [float("nan"), float("inf"), 0.0, -1.0, True, "5m"])
def test_run_refuses_an_interval_that_is_not_a_positive_number(
    store: FeatureStore, interval: Any
) -> None:
    # store.triggers.run(interval=nan) passed the first pass, then time.sleep raised a bare
    # ValueError; a negative or zero interval ran passes back to back.
    with pytest.raises(InvalidOption, match="interval"):
        Triggers(store, queue=FakeQueue()).run(interval=interval, passes=2)
