"""Overlay bins for the report's plots, against numpy histograms of the raw values."""

from __future__ import annotations

import numpy as np
import pytest

from parity.monitoring import profile as prof
from parity.monitoring.profile import profile_column
from parity.monitoring.samples import overlay

RNG = np.random.default_rng(5)


def _hist(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    clipped = np.clip(values, edges[0], edges[-1])  # outer bins take the mass beyond the edges
    counts = np.histogram(clipped, edges)[0]
    return counts / counts.sum()


def test_categorical_overlay_has_one_bar_per_value_of_either_side() -> None:
    got = overlay(profile_column("c", ["a"] * 30 + ["b"] * 70), ["b"] * 50 + ["c"] * 50)
    assert got.labels == ("a", "b", "c") and got.edges == ()
    assert got.reference == pytest.approx((0.3, 0.7, 0.0))
    assert got.current == pytest.approx((0.0, 0.5, 0.5))


def test_categorical_beyond_the_top_k_shows_an_other_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prof, "TOP_K", 2)
    monkeypatch.setattr(prof, "VALUES_LIMIT", 0)
    ref = profile_column("c", ["a"] * 5 + ["b"] * 3 + ["c"] * 2)
    got = overlay(ref, ["a", "d", "d", "b"])
    assert got.labels == ("a", "b", "other")
    assert got.reference == pytest.approx((0.5, 0.3, 0.2))
    assert got.current == pytest.approx((0.25, 0.25, 0.5))


def test_numeric_overlay_on_a_small_reference_is_the_raw_histogram() -> None:
    ref, cur = RNG.normal(size=800), RNG.normal(1, 1, 5000)
    got = overlay(profile_column("x", ref), cur, bins=20)
    edges = np.asarray(got.edges)
    assert edges.size == 21
    np.testing.assert_allclose(got.reference, _hist(ref, edges), atol=1e-12)
    np.testing.assert_allclose(got.current, _hist(cur, edges), atol=1e-12)


def test_numeric_overlay_from_quantiles_is_within_half_a_percent_per_bin() -> None:
    ref, cur = RNG.lognormal(0, 1, 100_000), RNG.lognormal(0.3, 1, 20_000)
    got = overlay(profile_column("x", ref), cur)
    edges = np.asarray(got.edges)
    assert np.max(np.abs(np.asarray(got.reference) - _hist(ref, edges))) <= 0.005
    assert sum(got.reference) == pytest.approx(1.0)
