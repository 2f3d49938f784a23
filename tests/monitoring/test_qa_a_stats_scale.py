"""QA: normalised Wasserstein is scale-free, so values near the float limit (the profile scales
them to keep mean/std finite) give the same distance as the same data at unit scale; before, the
squares in the crossing-step area overflowed to inf and a calm column read as drift."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from parity.monitoring.profile import profile_column
from parity.monitoring.stats import wasserstein_normalized


@pytest.mark.parametrize("reference_rows", [500, 5000])  # exact (values kept) and from quantiles
def test_wasserstein_of_huge_values_matches_scipy_at_unit_scale(reference_rows: int) -> None:
    rng = np.random.default_rng(3)
    reference, current = rng.normal(0, 1, reference_rows), rng.normal(0.05, 1, 800)
    expected = scipy_stats.wasserstein_distance(reference, current) / np.std(reference)
    scale = 1e300
    got = wasserstein_normalized(profile_column("x", reference * scale), current * scale)
    assert np.isfinite(got.statistic)
    assert got.statistic == pytest.approx(expected, abs=0.002)
