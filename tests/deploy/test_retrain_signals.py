"""The triggers' signals read from a real monitoring history: drift as the importance-weighted
share of the newest complete window (checked against the drift run's own verdicts), performance
on final windows only, no reference profile as a typed error naming the model and the command,
unknown models; and the triggers end to end on a real store (prediction log → drift run →
decision)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from parity import FeatureStore
from parity.definitions.rollout import RoutingKey
from parity.deploy.retrain import Triggers
from parity.deploy.retrain_signals import MonitoringSignals, relative_drop, weighted_share
from parity.errors import (
    InvalidOption,
    InvalidTime,
    ModelNotFound,
    NoReference,
    RetrainPolicyNotFound,
)
from parity.inference.predlog import PredictionRecord
from parity.monitoring.drift_history import DATASET, DriftHistory, DriftRow
from parity.monitoring.performance_history import PerformanceHistory, performance_table
from parity.monitoring.profile_store import profiles_table
from tests.deploy.retrain_repo import (
    HOUR,
    IMPORTANCE,
    LIFECYCLE,
    T0,
    Clock,
    clock,
    drift_repo,
    open_store,
    register,
    store,
)
from tests.deploy.retrain_support import FakeQueue, policy
from tests.monitoring.test_drift_runs import Scorer, log_window, write_log

__all__ = ["clock", "drift_repo", "store"]


def drift_rows(
    version: int, start: datetime, run_at: datetime, verdicts: Mapping[str, bool | None], run: str
) -> list[DriftRow]:
    kinds = {"bonus": "input", "prediction": "output"}
    return [
        DriftRow(
            run_id=run,
            run_at=run_at,
            project="drifty",
            model="scorer",
            version=version,
            window_start=start,
            window_end=start + HOUR,
            column=column,
            kind="dataset" if column == DATASET else kinds.get(column, "feature"),
            test="psi",
            statistic=0.0,
            p_value=None,
            threshold=0.1,
            status="ok" if drifted is not None else "insufficient",
            drifted=drifted,
            rows=500,
        )
        for column, drifted in verdicts.items()
    ]


def history(store: FeatureStore) -> DriftHistory:
    return DriftHistory(store.registry.store.engine)  # type: ignore[attr-defined]


# --- pure -------------------------------------------------------------------------------------


def test_weighted_share_weighs_by_importance_and_ignores_columns_without_a_verdict() -> None:
    verdicts = {"conv_rate": True, "trips": False, "city": None, "bonus": True}
    share, detail = weighted_share(verdicts, IMPORTANCE, "importance")
    assert share == pytest.approx((3.0 + 0.5) / (3.0 + 1.0 + 0.5))
    assert detail["judged"] == 3 and detail["drifted"] == ["bonus", "conv_rate"]
    assert weighted_share(verdicts, IMPORTANCE, "equal")[0] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("importance", "note"),
    [
        (None, "records no feature_importance"),
        ({}, "records no feature_importance"),
        ({"conv_rate": float("nan")}, "not a number"),
        ({"conv_rate": "high"}, "not a number"),
        ({"elsewhere": 1.0}, "names none"),
    ],
)
def test_unusable_importance_falls_back_to_equal_weights_and_says_so(
    importance: dict[str, Any] | None, note: str
) -> None:
    share, detail = weighted_share({"conv_rate": True, "trips": False}, importance, "importance")
    assert share == pytest.approx(0.5)
    assert note in detail["weighting"]


def test_importance_is_found_by_bare_feature_name_and_signed_weights_by_magnitude() -> None:
    verdicts = {"driver_stats__conv_rate": True, "driver_stats:trips": False}
    share, _ = weighted_share(verdicts, {"conv_rate": -3.0, "trips": 1.0}, "importance")
    assert share == pytest.approx(0.75)


def test_no_verdict_at_all_is_no_evidence() -> None:
    assert weighted_share({}, None, "equal")[0] is None
    assert weighted_share({"a": None, "b": None}, None, "equal")[0] is None


def test_fifty_correlated_features_are_one_share_not_fifty_signals() -> None:
    verdicts = {f"f{i}": i < 50 for i in range(60)}
    share, detail = weighted_share(verdicts, None, "equal")
    assert share == pytest.approx(50 / 60) and detail["drifted_count"] == 50


def test_relative_drop_knows_which_way_is_better() -> None:
    assert relative_drop(0.72, 0.8, higher_is_better=True) == pytest.approx(0.1)
    assert relative_drop(0.88, 0.8, higher_is_better=True) == pytest.approx(-0.1)
    assert relative_drop(0.22, 0.2, higher_is_better=False) == pytest.approx(0.1)
    assert relative_drop(0.5, 0.0, higher_is_better=True) is None
    assert relative_drop(float("nan"), 0.8, higher_is_better=True) is None


# --- drift from the recorded history ----------------------------------------------------------


def test_drift_signal_reads_the_newest_complete_window_of_its_latest_run(
    store: FeatureStore,
) -> None:
    version = register(store, params={"feature_importance": IMPORTANCE})
    now = T0 + 3 * HOUR
    quiet = dict.fromkeys(["conv_rate", "trips", "city", "bonus", "prediction"], False)
    loud = {"conv_rate": True, "trips": False, "city": None, "bonus": True, "prediction": True}
    rows = drift_rows(version, T0, T0 + HOUR, quiet, "a")
    rows += drift_rows(version, T0 + HOUR, T0 + 2 * HOUR, quiet, "b")  # superseded below
    history(store).record(rows)
    history(store).record(
        drift_rows(version, T0 + HOUR, T0 + 2 * HOUR, loud | {DATASET: True}, "c")
    )
    # a run made inside the window after it saw only part of it; a window ending after now
    history(store).record(drift_rows(version, T0 + 2 * HOUR, T0 + 2.5 * HOUR, quiet, "d"))
    history(store).record(drift_rows(version, T0 + 3 * HOUR, T0 + 4 * HOUR, quiet, "e"))
    seen = MonitoringSignals(store).drift(policy("scorer"), now)
    assert seen.value == pytest.approx((3.0 + 0.5) / (3.0 + 1.0 + 0.5))
    assert seen.at == T0 + 2 * HOUR
    assert seen.detail["run"] == "c" and seen.detail["version"] == version


def test_drift_evidence_older_than_three_windows_or_absent_is_no_evidence(
    store: FeatureStore,
) -> None:
    version = register(store)
    signals = MonitoringSignals(store)
    assert signals.drift(policy("scorer"), T0 + 3 * HOUR).value is None
    history(store).record(drift_rows(version, T0, T0 + HOUR, {"conv_rate": True}, "a"))
    assert signals.drift(policy("scorer"), T0 + 4 * HOUR).value == 1.0
    assert signals.drift(policy("scorer"), T0 + 4 * HOUR + 1 * HOUR).value is None


def test_a_model_registered_without_a_training_set_has_no_reference_naming_the_fix(
    store: FeatureStore,
) -> None:
    register(store, dataset=None)
    with pytest.raises(NoReference, match=r"scorer/1.*training_dataset"):
        MonitoringSignals(store).drift(policy("scorer"), T0 + 3 * HOUR)
    # drift switched off in the policy: no reference needed
    assert MonitoringSignals(store).drift(policy("scorer", drift_fire_at=None), T0).value is None


def test_a_missing_reference_profile_names_the_command_that_computes_it(
    store: FeatureStore,
) -> None:
    register(store)
    engine: sa.Engine = store.registry.store.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(profiles_table.delete())
    with pytest.raises(NoReference, match="parity monitor profile --dataset train_v1"):
        MonitoringSignals(store).drift(policy("scorer"), T0 + 3 * HOUR)


def test_signals_of_an_unknown_model_are_refused(store: FeatureStore) -> None:
    with pytest.raises(ModelNotFound, match="nope"):
        MonitoringSignals(store).drift(policy("nope"), T0)


# --- performance on final windows -----------------------------------------------------------


def perf_row(start: datetime, status: str, precision: float | None) -> dict[str, Any]:
    metrics = {"metrics": {"precision": precision, "auc": 0.5}, "reasons": {}}
    return {
        "project": "drifty",
        "monitor": "scorer_monitor",
        "model": "scorer",
        "version": 1,
        "window_start": start.isoformat(),
        "window_end": (start + HOUR).isoformat(),
        "as_of": (start + 5 * HOUR).isoformat(),
        "status": status,
        "predictions": 100,
        "labelled": 100,
        "coverage": 1.0,
        "metrics": json.dumps(metrics),
    }


def record_performance(store: FeatureStore, rows: list[dict[str, Any]]) -> None:
    engine: sa.Engine = store.registry.store.engine  # type: ignore[attr-defined]
    PerformanceHistory(engine, "drifty")  # creates the table
    with engine.begin() as conn:
        conn.execute(performance_table.insert(), rows)


def test_performance_drop_is_read_on_final_windows_only(store: FeatureStore) -> None:
    register(store, metrics={"val_precision": 0.75})
    record_performance(
        store,
        [
            perf_row(T0, "final", 0.8),
            perf_row(T0 + HOUR, "final", 0.7),
            perf_row(T0 + 2 * HOUR, "provisional", 0.1),  # labels still arriving: no evidence
            perf_row(T0 + 10 * HOUR, "final", 0.1),  # ends after now: not yet
        ],
    )
    signals = MonitoringSignals(store)
    now = T0 + 5 * HOUR
    seen = signals.performance(policy("scorer", metric="precision"), now)
    assert seen.value == pytest.approx((0.8 - 0.7) / 0.8)  # against the first final window
    assert seen.at == T0 + 2 * HOUR
    registered = policy("scorer", metric="precision", reference_metric="val_precision")
    assert signals.performance(registered, now).value == pytest.approx((0.75 - 0.7) / 0.75)
    missing = policy("scorer", metric="precision", reference_metric="val_auc")
    assert "val_auc" in str(signals.performance(missing, now).error)


def test_provisional_windows_alone_never_fire(store: FeatureStore, clock: Clock) -> None:
    register(store)
    record_performance(
        store, [perf_row(T0 + i * HOUR, "provisional", 0.9 - 0.2 * i) for i in range(4)]
    )
    triggers = Triggers(store, queue=FakeQueue())
    chosen = policy("scorer", metric="precision", drift_fire_at=None, sustain=1)
    assert MonitoringSignals(store).performance(chosen, T0 + 5 * HOUR).value is None
    decisions = triggers.engine.evaluate([chosen], T0 + 5 * HOUR)
    assert [d.action for d in decisions] == ["hold"]


# --- the triggers on a real store -----------------------------------------------------------


def test_triggers_fire_once_on_a_recorded_drift_run_of_a_shifted_log(
    store: FeatureStore, clock: Clock
) -> None:
    register(store, params={"feature_importance": IMPORTANCE})
    rng = np.random.default_rng(5)
    records: list[PredictionRecord] = []
    log_window(records, rng, T0, 600)
    log_window(records, rng, T0 + HOUR, 600, shifted=True)
    write_log(store, records)
    queue = FakeQueue(models={"scorer_training": "scorer"})
    triggers = Triggers(store, queue=queue)
    clock.now = T0 + 2 * HOUR + timedelta(minutes=5)  # just after the shifted hour
    tick = triggers.tick()
    assert any("recorded" in line for line in tick.monitors)
    [decision] = tick.decisions
    assert decision.action == "fire" and decision.job_id == 1
    # the share equals the one computed here from the drift run's own column verdicts
    report = store.monitoring.drift("scorer", since=T0 + HOUR, until=T0 + 2 * HOUR, persist=False)
    [window] = report.windows
    verdicts = {c.column: c.drifted for c in window.columns if c.kind in ("feature", "input")}
    judged = {k: v for k, v in verdicts.items() if v is not None}
    weights = {k: IMPORTANCE.get(k, 0.0) for k in judged}
    expected = sum(w for k, w in weights.items() if judged[k]) / sum(weights.values())
    assert decision.signals["drift"]["value"] == pytest.approx(expected)
    # a second pass in the same window: nothing new recorded, no second retrain
    again = triggers.tick()
    assert any("already recorded" in line for line in again.monitors)
    assert again.decisions[0].action == "suppress" and len(queue.jobs) == 1
    assert [d.action for d in triggers.history("scorer")] == ["suppress", "fire"]


def test_a_trigger_on_a_model_without_reference_is_a_recorded_suppress_naming_it(
    store: FeatureStore,
) -> None:
    register(store, dataset=None)
    triggers = Triggers(store, queue=FakeQueue())
    [decision] = triggers.evaluate(now=T0 + 3 * HOUR)
    assert decision.action == "suppress" and decision.id is not None
    assert "no_reference" in decision.reasons[0] and "scorer/1" in decision.reasons[0]
    assert triggers.history("scorer")[0].id == decision.id


def test_requests_and_history_refuse_unknown_models_and_bad_input(store: FeatureStore) -> None:
    register(store)
    triggers = Triggers(store, queue=FakeQueue())
    with pytest.raises(ModelNotFound, match="nope"):
        triggers.request("nope")
    with pytest.raises(ModelNotFound, match="nope"):
        triggers.history("nope")
    sample = pd.DataFrame({"conv_rate": [0.1], "trips": [3], "bonus": [1.0]})
    store.models.register_model("other", Scorer(), flavor="pyfunc", sample_input=sample)
    with pytest.raises(RetrainPolicyNotFound, match="other"):
        triggers.request("other")
    with pytest.raises(InvalidTime, match="timezone"):
        triggers.evaluate(now=datetime(2026, 6, 1))
    with pytest.raises(InvalidTime, match="outside"):
        triggers.evaluate(now=datetime(1, 1, 1, tzinfo=T0.tzinfo))
    with pytest.raises(InvalidTime, match="outside"):
        triggers.request("scorer", now=datetime(9999, 1, 1, tzinfo=T0.tzinfo))
    for limit in (0, -1, 2.5, True, "10"):
        with pytest.raises(InvalidOption, match="limit"):
            triggers.history(limit=limit)  # type: ignore[arg-type]
    for reason in (None, 3, "x" * 1001):
        with pytest.raises(InvalidOption, match="reason"):
            triggers.request("scorer", reason=reason)  # type: ignore[arg-type]
    assert triggers.engine.store.state("scorer").revision == 0  # nothing was recorded


def test_a_manual_request_on_a_real_store_fires_once(store: FeatureStore) -> None:
    register(store)
    queue = FakeQueue(models={"scorer_training": "scorer"})
    triggers = Triggers(store, queue=queue)
    triggers.request("scorer", reason="new labels", now=T0)
    triggers.request("scorer", reason="again", now=T0 + timedelta(minutes=1))
    first = triggers.evaluate(now=T0 + HOUR)
    second = triggers.evaluate(now=T0 + 2 * HOUR)
    assert [d.action for d in first] == ["fire"]
    assert "new labels; again" in first[0].reasons[0]
    assert second[0].action != "fire" and len(queue.jobs) == 1
    assert queue.jobs[0].reason == "manual" and queue.jobs[0].trigger_decision == first[0].id


def test_the_monitor_pass_records_performance_once_per_window(
    drift_repo: Path, clock: Clock
) -> None:
    labelled = LIFECYCLE.replace(
        "min_samples=50)",
        "min_samples=50,\n                             labels=LabelSource(path='data/entities.parquet', "
        "label='label', join_keys=('driver_id',)))",
    )
    opened = open_store(drift_repo, clock, labelled)
    try:
        register(opened)
        records: list[PredictionRecord] = []
        log_window(records, np.random.default_rng(3), T0, 300)
        write_log(opened, records)
        triggers = Triggers(opened, queue=FakeQueue())
        clock.now = T0 + 2 * HOUR
        first = [line for line in triggers.tick().monitors if "performance" in line]
        clock.now = T0 + 2 * HOUR + timedelta(minutes=5)
        second = [line for line in triggers.tick().monitors if "performance" in line]
        clock.now = T0 + 3 * HOUR + timedelta(minutes=5)
        third = [line for line in triggers.tick().monitors if "performance" in line]
        assert "recorded" in first[0] and "already" not in first[0], first
        assert "already recorded" in second[0]
        assert "already" not in third[0]
        as_of = {
            row["as_of"] for row in opened.monitoring.performance_history("scorer", latest=False)
        }
        assert as_of == {T0 + 2 * HOUR, T0 + 3 * HOUR + timedelta(minutes=5)}
    finally:
        opened.close()


def test_a_rollout_of_the_model_in_progress_is_read_and_holds_the_retrain(
    store: FeatureStore,
) -> None:
    register(store)
    register(store, dataset="train_v1")  # version 2, champion now
    store.models.set_alias("scorer", "champion", 1)
    signals = MonitoringSignals(store)
    assert signals.rollout("scorer") is None
    key = RoutingKey(name="x-user-id", source="header")
    started = store.rollouts.start(model="scorer", candidate=2, routing_key=key)
    assert signals.rollout("scorer") == f"{started.id} ({started.status})"
    triggers = Triggers(store, queue=FakeQueue())
    triggers.request("scorer", now=T0)
    [held] = triggers.evaluate(now=T0 + HOUR)
    assert held.action == "suppress" and started.id in held.reasons[0]
    store.rollouts.abort("scorer")
    [fired] = triggers.evaluate(now=T0 + 2 * HOUR)
    assert fired.action == "fire"
