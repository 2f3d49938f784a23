"""The alert state machine: hysteresis, sustain, insufficient data; checked against hand-worked
sequences and an independent oracle written over the whole history (not step by step)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parity.errors import InvalidAlertRule
from parity.monitoring.alerts import AlertState, check_rule, run, step


@dataclass(frozen=True)
class Rule:
    name: str = "drift"
    signal: str = "drift_share"
    fire_at: float = 0.5
    clear_at: float = 0.3
    sustain: int = 2
    direction: str = "above"


def test_fires_after_sustain_breaches_and_clears_after_sustain_clear_ones() -> None:
    values: list[float | None] = [0.6, 0.2, 0.6, 0.6, 0.4, 0.2, None, 0.2, 0.9]
    # 0.6 (1 breach), 0.2 breaks it, 0.6 0.6 -> fired at 3; 0.4 in the band keeps firing,
    # 0.2 (1 clear), None holds, 0.2 -> cleared at 7; 0.9 starts a new count.
    state, changes = run(Rule(), values)
    assert changes == [(3, "fired"), (7, "cleared")]
    assert state == AlertState(firing=False, streak=1)


def test_reaching_a_threshold_counts_as_crossing_it() -> None:
    rule = Rule(sustain=1)
    assert step(rule, AlertState(), 0.5) == (AlertState(True, 0), "fired")
    assert step(rule, AlertState(True, 0), 0.3) == (AlertState(False, 0), "cleared")
    assert step(rule, AlertState(True, 0), 0.30001) == (AlertState(True, 0), None)


def test_direction_below_fires_on_low_values() -> None:
    rule = Rule(signal="metric:auc", fire_at=0.7, clear_at=0.75, sustain=3, direction="below")
    values: list[float | None] = [0.8, 0.69, 0.6, 0.7, 0.72, 0.76, 0.8, 0.9]
    assert run(rule, values)[1] == [(3, "fired"), (7, "cleared")]


def test_insufficient_data_never_fires_nor_clears() -> None:
    assert run(Rule(sustain=1), [None] * 10) == (AlertState(), [])
    firing = AlertState(firing=True)
    assert run(Rule(sustain=1), [None, float("nan")], firing) == (firing, [])


def test_without_a_band_a_value_at_the_threshold_keeps_firing() -> None:
    rule = Rule(fire_at=0.5, clear_at=0.5, sustain=1)
    assert run(rule, [0.5, 0.5, 0.5, 0.49])[1] == [(0, "fired"), (3, "cleared")]


def test_a_breaking_value_in_the_band_restarts_the_count() -> None:
    assert run(Rule(sustain=2), [0.6, 0.45, 0.6])[1] == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"clear_at": 0.6}, "clear_at (0.6) must be at or below fire_at"),
        ({"direction": "below"}, "must be at or above fire_at"),
        ({"sustain": 0}, "sustain must be at least 1"),
        ({"direction": "up"}, "direction must be 'above' or 'below'"),
        ({"fire_at": float("nan")}, "fire_at must be a finite number"),
    ],
)
def test_rules_that_cannot_work_as_hysteresis_are_refused(
    changes: dict[str, object], field: str
) -> None:
    rule = Rule(**changes)  # type: ignore[arg-type]
    with pytest.raises(InvalidAlertRule, match=r"alert rule 'drift' \(signal 'drift_share'\)") as e:
        check_rule(rule)
    assert field in str(e.value)


def rules(gap: st.SearchStrategy[float]) -> st.SearchStrategy[Rule]:
    return st.builds(
        lambda fire, gap, sustain, above: Rule(
            fire_at=fire,
            clear_at=fire - gap if above else fire + gap,
            sustain=sustain,
            direction="above" if above else "below",
        ),
        st.floats(-10, 10),
        gap,
        st.integers(1, 4),
        st.booleans(),
    )


BANDED = rules(st.floats(0.01, 5))
RULES = rules(st.one_of(st.just(0.0), st.floats(0.01, 5)))
SIGNALS = st.lists(st.one_of(st.none(), st.floats(-20, 20)), max_size=40)


@given(BANDED, st.data(), st.booleans(), st.integers(0, 3))
def test_a_signal_oscillating_between_the_thresholds_never_toggles(
    rule: Rule, data: st.DataObject, firing: bool, streak: int
) -> None:
    low, high = sorted((rule.fire_at, rule.clear_at))
    band = st.floats(low, high, exclude_min=True, exclude_max=True)
    values = data.draw(st.lists(st.one_of(st.none(), band), max_size=40))
    state, changes = run(rule, values, AlertState(firing, min(streak, rule.sustain - 1)))
    assert changes == []
    assert state.firing is firing


def _oracle(rule: Rule, values: list[float | None]) -> list[tuple[int, str]]:
    """Transitions from the definition: after the last change, the first index at which the
    previous `sustain` known values all lie on the far side of the threshold in force."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    changes: list[tuple[int, str]] = []
    firing, start = False, 0
    for k in range(len(known)):
        window = known[max(start, k - rule.sustain + 1) : k + 1]
        if len(window) < rule.sustain:
            continue
        if firing:
            crossed = all(
                (v < rule.fire_at and v <= rule.clear_at)
                if rule.direction == "above"
                else (v > rule.fire_at and v >= rule.clear_at)
                for _, v in window
            )
        else:
            crossed = all(
                (v >= rule.fire_at if rule.direction == "above" else v <= rule.fire_at)
                for _, v in window
            )
        if crossed:
            firing = not firing
            changes.append((known[k][0], "fired" if firing else "cleared"))
            start = k + 1
    return changes


@given(RULES, SIGNALS)
def test_transitions_match_the_definition_over_the_whole_history(
    rule: Rule, values: list[float | None]
) -> None:
    state, changes = run(rule, values)
    assert changes == _oracle(rule, values)
    assert state.firing is (len(changes) % 2 == 1)


@given(RULES, SIGNALS)
def test_events_alternate_and_start_with_fired(rule: Rule, values: list[float | None]) -> None:
    kinds = [kind for _, kind in run(rule, values)[1]]
    assert kinds == ["fired", "cleared"] * (len(kinds) // 2) + ["fired"] * (len(kinds) % 2)
