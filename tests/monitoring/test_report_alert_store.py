"""Durable alert state and events on SQLite and PostgreSQL: events recorded once, sustain
counters that survive a restart (a new store on the same database), idempotent re-evaluation,
and the Prometheus gauges."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from parity.errors import InvalidAlertRule
from parity.monitoring.alert_store import AlertStore, render_alert_gauges
from parity.registry.sql import create_registry_engine

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Rule:
    name: str = "fraud_drift"
    signal: str = "drift_share"
    fire_at: float = 0.5
    clear_at: float = 0.3
    sustain: int = 2
    direction: str = "above"


AUC = Rule(
    name="auc_low", signal="metric:auc", fire_at=0.7, clear_at=0.75, sustain=1, direction="below"
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    created = create_registry_engine(url)
    yield created
    created.dispose()


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(days=30)

    def __call__(self) -> datetime:
        return self.now


def test_events_follow_hysteresis_and_survive_a_restart(engine: Engine, project_name: str) -> None:
    clock = Clock()
    store = AlertStore(engine, project_name, clock=clock)
    assert store.evaluate("fraud", [Rule()], {"drift_share": 0.6}, T0) == []
    # A restart between the two breaching windows: the new store resumes the count.
    store = AlertStore(engine, project_name, clock=clock)
    (fired,) = store.evaluate("fraud", [Rule()], {"drift_share": 0.55}, T0 + HOUR)
    assert (fired.rule, fired.state, fired.value, fired.at) == (
        "fraud_drift",
        "fired",
        0.55,
        T0 + HOUR,
    )
    assert (fired.fire_at, fired.clear_at, fired.sustain, fired.recorded_at) == (
        0.5,
        0.3,
        2,
        clock.now,
    )
    # In the band, insufficient data, one clear window, restart, second clear window.
    assert store.evaluate("fraud", [Rule()], {"drift_share": 0.4}, T0 + 2 * HOUR) == []
    assert store.evaluate("fraud", [Rule()], {"drift_share": None}, T0 + 3 * HOUR) == []
    assert store.evaluate("fraud", [Rule()], {"drift_share": 0.1}, T0 + 4 * HOUR) == []
    store = AlertStore(engine, project_name, clock=clock)
    (cleared,) = store.evaluate("fraud", [Rule()], {"drift_share": 0.2}, T0 + 5 * HOUR)
    assert (cleared.state, cleared.value, cleared.at) == ("cleared", 0.2, T0 + 5 * HOUR)
    history = [(e.state, e.at) for e in store.events()]
    assert history == [("cleared", T0 + 5 * HOUR), ("fired", T0 + HOUR)]
    (status,) = store.statuses()
    assert (status.firing, status.streak, status.last_value, status.since) == (
        False,
        0,
        0.2,
        T0 + 5 * HOUR,
    )


def test_evaluating_the_same_window_twice_counts_once(engine: Engine, project_name: str) -> None:
    store = AlertStore(engine, project_name)
    for _ in range(3):
        assert store.evaluate("fraud", [Rule()], {"drift_share": 0.9}, T0) == []
    # An older window arriving late is ignored too.
    assert store.evaluate("fraud", [Rule()], {"drift_share": 0.9}, T0 - HOUR) == []
    assert store.statuses()[0].streak == 1
    assert len(store.evaluate("fraud", [Rule()], {"drift_share": 0.9}, T0 + HOUR)) == 1


def test_active_lists_only_rules_firing_now(engine: Engine, project_name: str) -> None:
    store = AlertStore(engine, project_name)
    rules = [Rule(), AUC]
    store.evaluate("fraud", rules, {"drift_share": 0.9, "metric:auc": 0.6}, T0)
    store.evaluate("fraud", rules, {"drift_share": 0.9, "metric:auc": 0.8}, T0 + HOUR)
    # drift fired at T0+1h (sustain 2); auc fired at T0 and cleared at T0+1h.
    assert [(e.rule, e.state) for e in store.active()] == [("fraud_drift", "fired")]
    assert sorted((e.rule, e.state) for e in store.events()) == [
        ("auc_low", "cleared"),
        ("auc_low", "fired"),
        ("fraud_drift", "fired"),
    ]
    assert [s.rule for s in store.statuses(firing_only=True)] == ["fraud_drift"]
    assert store.active(monitor="other") == []


def test_rules_without_their_signal_are_not_evaluated(engine: Engine, project_name: str) -> None:
    store = AlertStore(engine, project_name)
    store.evaluate("fraud", [Rule(), AUC], {"metric:auc": 0.9}, T0)
    assert [s.rule for s in store.statuses()] == ["auc_low"]


def test_projects_and_monitors_are_separate(engine: Engine, project_name: str) -> None:
    one = AlertStore(engine, project_name)
    other = AlertStore(engine, project_name + "_b")
    one.evaluate("fraud", [replace(Rule(), sustain=1)], {"drift_share": 1.0}, T0)
    one.evaluate("churn", [replace(Rule(), sustain=1)], {"drift_share": 0.0}, T0)
    assert [(e.monitor, e.state) for e in one.events()] == [("fraud", "fired")]
    assert other.events() == [] and other.statuses() == []


def test_a_changed_rule_keeps_its_state_but_restarts_the_count(
    engine: Engine, project_name: str
) -> None:
    store = AlertStore(engine, project_name)
    store.evaluate("fraud", [Rule(sustain=3)], {"drift_share": 0.9}, T0)
    store.evaluate("fraud", [Rule(sustain=3)], {"drift_share": 0.9}, T0 + HOUR)
    assert (
        store.evaluate("fraud", [Rule(sustain=3, fire_at=0.8)], {"drift_share": 0.9}, T0 + 2 * HOUR)
        == []
    )
    assert store.statuses()[0].streak == 1


def test_infinite_and_nan_values(engine: Engine, project_name: str) -> None:
    store = AlertStore(engine, project_name)
    rule = Rule(sustain=1)
    assert store.evaluate("fraud", [rule], {"drift_share": float("nan")}, T0) == []
    (event,) = store.evaluate("fraud", [rule], {"drift_share": float("inf")}, T0 + HOUR)
    assert event.value == float("inf")
    assert store.events()[0].value == float("inf")


def test_an_invalid_rule_stores_nothing(engine: Engine, project_name: str) -> None:
    store = AlertStore(engine, project_name)
    with pytest.raises(InvalidAlertRule, match="fraud_drift"):
        store.evaluate("fraud", [Rule(sustain=1), Rule(clear_at=0.7)], {"drift_share": 0.9}, T0)
    assert store.statuses() == []


def test_concurrent_evaluations_of_one_window_fire_once(engine: Engine, project_name: str) -> None:
    stores = [AlertStore(engine, project_name) for _ in range(4)]
    rule = Rule(sustain=1)
    barrier = threading.Barrier(len(stores))
    results: list[int] = []

    def evaluate(store: AlertStore) -> None:
        barrier.wait()
        results.append(len(store.evaluate("fraud", [rule], {"drift_share": 0.9}, T0)))

    threads = [threading.Thread(target=evaluate, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 0, 0, 1]
    assert len(stores[0].events()) == 1


def test_gauges_show_every_evaluated_rule(engine: Engine, project_name: str) -> None:
    store = AlertStore(engine, project_name)
    store.evaluate(
        "fraud", [replace(Rule(), sustain=1), AUC], {"drift_share": 0.9, "metric:auc": 0.9}, T0
    )
    text = render_alert_gauges(store.statuses()).decode()
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "parity_alert_firing"]
    assert family.type == "gauge"
    samples = {(s.labels["monitor"], s.labels["rule"]): s.value for s in family.samples}
    assert samples == {("fraud", "fraud_drift"): 1.0, ("fraud", "auc_low"): 0.0}


def test_tables_are_prefixed(engine: Engine, project_name: str) -> None:
    AlertStore(engine, project_name)
    names = set(sa.inspect(engine).get_table_names())
    assert {"parity_monitor_alert_events", "parity_monitor_alert_state"} <= names


def test_gauges_never_read_the_database_on_a_scrape() -> None:
    from parity.monitoring.alert_store import AlertGauges, AlertStatus

    now = [0.0]
    reads: list[int] = []
    spawned: list[object] = []
    statuses = [AlertStatus("fraud", "drifting", "drift_share", True, 0, 0.9, T0, T0)]

    def read() -> list[AlertStatus]:
        reads.append(1)
        if len(reads) == 2:
            raise RuntimeError("registry down")
        return statuses

    gauges = AlertGauges(read, refresh_seconds=30, clock=lambda: now[0], spawn=spawned.append)

    def scrape() -> dict[str, float]:
        (family,) = gauges.collect()
        return {s.labels["rule"]: s.value for s in family.samples}

    assert scrape() == {} and len(spawned) == 1 and reads == []  # a read started, not awaited
    assert scrape() == {} and len(spawned) == 1  # one read at a time
    gauges.refresh()  # the background read runs
    assert scrape() == {"drifting": 1.0} and len(spawned) == 1
    now[0] = 31.0
    assert scrape() == {"drifting": 1.0} and len(spawned) == 2
    gauges.refresh()  # this read fails: the last values stay
    assert scrape() == {"drifting": 1.0} and len(reads) == 2
