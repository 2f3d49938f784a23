"""QA (issue 13, helper B): delayed-label performance edges found by replaying the issue as a
user would, each a regression test of a fixed defect."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from parity import FeatureStore
from parity.errors import InvalidTime
from tests.monitoring.test_perf_labels import T0
from tests.monitoring.test_perf_service import fraud_repo, register


def test_a_range_of_millions_of_windows_is_refused_not_an_out_of_memory(tmp_path: Path) -> None:
    # `--since 2000-01-01 --window 1m` asked for ~14 million windows: MemoryError traceback
    # after minutes; drift refuses over 100,000 windows (InvalidWindow), performance must too
    with FeatureStore(fraud_repo(tmp_path / "repo")) as store:
        store.apply()
        register(store)
        with pytest.raises(InvalidTime, match="windows of 0:01:00.*at most 100,000"):
            store.monitoring.performance(
                "fraud@champion",
                since=T0 - timedelta(minutes=200_000),
                until=T0,
                window=timedelta(minutes=1),
                record=False,
            )
