"""The pure comparison: outcome per row, counts, SMAPE and hourly buckets, against hand-worked
numbers."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from parity.monitoring.consistency_compare import (
    BOTH_NULL,
    MATCH,
    MISMATCH,
    OFFLINE_NULL,
    ONLINE_NULL,
    compare,
    counts,
    hourly,
    hours_of,
    smape_terms,
)

H = 3_600_000_000


def test_floats_equal_within_relative_tolerance_nan_and_inf_are_null() -> None:
    online = pa.array([1.0, 1.0 + 1e-12, 2.0, None, None, 5.0, None], pa.float64())
    offline = pa.array([1.0, 1.0, 2.5, 3.0, math.nan, None, math.inf], pa.float64())
    result = compare(online, offline)
    assert result.codes.tolist() == [
        MATCH,
        MATCH,
        MISMATCH,
        ONLINE_NULL,
        BOTH_NULL,
        OFFLINE_NULL,
        BOTH_NULL,
    ]
    # SMAPE terms where both present: 0, ~0, |2 - 2.5| / 2.25
    assert result.smape is not None
    assert result.smape[:3] == pytest.approx([0.0, 1e-12, 0.5 / 2.25], abs=1e-15)
    assert np.isnan(result.smape[3:]).all()


def test_float32_tolerance_is_wider_than_float64() -> None:
    widened = float(np.float32(0.1))  # 0.10000000149...
    assert compare(pa.array([0.1]), pa.array([widened], pa.float32())).codes[0] == MATCH
    assert compare(pa.array([0.1]), pa.array([widened], pa.float64())).codes[0] == MISMATCH


def test_integers_strings_booleans_timestamps_compare_exactly() -> None:
    ints = compare(pa.array([3, 4, None], pa.int64()), pa.array([3, 5, None], pa.int32()))
    assert ints.codes.tolist() == [MATCH, MISMATCH, BOTH_NULL]
    assert ints.smape is not None and ints.smape[1] == pytest.approx(1 / 4.5)
    text = compare(pa.array(["a", "b", None]), pa.array(["a", "B", "c"]))
    assert text.codes.tolist() == [MATCH, MISMATCH, ONLINE_NULL] and text.smape is None
    flags = compare(pa.array([True, False]), pa.array([True, True]))
    assert flags.codes.tolist() == [MATCH, MISMATCH]
    t = datetime(2026, 1, 1, tzinfo=UTC)
    stamps = compare(
        pa.array([t, t], pa.timestamp("us", tz="UTC")),
        pa.array([t, None], pa.timestamp("us", tz="UTC")),
    )
    assert stamps.codes.tolist() == [MATCH, OFFLINE_NULL]


def test_lists_compare_element_by_element_and_bytes_by_base64() -> None:
    lists = compare(
        pa.array([[1.0, 2.0], [1.0], None, [None]]),
        pa.array([[1.0, 2.0 + 1e-13], [1.5], None, [math.nan]], pa.list_(pa.float64())),
    )
    assert lists.codes.tolist() == [MATCH, MISMATCH, BOTH_NULL, MATCH]
    raw = compare(pa.array(["AAE=", "AAE="]), pa.array([b"\x00\x01", b"\x00\x02"]))
    assert raw.codes.tolist() == [MATCH, MISMATCH]


def test_smape_is_zero_for_zero_over_zero_and_two_for_opposite_signs() -> None:
    terms = smape_terms(np.array([0.0, 1.0, -1.0, 3.0]), np.array([0.0, 0.0, 1.0, 1.0]))
    assert terms.tolist() == pytest.approx([0.0, 2.0, 2.0, 1.0])


def test_counts_and_hourly_buckets_by_hand() -> None:
    online = pa.array([1.0, 2.0, None, 4.0, None, 6.0])
    offline = pa.array([1.0, 3.0, 3.0, None, None, 6.0])
    at_us = np.array([0, 10, 20, H, H + 1, 2 * H + 5])
    stale = np.array([False, True, False, False, True, False])  # row 4 agrees: not counted
    result = compare(online, offline)
    total = counts(result, stale)
    assert (total.total, total.mismatch, total.online_only_null) == (6, 3, 1)
    assert (total.offline_only_null, total.both_null, total.stale) == (1, 1, 1)
    assert total.mismatch_rate == 0.5
    assert total.smape == pytest.approx((0 + 1 / 2.5 + 0) / 3)
    buckets = hourly("x", hours_of(at_us), result, stale)
    assert [b.hour.hour for b in buckets] == [0, 1, 2]
    first, second, third = (b.counts for b in buckets)
    assert (first.total, first.mismatch, first.stale, first.smape) == (3, 2, 1, pytest.approx(0.2))
    assert (second.total, second.offline_only_null, second.both_null, second.smape) == (
        2,
        1,
        1,
        None,
    )
    assert (third.total, third.mismatch, third.smape) == (1, 0, 0.0)


def test_all_null_and_empty_columns_do_not_crash() -> None:
    empty = compare(pa.array([], pa.float64()), pa.array([], pa.float64()))
    assert counts(empty).total == 0 and counts(empty).mismatch_rate == 0.0
    assert hourly("x", hours_of(np.array([], dtype=np.int64)), empty) == []
    nulls = compare(pa.array([None, None], pa.float64()), pa.array([None, None], pa.float64()))
    assert counts(nulls).both_null == 2 and counts(nulls).smape is None


def test_values_near_the_largest_float_do_not_overflow() -> None:
    big = 1.7e308
    result = compare(pa.array([big, big]), pa.array([big, -big]))
    assert result.codes.tolist() == [MATCH, MISMATCH]
    assert result.smape is not None and result.smape.tolist() == [0.0, 2.0]
