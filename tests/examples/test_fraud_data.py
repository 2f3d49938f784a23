"""Tests for the seeded synthetic data generator of the fraud-detection example."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity.examples.fraud import FraudDataSummary, generate

END = datetime(2026, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
SCHEMAS = {
    "accounts": pa.schema(
        [
            ("account_id", pa.int64()),
            ("event_timestamp", TS),
            ("created_timestamp", TS),
            ("credit_limit", pa.float64()),
            ("country", pa.string()),
            ("account_age_days", pa.int64()),
            ("kyc_level", pa.int32()),
        ]
    ),
    "devices": pa.schema(
        [
            ("device_id", pa.int64()),
            ("event_timestamp", TS),
            ("created_timestamp", TS),
            ("device_risk_score", pa.float64()),
            ("is_emulator", pa.bool_()),
            ("os", pa.string()),
        ]
    ),
    "transactions": pa.schema(
        [
            ("transaction_id", pa.int64()),
            ("account_id", pa.int64()),
            ("device_id", pa.int64()),
            ("event_timestamp", TS),
            ("created_timestamp", TS),
            ("amount", pa.float64()),
            ("merchant_category", pa.string()),
            ("is_international", pa.bool_()),
        ]
    ),
    "account_txn_stats": pa.schema(
        [
            ("account_id", pa.int64()),
            ("event_timestamp", TS),
            ("created_timestamp", TS),
            ("txn_count_1d", pa.int64()),
            ("txn_amount_1d", pa.float64()),
            ("txn_count_7d", pa.int64()),
            ("avg_amount_7d", pa.float64()),
            ("distinct_devices_7d", pa.int64()),
        ]
    ),
    "account_spend": pa.schema(
        [
            ("account_id", pa.int64()),
            ("event_timestamp", TS),
            ("created_timestamp", TS),
            ("purchases_1d", pa.int64()),
            ("spend_cents_1d", pa.int64()),
            ("active_days_7d", pa.int64()),
        ]
    ),
    "chargebacks": pa.schema(
        [
            ("transaction_id", pa.int64()),
            ("account_id", pa.int64()),
            ("device_id", pa.int64()),
            ("event_timestamp", TS),
            ("amount", pa.float64()),
            ("is_fraud", pa.bool_()),
            ("label_timestamp", TS),
        ]
    ),
}


def read(out: Path, name: str) -> pd.DataFrame:
    return pq.read_table(out / f"{name}.parquet").to_pandas()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fraud_small")
    generate(out, accounts=200, days=21, seed=3)
    return out


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fraud_medium")
    generate(out, accounts=2000, days=60, seed=11)
    return out


def test_same_seed_gives_identical_tables_and_other_seeds_differ(tmp_path: Path) -> None:
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate(tmp_path / name, accounts=120, days=10, seed=seed)
    for table in SCHEMAS:
        first = pq.read_table(tmp_path / "a" / f"{table}.parquet")
        again = pq.read_table(tmp_path / "b" / f"{table}.parquet")
        other = pq.read_table(tmp_path / "c" / f"{table}.parquet")
        assert first.equals(again), table
        assert (tmp_path / "a" / f"{table}.parquet").read_bytes() == (
            tmp_path / "b" / f"{table}.parquet"
        ).read_bytes()
        assert not first.equals(other), table


def test_schemas_are_exact(small: Path) -> None:
    for name, schema in SCHEMAS.items():
        assert pq.read_schema(small / f"{name}.parquet").equals(schema), name


def test_summary_row_counts_match_the_files(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "dir"  # created when missing
    summary = generate(str(out), accounts=50, days=5, seed=1)
    assert isinstance(summary, FraudDataSummary)
    assert summary.out_dir == out
    assert set(summary.rows) == set(SCHEMAS)
    for name, rows in summary.rows.items():
        assert pq.read_metadata(out / f"{name}.parquet").num_rows == rows, name
    assert summary.rows["transactions"] == summary.rows["chargebacks"] > 0
    with pytest.raises(AttributeError):
        summary.rows = {}  # type: ignore[misc]


def test_timestamps_fall_where_expected(small: Path) -> None:
    start, end = pd.Timestamp(END - timedelta(days=21)), pd.Timestamp(END)
    tx = read(small, "transactions")
    assert tx.event_timestamp.min() >= start and tx.event_timestamp.max() < end
    for name in ("accounts", "devices", "transactions", "account_txn_stats"):
        frame = read(small, name)
        assert (frame.created_timestamp >= frame.event_timestamp).all(), name
    labels = read(small, "chargebacks")
    delay = labels.label_timestamp - labels.event_timestamp
    assert (delay > pd.Timedelta(0)).all()
    assert (delay[~labels.is_fraud] == pd.Timedelta(days=30)).all()
    fraud_delay = delay[labels.is_fraud]
    assert fraud_delay.between(pd.Timedelta(days=2), pd.Timedelta(days=20)).all()
    stats = read(small, "account_txn_stats")
    assert (stats.event_timestamp == stats.event_timestamp.dt.floor("D")).all()
    assert (stats.created_timestamp == stats.event_timestamp + pd.Timedelta(hours=1)).all()
    assert stats.event_timestamp.min() > start and stats.event_timestamp.max() <= end


def test_account_and_device_snapshots_are_consistent(small: Path) -> None:
    start = pd.Timestamp(END - timedelta(days=21))
    accounts = read(small, "accounts")
    assert sorted(accounts.account_id.unique()) == list(range(1, 201))
    per_account = accounts.groupby("account_id")
    signup = per_account.event_timestamp.transform("min")
    is_signup = accounts.event_timestamp == signup
    assert is_signup.sum() == 200
    assert (accounts.account_age_days[is_signup] == 0).all()
    expected_age = (accounts.event_timestamp - signup) // pd.Timedelta(days=1)
    assert (accounts.account_age_days == expected_age).all()
    updates = accounts[~is_signup]
    assert updates.event_timestamp.between(start, pd.Timestamp(END)).all()
    assert per_account.size().between(1, 3).all()
    assert accounts.kyc_level.between(1, 3).all() and (accounts.credit_limit > 0).all()
    devices = read(small, "devices")
    assert devices.device_risk_score.between(0.0, 1.0).all()
    assert 1.1 <= devices.device_id.nunique() / 200 <= 1.7


def test_transactions_reference_existing_accounts_and_devices(small: Path) -> None:
    tx = read(small, "transactions")
    accounts, devices = read(small, "accounts"), read(small, "devices")
    assert tx.transaction_id.is_unique
    assert tx.sort_values("transaction_id").event_timestamp.is_monotonic_increasing
    assert set(tx.account_id) <= set(accounts.account_id)
    assert set(tx.device_id) <= set(devices.device_id)
    # Nothing transacts before it exists: signups and first device sightings come first.
    for key, snapshots in (("account_id", accounts), ("device_id", devices)):
        first_use = tx.groupby(key).event_timestamp.min()
        first_seen = snapshots.groupby(key).event_timestamp.min()
        assert (first_use >= first_seen.loc[first_use.index]).all(), key
    labels = read(small, "chargebacks")
    shared = ["transaction_id", "account_id", "device_id", "event_timestamp", "amount"]
    pd.testing.assert_frame_equal(labels[shared], tx[shared])


def expected_stats(tx: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The nightly aggregates recomputed plainly: one groupby per UTC midnight in (start, end]."""
    frames = []
    for stamp in pd.date_range(start.floor("D") + pd.Timedelta(days=1), end.floor("D")):
        since = stamp - pd.Timedelta(days=7)
        week = tx[(tx.event_timestamp >= since) & (tx.event_timestamp < stamp)]
        day = week[week.event_timestamp >= stamp - pd.Timedelta(days=1)]
        weekly = week.groupby("account_id").agg(
            txn_count_7d=("amount", "size"),
            amount_7d=("amount", "sum"),
            distinct_devices_7d=("device_id", "nunique"),
        )
        daily = day.groupby("account_id").agg(
            txn_count_1d=("amount", "size"), txn_amount_1d=("amount", "sum")
        )
        frame = weekly.join(daily).fillna({"txn_count_1d": 0, "txn_amount_1d": 0.0})
        frame["event_timestamp"] = stamp
        frames.append(frame.reset_index())
    out = pd.concat(frames).sort_values(["account_id", "event_timestamp"], ignore_index=True)
    out["avg_amount_7d"] = out.amount_7d / out.txn_count_7d
    return out


