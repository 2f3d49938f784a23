"""Profile JSON round trip (lossless) and merging two halves against the profile of the whole."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity.errors import ProfileError
from parity.monitoring.profile import (
    Profile,
    load_sketch,
    merge,
    merge_profiles,
    profile_column,
    profile_table,
    quantile_levels,
)

CREATED = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)


def _table() -> pa.Table:
    rng = np.random.default_rng(0)
    n = 3000
    amount = rng.lognormal(3, 1, n)
    amount[:5] = [np.nan, np.inf, -np.inf, 1e308, -0.0]
    return pa.table(
        {
            "amount": amount,
            "count": rng.integers(0, 4, n),
            "big": pa.array([2**63 + i for i in range(n)], pa.uint64()),
            "country": rng.choice(["fr", "de", "", "é"], n),
            "flag": pa.array([bool(v) if v < 2 else None for v in rng.integers(0, 3, n)]),
            "empty": pa.array([None] * n, pa.float64()),
            "small": pa.array([1.5, 2.5] + [None] * (n - 2)),
        }
    )


def test_json_round_trip_is_lossless_for_every_kind_of_column() -> None:
    profile = profile_table(
        _table(), dataset="fraud_train_v1", fingerprint="f" * 64, created_at=CREATED
    )
    text = profile.to_json()
    back = Profile.from_json(text)
    assert back == profile
    assert back.to_json() == text
    assert back.columns["amount"].quantiles == profile.columns["amount"].quantiles  # bit for bit
    assert "NaN" not in text and "Infinity" not in text  # strict JSON


def test_from_json_rejects_text_that_is_not_a_profile() -> None:
    with pytest.raises(ProfileError, match="profile"):
        Profile.from_json('{"rows": 3}')
    with pytest.raises(ProfileError):
        Profile.from_json("not json")


def test_merging_two_halves_gives_the_exact_counts_moments_and_frequencies_of_the_whole() -> None:
    table = _table()
    first, second = table.slice(0, 1200), table.slice(1200)
    whole = profile_table(table, created_at=CREATED)
    merged = merge_profiles(
        profile_table(first, created_at=CREATED),
        profile_table(second, created_at=CREATED),
        created_at=CREATED,
    )
    for name, w in whole.columns.items():
        m = merged.columns[name]
        assert (m.count, m.nulls, m.infinite) == (w.count, w.nulls, w.infinite), name
        assert (m.min, m.max) == (w.min, w.max), name
        if w.mean is not None and name != "big":  # 2**63 + i: float64 spacing 2048, std is noise
            assert m.mean == pytest.approx(w.mean, rel=1e-9), name
            assert m.std == pytest.approx(w.std, rel=1e-9), name
    for name in ("count", "country", "flag"):
        assert merged.columns[name].frequencies == whole.columns[name].frequencies
        assert merged.columns[name].distinct == whole.columns[name].distinct
    assert merged.columns["small"].values == (1.5, 2.5)
    assert merged.rows == table.num_rows


def test_merge_refuses_profiles_of_different_columns() -> None:
    with pytest.raises(ProfileError, match="'a'"):
        merge(profile_column("a", [1.0]), profile_column("b", [1.0]))
    with pytest.raises(ProfileError, match="numeric"):
        merge(profile_column("a", [1.0]), profile_column("a", ["x"]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=2, max_size=3000
    ),
    cut=st.floats(min_value=0.0, max_value=1.0),
)
def test_merged_quantiles_are_within_the_sketch_rank_error_of_the_whole(
    values: list[float], cut: float
) -> None:
    x = np.asarray(values)
    k = int(cut * x.size)
    merged = merge(profile_column("x", x[:k]), profile_column("x", x[k:]))
    assert merged.valid == x.size and (merged.min, merged.max) == (x.min(), x.max())
    assert merged.mean == pytest.approx(np.mean(x), rel=1e-9, abs=1e-6)
    assert merged.std == pytest.approx(np.std(x), rel=1e-6, abs=1e-6)
    s = np.sort(x)
    if merged.quantiles_exact:  # the union still fits VALUES_LIMIT: exact
        np.testing.assert_allclose(merged.quantiles, np.quantile(x, quantile_levels()))
        return
    eps = load_sketch(merged).normalized_rank_error(False)
    below = np.searchsorted(s, merged.quantiles, side="left") / x.size
    upto = np.searchsorted(s, merged.quantiles, side="right") / x.size
    levels = quantile_levels()
    assert np.all(below <= levels + eps + 1 / x.size)
    assert np.all(upto >= levels - eps - 1 / x.size)
    assert sum(merged.psi_counts) == x.size or merged.psi_counts == ()
