"""Every time argument of the models layer goes through parity.timeutil.parse_time (QA item 23):
`alias_at` takes ISO text, dates and "now" (read from the store's clock), and refuses anything
else with InvalidTime naming the argument."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from parity import FeatureStore
from parity.errors import InvalidTime
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import Affine

T1 = datetime(2026, 1, 1, 12, tzinfo=UTC)  # champion -> 1
T2 = datetime(2026, 1, 3, 12, tzinfo=UTC)  # champion -> 2; the store's "now" is T2 + 1 hour


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    repo = write_repo(tmp_path / "repo", DRIVER_REPO, extra="models: {trusted: true}\n")
    moments = [T1]
    store = FeatureStore(repo, clock=lambda: moments[-1])
    store.apply()
    models = store.models
    for weight in (1.0, 2.0):
        models.register_model(
            "fraud", Affine([weight], 0.0), flavor="pyfunc", sample_input=np.ones((2, 1))
        )
    models.set_alias("fraud", "champion", 1)
    moments.append(T2)
    models.set_alias("fraud", "champion", 2)
    moments.append(T2 + timedelta(hours=1))
    return store


def _version(store: FeatureStore, moment: object) -> int | None:
    found = store.models.alias_at("fraud", "champion", moment)  # type: ignore[arg-type]
    return None if found is None else found.version


def test_alias_at_takes_now_from_the_stores_clock_iso_text_and_dates(store: FeatureStore) -> None:
    assert [e.moved_at for e in store.models.history("fraud", "champion")] == [T1, T2]
    assert _version(store, "now") == 2
    assert _version(store, " NOW ") == 2
    assert _version(store, "2026-01-02T00:00:00Z") == 1
    assert _version(store, "2026-01-02") == 1  # a date is its midnight UTC
    assert _version(store, date(2026, 1, 4)) == 2
    assert _version(store, "2026-01-01") is None  # before the first move
    assert _version(store, datetime(2026, 1, 2)) == 1  # naive is UTC
    assert _version(store, T2) == 2


@pytest.mark.parametrize("moment", ["yesterday", "2026-13-01", 1767268800, None, ""])
def test_alias_at_refuses_what_is_not_a_time_naming_the_argument(
    store: FeatureStore, moment: object
) -> None:
    with pytest.raises(InvalidTime, match=r"^moment: ") as caught:
        _version(store, moment)
    assert caught.value.code == "invalid_time"
