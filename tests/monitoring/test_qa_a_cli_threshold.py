"""QA: the drift table's threshold says its direction. A KS row read 'statistic 0.069,
threshold 0.05, no drift' (the 0.05 bounds the p-value, not the statistic shown beside it)."""

from __future__ import annotations

from parity.cli.monitor import _drift_threshold


def test_p_value_tests_show_p_and_distances_show_at_or_above() -> None:
    assert _drift_threshold(0.05, 0.41) == "p <= 0.05"
    assert _drift_threshold(0.1, None) == ">= 0.1"
    assert _drift_threshold(None, None) == "-"
