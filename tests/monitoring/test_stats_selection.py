"""Default test selection (Evidently's size-aware table), one column's verdict and status, dataset
drift and Benjamini-Hochberg (against scipy.stats.false_discovery_control and by hand)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from parity.errors import DriftTestError
from parity.monitoring.profile import profile_column
from parity.monitoring.stats import (
    CHI_SQUARED,
    JENSEN_SHANNON,
    KS,
    WASSERSTEIN,
    Z_TEST,
    ColumnDrift,
    benjamini_hochberg,
    benjamini_hochberg_adjusted,
    column_drift,
    dataset_drift,
    prepare_current,
    select_test,
)

RNG = np.random.default_rng(13)


def _select(ref: object, cur: object) -> str:
    col = profile_column("x", ref)
    return select_test(col, prepare_current(col, cur))


@pytest.mark.parametrize(
    "ref, cur, expected",
    [
        (RNG.normal(size=1000), RNG.normal(size=300), KS),  # <= 1,000 rows, > 5 values
        ([1.0, 2.0, 3.0, 4.0] * 250, [1.0, 2.0] * 100, CHI_SQUARED),  # 3-5 values
        ([0.0, 1.0] * 500, [0.0, 1.0] * 100, Z_TEST),  # <= 2 values
        ([1.0, 2.0, 3.0] * 300, [4.0, 5.0, 6.0] * 100, KS),  # 6 values counting current
        (list("abc") * 300, list("ab") * 100, CHI_SQUARED),
        (list("ab") * 300, list("ab") * 100, Z_TEST),
        ([True, False] * 300, [True] * 100, Z_TEST),
        (RNG.normal(size=1001), RNG.normal(size=300), WASSERSTEIN),  # > 1,000 rows
        ([1.0, 2.0, 3.0, 4.0, 5.0] * 400, [1.0] * 100, JENSEN_SHANNON),
        (list("abcdefg") * 400, list("ab") * 100, JENSEN_SHANNON),
        ([True, False] * 600, [True] * 100, JENSEN_SHANNON),
    ],
)
def test_default_selection_follows_evidentlys_size_aware_table(
    ref: object, cur: object, expected: str
) -> None:
    assert _select(ref, cur) == expected


def test_reference_size_counts_non_null_values_only() -> None:
    ref = [*RNG.normal(size=1000).tolist(), *[None] * 500, *[math.inf] * 10]
    assert _select(ref, RNG.normal(size=200)) == KS


def test_shifted_window_drifts_and_a_window_from_the_same_distribution_does_not() -> None:
    ref = profile_column("amount", RNG.lognormal(3, 1, 50_000))
    same = column_drift(ref, RNG.lognormal(3, 1, 20_000))
    shifted = column_drift(ref, RNG.lognormal(3.3, 1, 20_000))
    assert (same.test, same.status, same.drifted) == (WASSERSTEIN, "no_drift", False)
    assert (shifted.status, shifted.drifted, shifted.threshold) == ("drift", True, 0.1)
    assert shifted.statistic is not None and shifted.statistic >= 0.1
    assert "drift" in shifted.reason and "0.1" in shifted.reason


def test_fewer_than_min_samples_is_insufficient_data_never_no_drift() -> None:
    ref = profile_column("x", RNG.normal(size=5000))
    few = column_drift(ref, [*RNG.normal(5, 1, 99).tolist(), None, None])
    assert (few.status, few.drifted, few.statistic) == ("insufficient_data", False, None)
    assert "99" in few.reason and "100" in few.reason
    enough = column_drift(ref, RNG.normal(5, 1, 100))
    assert enough.status == "drift"
    assert column_drift(ref, RNG.normal(size=50), min_samples=10).statistic is not None


def test_all_null_window_and_all_null_reference_are_no_data() -> None:
    ref = profile_column("x", RNG.normal(size=5000))
    window = column_drift(ref, pa.array([None] * 300, pa.float64()))
    assert (window.status, window.count, window.nulls) == ("no_data", 300, 300)
    empty = column_drift(ref, [])
    assert (empty.status, empty.count) == ("no_data", 0)
    null_ref = column_drift(profile_column("x", [None] * 10), RNG.normal(size=500))
    assert null_ref.status == "no_data" and "reference" in null_ref.reason


def test_infinities_are_nulled_and_counted_before_testing() -> None:
    ref = profile_column("x", RNG.normal(size=5000))
    cur = np.concatenate([RNG.normal(size=500), [np.inf, -np.inf, np.nan]])
    got = column_drift(ref, cur)
    assert (got.count, got.nulls, got.infinite) == (503, 1, 2)
    assert "1 null and 2 infinite dropped" in got.reason
    assert got.statistic is not None and math.isfinite(got.statistic)


def test_constant_columns_are_reported_not_a_crash() -> None:
    same = column_drift(profile_column("x", [3.0] * 5000), [3.0] * 500)
    assert (same.test, same.status, same.statistic) == (JENSEN_SHANNON, "no_drift", 0.0)
    moved = column_drift(profile_column("x", [3.0] * 5000), [4.0] * 500)
    assert moved.status == "drift"
    small = column_drift(profile_column("x", [3.0] * 500), [3.0] * 500)
    assert (small.test, small.p_value, small.status) == (Z_TEST, 1.0, "no_drift")
    forced = column_drift(profile_column("x", [3.0] * 5000), [3.0] * 500, test="wasserstein")
    assert forced.status == "no_drift" and forced.statistic == 0.0


def test_test_and_threshold_overrides_and_evidentlys_names() -> None:
    ref = profile_column("x", RNG.normal(size=5000))
    cur = RNG.normal(0.05, 1, 5000)
    assert column_drift(ref, cur, test="psi").test == "psi"
    assert column_drift(ref, cur, test="psi").threshold == 0.2
    strict = column_drift(ref, cur, test="wasserstein", threshold=0.01)
    assert (strict.threshold, strict.status) == (0.01, "drift")
    cats = profile_column("c", list("abc") * 100)
    assert column_drift(cats, list("abc") * 100, test="chisquare").test == CHI_SQUARED
    assert column_drift(cats, list("ab") * 100, test="jensenshannon").test == JENSEN_SHANNON


def test_unknown_or_inapplicable_tests_are_typed_errors_naming_them() -> None:
    ref = profile_column("country", list("abc") * 100)
    with pytest.raises(DriftTestError, match="'kolmogorov'"):
        column_drift(ref, list("abc") * 100, test="kolmogorov")
    with pytest.raises(DriftTestError, match="'country'"):
        column_drift(ref, list("abc") * 100, test="ks")


def test_to_dict_is_json_ready_even_with_an_infinite_statistic() -> None:
    d = ColumnDrift("x", CHI_SQUARED, math.inf, 0.0, 0.05, True, "drift", 10, 0, 0, 5, True, "r")
    out = d.to_dict()
    assert out["statistic"] is None and out["p_value"] == 0.0 and out["column"] == "x"


# --- dataset drift and Benjamini-Hochberg --------------------------------------------------------


def _verdict(column: str, status: str, p: float | None = None, test: str = KS) -> ColumnDrift:
    drifted = status == "drift"
    return ColumnDrift(column, test, 0.0, p, 0.05, drifted, status, 500, 0, 0, 500, True, "")  # type: ignore[arg-type]


def test_dataset_drift_is_the_share_of_tested_columns_that_drifted() -> None:
    results = [
        _verdict("a", "drift", 0.01),
        _verdict("b", "no_drift", 0.5),
        _verdict("c", "drift", 0.001),
        _verdict("d", "insufficient_data"),
        _verdict("e", "no_data"),
    ]
    got = dataset_drift(results)
    assert (got.tested, got.drifted_columns) == (3, 2)
    assert got.share == pytest.approx(2 / 3)
    assert (got.drifted, got.status) == (True, "drift")
    assert dataset_drift(results, share=0.7).status == "no_drift"


def test_dataset_with_no_tested_column_is_insufficient_data() -> None:
    got = dataset_drift([_verdict("a", "insufficient_data"), _verdict("b", "no_data")])
    assert (got.status, got.drifted, got.tested) == ("insufficient_data", False, 0)


def test_benjamini_hochberg_hand_worked_step_up() -> None:
    # m = 4, alpha 0.05: thresholds 0.0125, 0.025, 0.0375, 0.05. p(3) = 0.035 <= 0.0375, so the
    # three smallest are rejected even though p(2) = 0.03 > 0.025 (step-up).
    assert benjamini_hochberg([0.2, 0.035, 0.001, 0.03]) == (False, True, True, True)
    assert benjamini_hochberg([0.04, 0.2, 0.3, 0.5]) == (False, False, False, False)
    assert benjamini_hochberg([]) == ()


def test_benjamini_hochberg_agrees_with_scipy_false_discovery_control() -> None:
    p = RNG.uniform(0, 0.1, 40) ** 2
    adjusted = stats.false_discovery_control(p)
    np.testing.assert_allclose(benjamini_hochberg_adjusted(p), adjusted, rtol=1e-12)
    assert benjamini_hochberg(p, 0.05) == tuple(bool(a <= 0.05) for a in adjusted)


def test_dataset_drift_with_bh_redecides_only_the_p_value_tests() -> None:
    results = [
        _verdict("a", "drift", 0.04),
        _verdict("b", "drift", 0.03),
        _verdict("c", "no_drift", 0.9),
        _verdict("w", "drift", None, test=WASSERSTEIN),
    ]
    got = dataset_drift(results, correction="benjamini_hochberg", alpha=0.05)
    by_name = {c.column: c for c in got.columns}
    # p = (0.04, 0.03, 0.9): thresholds 0.0167, 0.033, 0.05 -> none rejected
    assert [by_name[n].status for n in "abc"] == ["no_drift"] * 3
    assert "Benjamini-Hochberg" in by_name["a"].reason
    assert by_name["w"].status == "drift"
    assert got.drifted_columns == 1 and got.correction == "benjamini_hochberg"
    with pytest.raises(DriftTestError, match="bonferroni"):
        dataset_drift(results, correction="bonferroni")  # type: ignore[arg-type]
