"""Each drift statistic against scipy (or a hand-worked example) on the same raw inputs: exact when
the profile knows every reference value, within a measured bound when it works from quantiles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from parity.errors import DriftTestError
from parity.monitoring.profile import NUMERIC_TABLE_LIMIT, profile_column
from parity.monitoring.stats import (
    PSI_FLOOR,
    chi_squared,
    jensen_shannon,
    ks,
    psi,
    psi_from_shares,
    wasserstein_normalized,
    z_test,
)

RNG = np.random.default_rng(20261127)

# Reference distributions for the approximation bounds: light and heavy tails, bimodal, discrete.
DISTRIBUTIONS = {
    "normal": lambda n, s: RNG.normal(s, 1, n),
    "lognormal": lambda n, s: RNG.lognormal(s, 1, n),
    "exponential": lambda n, s: RNG.exponential(1 + s, n),
    "bimodal": lambda n, s: np.concatenate(
        [RNG.normal(-2 + s, 0.5, n // 2), RNG.normal(2, 0.5, n - n // 2)]
    ),
    "pareto": lambda n, s: RNG.pareto(2.5, n) * (1 + s),
    "poisson_large": lambda n, s: RNG.poisson(300 + 30 * s, n).astype(float),
}


def _pairs() -> list[tuple[str, float]]:
    return [(name, shift) for name in DISTRIBUTIONS for shift in (0.0, 0.1, 0.5)]


# --- exact paths: the profile keeps the values (<= 1,000) or all distinct values (<= 1,000) ----


@pytest.mark.parametrize("n_cur", [200, 50_000])
def test_ks_on_a_small_reference_is_scipy_ks_2samp(n_cur: int) -> None:
    ref, cur = RNG.normal(size=800), RNG.normal(0.15, 1, n_cur)
    got = ks(profile_column("x", ref), cur)
    want = stats.ks_2samp(ref, cur)
    assert got.exact
    assert got.statistic == pytest.approx(want.statistic, abs=1e-12)
    assert got.p_value == pytest.approx(want.pvalue, rel=1e-9)


@pytest.mark.parametrize("n_ref, n_cur", [(5000, 3000), (200_000, 50_000)])
def test_ks_on_a_reference_with_few_distinct_values_is_exact(n_ref: int, n_cur: int) -> None:
    ref = RNG.poisson(30, n_ref).astype(float)  # ~50 distinct values: complete frequency table
    cur = RNG.poisson(30.5, n_cur).astype(float)
    got = ks(profile_column("x", ref), cur)
    want = stats.ks_2samp(ref, cur)
    assert got.exact
    assert got.statistic == pytest.approx(want.statistic, abs=1e-12)
    assert got.p_value == pytest.approx(want.pvalue, rel=1e-6)


@pytest.mark.parametrize("make", [lambda: RNG.normal(size=700), lambda: RNG.poisson(20, 50_000)])
def test_wasserstein_on_known_values_is_scipy_over_reference_std(make) -> None:  # type: ignore[no-untyped-def]
    ref = np.asarray(make(), dtype=float)
    cur = ref[: ref.size // 2] * 1.1 + 0.3
    got = wasserstein_normalized(profile_column("x", ref), cur)
    assert got.exact
    want = stats.wasserstein_distance(ref, cur) / np.std(ref)
    assert got.statistic == pytest.approx(want, rel=1e-9)


# --- approximate paths: reference quantiles only -------------------------------------------------


@pytest.mark.parametrize("name, shift", _pairs())
def test_wasserstein_from_quantiles_is_within_0_002_std_of_scipy_on_raw_data(
    name: str, shift: float
) -> None:
    ref, cur = DISTRIBUTIONS[name](100_000, 0.0), DISTRIBUTIONS[name](50_000, shift)
    got = wasserstein_normalized(profile_column("x", ref), cur)
    want = stats.wasserstein_distance(ref, cur) / np.std(ref)
    assert got.exact == (np.unique(ref).size <= NUMERIC_TABLE_LIMIT)  # poisson_large: a table
    # measured max 0.0007 std over these cases (tail quantile levels make heavy tails behave)
    assert abs(got.statistic - want) <= 0.002


@pytest.mark.parametrize("name, shift", _pairs())
def test_ks_from_quantiles_is_within_0_002_of_scipy_d(name: str, shift: float) -> None:
    ref, cur = DISTRIBUTIONS[name](100_000, 0.0), DISTRIBUTIONS[name](50_000, shift)
    got = ks(profile_column("x", ref), cur)
    want = stats.ks_2samp(ref, cur)
    assert got.exact == (np.unique(ref).size <= NUMERIC_TABLE_LIMIT)
    assert abs(got.statistic - want.statistic) <= 0.002  # measured max 0.0009
    assert (got.p_value <= 0.05) == (want.pvalue <= 0.05) or abs(want.pvalue - 0.05) < 0.05


# --- binned statistics ---------------------------------------------------------------------------


def test_psi_hand_worked_on_two_categories() -> None:
    ref = ["a"] * 50 + ["b"] * 50
    cur = ["a"] * 25 + ["b"] * 75
    want = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)  # 0.2747
    assert psi(profile_column("c", ref), cur).statistic == pytest.approx(want, rel=1e-12)


def test_psi_uses_reference_deciles_and_puts_out_of_range_values_in_the_edge_bins() -> None:
    ref = np.arange(1000, dtype=float)
    cur = np.concatenate([np.full(300, -50.0), np.full(700, 5000.0)])  # all outside the range
    got = psi(profile_column("x", ref), cur)
    # hand count: bin 1 gets 30 %, bin 10 gets 70 %, bins 2-9 are empty (floored at 1e-4)
    r = np.full(10, 0.1)
    c = np.array([0.3] + [PSI_FLOOR] * 8 + [0.7])
    want = float(np.sum((c - r) * np.log(c / r)))
    assert got.method == "deciles"
    assert got.statistic == pytest.approx(want, rel=1e-12)
    assert math.isfinite(got.statistic)


def test_psi_of_a_new_category_is_finite_with_the_floor() -> None:
    got = psi(profile_column("c", ["a"] * 100), ["b"] * 100).statistic
    want = 2 * (1 - PSI_FLOOR) * math.log(1 / PSI_FLOOR)  # two bins, each swapped 1 <-> floor
    assert got == pytest.approx(want)


def test_psi_from_shares_matches_the_textbook_formula() -> None:
    r, c = np.array([0.2, 0.3, 0.5]), np.array([0.1, 0.4, 0.5])
    assert psi_from_shares(r, c) == pytest.approx(0.1 * math.log(2) + 0.1 * math.log(4 / 3))


@pytest.mark.parametrize("n_ref", [700, 20_000])
def test_jensen_shannon_on_categories_is_scipy_base_2(n_ref: int) -> None:
    cats = np.array(["a", "b", "c", "d"])
    ref = RNG.choice(cats, n_ref, p=[0.4, 0.3, 0.2, 0.1])
    cur = RNG.choice(np.append(cats, "e"), 5000, p=[0.3, 0.3, 0.2, 0.1, 0.1])
    keys = sorted(set(ref) | set(cur))
    p = np.array([np.sum(ref == k) for k in keys]) / ref.size
    q = np.array([np.sum(cur == k) for k in keys]) / cur.size
    got = jensen_shannon(profile_column("c", ref), cur)
    assert got.exact
    assert got.statistic == pytest.approx(jensenshannon(p, q, base=2), rel=1e-12)


def test_jensen_shannon_sturges_on_small_reference_is_evidentlys_binning_exactly() -> None:
    ref, cur = RNG.normal(size=900), RNG.normal(0.3, 1.2, 4000)
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    p = np.histogram(ref, edges)[0] / ref.size
    q = np.histogram(cur, edges)[0] / cur.size
    got = jensen_shannon(profile_column("x", ref), cur)
    assert (got.method, got.exact) == ("sturges", True)
    assert got.statistic == pytest.approx(jensenshannon(p, q, base=2), rel=1e-9)


@pytest.mark.parametrize("name, shift", _pairs())
def test_jensen_shannon_sturges_from_quantiles_is_within_0_01_of_raw(
    name: str, shift: float
) -> None:
    ref, cur = DISTRIBUTIONS[name](100_000, 0.0), DISTRIBUTIONS[name](50_000, shift)
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    p = np.histogram(ref, edges)[0] / ref.size
    q = np.histogram(cur, edges)[0] / cur.size
    got = jensen_shannon(profile_column("x", ref), cur, binning="sturges")
    assert abs(got.statistic - jensenshannon(p, q, base=2)) <= 0.01  # measured max ~0.004


# --- count tests ---------------------------------------------------------------------------------


def test_chi_squared_homogeneity_is_scipy_chi2_contingency_without_correction() -> None:
    ref = RNG.choice(list("abc"), 600, p=[0.5, 0.3, 0.2])
    cur = RNG.choice(list("abcd"), 900, p=[0.45, 0.3, 0.2, 0.05])
    keys = sorted(set(ref) | set(cur))
    table = np.array([[np.sum(ref == k) for k in keys], [np.sum(cur == k) for k in keys]])
    want = stats.chi2_contingency(table, correction=False)
    got = chi_squared(profile_column("c", ref), cur)
    assert got.statistic == pytest.approx(want.statistic, rel=1e-12)
    assert got.p_value == pytest.approx(want.pvalue, rel=1e-9)


def test_chi_squared_goodness_of_fit_is_evidentlys_scipy_chisquare() -> None:
    ref = RNG.choice(list("abc"), 600, p=[0.5, 0.3, 0.2])
    cur = RNG.choice(list("abc"), 900, p=[0.45, 0.35, 0.2])
    keys = sorted(set(ref))
    f_exp = np.array([np.sum(ref == k) for k in keys]) / ref.size * cur.size
    f_obs = np.array([np.sum(cur == k) for k in keys])
    want = stats.chisquare(f_obs, f_exp)
    got = chi_squared(profile_column("c", ref), cur, method="goodness_of_fit")
    assert got.statistic == pytest.approx(want.statistic, rel=1e-12)
    assert got.p_value == pytest.approx(want.pvalue, rel=1e-9)
    new = chi_squared(profile_column("c", ref), ["z"] * 10, method="goodness_of_fit")
    assert (new.statistic, new.p_value) == (math.inf, 0.0)


def test_chi_squared_on_numbers_counts_values() -> None:
    ref = RNG.integers(0, 4, 500).astype(float)
    cur = RNG.integers(0, 5, 800).astype(float)
    keys = np.union1d(ref, cur)
    table = np.array([[np.sum(ref == k) for k in keys], [np.sum(cur == k) for k in keys]])
    want = stats.chi2_contingency(table, correction=False)
    assert chi_squared(profile_column("x", ref), cur).p_value == pytest.approx(want.pvalue)


def test_z_test_hand_worked_two_proportions() -> None:
    ref = [True] * 30 + [False] * 70
    cur = [True] * 80 + [False] * 120
    # share of False (first value sorted): 0.7 vs 0.6, pooled 190/300
    pooled = 190 / 300
    z = (0.7 - 0.6) / math.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 200))
    got = z_test(profile_column("b", ref), cur)
    assert got.statistic == pytest.approx(z, rel=1e-12)  # 1.6943
    assert got.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-12)  # 0.0902
    # the pooled Z-test is the 2x2 chi-squared test without correction
    table = np.array([[30, 70], [80, 120]])
    assert got.p_value == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue)


def test_z_test_of_one_identical_value_on_both_sides_is_p_one() -> None:
    got = z_test(profile_column("b", ["x"] * 50), ["x"] * 300)
    assert (got.statistic, got.p_value) == (0.0, 1.0)


def test_numeric_only_tests_refuse_categorical_columns_with_the_column_name() -> None:
    col = profile_column("country", ["fr", "de"] * 50)
    with pytest.raises(DriftTestError, match="'country'"):
        ks(col, ["fr"] * 200)
    with pytest.raises(DriftTestError, match="'country'"):
        wasserstein_normalized(col, ["fr"] * 200)


def test_current_values_of_another_kind_are_a_typed_error() -> None:
    with pytest.raises(DriftTestError, match="'amount'"):
        ks(profile_column("amount", [1.0, 2.0, 3.0]), ["a", "b"])


def test_psi_evidently_style_reproduces_its_binning_and_empty_bin_rule_by_hand() -> None:
    ref = RNG.normal(size=900)
    # cur leaves low bins empty, and one value far out makes its smallest share 1/20,000 < 1e-4
    cur = np.append(RNG.normal(2.5, 0.5, 19_999), -3.5)
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    r = np.histogram(ref, edges)[0] / ref.size
    c = np.histogram(cur, edges)[0] / cur.size

    def fill(p: np.ndarray) -> np.ndarray:  # Evidently's rule, written out from its docs
        m = p[p > 0].min()
        return np.where(p == 0, m / 1e6 if m <= 1e-4 else 1e-4, p)

    want = float(np.sum((fill(r) - fill(c)) * np.log(fill(r) / fill(c))))
    got = psi(profile_column("x", ref), cur, binning="sturges", empty_bins="evidently")
    assert got.statistic == pytest.approx(want, rel=1e-9)
    ours = psi(profile_column("x", ref), cur, binning="sturges").statistic
    assert ours != pytest.approx(want, rel=1e-3)  # the floor changes the number (evidently#334)
