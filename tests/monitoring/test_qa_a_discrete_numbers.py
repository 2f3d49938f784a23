"""QA: a number with a few hundred distinct values (credit limits in steps of 100, ages in days)
is profiled with its complete value table, so Wasserstein, KS and Jensen-Shannon on Sturges bins
are exact. Before, only <= 100 distinct values were kept and the steps were read from a linear
quantile function: on the fraud example's credit_limit (162 values) Wasserstein was 0.0130 for
scipy's 0.0113 and Jensen-Shannon 0.040 for 0.029."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats
from scipy.spatial.distance import jensenshannon

from parity.monitoring.profile import merge, profile_column
from parity.monitoring.stats import jensen_shannon, ks, wasserstein_normalized


def limits(rng: np.random.Generator, rows: int, scale: float) -> np.ndarray:
    return np.round(rng.lognormal(np.log(4000 * scale), 0.6, rows), -2).clip(600, 51_700)


@pytest.mark.parametrize("scale", [1.0, 1.1])
def test_a_few_hundred_distinct_numbers_test_exactly(scale: float) -> None:
    rng = np.random.default_rng(8)
    reference, current = limits(rng, 60_000, 1.0), limits(rng, 8_000, scale)
    assert 100 < np.unique(reference).size <= 1000
    profile = profile_column("credit_limit", reference)
    w = wasserstein_normalized(profile, current)
    expected_w = scipy_stats.wasserstein_distance(reference, current) / np.std(reference)
    assert w.exact and w.statistic == pytest.approx(expected_w, abs=1e-9)
    assert ks(profile, current).statistic == pytest.approx(
        scipy_stats.ks_2samp(reference, current).statistic, abs=1e-9
    )
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
    r = np.histogram(reference, edges)[0] / reference.size
    c = np.histogram(current, edges)[0] / current.size
    js = jensen_shannon(profile, current, binning="sturges")
    assert js.exact and js.statistic == pytest.approx(jensenshannon(r, c, base=2), abs=1e-9)


def test_merged_tables_stay_complete_while_small() -> None:
    rng = np.random.default_rng(9)
    a, b = limits(rng, 5_000, 1.0), limits(rng, 5_000, 1.2)
    merged = merge(profile_column("x", a), profile_column("x", b))
    whole = profile_column("x", np.concatenate([a, b]))
    assert merged.frequencies_complete and dict(merged.frequencies) == dict(whole.frequencies)