@pytest.mark.parametrize(
    "end",
    [END, datetime(2026, 3, 14, 9, 30, tzinfo=timezone(timedelta(hours=-5)))],
    ids=["midnight-utc", "mid-morning-utc-5"],
)
def test_account_txn_stats_match_a_pandas_recomputation(tmp_path: Path, end: datetime) -> None:
    generate(tmp_path, accounts=150, days=12, seed=21, end=end)
    tx = read(tmp_path, "transactions")
    actual = read(tmp_path, "account_txn_stats")
    start = pd.Timestamp(end - timedelta(days=12)).tz_convert("UTC")
    expected = expected_stats(tx, start, pd.Timestamp(end).tz_convert("UTC"))
    assert len(actual) == len(expected) > 0
    for column in ("account_id", "txn_count_1d", "txn_count_7d", "distinct_devices_7d"):
        assert actual[column].tolist() == expected[column].astype("int64").tolist(), column
    assert actual.event_timestamp.tolist() == expected.event_timestamp.tolist()
    for column in ("txn_amount_1d", "avg_amount_7d"):
        np.testing.assert_allclose(actual[column], expected[column], rtol=1e-9, atol=1e-6)


def test_fraud_rate_and_fraud_signal(medium: Path) -> None:
    labels = read(medium, "chargebacks")
    assert 0.005 <= labels.is_fraud.mean() <= 0.08
    fraud, legit = labels[labels.is_fraud], labels[~labels.is_fraud]
    assert fraud.amount.mean() > legit.amount.mean()
    tx = read(medium, "transactions").set_index("transaction_id")
    abroad = tx.loc[labels.transaction_id, "is_international"].to_numpy()
    assert abroad[labels.is_fraud].mean() > 3 * abroad[~labels.is_fraud].mean()
    risk = read(medium, "devices").groupby("device_id").device_risk_score.first()
    assert risk.loc[fraud.device_id].mean() > risk.loc[legit.device_id].mean() + 0.2


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"accounts": 0}, "accounts"),
        ({"accounts": -3}, "accounts"),
        ({"days": 0}, "days"),
        ({"end": datetime(2026, 1, 1)}, "end"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(
    tmp_path: Path, kwargs: dict[str, object], argument: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{argument} must be"):
        generate(tmp_path, **kwargs)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())  # nothing written for rejected arguments
