"""Push: validated rows reach the online store and, durably, the offline folder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from parity import FeatureStore, InvalidDefinition
from parity.errors import PushError, PushSourceNotFound
from tests.conftest import write_repo

T = datetime(2026, 6, 1, tzinfo=UTC)
REPO = {
    "defs.py": """
        from datetime import timedelta
        from parity import Entity, FeatureView, Field, FileSource, Float64, Int64, PushSource

        account = Entity(name="account", join_keys=["account_id"])
        clicks = PushSource(name="clicks", batch_source=FileSource(path="data/clicks/"))
        click_stats = FeatureView(
            name="click_stats", entities=[account],
            schema=[Field(name="clicks_1h", dtype=Int64), Field(name="spend", dtype=Float64)],
            source=clicks, ttl=timedelta(days=1),
        )
    """
}


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    feature_store = FeatureStore(write_repo(tmp_path / "repo", REPO), clock=lambda: T)
    feature_store.apply()  # no data pushed yet: apply must not need the folder
    return feature_store


def rows(*items: tuple[int, float, int, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"account_id": a, "event_timestamp": T - timedelta(hours=h), "clicks_1h": c, "spend": s}
            for a, h, c, s in items
        ]
    )


def test_push_online_is_read_back_and_older_pushes_lose(store: FeatureStore) -> None:
    assert store.push("clicks", rows((1, 2, 5, 1.5), (2, 1, 7, 0.0))) == 2
    store.push("clicks", rows((1, 3, 99, 9.9)))  # older than what is stored: ignored
    online = store.get_online_features(["click_stats:clicks_1h"], {"account_id": [1, 2, 3]})
    assert online.values["clicks_1h"] == [5, 7, None]
    assert not (store.repo_path / "data" / "clicks").exists()  # online only


def test_push_offline_is_on_disk_before_return_and_retrievable(store: FeatureStore) -> None:
    store.push("clicks", rows((1, 2, 5, 1.5)), to="offline")
    files = sorted((store.repo_path / "data" / "clicks").glob("*.parquet"))
    assert len(files) == 1 and not list((store.repo_path / "data" / "clicks").glob(".*"))
    store.push("clicks", rows((1, 1, 6, 2.5)), to="both")
    entity = pd.DataFrame({"account_id": [1, 1], "event_timestamp": [T - timedelta(hours=1.5), T]})
    offline = store.get_historical_features(entity, ["click_stats:clicks_1h"]).to_pandas()
    assert offline["clicks_1h"].tolist() == [5, 6]
    online = store.get_online_features(["click_stats:clicks_1h"], {"account_id": [1]})
    assert online.values["clicks_1h"] == [6]


def test_bad_pushes_name_the_problem(store: FeatureStore) -> None:
    with pytest.raises(PushSourceNotFound, match="push source 'nope'"):
        store.push("nope", rows((1, 1, 1, 1.0)))
    with pytest.raises(PushError, match="lack column 'spend'"):
        store.push("clicks", rows((1, 1, 1, 1.0)).drop(columns="spend"))
    with pytest.raises(PushError, match=r"'clicks_1h' is (large_)?string"):
        store.push("clicks", rows((1, 1, 1, 1.0)).astype({"clicks_1h": str}))
    with pytest.raises(PushError, match="'online', 'offline' or 'both'"):
        store.push("clicks", rows((1, 1, 1, 1.0)), to="everywhere")  # type: ignore[arg-type]


def test_a_push_source_declared_two_ways_is_rejected(tmp_path: Path) -> None:
    files = {
        "defs.py": REPO["defs.py"]
        + """
        other = FeatureView(
            name="other", entities=[account], schema=[Field(name="spend", dtype=Float64)],
            source=PushSource(name="clicks", batch_source=FileSource(path="data/elsewhere/")),
        )
    """
    }
    store = FeatureStore(write_repo(tmp_path / "repo", files))
    with pytest.raises(
        InvalidDefinition, match="declare push or stream source 'clicks' differently"
    ):
        store.apply()


@pytest.mark.parametrize("when", [None, "", "NaT"])
def test_a_row_without_an_event_time_is_refused_naming_the_row(
    store: FeatureStore, when: object
) -> None:
    """A pushed row with no event time could be read by no point-in-time query and by no online
    read: refused with its row number, and nothing is written (issue 12, silent answers)."""
    good = T - timedelta(hours=1)
    frame = {"account_id": [1, 2], "event_timestamp": [good.isoformat(), when],
             "clicks_1h": [5, 6], "spend": [1.0, 2.0]}  # fmt: skip
    with pytest.raises(PushError, match=r"'event_timestamp' row 1 .*no time"):
        store.push("clicks", frame, to="both")
    online = store.get_online_features(["click_stats:clicks_1h"], {"account_id": [1, 2]})
    assert online.values["clicks_1h"] == [None, None]
    assert not (store.repo_path / "data" / "clicks").exists()


def test_a_row_without_a_join_key_is_refused_naming_the_row(store: FeatureStore) -> None:
    frame = {"account_id": [1, None], "event_timestamp": [T.isoformat()] * 2,
             "clicks_1h": [5, 6], "spend": [1.0, 2.0]}  # fmt: skip
    with pytest.raises(PushError, match=r"'account_id' row 1 .*null"):
        store.push("clicks", frame, to="both")
    assert not (store.repo_path / "data" / "clicks").exists()


def test_a_row_stamped_after_the_read_time_is_not_served_as_current(tmp_path: Path) -> None:
    """A push within max_future_skew but after the read time replaces the stored row online;
    offline at t still answers the older row. Online must not serve the later value at t: it
    answers OUTSIDE_MAX_AGE (the row is outside [t - ttl, t]) until t reaches the row's time,
    then the value, equal to offline again (issue 12: never a value from the future)."""
    clock = [T]
    store = FeatureStore(write_repo(tmp_path / "repo", REPO), clock=lambda: clock[0])
    store.apply()
    store.push("clicks", rows((1, 1, 5, 1.5)), to="both")  # an hour before T
    ahead = {"account_id": [1], "event_timestamp": [(T + timedelta(seconds=30)).isoformat()],
             "clicks_1h": [9], "spend": [2.5]}  # fmt: skip
    store.push("clicks", ahead, to="both")
    frame = pd.DataFrame({"account_id": [1, 1], "event_timestamp": [T, T + timedelta(seconds=30)]})
    offline = store.get_historical_features(frame, ["click_stats:clicks_1h"]).to_pandas()
    assert list(offline["clicks_1h"]) == [5, 9]
    at_t = store.get_online_features(["click_stats:clicks_1h"], {"account_id": [1]})
    assert at_t.values["clicks_1h"] == [None]
    assert at_t.statuses["clicks_1h"] == ["OUTSIDE_MAX_AGE"]
    clock[0] = T + timedelta(seconds=30)
    later = store.get_online_features(["click_stats:clicks_1h"], {"account_id": [1]})
    assert later.values["clicks_1h"] == [9] and later.statuses["clicks_1h"] == ["PRESENT"]
