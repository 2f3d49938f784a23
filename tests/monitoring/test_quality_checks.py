"""quality.py: counts and verdicts on hand-worked batches (no I/O)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from parity.errors import QualityInputError
from parity.monitoring.quality import (
    Counts,
    QualityThresholds,
    Reference,
    check_batch,
    count_column,
    judge,
    signals,
)


def test_null_rate_counts_null_and_nan_and_inf_apart() -> None:
    values = pa.array([1.0, None, math.nan, math.inf, -math.inf, 2.0, 3.0, None], pa.float64())
    (result,) = check_batch({"amount": values})
    assert (result.rows, result.counts.nulls, result.counts.infinite) == (8, 3, 2)
    assert result.null_rate == pytest.approx(3 / 8)
    assert result.infinite_share == pytest.approx(2 / 8)
    assert result.checks == {
        "null_rate": "breach",  # 0.375 > 0 + 0.05
        "infinite": "breach",
        "range": "not_checked",
        "categories": "not_checked",
    }


def test_range_counts_values_below_min_and_above_max_among_finite_values() -> None:
    ref = Reference(rows=100, nulls=10, minimum=0.0, maximum=10.0)
    values = np.array([-1.0, 0.0, 5.0, 10.0, 10.5, 11.0, np.nan, 3.0, 4.0, 6.0, 7.0])
    counts = count_column("x", values, ref)
    assert (counts.below, counts.above, counts.ranged) == (1, 2, 10)
    result = judge("x", counts, ref)
    assert result.out_of_range_share == pytest.approx(3 / 10)
    assert result.checks["range"] == "breach"
    # null rate 1/11 = 0.0909 <= reference 0.10 + 0.05
    assert result.checks["null_rate"] == "ok"
    assert result.limits["null_rate"] == pytest.approx(0.15)


def test_integers_compare_with_a_float_range() -> None:
    ref = Reference(rows=5, minimum=1.5, maximum=3.0)
    counts = count_column("n", pa.array([1, 2, 3, 4, None], pa.int64()), ref)
    assert (counts.rows, counts.nulls, counts.below, counts.above, counts.ranged) == (5, 1, 1, 1, 4)


def test_unseen_categories_with_a_complete_reference_are_new() -> None:
    ref = Reference(rows=10, categories={"US": 6, "FR": 4}, other=0)
    values = ["US", "FR", "BR", "BR", "JP", None, "US"]
    result = judge("country", count_column("country", values, ref), ref)
    assert (result.counts.unseen, result.counts.categorized) == (3, 6)
    assert dict(result.counts.examples) == {"BR": 2, "JP": 1}
    assert result.unseen_share == pytest.approx(0.5)
    assert result.limits["categories"] == pytest.approx(0.01)
    assert result.checks["categories"] == "breach"


def test_unseen_categories_within_the_references_other_share_are_not_a_breach() -> None:
    # top-2 of a reference with 20% of its values in "other": 'BR' may have been one of them.
    ref = Reference(rows=100, categories={"US": 50, "FR": 30}, other=20)
    values = ["US"] * 8 + ["FR"] * 10 + ["BR"] * 2  # 10% unseen <= 20% + 1%
    result = judge("country", count_column("country", values, ref), ref)
    assert result.unseen_share == pytest.approx(0.1)
    assert result.limits["categories"] == pytest.approx(0.21)
    assert result.checks["categories"] == "ok"


def test_boolean_and_integer_categories_compare_by_text() -> None:
    ref = Reference(rows=4, categories={"true": 3, "false": 1})
    assert count_column("b", [True, False, True], ref).unseen == 0
    ref = Reference(rows=4, categories={"1": 3, "2": 1})
    assert count_column("i", [1, 2, 3], ref).unseen == 1


def test_all_null_column_is_reported_not_a_crash() -> None:
    ref = Reference(rows=10, minimum=0.0, maximum=1.0, categories={"a": 10})
    for values in ([None, None, None], pa.array([None, None, None], pa.float64())):
        result = judge("x", count_column("x", values, ref), ref)
        assert result.rows == 3
        assert result.null_rate == 1.0
        assert result.checks == {
            "null_rate": "breach",
            "infinite": "ok",
            "range": "no_data",
            "categories": "no_data",
        }


def test_empty_batch_is_no_data() -> None:
    (result,) = check_batch({"x": pa.array([], pa.float64())})
    assert result.rows == 0 and result.null_rate is None
    assert result.checks["null_rate"] == "no_data"
    assert result.verdict == "no_data"
    assert signals([result]) == {}


def test_counts_merge_across_batches_like_one_batch() -> None:
    ref = Reference(rows=10, minimum=0.0, maximum=1.0)
    a, b = [0.5, None, 2.0], [-1.0, math.inf, 0.1]
    merged = count_column("x", a, ref) + count_column("x", b, ref)
    assert merged == count_column("x", a + b, ref)
    assert merged == Counts(rows=6, nulls=1, infinite=1, below=1, above=1, ranged=4)


def test_thresholds_are_configurable() -> None:
    counts = count_column("x", [1.0, None, 2.0, 3.0])  # null rate 0.25
    assert judge("x", counts).checks["null_rate"] == "breach"
    loose = QualityThresholds(null_rate_increase=0.3)
    assert judge("x", counts, thresholds=loose).checks["null_rate"] == "ok"


def test_signals_are_the_null_rate_per_feature() -> None:
    results = check_batch({"a": [1.0, None], "b": ["x", "y"]})
    assert signals(results) == {"null_rate:a": 0.5, "null_rate:b": 0.0}


def test_text_where_the_reference_is_numeric_names_the_feature() -> None:
    with pytest.raises(QualityInputError, match="feature 'amount'"):
        count_column("amount", ["1", "2"], Reference(rows=2, minimum=0.0, maximum=1.0))


def test_mixed_values_and_unequal_columns_are_typed_errors() -> None:
    with pytest.raises(QualityInputError, match="feature 'x'"):
        count_column("x", [1, "a", 2.5])
    with pytest.raises(QualityInputError, match="differ in length"):
        check_batch({"a": [1, 2], "b": [1]})
