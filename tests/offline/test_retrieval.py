"""Point-in-time retrieval on DuckDB against hand-worked expectations (tests/docs worked example)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from parity import FeatureStore, FeatureViewNotFound
from parity.errors import EntityFrameError, FeatureNotFound, RetrievalError
from tests.conftest import write_parquet, write_repo

T = datetime(2026, 1, 10, tzinfo=UTC)
US = pa.timestamp("us", tz="UTC")


def at(hours: float) -> datetime:
    return T + timedelta(hours=hours)


REPO = {
    "defs.py": """
        from datetime import timedelta
        from parity import Entity, FeatureService, FeatureView, Field, FileSource, Float64, Int64, String

        account = Entity(name="account", join_keys=["account_id"])
        device = Entity(name="device", join_keys=["device_id"], value_type=String)

        stats = FeatureView(
            name="stats", entities=[account],
            schema=[Field(name="amount", dtype=Float64), Field(name="n", dtype=Int64)],
            source=FileSource(path="data/stats.parquet", created_timestamp_column="created"),
            ttl=timedelta(hours=10),
        )
        pair = FeatureView(
            name="pair", entities=[account, device],
            schema=[Field(name="n", dtype=Int64), Field(name="seen", dtype=Int64)],
            source=FileSource(path="data/pair", timestamp_field="ts", field_mapping={"cnt": "seen"}),
        )
        svc = FeatureService(name="svc", features=[stats[["amount"]], pair[["seen"]]])
    """
}


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    root = write_repo(tmp_path / "repo", REPO)
    # account 1: two rows at hour 0 (created breaks the tie), one at hour 5; account 2: one at 1.
    write_parquet(
        root / "data" / "stats.parquet",
        {
            "account_id": pa.array([1, 1, 1, 2, 1], pa.int64()),
            "event_timestamp": pa.array([at(0), at(0), at(5), at(1), at(8)], US),
            "created": pa.array([at(1), at(2), at(5), at(1), at(9)], US),
            "amount": pa.array([10.0, 11.0, 50.0, 7.0, None], pa.float64()),
            "n": pa.array([1, 2, 3, 4, 5], pa.int64()),
        },
    )
    # pair: two files; equal event times and no created column -> the later file's row wins.
    write_parquet(
        root / "data" / "pair" / "a.parquet",
        {
            "account_id": pa.array([1, 1], pa.int64()),
            "device_id": pa.array(["d1", "d2"]),
            "ts": pa.array([at(0), at(0)], US),
            "n": pa.array([100, 200], pa.int64()),
            "cnt": pa.array([1, 2], pa.int64()),
        },
    )
    write_parquet(
        root / "data" / "pair" / "b.parquet",
        {
            "account_id": pa.array([1], pa.int64()),
            "device_id": pa.array(["d1"]),
            "ts": pa.array([at(0)], US),
            "n": pa.array([101], pa.int64()),
            "cnt": pa.array([3], pa.int64()),
        },
    )
    feature_store = FeatureStore(root)
    feature_store.apply()
    return feature_store


def entities(rows: list[tuple[int, str, datetime]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["account_id", "device_id", "event_timestamp"])


def values(frame: pd.DataFrame, column: str) -> list[object]:
    return [None if pd.isna(v) else v for v in frame[column]]


def test_worked_example_ties_ttl_and_future_rows(store: FeatureStore) -> None:
    frame = entities(
        [
            (1, "d1", at(-1)),  # before any row: nothing
            (1, "d1", at(0)),  # two rows at hour 0: created 2 > created 1 -> 11.0
            (1, "d1", at(4.5)),  # still the hour-0 row (hour 5 is in the future)
            (1, "d1", at(5)),  # exactly hour 5: that row
            (1, "d1", at(8.5)),  # hour 8 row has a null amount: null, not an older value
            (1, "d1", at(10)),  # hour 8 row, within ttl 10h
            (2, "d1", at(11)),  # account 2's row at hour 1 is exactly ttl old: still valid
            (2, "d1", at(11.000001)),  # one microsecond later it is stale
            (3, "d1", at(5)),  # unknown account
        ]
    )
    out = store.get_historical_features(frame, ["stats:amount", "stats:n"]).to_pandas()
    assert values(out, "amount") == [None, 11.0, 11.0, 50.0, None, None, 7.0, None, None]
    assert values(out, "n") == [None, 2, 2, 3, 5, 5, 4, None, None]


def test_ties_without_created_time_go_to_the_last_ingested_row(store: FeatureStore) -> None:
    frame = entities([(1, "d1", at(1)), (1, "d2", at(1)), (1, "d3", at(1))])
    out = store.get_historical_features(frame, ["pair:n", "pair:seen"]).to_pandas()
    assert values(out, "n") == [101, 200, None]
    assert values(out, "seen") == [3, 2, None]  # read from the mapped column 'cnt'


def test_output_keeps_row_order_duplicates_and_passthrough_columns(store: FeatureStore) -> None:
    frame = entities([(2, "d9", at(3)), (1, "d1", at(6)), (2, "d9", at(3)), (1, "d1", at(0))])
    frame["label"] = [True, False, True, False]
    out = store.get_historical_features(frame, "svc").to_pandas()
    assert list(out.columns) == [
        "account_id",
        "device_id",
        "event_timestamp",
        "label",
        "amount",
        "seen",
    ]
    assert values(out, "amount") == [7.0, 50.0, 7.0, 11.0]
    assert values(out, "label") == [True, False, True, False]
    assert list(out["event_timestamp"]) == list(frame["event_timestamp"])


def test_same_feature_name_in_two_views_needs_full_names(store: FeatureStore) -> None:
    frame = entities([(1, "d1", at(6))])
    with pytest.raises(RetrievalError, match=r"'n' is requested from both 'stats' and 'pair'"):
        store.get_historical_features(frame, ["stats:n", "pair:n"])
    out = store.get_historical_features(frame, ["stats:n", "pair:n"], full_feature_names=True)
    row = out.to_pandas().iloc[0]
    assert (row["stats__n"], row["pair__n"]) == (3, 101)


def test_timestamps_naive_are_utc_and_offsets_are_converted(store: FeatureStore) -> None:
    naive = entities([(1, "d1", at(5).replace(tzinfo=None))])
    shifted = entities([(1, "d1", at(5))])
    shifted["event_timestamp"] = shifted["event_timestamp"].dt.tz_convert("Asia/Kolkata")
    text = entities([(1, "d1", at(5))])
    text["event_timestamp"] = ["2026-01-10T10:30:00+05:30"]
    for frame in (naive, shifted, text):
        out = store.get_historical_features(frame, ["stats:amount"]).to_pandas()
        assert values(out, "amount") == [50.0]
        assert out["event_timestamp"].iloc[0] == pd.Timestamp(at(5))


def test_mixed_and_unparseable_timestamps_are_clear_errors(store: FeatureStore) -> None:
    mixed = pd.DataFrame(
        {"account_id": [1, 1], "event_timestamp": [at(1), at(1).replace(tzinfo=None)]},
        dtype=object,
    ).astype({"account_id": "int64"})
    with pytest.raises(EntityFrameError, match="'event_timestamp' is not a usable timestamp"):
        store.get_historical_features(mixed, ["stats:amount"])
    garbage = pd.DataFrame({"account_id": [1], "event_timestamp": ["yesterday-ish"]})
    with pytest.raises(EntityFrameError, match="event_timestamp"):
        store.get_historical_features(garbage, ["stats:amount"])


def test_entity_frame_errors_name_the_column(store: FeatureStore) -> None:
    with pytest.raises(EntityFrameError, match="no join key column 'account_id'"):
        store.get_historical_features(pd.DataFrame({"event_timestamp": [at(1)]}), ["stats:n"])
    with pytest.raises(EntityFrameError, match="no timestamp column 'event_timestamp'"):
        store.get_historical_features(pd.DataFrame({"account_id": [1]}), ["stats:n"])
    wrong = pd.DataFrame({"account_id": ["1"], "event_timestamp": [at(1)]})
    with pytest.raises(
        EntityFrameError,
        match=r"'account_id' is (large_)?string but entity 'account' keys are Int64",
    ):
        store.get_historical_features(wrong, ["stats:n"])
    clash = pd.DataFrame({"account_id": [1], "event_timestamp": [at(1)], "n": [0]})
    with pytest.raises(EntityFrameError, match=r"\['n'\] have the names of requested features"):
        store.get_historical_features(clash, ["stats:n"])


def test_feature_list_errors(store: FeatureStore) -> None:
    frame = entities([(1, "d1", at(1))])
    with pytest.raises(RetrievalError, match="empty"):
        store.get_historical_features(frame, [])
    with pytest.raises(FeatureViewNotFound, match="no feature view 'nope'"):
        store.get_historical_features(frame, ["nope:x"])
    with pytest.raises(FeatureNotFound, match=r"view 'stats' has no feature 'x'"):
        store.get_historical_features(frame, ["stats:x"])
    with pytest.raises(RetrievalError, match="'view:feature'"):
        store.get_historical_features(frame, ["stats.amount"])
    with pytest.raises(RetrievalError, match="neither a 'view:feature' ref nor a registered"):
        store.get_historical_features(frame, "no_service")


def test_arrow_parquet_and_sql_entity_frames_agree(store: FeatureStore, tmp_path: Path) -> None:
    frame = entities([(1, "d1", at(6)), (2, "d1", at(2)), (1, "d1", at(0))])
    expected = [50.0, 7.0, 11.0]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    path = tmp_path / "entities.parquet"
    frame.to_parquet(path)
    sql = f"SELECT * FROM read_parquet('{path}')"
    for entity in (table, str(path), path, sql):
        out = store.get_historical_features(entity, ["stats:amount"]).to_pandas()
        assert values(out, "amount") == expected, entity


def test_results_stream_to_parquet_and_batches(store: FeatureStore, tmp_path: Path) -> None:
    frame = entities([(1, "d1", at(h)) for h in range(12)])
    job = store.get_historical_features(frame, ["stats:n"])
    expected = [2, 2, 2, 2, 2, 3, 3, 3, 5, 5, 5, 5]
    assert job.to_parquet(tmp_path / "out" / "train.parquet") == 12
    assert pd.read_parquet(tmp_path / "out" / "train.parquet")["n"].tolist() == expected
    batches = list(job.to_batches(batch_size=5))
    assert sum(b.num_rows for b in batches) == 12
    assert pa.Table.from_batches(batches)["n"].to_pylist() == expected
    assert job.to_arrow().schema.field("n").type == pa.int64()
    assert job.to_arrow().schema.field("event_timestamp").type == US


def test_interval_retrieval_returns_each_key_and_time_in_range(store: FeatureStore) -> None:
    job = store.get_historical_features(features=["stats:amount"], start=at(0), end=at(5))
    out = job.to_pandas()
    rows = list(zip(out["account_id"], out["event_timestamp"], values(out, "amount"), strict=True))
    assert rows == [
        (1, pd.Timestamp(at(0)), 11.0),
        (2, pd.Timestamp(at(1)), 7.0),
        (1, pd.Timestamp(at(5)), 50.0),
    ]


def test_interval_needs_both_bounds_and_shared_keys(store: FeatureStore) -> None:
    with pytest.raises(RetrievalError, match="start= and end="):
        store.get_historical_features(features=["stats:n"], start=at(0))
    with pytest.raises(RetrievalError, match="same join keys"):
        store.get_historical_features(features=["stats:n", "pair:seen"], start=at(0), end=at(1))
