"""QA: wrong types and unknown names in the Python API are typed errors naming them: a window
given as a number (was a TypeError from datetime arithmetic), an alert signal given text (was a
TypeError from the state machine), the drift history of a model that does not exist (was an
empty list, indistinguishable from 'never run')."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from parity import FeatureStore
from parity.errors import InvalidSignalValue, InvalidWindow, ModelNotFound
from tests.monitoring.test_drift_runs import register, repo, store

__all__ = ["repo", "store"]  # the fixtures


@pytest.mark.parametrize("window", [5, 3600.0])
def test_a_numeric_window_is_refused_naming_it(store: FeatureStore, window: float) -> None:
    register(store)
    with pytest.raises(InvalidWindow, match=f"window {window!r} is a"):
        store.monitoring.drift("scorer", window=window)  # type: ignore[arg-type]


def test_an_alert_signal_that_is_not_a_number_is_refused(store: FeatureStore) -> None:
    (store.repo_path / "monitors.py").write_text(
        "from parity import AlertRule, Monitor\n"
        "m = Monitor(name='m', model='scorer', alerts=[\n"
        "    AlertRule(name='d', signal='drift_share', fire_at=0.5, clear_at=0.3)])\n"
    )
    store.apply()
    at = datetime(2026, 3, 2, tzinfo=UTC)
    with pytest.raises(InvalidSignalValue, match="'drift_share' = 'high'"):
        store.monitoring.evaluate_alerts({"drift_share": "high"}, at=at)  # type: ignore[dict-item]
    assert store.monitoring.evaluate_alerts({"drift_share": None}, at=at) == []


def test_the_history_of_an_unknown_model_names_it(store: FeatureStore) -> None:
    register(store)
    assert store.monitoring.drift_history("scorer") == []
    with pytest.raises(ModelNotFound, match="nobody"):
        store.monitoring.drift_history("nobody")
