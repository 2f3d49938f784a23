"""deploy/gates.py: each gate's verdict on arrays, against numpy / scipy / scikit-learn computed
on the same data, and the custom gate contract."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from parity import Gate
from parity.deploy import gates as g

RNG = np.random.default_rng(14)
T0 = datetime(2026, 5, 1, tzinfo=UTC)


# --- latency p99 --------------------------------------------------------------------------------


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=400), st.integers(1, 99))
@settings(max_examples=200, deadline=None)
def test_nearest_rank_is_numpys_inverted_cdf(values: list[float], percent: int) -> None:
    x = np.array(values)
    expected = np.quantile(x, percent / 100, method="inverted_cdf")
    assert g.nearest_rank(x.copy(), percent) == expected


def test_p99_of_100_values_is_the_99th_smallest_and_of_101_the_100th() -> None:
    hundred = RNG.permutation(np.arange(1.0, 101.0))
    assert g.nearest_rank(hundred) == 99.0  # ceil(0.99 * 100) = 99
    assert g.nearest_rank(RNG.permutation(np.arange(1.0, 102.0))) == 100.0  # ceil(99.99) = 100


def test_latency_passes_up_to_champion_p99_plus_the_limit_and_holds_above_it() -> None:
    gate = Gate(metric="latency_p99", threshold=0.10, min_samples=100)
    champion = np.arange(1.0, 101.0)  # p99 = 99 ms; bound 108.9 ms
    at_bound = np.r_[np.ones(98), 108.9, 500.0]  # p99 = the 99th smallest = 108.9
    above = np.r_[np.ones(98), 109.0, 500.0]
    passed = g.latency_gate(gate, at_bound, champion)
    assert (passed.verdict, passed.candidate, passed.champion) == ("pass", 108.9, 99.0)
    # over the limit, but 100 champion rows give its p99 no 95 % upper bound (299 needed)
    held = g.latency_gate(gate, above, champion)
    assert (held.verdict, held.candidate, held.limit) == ("inconclusive", 109.0, 0.10)
    assert "109 ms > 108.9 ms" in held.reason and "champion p99 99 ms + 10 %" in held.reason
    assert held.samples == {"candidate": 100, "champion": 100}
    # ten times the rows: champion 1..1000 (p99 990, 95 % upper bound the 996th: 996); the
    # candidate's 95 % lower bound is its 985th smallest
    champion = np.arange(1.0, 1_001.0)
    failed = g.latency_gate(gate, np.r_[np.ones(984), np.full(16, 1_096.0)], champion)
    assert (failed.verdict, failed.candidate, failed.champion) == ("fail", 1_096.0, 990.0)
    assert "candidate p99 >= 1096 ms > 1096 ms" in failed.reason  # 996 * 1.1 = 1095.6
    at_ceiling = g.latency_gate(gate, np.r_[np.ones(984), np.full(16, 1_095.6)], champion)
    assert at_ceiling.verdict == "inconclusive"


def test_latency_default_threshold_is_ten_percent() -> None:
    result = g.latency_gate(Gate(metric="latency_p99", min_samples=1), [11.0], [10.0])
    assert (result.verdict, result.limit) == ("pass", 0.10)
    gate = Gate(metric="latency_p99", min_samples=1)
    assert g.latency_gate(gate, [11.01], [10.0]).verdict == "inconclusive"  # one row each
    assert g.latency_gate(gate, np.full(299, 11.01), np.full(299, 10.0)).verdict == "fail"
    assert g.latency_gate(gate, np.full(299, 11.0), np.full(299, 10.0)).verdict == "pass"


def test_latency_below_min_samples_is_inconclusive_never_pass() -> None:
    gate = Gate(metric="latency_p99", min_samples=100)
    result = g.latency_gate(gate, np.ones(99), np.ones(500))
    assert result.verdict == "inconclusive"
    assert result.candidate is None and "candidate 99" in result.reason
    assert "champion" not in result.reason.split(":")[1]  # only the short arm is named
    assert g.latency_gate(gate, [], []).verdict == "inconclusive"


def test_latency_nan_and_inf_are_dropped_counted_and_do_not_fill_min_samples() -> None:
    gate = Gate(metric="latency_p99", min_samples=100)
    candidate = np.r_[np.arange(1.0, 101.0), np.nan, np.inf, -np.inf]
    result = g.latency_gate(gate, candidate, np.arange(1.0, 101.0))
    assert (result.verdict, result.candidate) == ("pass", 99.0)  # the inf did not become the p99
    assert "candidate 3" in result.reason and result.samples["candidate"] == 100
    short = g.latency_gate(gate, np.r_[np.ones(99), np.full(50, np.nan)], np.ones(100))
    assert short.verdict == "inconclusive"


# --- error rate ---------------------------------------------------------------------------------


def test_error_rate_compares_shares_of_failed_rows_absolutely() -> None:
    gate = Gate(metric="error_rate", threshold=0.01, min_samples=100)
    champion = np.r_[np.zeros(10, bool), np.ones(990, bool)]  # 1 % failed
    candidate_ok = np.r_[np.zeros(4, bool), np.ones(196, bool)]  # 2 % failed: +1 point
    candidate_over = np.r_[np.zeros(5, bool), np.ones(195, bool)]  # 2.5 %: +1.5 points
    passed = g.error_rate_gate(gate, candidate_ok, champion)
    assert passed.verdict == "pass"
    assert (passed.candidate, passed.champion) == (4 / 200, 10 / 1000)
    held = g.error_rate_gate(gate, candidate_over, champion)  # 5 of 200: not significant
    assert (held.verdict, held.candidate) == ("inconclusive", 5 / 200)
    assert "(5 of 200)" in held.reason and "(10 of 1,000)" in held.reason
    # the same shares on 50 times the rows: +1.5 points clears 1 point at 95 %
    failed = g.error_rate_gate(gate, np.repeat(candidate_over, 50), np.repeat(champion, 50))
    assert (failed.verdict, failed.candidate) == ("fail", 5 / 200)
    assert "(250 of 10,000)" in failed.reason and "(500 of 50,000)" in failed.reason


def test_error_rate_below_min_samples_is_inconclusive() -> None:
    gate = Gate(metric="error_rate", min_samples=50)
    result = g.error_rate_gate(gate, np.zeros(49, bool), np.ones(50, bool))
    assert result.verdict == "inconclusive" and "candidate 49" in result.reason


# --- prediction drift ---------------------------------------------------------------------------


def test_psi_of_two_valued_scores_is_the_hand_worked_value() -> None:
    champion = np.r_[np.full(50, 0.1), np.full(50, 0.9)]
    candidate = np.r_[np.full(80, 0.1), np.full(20, 0.9)]
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)  # 0.4159
    gate = Gate(metric="prediction_drift", min_samples=100)
    result = g.drift_gate(gate, candidate, champion)
    assert result.candidate == pytest.approx(expected, rel=1e-12)
    assert (result.verdict, result.limit) == ("fail", 0.2)
    same = g.drift_gate(gate, champion[::-1], champion)
    assert (same.verdict, same.candidate) == ("pass", pytest.approx(0.0, abs=1e-12))


def test_psi_over_the_champions_deciles_matches_numpy() -> None:
    champion = RNG.beta(2, 5, 5000)
    candidate = RNG.beta(2.6, 5, 3000)
    edges = np.unique(np.quantile(champion, np.arange(1, 10) / 10))
    r = np.bincount(np.searchsorted(edges, champion, "right"), minlength=edges.size + 1)
    c = np.bincount(np.searchsorted(edges, candidate, "right"), minlength=edges.size + 1)
    r, c = np.maximum(r / r.sum(), 1e-4), np.maximum(c / c.sum(), 1e-4)
    expected = float(np.sum((c - r) * np.log(c / r)))
    gate = Gate(metric="prediction_drift", threshold=0.05)
    result = g.drift_gate(gate, candidate, champion)
    assert result.candidate == pytest.approx(expected, rel=1e-9)
    assert result.verdict == ("fail" if expected >= 0.05 else "pass")


def test_ks_gate_uses_the_p_value_against_scipy() -> None:
    champion, candidate = RNG.normal(size=300), RNG.normal(0.4, 1.0, 400)
    expected = scipy_stats.ks_2samp(candidate, champion).pvalue
    result = g.drift_gate(Gate(metric="prediction_drift", test="ks"), candidate, champion)
    assert result.candidate == pytest.approx(expected, rel=1e-9)
    assert result.limit == 0.05  # the ks default is a p-value, not psi's 0.2
    assert result.verdict == ("fail" if expected <= 0.05 else "pass") == "fail"
    same = g.drift_gate(Gate(metric="prediction_drift", test="ks"), champion, champion)
    assert same.verdict == "pass"


def test_wasserstein_gate_is_scipys_distance_over_the_champion_std() -> None:
    champion, candidate = RNG.normal(size=800), RNG.normal(0.05, 1.0, 600)
    expected = scipy_stats.wasserstein_distance(champion, candidate) / np.std(champion)
    gate = Gate(metric="prediction_drift", test="wasserstein", min_samples=100)
    result = g.drift_gate(gate, candidate, champion)
    assert result.candidate == pytest.approx(expected, rel=1e-9)
    assert result.limit == 0.1 and result.verdict == ("fail" if expected >= 0.1 else "pass")


def test_jensen_shannon_gate_is_scipys_on_sturges_bins() -> None:
    champion, candidate = RNG.normal(size=900), RNG.normal(0.3, 1.2, 4000)
    edges = np.histogram_bin_edges(np.concatenate([champion, candidate]), bins="sturges")
    p = np.histogram(champion, edges)[0] / champion.size
    q = np.histogram(candidate, edges)[0] / candidate.size
    gate = Gate(metric="prediction_drift", test="jensen_shannon", threshold=0.5, min_samples=100)
    result = g.drift_gate(gate, candidate, champion)
    assert result.candidate == pytest.approx(jensenshannon(p, q), rel=1e-9)
    assert result.verdict == "pass"


def test_drift_nan_and_inf_scores_are_dropped_and_counted() -> None:
    champion = np.r_[np.full(50, 0.1), np.full(50, 0.9), np.nan]
    candidate = np.r_[np.full(80, 0.1), np.full(20, 0.9), np.nan, np.nan, np.inf]
    result = g.drift_gate(Gate(metric="prediction_drift", min_samples=100), candidate, champion)
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert result.candidate == pytest.approx(expected, rel=1e-12)
    assert result.samples == {"candidate": 100, "champion": 100}
    assert "candidate 3, champion 1" in result.reason


def test_drift_below_min_samples_on_either_arm_is_inconclusive() -> None:
    gate = Gate(metric="prediction_drift", min_samples=100)
    few_champion = g.drift_gate(gate, RNG.random(500), np.r_[RNG.random(99), np.full(9, np.nan)])
    assert few_champion.verdict == "inconclusive" and "champion 99" in few_champion.reason
    assert g.drift_gate(gate, [], RNG.random(500)).verdict == "inconclusive"


# --- labels -------------------------------------------------------------------------------------


def _arm(labels: Any, scores: Any, rows: pa.Table | None = None) -> g.Labelled:
    return g.Labelled(np.asarray(labels, bool), np.asarray(scores, float), rows)


def test_label_auc_and_average_precision_against_scikit_learn() -> None:
    y1, s1 = RNG.random(400) < 0.3, RNG.random(400)
    y2 = RNG.random(300) < 0.3
    s2 = np.clip(y2 * 0.3 + RNG.random(300) * 0.7, 0, 1)  # a better model
    for metric, oracle in (("auc", roc_auc_score), ("average_precision", average_precision_score)):
        gate = Gate(metric=f"label:{metric}", min_samples=100)
        result = g.label_gate(gate, _arm(y1, s1), _arm(y2, s2), threshold=0.5)
        assert result.candidate == pytest.approx(oracle(y1, s1), rel=1e-9)
        assert result.champion == pytest.approx(oracle(y2, s2), rel=1e-9)
        assert result.verdict == "fail"  # a random candidate against a better champion
        swapped = g.label_gate(gate, _arm(y2, s2), _arm(y1, s1), threshold=0.5)
        assert swapped.verdict == "pass"


def test_label_relative_limit_boundary_by_hand() -> None:
    # precision@4: champion 3 of its top 4 = 0.75; bound 0.75 * 0.95 = 0.7125
    champion = _arm([1, 1, 1, 0, 0, 0], [0.9, 0.8, 0.7, 0.6, 0.1, 0.2])
    candidate = _arm([1, 1, 0, 0, 1, 0], [0.9, 0.8, 0.7, 0.6, 0.1, 0.2])  # 2 of 4 = 0.5
    gate = Gate(metric="label:precision_at_k", k=4, min_samples=6)
    result = g.label_gate(gate, candidate, champion, threshold=0.5)
    assert (result.verdict, result.candidate, result.champion) == ("fail", 0.5, 0.75)
    assert "0.5 < 0.7125" in result.reason
    assert g.label_gate(gate, champion, champion, threshold=0.5).verdict == "pass"


def test_brier_is_lower_is_better() -> None:
    y = np.array([1, 0, 1, 0, 1, 0, 1, 0], bool)
    sharp = np.array([0.9, 0.1, 0.8, 0.2, 0.9, 0.1, 0.8, 0.2])
    vague = np.full(8, 0.5)
    gate = Gate(metric="label:brier", min_samples=8)
    result = g.label_gate(gate, _arm(y, vague), _arm(y, sharp), threshold=0.5)
    assert result.candidate == pytest.approx(brier_score_loss(y, vague))
    assert result.champion == pytest.approx(brier_score_loss(y, sharp))
    assert result.verdict == "fail"
    assert g.label_gate(gate, _arm(y, sharp), _arm(y, vague), threshold=0.5).verdict == "pass"


def test_precision_and_recall_use_the_decision_threshold() -> None:
    y = np.array([1, 1, 0, 0, 1], bool)
    s = np.array([0.9, 0.4, 0.6, 0.1, 0.7])
    gate = Gate(metric="label:recall", min_samples=5)
    result = g.label_gate(gate, _arm(y, s), _arm(y, s), threshold=0.5)
    assert result.candidate == pytest.approx(2 / 3) and result.verdict == "pass"
    gate = Gate(metric="label:precision", min_samples=5)
    assert g.label_gate(gate, _arm(y, s), _arm(y, s), threshold=0.65).candidate == 1.0


def test_label_gate_below_min_labelled_or_undefined_is_inconclusive() -> None:
    gate = Gate(metric="label:auc", min_samples=10)
    nine, twenty = _arm(np.ones(9), np.ones(9)), _arm(np.ones(20), RNG.random(20))
    few = g.label_gate(gate, nine, twenty, threshold=0.5)
    assert few.verdict == "inconclusive" and "labelled predictions" in few.reason
    one_class = _arm(np.zeros(20), RNG.random(20))
    undefined = g.label_gate(gate, one_class, one_class, threshold=0.5)
    assert undefined.verdict == "inconclusive" and "AUC needs both" in undefined.reason
    outside = Gate(metric="label:brier", min_samples=2)
    wild = g.label_gate(outside, _arm([1, 0], [1.5, 0.0]), _arm([1, 0], [1, 0]), threshold=0.5)
    assert wild.verdict == "inconclusive" and "not probabilities" in wild.reason


def test_a_monitor_metric_function_decides_a_label_gate() -> None:
    def dollars(labels: Any, scores: Any, rows: pa.Table) -> float | None:
        amount = np.asarray(rows.column("amount").to_numpy(), dtype=float)
        fraud = amount[labels].sum()
        return float(amount[labels & (scores >= 0.5)].sum() / fraud) if fraud else None

    rows = pa.table({"amount": [100.0, 50.0, 25.0, 1000.0]})
    y = np.array([True, True, True, False])
    champion = _arm(y, [0.9, 0.3, 0.5, 0.8], rows)  # (100 + 25) / 175
    candidate = _arm(y, [0.9, 0.6, 0.1, 0.8], rows)  # (100 + 50) / 175: better
    gate = Gate(metric="label:dollars", min_samples=4)
    result = g.label_gate(gate, candidate, champion, threshold=0.5, function=dollars)
    assert (result.candidate, result.champion) == (150 / 175, 125 / 175)
    assert result.verdict == "pass"
    nothing = _arm(np.zeros(4, bool), np.ones(4), rows)
    undefined = g.label_gate(gate, nothing, champion, threshold=0.5, function=dollars)
    assert undefined.verdict == "inconclusive" and "returned None" in undefined.reason


# --- custom gates -------------------------------------------------------------------------------


def _evidence(rows: int = 5, limit: float = 0.0) -> g.Evidence:
    def arm(version: int) -> g.ArmEvidence:
        return g.ArmEvidence(
            version=version,
            request_ids=np.array([f"r{i}" for i in range(rows)], dtype=object),
            at=np.array(
                [T0.replace(tzinfo=None) + timedelta(seconds=i) for i in range(rows)], "M8[us]"
            ),
            scores=np.linspace(0, 1, rows),
            latency_ms=np.full(rows, 2.0 * version),
            status=np.array(["ok"] * rows, dtype=object),
        )

    return g.Evidence("custom:f", limit, T0, T0 + timedelta(hours=1), "canary", 5.0, arm(2), arm(1))


CUSTOM = Gate(metric="custom:f", min_samples=5)


@pytest.mark.parametrize(
    ("returned", "verdict", "reason"),
    [
        (True, "pass", "gate function f: pass"),
        (False, "fail", "gate function f: fail"),
        (None, "inconclusive", "gate function f: inconclusive"),
        (np.bool_(False), "fail", "gate function f: fail"),
        ((False, "mean latency doubled"), "fail", "mean latency doubled"),
        ((None, "waiting for traffic"), "inconclusive", "waiting for traffic"),
        ((True, ""), "pass", "gate function f: pass"),
    ],
)
def test_custom_gate_outcomes(returned: object, verdict: str, reason: str) -> None:
    result = g.custom_gate(CUSTOM, lambda evidence: returned, _evidence())
    assert (result.verdict, result.reason) == (verdict, reason)
    assert result.samples == {"candidate": 5, "champion": 5}


@pytest.mark.parametrize("returned", [1, 0.5, "pass", (True,), (True, 3), (1, "x"), [True, "x"]])
def test_a_custom_gate_returning_anything_else_fails(returned: object) -> None:
    result = g.custom_gate(CUSTOM, lambda evidence: returned, _evidence())
    assert result.verdict == "fail" and "return True, False, None" in result.reason


def test_a_custom_gate_that_raises_fails_with_the_error() -> None:
    def broken(evidence: g.Evidence) -> bool:
        raise KeyError("amount")

    result = g.custom_gate(CUSTOM, broken, _evidence())
    assert result.verdict == "fail"
    assert result.reason == "gate function f raised KeyError: 'amount'"


def test_a_custom_gate_sees_both_arms_and_the_threshold() -> None:
    seen: list[g.Evidence] = []

    def mean_latency(evidence: g.Evidence) -> tuple[bool, str]:
        seen.append(evidence)
        ratio = evidence.candidate.latency_ms.mean() / evidence.champion.latency_ms.mean()
        return ratio <= 1 + evidence.limit, f"ratio {ratio}"

    gate = Gate(metric="custom:f", threshold=1.5, min_samples=5)
    result = g.custom_gate(gate, mean_latency, _evidence(limit=1.5))
    assert (result.verdict, result.reason, result.limit) == ("pass", "ratio 2.0", 1.5)
    (evidence,) = seen
    assert (evidence.candidate.version, evidence.champion.version) == (2, 1)
    assert list(evidence.candidate.request_ids) == ["r0", "r1", "r2", "r3", "r4"]


def test_a_custom_gate_is_not_called_below_min_samples() -> None:
    called: list[int] = []
    gate = Gate(metric="custom:f", min_samples=6)
    result = g.custom_gate(gate, lambda e: called.append(1) or True, _evidence(rows=5))
    assert result.verdict == "inconclusive" and called == []
