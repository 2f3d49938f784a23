"""The online store's circuit breaker as a pure state machine, driven by a hand-moved clock."""

from __future__ import annotations

import pytest

from parity.online.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_failures_below_the_threshold_keep_it_closed_and_a_success_resets_the_count(
    clock: Clock,
) -> None:
    breaker = CircuitBreaker(failures=3, cool_down_seconds=10, clock=clock)
    for _ in range(2):
        assert breaker.allow() is None
        breaker.record_failure()
    breaker.record_success()
    for _ in range(2):
        assert breaker.allow() is None
        breaker.record_failure()
    assert breaker.state == "closed"
    assert breaker.allow() is None


def test_n_failures_in_a_row_open_it_and_calls_are_refused_until_the_cool_down_ends(
    clock: Clock,
) -> None:
    breaker = CircuitBreaker(failures=3, cool_down_seconds=10, clock=clock)
    for _ in range(3):
        breaker.allow()
        breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.allow() == pytest.approx(10.0)
    clock.now += 4
    assert breaker.allow() == pytest.approx(6.0)
    assert breaker.state == "open"


def test_after_the_cool_down_one_probe_goes_through_and_its_success_closes_it(
    clock: Clock,
) -> None:
    breaker = CircuitBreaker(failures=2, cool_down_seconds=5, clock=clock)
    for _ in range(2):
        breaker.record_failure()
    clock.now += 5
    assert breaker.allow() is None  # the probe
    assert breaker.state == "half_open"
    refused = breaker.allow()  # while the probe is out, others are still refused
    assert refused is not None and refused > 0
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow() is None


def test_a_failed_probe_opens_it_again_for_a_whole_cool_down(clock: Clock) -> None:
    breaker = CircuitBreaker(failures=2, cool_down_seconds=5, clock=clock)
    for _ in range(2):
        breaker.record_failure()
    clock.now += 7
    assert breaker.allow() is None
    clock.now += 1  # the probe took a second to fail
    breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.allow() == pytest.approx(5.0)
    clock.now += 5
    assert breaker.allow() is None
    assert breaker.state == "half_open"


def test_a_probe_released_without_a_verdict_lets_the_next_call_probe(clock: Clock) -> None:
    breaker = CircuitBreaker(failures=1, cool_down_seconds=5, clock=clock)
    breaker.record_failure()
    clock.now += 5
    assert breaker.allow() is None
    breaker.release()  # e.g. the caller was cancelled mid-call
    assert breaker.allow() is None
    assert breaker.state == "half_open"


def test_failures_that_end_after_it_opened_do_not_extend_the_cool_down(clock: Clock) -> None:
    """Calls started before the circuit opened fail late; they must not push the probe back."""
    breaker = CircuitBreaker(failures=1, cool_down_seconds=5, clock=clock)
    breaker.record_failure()
    clock.now += 3
    breaker.record_failure()  # a straggler
    assert breaker.allow() == pytest.approx(2.0)


@pytest.mark.parametrize(("failures", "cool_down"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_nonsense_settings_are_refused(failures: int, cool_down: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failures=failures, cool_down_seconds=cool_down)


def test_opens_counts_every_opening_a_failed_probes_included(clock: Clock) -> None:
    breaker = CircuitBreaker(failures=2, cool_down_seconds=10, clock=clock)
    assert breaker.opens == 0
    for _ in range(2):
        assert breaker.allow() is None
        breaker.record_failure()
    breaker.record_failure()  # a call started before it opened: not a new opening
    assert (breaker.state, breaker.opens) == ("open", 1)
    clock.now += 10
    assert breaker.allow() is None  # the probe
    breaker.release()  # it went away without an answer: still open, not opened again
    assert (breaker.state, breaker.opens) == ("open", 1)
    assert breaker.allow() is None
    breaker.record_failure()  # the probe failed
    assert (breaker.state, breaker.opens) == ("open", 2)
    clock.now += 10
    assert breaker.allow() is None
    breaker.record_success()
    assert (breaker.state, breaker.opens) == ("closed", 2)
