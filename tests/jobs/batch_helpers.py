"""Shared by the batch prediction tests: a feature repo whose driver features change over time (so
point-in-time matters), a model anyone can compute by hand, and a store with it registered."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from parity import FeatureStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=10)
DRIVERS = 6
DAYS = 8

REPO = {
    "drivers.py": """
        from datetime import timedelta
        from parity import Entity, FeatureService, FeatureView, Field, FileSource, Float64, Int64

        driver = Entity(name="driver", join_keys=["driver_id"])

        driver_stats = FeatureView(
            name="driver_stats",
            entities=[driver],
            schema=[Field(name="conv_rate", dtype=Float64), Field(name="trips", dtype=Int64)],
            source=FileSource(path="data/driver_stats.parquet"),
            ttl=timedelta(days=2),
        )
        driver_service = FeatureService(name="driver_service", features=[driver_stats])

        driver_scores = FeatureView(
            name="driver_scores",
            entities=[driver],
            schema=[Field(name="score", dtype=Float64)],
            source=FileSource(path="out/scores.parquet"),
        )
    """,
    "ratio.py": """
        from drivers import driver_stats
        from parity import FeatureService, Field, Float64, RequestSource, on_demand_feature_view

        payment = RequestSource(name="payment", schema=[Field(name="amount", dtype=Float64)])

        @on_demand_feature_view(
            sources=[driver_stats, payment],
            schema=[Field(name="amount_per_trip", dtype=Float64)],
        )
        def amount_ratio(row):
            trips = row["trips"]
            return {"amount_per_trip": None if not trips else row["amount"] / trips}

        ratio_service = FeatureService(
            name="ratio_service", features=[driver_stats[["conv_rate"]], amount_ratio]
        )
    """,
}
SETTINGS = """
models:
  trusted: true
  serving:
    alias_refresh_seconds: 0
"""


class DriverModel:
    """score = 2 * conv_rate + 0.1 * trips (-1 when unknown) + amount / 1000, on a DataFrame:
    conv_rate and trips are features, amount comes with the request."""

    def predict(self, frame: Any) -> Any:
        conv = frame["conv_rate"].astype("float64").fillna(0.0).to_numpy()
        trips = frame["trips"].astype("float64").fillna(-1.0).to_numpy()
        return 2.0 * conv + 0.1 * trips + frame["amount"].to_numpy() / 1000.0


class RatioModel:
    """0.5 * amount_per_trip (-1 when unknown) + conv_rate (0 when unknown): an on-demand
    feature computed from the request's amount and a stored feature."""

    def predict(self, frame: Any) -> Any:
        ratio = frame["amount_per_trip"].astype("float64").fillna(-1.0).to_numpy()
        return 0.5 * ratio + frame["conv_rate"].astype("float64").fillna(0.0).to_numpy()


def register_ratio_model(store: FeatureStore) -> None:
    sample = pd.DataFrame({"conv_rate": [0.5, 0.1], "amount_per_trip": [2.0, 1.5]})
    store.models.register_model(
        "ratio_model",
        RatioModel(),
        flavor="pyfunc",
        feature_service="ratio_service",
        sample_input=sample,
        alias="champion",
    )


def expected_score(conv_rate: float | None, trips: int | None, amount: float) -> float:
    """The model's answer, worked out independently of it."""
    conv = 0.0 if conv_rate is None or conv_rate != conv_rate else conv_rate
    count = -1.0 if trips is None else float(trips)
    return 2.0 * conv + 0.1 * count + amount / 1000.0


def stats_table(seed: int = 7) -> pa.Table:
    """One row per driver per day (noon), values changing daily; driver 3 has null trips on odd
    days and a NaN conv_rate on day 2."""
    rng = np.random.default_rng(seed)
    ids, times, conv, trips = [], [], [], []
    for day in range(DAYS):
        for driver in range(1, DRIVERS + 1):
            ids.append(driver)
            times.append(T0 + timedelta(days=day, hours=12))
            conv.append(float("nan") if (driver, day) == (3, 2) else round(rng.random(), 6))
            trips.append(None if driver == 3 and day % 2 else int(rng.integers(0, 50)))
    return pa.table(
        {
            "driver_id": pa.array(ids, pa.int64()),
            "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
            "conv_rate": pa.array(conv, pa.float64()),
            "trips": pa.array(trips, pa.int64()),
        }
    )


def write_repo(root: Path, stats: pa.Table | None = None, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "parity.yaml").write_text(f"project: batch\n{SETTINGS}{extra}")
    for name, text in REPO.items():
        (root / name).write_text(textwrap.dedent(text).lstrip())
    (root / "data").mkdir(exist_ok=True)
    pq.write_table(
        stats if stats is not None else stats_table(), root / "data/driver_stats.parquet"
    )
    return root


def make_store(root: Path, clock: datetime = NOW, **options: Any) -> FeatureStore:
    """A store on a fresh repo with DriverModel registered as driver_model@champion."""
    store = FeatureStore(write_repo(root, **options), clock=lambda: clock)
    store.apply(check_sources=False)
    sample = pd.DataFrame({"conv_rate": [0.5, 0.1], "trips": [3.0, 4.0], "amount": [10.0, 20.5]})
    store.models.register_model(
        "driver_model",
        DriverModel(),
        flavor="pyfunc",
        feature_service="driver_service",
        sample_input=sample,
        predict_method={"score": "predict"},
        alias="champion",
    )
    return store


def point_in_time(stats: pa.Table, driver: int, at: datetime, ttl: timedelta) -> dict[str, Any]:
    """The newest row of `driver` at or before `at` within the ttl, found by a plain scan."""
    best: dict[str, Any] | None = None
    for row in stats.to_pylist():
        when = row["event_timestamp"]
        newer = best is None or when >= best["event_timestamp"]
        if row["driver_id"] == driver and at - ttl <= when <= at and newer:
            best = row
    if best is None:
        return {"conv_rate": None, "trips": None}
    return {"conv_rate": best["conv_rate"], "trips": best["trips"]}
