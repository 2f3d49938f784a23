"""Properties of the drift statistics on arbitrary inputs (Hypothesis): PSI finite and >= 0,
identical samples never drift, no input crashes column_drift."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity.monitoring.profile import profile_column
from parity.monitoring.stats import TESTS, column_drift, jensen_shannon, ks, psi

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
any_float = st.floats(allow_nan=True, allow_infinity=True)
numbers = st.lists(finite, min_size=1, max_size=2500)
# few distinct values repeated: the categorical and value-binned paths
small_ints = st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=2500)
categories = st.lists(st.sampled_from(["a", "b", "c", "", "é"]), min_size=1, max_size=2500)


@SETTINGS
@given(ref=numbers, cur=numbers)
def test_psi_is_finite_and_non_negative(ref: list[float], cur: list[float]) -> None:
    for binning in ("auto", "sturges"):
        value = psi(profile_column("x", ref), cur, binning=binning).statistic  # type: ignore[arg-type]
        assert math.isfinite(value) and value >= 0


@SETTINGS
@given(ref=numbers, cur=numbers)
def test_jensen_shannon_is_a_distance_in_zero_one(ref: list[float], cur: list[float]) -> None:
    value = jensen_shannon(profile_column("x", ref), cur).statistic
    assert 0.0 <= value <= 1.0 + 1e-12


@SETTINGS
@given(values=st.one_of(numbers, small_ints, categories))
def test_identical_samples_give_no_drift_under_the_default_test(values: list[object]) -> None:
    got = column_drift(profile_column("x", values), values, min_samples=1)
    assert got.status == "no_drift", got.reason


@SETTINGS
@given(values=st.one_of(small_ints, categories))
def test_identical_discrete_samples_give_zero_distance_and_p_one(values: list[object]) -> None:
    ref = profile_column("x", values)
    for test in TESTS:
        if test in ("ks", "wasserstein") and isinstance(values[0], str):
            continue
        got = column_drift(ref, values, test=test, min_samples=1)
        assert got.status == "no_drift", (test, got.reason)
        if got.p_value is not None:
            assert got.p_value == 1.0 or math.isclose(got.p_value, 1.0), test
        else:
            assert abs(got.statistic or 0.0) < 1e-9, test


@SETTINGS
@given(values=numbers)
def test_ks_of_a_sample_against_itself_is_zero(values: list[float]) -> None:
    assert ks(profile_column("x", values), values).statistic < 2e-3


@SETTINGS
@given(ref=st.lists(any_float, max_size=300), cur=st.lists(any_float, max_size=300))
def test_column_drift_never_crashes_on_nan_inf_or_empty_input(
    ref: list[float], cur: list[float]
) -> None:
    reference = profile_column("x", ref)
    for test in ("auto", *TESTS):
        got = column_drift(reference, np.asarray(cur, dtype=float), test=test, min_samples=1)
        assert got.status in ("drift", "no_drift", "no_data")
        assert got.infinite == sum(1 for v in cur if math.isinf(v))


def test_sturges_edges_over_values_spanning_more_than_a_float_are_finite() -> None:
    """Found by Hypothesis: values near -1e308 and +1e308 made the span inf and the edges NaN."""
    import numpy as np

    from parity.monitoring.samples import sturges_edges

    edges = sturges_edges(-1e308, 1e308, 100)
    assert np.isfinite(edges).all()
    assert edges[0] == -1e308 and edges[-1] == 1e308
    assert len(edges) == len(np.histogram_bin_edges(np.linspace(0, 1, 100), bins="sturges"))
