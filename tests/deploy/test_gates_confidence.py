"""deploy/bounds.py and the three-way latency_p99 / error_rate verdicts: the order-statistic ranks
against scipy.stats.binom, Wilson and Newcombe against hand-worked and scipy values, and seeded
simulated rollouts on the default ramp: an identical candidate is promoted, a truly worse one
(p99 50 % slower, 5 points more errors) is rolled back within its shadow phase."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from parity.definitions.rollout import Gate, Rollout
from parity.deploy import bounds
from parity.deploy import gates as g

LATENCY, ERRORS = Gate(metric="latency_p99"), Gate(metric="error_rate")


# --- order-statistic bounds ---------------------------------------------------------------------


def scipy_ranks(n: int, p: float, confidence: float) -> tuple[int | None, int | None]:
    """The largest r with P(Binomial(n, p) >= r) >= confidence, the smallest s with
    P(Binomial(n, p) <= s - 1) >= confidence, by brute force over every rank."""
    r = np.arange(1, n + 1)
    lower = r[scipy_stats.binom.sf(r - 1, n, p) >= confidence]
    upper = r[scipy_stats.binom.cdf(r - 1, n, p) >= confidence]
    return (int(lower.max()) if lower.size else None, int(upper.min()) if upper.size else None)


@pytest.mark.parametrize(("p", "confidence"), [(0.99, 0.95), (0.99, 0.9), (0.9, 0.95), (0.5, 0.99)])
def test_quantile_ranks_are_scipys_binomial_ranks(p: float, confidence: float) -> None:
    sizes = [*range(1, 700), 999, 1_000, 4_321, 20_000]
    for n in sizes:
        assert bounds.quantile_ranks(n, p, confidence) == scipy_ranks(n, p, confidence), n


def test_a_million_rows_still_match_scipy() -> None:
    n = 1_000_000
    lower, upper = bounds.quantile_ranks(n, 0.99, 0.95)
    assert lower is not None and upper is not None
    assert scipy_stats.binom.sf(lower - 1, n, 0.99) >= 0.95 > scipy_stats.binom.sf(lower, n, 0.99)
    assert (
        scipy_stats.binom.cdf(upper - 1, n, 0.99)
        >= 0.95
        > scipy_stats.binom.cdf(upper - 2, n, 0.99)
    )


def test_the_p99_upper_bound_needs_299_rows_and_then_is_the_maximum() -> None:
    # 0.99 ** 298 = 0.0501 > 0.05 >= 0.99 ** 299 = 0.0496: the maximum is a 95 % upper bound
    # of the p99 only from 299 values
    assert 0.99**298 > 0.05 >= 0.99**299
    assert bounds.fewest_for_upper(0.99, 0.95) == 299
    assert bounds.quantile_ranks(298, 0.99, 0.95)[1] is None
    assert bounds.quantile_ranks(299, 0.99, 0.95)[1] == 299
    assert bounds.quantile_ranks(0, 0.99, 0.95) == (None, None)
    assert bounds.quantile_ranks(1, 0.99, 0.95) == (1, None)  # 1 - 0.01 >= 0.95


def test_p99_bounds_are_the_values_at_those_ranks() -> None:
    values = np.random.default_rng(3).permutation(np.arange(1.0, 1_001.0))
    lower, upper = scipy_ranks(1_000, 0.99, 0.95)
    assert (lower, upper) == (985, 996)
    assert g.p99_bounds(values) == (985.0, 996.0)  # 1..1000: the value is the rank
    assert g.p99_bounds(np.arange(1.0, 101.0)) == (97.0, None)


def test_the_p99_lower_bound_covers_the_true_p99_at_least_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(5)
    true_p99 = math.exp(0.5 * scipy_stats.norm.ppf(0.99))
    draws = [g.p99_bounds(rng.lognormal(0, 0.5, 400)) for _ in range(2_000)]
    below = sum(low is not None and low <= true_p99 for low, _ in draws) / len(draws)
    above = sum(high is not None and high >= true_p99 for _, high in draws) / len(draws)
    assert below >= 0.94 and above >= 0.94, (below, above)


# --- Wilson and Newcombe ------------------------------------------------------------------------


def test_wilson_interval_is_the_hand_worked_one() -> None:
    # 5 errors in 100 at z = 1.6449 (each end a one-sided 95 % bound): z^2 = 2.70554,
    # centre (0.05 + 0.0135277) / 1.0270554 = 0.0618542,
    # half 1.6449 / 1.0270554 * sqrt(0.0475 / 100 + 2.70554 / 40000) = 0.0373074
    low, high = bounds.wilson(5, 100, 1.6448536269514722)
    assert low == pytest.approx(0.0245468, abs=1e-6)
    assert high == pytest.approx(0.0991616, abs=1e-6)
    found = scipy_stats.binomtest(5, 100).proportion_ci(confidence_level=0.90, method="wilson")
    assert (low, high) == pytest.approx((found.low, found.high), abs=1e-12)


@pytest.mark.parametrize(("errors", "n"), [(0, 10), (1, 7), (10, 10), (3, 1_000), (500, 20_000)])
def test_wilson_matches_scipy_at_the_edges(errors: int, n: int) -> None:
    found = scipy_stats.binomtest(errors, n).proportion_ci(confidence_level=0.90, method="wilson")
    assert bounds.wilson(errors, n, scipy_stats.norm.ppf(0.95)) == pytest.approx(
        (found.low, found.high), abs=1e-12
    )


def test_newcombe_difference_is_the_papers_worked_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, method 10 for 56/70 - 48/80: 95 %
    # interval 0.0524 to 0.3339; its lower end is a one-sided 97.5 % bound
    assert bounds.difference_lower(56, 70, 48, 80, 0.975) == pytest.approx(0.0524, abs=5e-5)
    assert bounds.difference_lower(48, 80, 56, 70, 0.975) == pytest.approx(-0.3339, abs=5e-5)


# --- three-way verdicts ---------------------------------------------------------------------------


def test_latency_over_the_limit_fails_only_when_the_bounds_clear_it() -> None:
    # champion 1..1000: p99 990 (rank 990), 95 % upper bound 996 (rank 996); bound 996 * 1.1
    champion = np.arange(1.0, 1_001.0)
    failing = np.r_[np.ones(984), np.full(16, 1_100.0)]  # rank 985 (the lower bound) is 1,100
    result = g.latency_gate(LATENCY, failing, champion)
    assert (result.verdict, result.candidate, result.champion) == ("fail", 1_100.0, 990.0)
    assert "candidate p99 >= 1100 ms > 1096 ms (champion p99 <= 996 ms + 10 %)" in result.reason
    held = g.latency_gate(LATENCY, np.r_[np.ones(985), np.full(15, 1_100.0)], champion)
    assert (held.verdict, held.candidate, held.champion) == ("inconclusive", 1_100.0, 990.0)
    assert held.reason.startswith("over the limit but not yet significant: candidate p99 1100")
    assert "candidate p99 >= 1 ms <= 1096 ms" in held.reason


def test_latency_with_a_champion_under_299_rows_cannot_fail() -> None:
    gate = Gate(metric="latency_p99", min_samples=1)
    slow = g.latency_gate(gate, np.full(298, 1e6), np.full(298, 1.0))
    assert slow.verdict == "inconclusive"
    assert "champion's 298 latencies bound its p99 from above at 95 % confidence only from 299" in (
        slow.reason
    )
    assert g.latency_gate(gate, np.full(298, 1e6), np.full(299, 1.0)).verdict == "fail"


def test_error_rate_over_the_limit_fails_only_at_95_percent() -> None:
    # 20 of 100 vs 5 of 100 against a 1-point limit: Newcombe's one-sided 95 % lower bound of the
    # difference, from scipy's Wilson intervals, must exceed 0.01
    def newcombe(a: int, n: int, b: int, m: int) -> float:
        ci_a = scipy_stats.binomtest(a, n).proportion_ci(confidence_level=0.9, method="wilson")
        ci_b = scipy_stats.binomtest(b, m).proportion_ci(confidence_level=0.9, method="wilson")
        return a / n - b / m - math.hypot(a / n - ci_a.low, ci_b.high - b / m)

    for cand, champ, n in [(20, 5, 100), (4, 1, 100), (9, 1, 100), (8, 1, 100), (130, 60, 5_000)]:
        ok_c, ok_h = np.arange(n) >= cand, np.arange(n) >= champ
        result = g.error_rate_gate(ERRORS, ok_c, ok_h)
        expected = "fail" if newcombe(cand, n, champ, n) > 0.01 else "inconclusive"
        assert result.verdict == expected, (cand, champ, n, result.reason)
        if expected == "inconclusive":
            assert result.reason.startswith("over the limit but not yet significant: ")
    assert g.error_rate_gate(ERRORS, np.arange(100) >= 20, np.arange(100) >= 5).verdict == "fail"
    assert g.error_rate_gate(ERRORS, np.arange(100) >= 4, np.arange(100) >= 1).verdict == (
        "inconclusive"
    )


# --- simulated rollouts on the default ramp -------------------------------------------------------


def rollout(
    rng: np.random.Generator, slower: float = 1.0, errors: float = 0.01, rate: int = 600
) -> tuple[str, str]:
    """(outcome, phase): 'aborted' and where, 'promoted', or 'stuck' where a phase held for 240
    checks. The default phases (the 100 % step, without a concurrent champion, left out), a
    check a minute, `rate` requests a minute; the champion's latencies 10 ms * lognormal(0, 0.5)
    and 1 % errors, the candidate's latencies `slower` times those and `errors` errors."""
    defaults = Rollout(name="r", model="m", candidate=2)
    for phase in [defaults.shadow, *defaults.steps[:-1]]:
        assert phase is not None
        lat: tuple[list[float], list[float]] = ([], [])
        ok: tuple[list[bool], list[bool]] = ([], [])
        for minute in range(1, 241):
            cand = rate if phase.weight == 0 else int(rng.binomial(rate, phase.weight / 100))
            champ = rate if phase.weight == 0 else rate - cand
            for arm, n, scale, share in ((0, cand, slower, errors), (1, champ, 1.0, 0.01)):
                lat[arm].extend(10 * scale * rng.lognormal(0, 0.5, n))
                ok[arm].extend(rng.random(n) >= share)
            results = [
                g.latency_gate(LATENCY, np.array(lat[0]), np.array(lat[1])),
                g.error_rate_gate(ERRORS, np.array(ok[0]), np.array(ok[1])),
            ]
            if any(r.verdict == "fail" for r in results):
                return "aborted", f"{phase.weight:g}"
            elapsed = minute >= phase.duration.total_seconds() / 60
            passed = all(r.verdict == "pass" for r in results)
            if passed and elapsed and len(ok[0]) >= phase.min_samples:
                break
        else:
            return "stuck", f"{phase.weight:g}"
    return "promoted", ""


def test_a_candidate_identical_to_the_champion_is_promoted_never_stuck() -> None:
    rng = np.random.default_rng(21)
    outcomes = [rollout(rng)[0] for _ in range(30)]
    assert outcomes.count("stuck") == 0
    assert outcomes.count("promoted") >= 28, outcomes


@pytest.mark.parametrize("rate", [600, 60])  # 10 and 1 requests a second
def test_a_candidate_fifty_percent_slower_is_rolled_back_in_its_shadow_phase(rate: int) -> None:
    rng = np.random.default_rng(rate)
    outcomes = [rollout(rng, slower=1.5, rate=rate) for _ in range(10)]
    assert outcomes == [("aborted", "0")] * 10


@pytest.mark.parametrize("rate", [600, 60])
def test_five_points_more_errors_is_rolled_back_in_its_shadow_phase(rate: int) -> None:
    rng = np.random.default_rng(rate + 1)
    outcomes = [rollout(rng, errors=0.06, rate=rate) for _ in range(10)]
    assert outcomes == [("aborted", "0")] * 10
