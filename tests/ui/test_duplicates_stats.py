"""The duplicate scan's statistics (ui/duplicates.py) against numpy/scipy on hand-made data:
missing values (NaN, inf), constant columns, tiny samples, text and true/false columns."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from parity.ui.duplicates import (
    EQUAL_SHARE,
    MIN_ROWS,
    Column,
    categorical_stats,
    equal_counts,
    find_pairs,
    numeric_stats,
    relation,
)


def _messy(rng: np.random.Generator, rows: int = 400) -> np.ndarray:
    base = rng.normal(50.0, 10.0, rows)
    values = np.column_stack(
        [
            base,
            3.0 * base - 7.0 + rng.normal(0.0, 0.5, rows),  # correlated
            rng.exponential(2.0, rows),  # unrelated
            np.full(rows, 4.25),  # constant
            base * 1e6,  # large magnitude
        ]
    )
    holes = rng.random(values.shape) < 0.1
    values[holes] = np.nan
    values[rng.integers(0, rows, 5), 1] = np.inf
    values[rng.integers(0, rows, 5), 2] = -np.inf
    return values


def test_correlation_slope_and_rows_match_scipy_on_pairwise_complete_rows() -> None:
    values = _messy(np.random.default_rng(1))
    got = numeric_stats(values)
    for i in range(values.shape[1]):
        for j in range(values.shape[1]):
            both = np.isfinite(values[:, i]) & np.isfinite(values[:, j])
            x, y = values[both, i], values[both, j]
            assert got.rows[i, j] == both.sum()
            if np.ptp(x) == 0 or np.ptp(y) == 0:
                assert math.isnan(got.correlation[i, j]), (i, j)
                continue
            assert got.correlation[i, j] == pytest.approx(sps.pearsonr(x, y)[0], abs=1e-9)
            fit = sps.linregress(x, y)
            assert got.slope[i, j] == pytest.approx(fit.slope, rel=1e-8)
            assert got.intercept[i, j] == pytest.approx(fit.intercept, rel=1e-6, abs=1e-6)


def test_a_constant_column_has_no_correlation_and_is_never_flagged() -> None:
    rows = 200
    values = np.column_stack([np.full(rows, 0.1), np.full(rows, 0.1), np.arange(rows, dtype=float)])
    got = numeric_stats(values)
    assert np.isnan(got.correlation[0, 1]) and np.isnan(got.correlation[0, 2])
    assert np.isnan(got.slope[0, 2])  # no line of b on a constant a
    assert got.slope[2, 0] == pytest.approx(0.0)  # a constant b on a varying a: slope 0
    assert got.equal[0, 1] == rows  # equal, yet no verdict: two constants agree by accident
    columns = [Column(f"v{k}:f", f"v{k}", "numeric", values[:, k]) for k in range(3)]
    assert find_pairs(columns, "id", 0.5) == []


def test_a_column_constant_only_where_the_other_has_values_is_undefined_there() -> None:
    a = np.r_[np.full(100, 5.0), np.arange(100.0)]
    b = np.r_[np.arange(100.0), np.full(100, np.nan)]  # b exists only where a is constant
    got = numeric_stats(np.column_stack([a, b]))
    assert got.rows[0, 1] == 100
    assert math.isnan(got.correlation[0, 1])


def test_equal_counts_compare_floats_with_a_relative_tolerance_and_skip_missing() -> None:
    a = np.array([0.1 + 0.2, 1e12, 1.0, np.nan, 2.0, np.inf])
    b = np.array([0.3, 1e12 + 1e-3, 1.0 + 1e-6, 2.0, np.nan, np.inf])
    values = np.column_stack([a, b])
    counts = equal_counts(values, np.isfinite(values))
    assert counts.tolist() == [[4, 2], [2, 4]]  # 0.3 and 1e12 equal; 1 + 1e-6 is not 1


def test_tiny_and_empty_samples_give_no_verdict() -> None:
    assert relation(MIN_ROWS - 1, 1.0, 1.0, 0.9) is None
    assert relation(MIN_ROWS, 1.0, 1.0, 0.9) == "equal"
    empty = numeric_stats(np.zeros((0, 3)))
    assert empty.rows.tolist() == [[0] * 3] * 3 and np.isnan(empty.correlation).all()
    few = [Column(f"v{k}:f", f"v{k}", "numeric", np.arange(5.0)) for k in range(2)]
    assert find_pairs(few, "id", 0.5) == []
    assert find_pairs([], "id", 0.5) == []


@pytest.mark.parametrize(
    ("rows", "share", "r", "expected"),
    [
        (100, EQUAL_SHARE, 0.2, "equal"),  # 99 % equal, the other 1 % wild
        (100, 0.5, 1.0 - 1e-9, "linear"),
        (100, 0.5, -(1.0 - 1e-9), "linear"),
        (100, 0.0, 0.985, "correlated"),
        (100, 0.0, -0.985, "correlated"),
        (100, 0.0, 0.97, None),
        (100, 1.0, math.nan, None),  # constant
    ],
)
def test_relation_thresholds(rows: int, share: float, r: float, expected: str | None) -> None:
    assert relation(rows, share, r, 0.98) == expected


def _column(view: str, name: str, values: np.ndarray, kind: str = "numeric") -> Column:
    return Column(f"{view}:{name}", view, kind, values)


def test_find_pairs_flags_equal_linear_and_correlated_across_views_only() -> None:
    rng = np.random.default_rng(7)
    dollars = np.round(rng.lognormal(3.0, 1.0, 500), 2)
    counts = rng.poisson(3.0, 500).astype(float)
    noisy = dollars + rng.normal(0.0, dollars.std() * 0.3, 500)
    with_holes = counts.copy()
    with_holes[::7] = np.nan
    columns = [
        _column("risk", "amount", dollars),
        _column("risk", "amount_again", dollars.copy()),  # same view: never a pair
        _column("risk", "count", counts),
        _column("growth", "cents", dollars * 100.0),
        _column("growth", "purchases", with_holes),
        _column("growth", "rough_amount", noisy),
        _column("growth", "unrelated", rng.normal(size=500)),
    ]
    found = {(p.a, p.b): p for p in find_pairs(columns, "account_id", 0.98)}
    assert set(found) == {
        ("growth:purchases", "risk:count"),
        ("risk:amount", "growth:cents"),
        ("risk:amount_again", "growth:cents"),
    }
    equal = found[("growth:purchases", "risk:count")]
    assert (equal.relation, equal.rows, equal.equal_share) == ("equal", 500 - 72, 1.0)
    cents = found[("risk:amount", "growth:cents")]
    assert cents.relation == "linear"
    assert cents.slope == pytest.approx(100.0) and cents.intercept == pytest.approx(0.0, abs=1e-6)
    assert "growth:cents = 100 x risk:amount" in cents.evidence
    assert all(b == pytest.approx(100 * a) for a, b in cents.sample) and len(cents.sample) == 50
    lower = find_pairs(columns, "account_id", 0.9)
    assert {p.relation for p in lower if "growth:rough_amount" in (p.a, p.b)} == {"correlated"}


def test_a_linear_pair_reads_with_the_larger_unit_first() -> None:
    dollars = np.arange(1.0, 201.0) * 1.37
    columns = [_column("a", "cents", dollars * 100.0), _column("b", "dollars", dollars)]
    (pair,) = find_pairs(columns, "id", 0.98)
    assert (pair.a, pair.b, pair.relation) == ("b:dollars", "a:cents", "linear")
    assert pair.slope == pytest.approx(100.0)


def test_text_and_true_false_columns_are_compared_by_equality_within_their_kind() -> None:
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 4, 300)
    flags = rng.integers(0, 2, 300)
    nearly = codes.copy()
    nearly[:2] = (nearly[:2] + 1) % 4  # 2 of 300 differ: 99.3 % equal
    missing = codes.copy()
    missing[::10] = -1
    columns = [
        _column("a", "country", codes, "String"),
        _column("b", "country_code", nearly, "String"),
        _column("c", "region", missing, "String"),
        _column("d", "flag", flags, "Bool"),
        _column("e", "flag_as_number", flags.astype(float)),  # another kind: not compared
        _column("f", "one_value", np.zeros(300, dtype=np.int64), "String"),
        _column("g", "one_value", np.zeros(300, dtype=np.int64), "String"),
    ]
    found = {(p.a, p.b): p for p in find_pairs(columns, "id", 0.98)}
    assert set(found) == {
        ("a:country", "b:country_code"),
        ("a:country", "c:region"),
        ("b:country_code", "c:region"),
    }
    assert found[("a:country", "b:country_code")].equal_share == pytest.approx(298 / 300)
    assert found[("a:country", "c:region")].rows == 270
    assert found[("a:country", "c:region")].correlation is None


def test_categorical_stats_count_rows_equal_and_constant_pairs() -> None:
    codes = np.array([[0, 0, 1], [1, 1, 1], [-1, 2, 1], [2, 2, -1]])
    rows, equal, constant = categorical_stats(codes)
    assert rows.tolist() == [[3, 3, 2], [3, 4, 3], [2, 3, 3]]
    assert equal[0, 1] == 3 and equal[1, 2] == 1
    assert not constant[0, 1] and constant[0, 2] and constant[1, 2]
