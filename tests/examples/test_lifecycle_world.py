"""The fraud world continued past its recorded end (world.py): the new rows line up with the
recorded tables, the nightly aggregates equal a recomputation from the payments, and the new
pattern (the bust-out ring) is in the labels, on clean-looking devices, from the shift on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from parity.examples.fraud import scaffold, world
from parity.examples.fraud.lifecycle_sim import _boundaries, plan_shift, week_floor

END = datetime(2026, 3, 1, 6, 30, tzinfo=UTC)
SHIFT_AT = datetime(2026, 3, 12, tzinfo=UTC)  # a Thursday: monitoring's weeks start then
UNTIL = datetime(2026, 4, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def extended(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, world.WorldSummary]:
    root = tmp_path_factory.mktemp("world") / "repo"
    scaffold.scaffold(root, accounts=200, days=30, end=END)
    before = {
        name: pq.read_table(root / "data" / f"{name}.parquet").num_rows for name in world._TABLES
    }
    (root / "before.json").write_text(json.dumps(before))
    summary = world.extend(root / "data", until=UNTIL, shift_at=SHIFT_AT, seed=3)
    return root, summary


def table(root: Path, name: str) -> pd.DataFrame:
    return pq.read_table(root / "data" / f"{name}.parquet").to_pandas()


def test_new_rows_are_appended_after_the_recorded_ones(
    extended: tuple[Path, world.WorldSummary],
) -> None:
    root, summary = extended
    before = json.loads((root / "before.json").read_text())
    for name in world._TABLES:
        assert len(table(root, name)) == before[name] + summary.rows[name], name
    payments, labels = table(root, "transactions"), table(root, "chargebacks")
    assert payments["transaction_id"].is_unique
    assert payments["transaction_id"].tolist() == labels["transaction_id"].tolist()
    new = payments.tail(summary.rows["transactions"])
    assert new["event_timestamp"].min() > pd.Timestamp(END) - timedelta(hours=1)
    assert new["event_timestamp"].max() < pd.Timestamp(UNTIL)
    assert new["transaction_id"].min() == before["transactions"] + 1
    # Every payment's device and account exist in the profiles (the features can be joined).
    assert set(payments["device_id"]) <= set(table(root, "devices")["device_id"])
    assert set(payments["account_id"]) <= set(table(root, "accounts")["account_id"])


def test_nightly_aggregates_equal_a_recomputation_from_the_payments(
    extended: tuple[Path, world.WorldSummary],
) -> None:
    root, summary = extended
    payments = table(root, "transactions")
    stats = table(root, "account_txn_stats").tail(summary.rows["account_txn_stats"])
    assert (stats["event_timestamp"].dt.hour == 0).all()
    assert stats["event_timestamp"].min() > pd.Timestamp(END) - timedelta(days=1)
    for _, row in stats.sample(40, random_state=1).iterrows():
        stamp = row["event_timestamp"]
        mine = payments[payments["account_id"] == row["account_id"]]
        day = mine[(mine["event_timestamp"] >= stamp - timedelta(days=1))]
        day = day[day["event_timestamp"] < stamp]
        week = mine[(mine["event_timestamp"] >= stamp - timedelta(days=7))]
        week = week[week["event_timestamp"] < stamp]
        assert row["txn_count_1d"] == len(day)
        assert row["txn_amount_1d"] == pytest.approx(round(day["amount"].sum(), 2))
        assert row["txn_count_7d"] == len(week)
        assert row["avg_amount_7d"] == pytest.approx(week["amount"].mean())
        assert row["distinct_devices_7d"] == week["device_id"].nunique()


def test_the_ring_is_fraud_on_clean_devices_from_the_shift_on(
    extended: tuple[Path, world.WorldSummary],
) -> None:
    root, summary = extended
    labels = table(root, "chargebacks")
    ring = labels[labels["account_id"].isin(summary.ring_accounts)]
    assert len(ring) == summary.ring_payments > 50
    assert ring["is_fraud"].all()
    assert ring["event_timestamp"].min() >= pd.Timestamp(SHIFT_AT)
    # Chargebacks arrive 2 to 20 days after the payment; a legitimate payment is known at 30.
    delay = labels["label_timestamp"] - labels["event_timestamp"]
    assert (delay[labels["is_fraud"]] >= timedelta(days=2)).all()
    assert (delay[labels["is_fraud"]] < timedelta(days=20)).all()
    assert (delay[~labels["is_fraud"]] == timedelta(days=30)).all()
    devices = table(root, "devices").drop_duplicates("device_id", keep="last")
    risk = devices.set_index("device_id")["device_risk_score"]
    assert risk.loc[ring["device_id"].unique()].mean() < 0.3  # what the champion trusts
    accounts = table(root, "accounts").set_index("account_id")
    assert (accounts.loc[list(summary.ring_accounts), "kyc_level"] == 1).all()


def test_extend_refuses_a_shift_outside_the_new_days(tmp_path: Path) -> None:
    scaffold.scaffold(tmp_path / "r", accounts=20, days=5, end=END)
    with pytest.raises(ValueError, match="shift_at"):
        world.extend(tmp_path / "r" / "data", until=UNTIL, shift_at=UNTIL)
    with pytest.raises(ValueError, match="shift_at"):
        world.extend(tmp_path / "r" / "data", until=UNTIL, shift_at=END - timedelta(days=1))


@pytest.mark.parametrize(
    ("knobs", "field"),
    [
        ({"signups_per_day": -1.0}, "signups_per_day"),
        ({"ring_per_day": float("nan")}, "ring_per_day"),
        ({"ring_per_day": float("inf")}, "ring_per_day"),
        ({"ring_rate": (9.0, 5.0)}, "ring_rate"),
        ({"ring_days": (0.0, 2.0)}, "ring_days"),
        ({"amount_factor": 0.0}, "amount_factor"),
    ],
)
def test_shift_refuses_knobs_that_would_break_the_world(
    knobs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        world.Shift(**knobs)  # type: ignore[arg-type]


def test_shift_scales_with_the_recorded_accounts() -> None:
    scaled = world.Shift(signups_per_day=40.0, ring_per_day=3.0).scaled(500)
    assert (scaled.signups_per_day, scaled.ring_per_day) == (20.0, 1.5)
    assert scaled.amount_factor == world.Shift().amount_factor


def test_extend_refuses_naive_times(tmp_path: Path) -> None:
    scaffold.scaffold(tmp_path / "r", accounts=20, days=5, end=END)
    with pytest.raises(ValueError, match="until must be a timezone-aware"):
        world.extend(tmp_path / "r" / "data", until=datetime(2026, 4, 2), shift_at=SHIFT_AT)


def test_fraud_labels_follow_the_chargebacks_and_unknown_ids_are_not_fraud(
    extended: tuple[Path, world.WorldSummary],
) -> None:
    root, _ = extended
    labels = table(root, "chargebacks")
    fraud_ids = labels.loc[labels["is_fraud"], "transaction_id"].head(3).tolist()
    legit_ids = labels.loc[~labels["is_fraud"], "transaction_id"].head(2).tolist()
    got = world.fraud_labels(root / "data", [*fraud_ids, *legit_ids, 10**12])
    assert got.tolist() == [True, True, True, False, False, False]


def test_catch_rates_by_hand() -> None:
    scores = np.array([0.9, 0.2, 0.7, 0.1, 0.6])
    fraud = np.array([True, True, True, False, False])
    ring = np.array([True, True, False, False, False])
    amount = np.array([10.0, 30.0, 5.0, 1.0, 1.0])
    rates = world.catch_rates(scores, fraud, ring, amount)
    assert rates["ring_recall"] == 0.5 and rates["ring_dollar_recall"] == 0.25
    assert rates["other_recall"] == 1.0 and rates["all_recall"] == pytest.approx(2 / 3)
    assert rates["all_dollar_recall"] == pytest.approx(15 / 45) and rates["blocked"] == 3.0


def test_the_shift_starts_a_whole_monitoring_week_after_a_full_ordinary_week() -> None:
    # 2026-03-01 is a Sunday; monitoring's weeks start on Thursdays (the epoch's weekday).
    assert week_floor(END) == datetime(2026, 2, 26, tzinfo=UTC)
    assert plan_shift(END) == datetime(2026, 3, 12, tzinfo=UTC)  # not 03-05: 4 days after
    thursday = datetime(2026, 3, 5, tzinfo=UTC)
    assert plan_shift(thursday) == datetime(2026, 3, 12, tzinfo=UTC)  # exactly a week after
    assert _boundaries(END, END + timedelta(days=1)) == []
    assert _boundaries(thursday - timedelta(hours=1), thursday) == [thursday]
    assert _boundaries(thursday, thursday + timedelta(days=14)) == [
        thursday + timedelta(days=7),
        thursday + timedelta(days=14),
    ]
