"""Column profiles against numpy/collections computed on the same raw values."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from parity.errors import ProfileError
from parity.monitoring import profile as prof
from parity.monitoring.profile import (
    BOOLEAN,
    CATEGORICAL,
    NUMERIC,
    load_sketch,
    profile_column,
    profile_table,
    quantile_levels,
)


def test_numeric_profile_matches_numpy_on_the_same_values() -> None:
    rng = np.random.default_rng(0)
    x = rng.lognormal(3, 1, 20_000)
    col = profile_column("amount", x)
    assert (col.kind, col.count, col.nulls, col.infinite) == (NUMERIC, 20_000, 0, 0)
    assert col.distinct == np.unique(x).size
    assert col.min == x.min() and col.max == x.max()
    assert col.mean == pytest.approx(np.mean(x), rel=1e-12)
    assert col.std == pytest.approx(np.std(x), rel=1e-12)  # population std (ddof=0)
    np.testing.assert_allclose(col.quantiles, np.quantile(x, quantile_levels()), rtol=1e-12)
    assert col.quantiles_exact and col.values is None
    assert col.frequencies == () and col.other == 20_000  # > TOP_K distinct numbers: no table


def test_psi_histogram_is_reference_deciles_with_counts_of_each_bin() -> None:
    x = np.arange(1000, dtype=float)  # deciles at 99.9, 199.8, ...
    col = profile_column("x", x)
    expected_edges = np.quantile(x, np.arange(1, 10) / 10)
    np.testing.assert_allclose(col.psi_edges, expected_edges)
    # bins are [e(i-1), e(i)): hand count, 100 values each
    assert col.psi_counts == (100,) * 10


def test_nulls_nan_and_infinities_are_counted_and_left_out_of_every_statistic() -> None:
    values = pa.array([1.0, None, float("nan"), float("inf"), -float("inf"), 3.0])
    col = profile_column("x", values)
    assert (col.count, col.nulls, col.infinite, col.valid) == (6, 2, 2, 2)
    assert (col.min, col.max, col.mean, col.std) == (1.0, 3.0, 2.0, 1.0)
    assert col.values == (1.0, 3.0)
    assert col.frequencies == ((1.0, 1), (3.0, 1))


@pytest.mark.parametrize(
    "values",
    [
        [],
        [None, None],
        pa.array([None, None], pa.null()),
        [float("nan")] * 3,
        [float("inf"), -float("inf")],
        pa.chunked_array([], pa.float64()),
    ],
)
def test_empty_and_all_null_columns_profile_without_statistics(values: object) -> None:
    col = profile_column("x", values)
    assert col.valid == 0 and col.distinct == 0
    assert (col.min, col.max, col.mean, col.std, col.quantiles) == (None, None, None, None, ())
    assert col.sketch is None


def test_constant_column_has_zero_std_and_one_value() -> None:
    col = profile_column("x", [7] * 5000)
    assert (col.distinct, col.min, col.max, col.mean, col.std) == (1, 7.0, 7.0, 7.0, 0.0)
    assert set(col.quantiles) == {7.0}
    assert col.frequencies == ((7.0, 5000),) and col.other == 0
    assert col.psi_edges == ()  # binned by value


def test_huge_integers_and_huge_floats_never_crash() -> None:
    big = profile_column("x", [2**63, 2**64 - 1, 2**70, None])
    assert big.valid == 3 and big.max == pytest.approx(2.0**70)
    uint = profile_column("x", pa.array([2**64 - 1, 0], pa.uint64()))
    assert uint.max == pytest.approx(2.0**64)
    floats = profile_column("x", np.array([1e308, 1e308, -1e308]))
    assert floats.mean == pytest.approx(1e308 / 3)
    assert floats.std is not None and np.isfinite(floats.std)
    dec = profile_column("x", pa.array([Decimal("1.50"), Decimal("2.50")]))
    assert (dec.kind, dec.mean) == (NUMERIC, 2.0)


def test_categorical_frequencies_are_top_k_with_other_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(prof, "TOP_K", 3)
    values = [*"aaaabbbccd", None, ""]
    col = profile_column("c", values)
    counts = Counter(v for v in values if v is not None)
    assert (col.kind, col.count, col.nulls, col.distinct) == (CATEGORICAL, 12, 1, len(counts))
    assert col.frequencies == (("a", 4), ("b", 3), ("c", 2))  # ties: by value
    assert col.other == counts["d"] + counts[""]
    assert col.values == tuple(sorted(v for v in values if v is not None))


def test_dictionary_strings_and_booleans() -> None:
    dict_col = profile_column("c", pa.array(["x", "y", "x", None]).dictionary_encode())
    assert dict_col.kind == CATEGORICAL and dict_col.frequencies == (("x", 2), ("y", 1))
    flags = profile_column("b", [True, False, True, None])
    assert flags.kind == BOOLEAN and flags.frequencies == ((True, 2), (False, 1))
    assert flags.values == (False, True, True)


def test_numeric_column_with_few_values_keeps_a_complete_frequency_table() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 40, 50_000)
    col = profile_column("x", x)
    uniq, counts = np.unique(x, return_counts=True)
    assert dict(col.frequencies) == dict(
        zip(uniq.astype(float).tolist(), counts.tolist(), strict=True)
    )
    assert col.other == 0 and col.frequencies_complete


def test_small_columns_keep_their_sorted_values_and_large_ones_do_not() -> None:
    rng = np.random.default_rng(2)
    small = rng.normal(size=1000)
    assert profile_column("x", small).values == tuple(np.sort(small).tolist())
    assert profile_column("x", rng.normal(size=1001)).values is None


def test_above_the_exact_limit_quantiles_come_from_the_kll_sketch_within_its_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(prof, "EXACT_QUANTILE_LIMIT", 1000)
    rng = np.random.default_rng(3)
    x = rng.normal(size=50_000)
    col = profile_column("x", x)
    assert not col.quantiles_exact
    assert (col.min, col.max) == (x.min(), x.max())
    eps = load_sketch(col).normalized_rank_error(False)
    ranks = np.searchsorted(np.sort(x), col.quantiles, side="right") / x.size
    assert np.all(np.abs(ranks - quantile_levels()) <= eps + 1 / x.size)
    assert col.distinct == np.unique(x).size


def test_profile_table_profiles_the_named_columns_and_refuses_unknown_ones() -> None:
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", None], "c": [True, None, False]})
    profile = profile_table(table, ["a", "b"], dataset="fraud_train_v1", fingerprint="abc")
    assert list(profile.columns) == ["a", "b"] and profile.rows == 3
    assert (profile.dataset, profile.fingerprint) == ("fraud_train_v1", "abc")
    with pytest.raises(ProfileError, match="'nope'"):
        profile_table(table, ["nope"])


def test_values_that_cannot_be_read_as_the_asked_kind_are_a_profile_error() -> None:
    with pytest.raises(ProfileError, match="'flag'"):
        profile_column("flag", ["maybe", "yes?"], kind=BOOLEAN)
    with pytest.raises(ProfileError, match="'amount'"):
        profile_column("amount", ["12.5", "twelve"], kind=NUMERIC)
