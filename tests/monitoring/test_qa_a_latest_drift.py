"""QA: the model server's drift gauges show each column's newest WINDOW, not the most recently
inserted row. A backfill run of an old range (recorded after the current one) made
parity_dataset_drift_share fall from 0.75 to 0.0 on the fraud example while the current week
still drifted. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine

from parity.monitoring.drift_history import DriftHistory
from tests.monitoring.test_drift_stores import T0, drift_row, engine

__all__ = ["engine"]  # the fixture (sqlite and postgres)


def test_a_backfill_run_does_not_replace_the_newest_window(
    engine: Engine, project_name: str
) -> None:
    history = DriftHistory(engine)
    current = drift_row(project_name, "now", "amount", T0 + timedelta(days=42), statistic=0.56)
    backfill = drift_row(project_name, "old", "amount", T0, statistic=0.01)
    history.record([current])
    history.record([backfill])  # recorded later, about an older window
    assert history.latest(project_name) == [current]


def test_the_same_window_judged_twice_shows_the_later_run(
    engine: Engine, project_name: str
) -> None:
    history = DriftHistory(engine)
    first = drift_row(project_name, "r1", "amount", T0, statistic=0.3)
    again = drift_row(project_name, "r2", "amount", T0, statistic=0.4)
    other = drift_row(project_name, "r2", "amount", T0, version=2, statistic=0.7)
    history.record([first])
    history.record([again, other])
    assert history.latest(project_name) == [again, other]
