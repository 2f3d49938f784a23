"""What a materialization writes (issue 12, items 19, 20, 23): no entity of a view without ttl is
lost to a late START; an aggregated view gets only the tiles reads at about END use, and those
reads equal offline retrieval; time arguments take dates, ISO text and 'now'."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from parity import FeatureStore
from parity.aggregation.tiles import window_names
from parity.errors import InvalidTime, NothingToMaterialize
from parity.materialize.tiles import READ_SLACK
from parity.online.reads import Status
from parity.timeutil import to_micros
from tests.conftest import write_parquet, write_repo
from tests.offline.test_windows import same

US = pa.timestamp("us", tz="UTC")
END = datetime(2026, 11, 26, 14, 7, 30, tzinfo=UTC)

REPO = {
    "defs.py": """
        from datetime import timedelta
        from parity import Aggregation, Entity, FeatureView, Field, FileSource, Float64, Int64

        account = Entity(name="account", join_keys=["account_id"])
        profile = FeatureView(
            name="profile", entities=[account], schema=[Field(name="limit", dtype=Float64)],
            source=FileSource(path="data/profile.parquet"), ttl=None,
        )
        velocity = FeatureView(
            name="velocity", entities=[account],
            schema=[Field(name="amount", dtype=Float64), Field(name="device_id", dtype=Int64)],
            source=FileSource(path="data/events.parquet"),
            tile_interval=timedelta(minutes=1),
            aggregations=[
                Aggregation(column="amount", function="count", window=timedelta(minutes=5)),
                Aggregation(column="amount", function="sum", window=timedelta(hours=1)),
                Aggregation(column="device_id", function="count_distinct",
                            window=timedelta(minutes=10)),
                Aggregation(column="amount", function="mean", window=timedelta(days=30)),
                Aggregation(column="amount", function="max", window=timedelta(days=2)),
            ],
        )
    """
}
OUTPUTS = ["amount_count_5m", "amount_sum_1h", "device_id_count_distinct_10m",
           "amount_mean_30d", "amount_max_2d"]  # fmt: skip


def make_store(
    root: Path, clock: list[datetime], extra: str = "", project: str = "demo"
) -> FeatureStore:
    write_repo(root, REPO, extra=extra, project=project)
    rng = random.Random(12)
    # Events over 40 days before END, denser near END; none after it, so offline at t > END
    # counts what the materialization saw.
    moments = [END - timedelta(seconds=rng.uniform(0, 40 * 86_400)) for _ in range(3_000)]
    moments += [END - timedelta(seconds=rng.uniform(0, 7_200)) for _ in range(400)]
    write_parquet(
        root / "data" / "events.parquet",
        {
            "account_id": pa.array([rng.randint(1, 12) for _ in moments], pa.int64()),
            "event_timestamp": pa.array(moments, US),
            "amount": pa.array([round(rng.uniform(1, 500), 2) for _ in moments]),
            "device_id": pa.array([rng.randint(1, 6) for _ in moments], pa.int64()),
        },
    )
    # Profiles of accounts 1..5 change long before END; account 6 changes after START.
    write_parquet(
        root / "data" / "profile.parquet",
        {
            "account_id": pa.array([1, 2, 3, 4, 5, 6], pa.int64()),
            "event_timestamp": pa.array([END - timedelta(days=d) for d in (90, 60, 45, 31, 30, 1)], US),
            "limit": pa.array([100.0, 200.0, 300.0, 400.0, 500.0, 600.0]),
        },
    )  # fmt: skip
    store = FeatureStore(root, clock=lambda: clock[0])
    store.apply()
    return store


def offline_at(store: FeatureStore, keys: list[int], t: datetime) -> pd.DataFrame:
    frame = pd.DataFrame({"account_id": keys, "event_timestamp": [t] * len(keys)})
    return store.get_historical_features(frame, [f"velocity:{o}" for o in OUTPUTS]).to_pandas()


def test_a_view_without_ttl_loses_no_entity_to_a_late_start(tmp_path: Path) -> None:
    clock = [END]
    store = make_store(tmp_path / "repo", clock)
    # The README's form: an interval whose START is after most profiles' last change.
    store.materialize(END - timedelta(days=7), END, ["profile"])
    online = store.get_online_features(["profile:limit"], {"account_id": [1, 2, 3, 4, 5, 6, 99]})
    assert online.values["limit"] == [100.0, 200.0, 300.0, 400.0, 500.0, 600.0, None]
    assert online.statuses["limit"][:6] == [Status.PRESENT] * 6


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def online_extra(request: pytest.FixtureRequest, project_name: str) -> Iterator[str]:
    if request.param == "sqlite":
        yield ""
        return
    import redis

    url = request.getfixturevalue("redis_url")
    yield f"online:\n  type: redis\n  connection_string: {url}\n"
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=f"parity:v1:{project_name}:*"):
        client.delete(key)
    client.close()


def test_windowed_reads_after_materialize_equal_offline_from_end_to_the_slack(
    tmp_path: Path, online_extra: str, project_name: str
) -> None:
    clock = [END]
    store = make_store(tmp_path / "repo", clock, online_extra, project_name)
    store.materialize(END - timedelta(days=1), END, ["velocity"])
    keys = list(range(1, 13))
    steps = [timedelta(0), timedelta(seconds=29), timedelta(minutes=7), timedelta(minutes=53),
             timedelta(hours=5, minutes=13), timedelta(hours=23, minutes=59), READ_SLACK]  # fmt: skip
    for step in steps:
        t = END + step
        clock[0] = t
        online = store.get_online_features([f"velocity:{o}" for o in OUTPUTS], {"account_id": keys})
        offline = offline_at(store, keys, t)
        for output in OUTPUTS:
            want = [None if pd.isna(v) else v for v in offline[output]]
            got = online.values[output]
            assert all(same(w, g) for w, g in zip(want, got, strict=True)), (
                output,
                step,
                got,
                want,
            )


def test_materialized_tiles_are_exactly_those_reads_within_the_slack_use(tmp_path: Path) -> None:
    """Oracle: every tile name any window reads at a tile step in [END, END + slack], kept where
    it holds an event; nothing else is written (no other tile, no other partial)."""
    clock = [END]
    store = make_store(tmp_path / "repo", clock)
    (result,) = store.materialize(END, END, ["velocity"])
    view = store.get_feature_view("velocity")
    read: dict[str, set[str]] = {}  # tile name -> outputs reading it
    step, t = view.tile_us, to_micros(END)
    while t <= to_micros(END + READ_SLACK):
        for a in view.aggregations:
            for name in window_names(view, a.window_us, t):
                read.setdefault(name, set()).add(a.output_name)
        t += step
    with sqlite3.connect(tmp_path / "repo" / "data" / "online.db") as db:
        rows = db.execute("SELECT name, payload FROM parity_tiles").fetchall()
    import msgpack

    # One pending record per entity (events after the run's clock; none here) beside the tiles.
    pending = [payload for name, payload in rows if name == "pending"]
    assert len(pending) == result.entities and all(msgpack.unpackb(p) == {} for p in pending)
    stored = [(name, payload) for name, payload in rows if name != "pending"]

    assert len(stored) == result.tiles > 0
    for name, payload in stored:
        assert name in read, name
        assert set(msgpack.unpackb(payload)) <= read[name], name
    events = pd.read_parquet(tmp_path / "repo" / "data" / "events.parquet")
    micros = [to_micros(m) for m in events["event_timestamp"] if m <= END]
    needed = {
        name
        for name in read
        if any(
            int(name.split(":")[1]) <= m < int(name.split(":")[1]) + int(name.split(":")[0])
            for m in micros
        )
    }
    # Every tile a read uses that holds an event is there (for some entity).
    assert needed == {name for name, _ in stored}
    assert result.entities == len({k for k in events["account_id"]})
    # A 30-day window of 1-minute tiles: far fewer tiles than events x levels.
    assert result.tiles < len(micros)


def test_times_take_dates_iso_text_and_now_and_refuse_the_rest(tmp_path: Path) -> None:
    clock = [END]
    store = make_store(tmp_path / "repo", clock)
    (r,) = store.materialize("2026-11-20", "now", ["profile"])
    assert r.end == END
    (r,) = store.materialize(date(2026, 11, 20), "2026-11-26T14:07:30Z", ["profile"])
    assert r.end == END
    (r,) = store.materialize_incremental("now", ["profile"])
    assert r.end == END
    with pytest.raises(InvalidTime, match=r"^start: 1764115200 looks like an epoch"):
        store.materialize(1764115200, "now")  # type: ignore[arg-type]
    with pytest.raises(InvalidTime, match=r"^end: 'tomorrow' is not a time"):
        store.materialize_incremental("tomorrow")
    with pytest.raises(InvalidTime, match="is after end"):
        store.materialize("now", "2026-01-01")
    with pytest.raises(InvalidTime, match=r"^end: "):
        store.get_historical_features(None, ["profile:limit"], start="2026-01-01", end="soon")


def test_materialize_before_apply_is_refused(tmp_path: Path) -> None:
    write_repo(tmp_path / "repo", REPO)
    with FeatureStore(tmp_path / "repo") as store, pytest.raises(NothingToMaterialize):
        store.materialize("2026-01-01", "now")
