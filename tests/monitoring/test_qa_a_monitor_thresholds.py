"""QA: a Monitor's per-column drift threshold must be a positive finite number; NaN was accepted
and made the column 'no drift' forever (NaN compares False), inf never drifted, a negative
distance threshold always drifted."""

from __future__ import annotations

import math

import pytest

from parity import Monitor
from parity.errors import InvalidDefinition


@pytest.mark.parametrize("threshold", [math.nan, math.inf, -1.0, 0.0])
def test_a_threshold_that_cannot_decide_is_refused_naming_the_column(threshold: float) -> None:
    with pytest.raises(InvalidDefinition, match=r"thresholds\['amount'\]"):
        Monitor(name="m", model="fraud", thresholds={"amount": threshold})


def test_ordinary_thresholds_are_kept() -> None:
    monitor = Monitor(name="m", model="fraud", thresholds={"amount": 0.2, "kyc_level": 0.01})
    assert monitor.thresholds == {"amount": 0.2, "kyc_level": 0.01}


def test_an_empty_column_list_is_refused() -> None:
    # columns=[] tested nothing: every window 'insufficient data' forever, no error
    with pytest.raises(InvalidDefinition, match="columns is empty"):
        Monitor(name="m", model="fraud", columns=[])
    assert Monitor(name="m", model="fraud", columns=["amount"]).columns == ("amount",)


def test_evidentlys_test_names_are_accepted_as_the_docs_say() -> None:
    # docs/monitoring.md and stats.ALIASES: "Evidently's chisquare, jensenshannon, z are accepted"
    from parity.monitoring.stats import ALIASES

    tests = dict.fromkeys(ALIASES, "x")
    monitor = Monitor(name="m", model="fraud", tests={name: name for name in tests})
    assert set(monitor.tests.values()) == set(ALIASES)
