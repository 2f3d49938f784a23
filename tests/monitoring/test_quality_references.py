"""Quality against references: a view's materialization judged against the profile of the
dataset a registered model was trained on, and a model's served features (real prediction log)
judged against each version's reference; all numbers hand-counted."""

from __future__ import annotations

import math
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from parity import FeatureStore
from parity.inference.predlog import ParquetLogSink, PredictionRecord
from tests.conftest import write_parquet

T = datetime(2026, 8, 3, tzinfo=UTC)
US = pa.timestamp("us", tz="UTC")
VIEWS = """
    from datetime import timedelta
    from parity import Entity, FeatureView, Field, FileSource, Float64, Int64, String

    account = Entity(name="account", join_keys=["account_id"])
    stats = FeatureView(
        name="stats", entities=[account],
        schema=[Field(name="amount", dtype=Float64), Field(name="n", dtype=Int64),
                Field(name="country", dtype=String)],
        source=FileSource(path="data/stats.parquet"), ttl=timedelta(days=30),
    )
"""


class Scorer:
    def predict(self, frame: Any) -> Any:
        return np.asarray(frame["amount"] + frame["n"] + frame["bonus"])


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    """A registered model trained on 10 clean rows: amount 1..10, n 1..10, country US x6 FR x4,
    request-time bonus 0..0.9."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "parity.yaml").write_text("project: quality\nmodels:\n  trusted: true\n")
    (root / "views.py").write_text(textwrap.dedent(VIEWS).lstrip())
    ids = pa.array(range(1, 11), pa.int64())
    write_parquet(
        root / "data" / "stats.parquet",
        {
            "account_id": ids,
            "event_timestamp": pa.array([T - timedelta(days=10)] * 10, US),
            "amount": pa.array([float(i) for i in range(1, 11)]),
            "n": pa.array(range(1, 11), pa.int64()),
            "country": ["US"] * 6 + ["FR"] * 4,
        },
    )
    write_parquet(
        root / "data" / "entities.parquet",
        {
            "account_id": ids,
            "event_timestamp": pa.array([T - timedelta(days=9)] * 10, US),
            "bonus": pa.array([i / 10 for i in range(10)]),
        },
    )
    opened = FeatureStore(root, clock=lambda: T)
    opened.apply()
    opened.datasets.create(
        "train_v1",
        str(root / "data" / "entities.parquet"),
        ["stats:amount", "stats:n", "stats:country"],
        root / "data" / "train_v1.parquet",
    )
    frame = pd.read_parquet(opened.datasets.get("train_v1").path)
    opened.models.register_model(
        "scorer",
        Scorer(),
        flavor="pyfunc",
        training_dataset="train_v1",
        sample_input=frame[["amount", "n", "bonus"]].head(3),
    )
    return opened


def test_materialization_is_judged_against_the_training_profile(store: FeatureStore) -> None:
    write_parquet(  # today's data: nulls, values out of the trained range, new countries
        store.repo_path / "data" / "stats.parquet",
        {
            "account_id": pa.array(range(1, 9), pa.int64()),
            "event_timestamp": pa.array([T - timedelta(hours=1)] * 8, US),
            "amount": pa.array([0.5, None, 5.0, 11.0, 12.0, 3.0, math.nan, 4.0]),
            "n": pa.array(range(1, 9), pa.int64()),
            "country": ["US", "BR", "FR", None, "JP", "US", "US", "BR"],
        },
    )
    store.materialize(T - timedelta(days=2), T, ["stats"])
    by = {r.feature: r.quality for r in store.monitoring.quality("stats", since=T)}
    amount, country, n = by["amount"], by["country"], by["n"]
    # amount: 2 of 8 null (None, NaN); of the 6 finite, 0.5 < min 1 and 11, 12 > max 10
    assert (amount.rows, amount.counts.nulls) == (8, 2)
    assert (amount.counts.below, amount.counts.above, amount.counts.ranged) == (1, 2, 6)
    assert amount.out_of_range_share == pytest.approx(0.5)
    assert amount.checks == {
        "null_rate": "breach",  # 0.25 > 0 (trained) + 0.05
        "infinite": "ok",
        "range": "breach",
        "categories": "not_checked",  # numeric: range only
    }
    # country: 1 of 8 null; of 7 values BR x2 and JP x1 were never trained on (table complete)
    assert country.null_rate == pytest.approx(0.125)
    assert (country.counts.unseen, country.counts.categorized) == (3, 7)
    assert dict(country.counts.examples) == {"BR": 2, "JP": 1}
    assert country.checks["categories"] == "breach" and country.checks["range"] == "not_checked"
    # n: 1..8 inside 1..10, no nulls
    assert n.checks == {
        "null_rate": "ok",
        "infinite": "ok",
        "range": "ok",
        "categories": "not_checked",
    }


def log(store: FeatureStore, records: list[PredictionRecord]) -> None:
    sink = ParquetLogSink(store.repo_path / "data" / "prediction_log")
    sink.write(records)
    sink.close()


def record(
    i: int, minutes: float, version: int, features: dict[str, Any], bonus: Any
) -> PredictionRecord:
    return PredictionRecord(
        request_id=f"r{i}",
        at=T + timedelta(minutes=minutes),
        model="scorer",
        version=version,
        entities={"account_id": i, "bonus": bonus},
        features=features,
        prediction=1.0,
        latency_ms=1.0,
    )


def test_served_features_per_version_and_window(store: FeatureStore) -> None:
    frame = pd.read_parquet(store.datasets.get("train_v1").path)
    store.models.register_model(  # version 2: no training dataset, so no reference
        "scorer", Scorer(), flavor="pyfunc", sample_input=frame[["amount", "n", "bonus"]].head(3)
    )
    f = {"amount": 5.0, "n": 3, "country": "US"}
    log(
        store,
        [
            record(1, 1, 1, f, 0.5),
            record(2, 2, 1, {**f, "amount": 50.0, "country": "XX"}, 2.0),  # above both maxima
            record(3, 3, 1, {**f, "amount": None, "n": None}, None),
            record(4, 4, 1, {**f, "amount": "five"}, 0.1),  # wrong JSON type: read as null
            record(5, 70, 1, f, 0.2),  # the second window
            record(6, 5, 2, {"amount": None, "n": 3}, 0.3),
            record(7, 6, 2, {"amount": 1.0, "n": 4}, 0.3),
        ],
    )
    records = store.monitoring.quality("scorer", since=T, until=T + timedelta(hours=2))
    first = {r.feature: r for r in records if r.version == 1 and r.window_start == T}
    assert set(first) == {"amount", "n", "country", "bonus"}  # features and request input
    amount = first["amount"].quality
    assert (amount.rows, amount.counts.nulls) == (4, 2)
    assert (amount.counts.above, amount.counts.ranged) == (1, 2)
    assert amount.checks["range"] == "breach"
    bonus = first["bonus"].quality  # trained 0..0.9: 2.0 is above
    assert (bonus.counts.nulls, bonus.counts.above, bonus.counts.ranged) == (1, 1, 3)
    country = first["country"].quality
    assert (country.counts.unseen, country.counts.categorized) == (1, 4)
    assert first["amount"].window_end == T + timedelta(hours=1)
    second = [r for r in records if r.version == 1 and r.window_start == T + timedelta(hours=1)]
    assert {r.feature: r.quality.rows for r in second} == {
        "amount": 1,
        "bonus": 1,
        "country": 1,
        "n": 1,
    }
    plain = {r.feature: r.quality for r in records if r.version == 2}
    assert set(plain) == {"amount", "n"}  # what version 2 logged
    assert plain["amount"].null_rate == 0.5
    assert plain["amount"].checks["range"] == "not_checked"

    store.monitoring.quality("scorer", since=T, until=T + timedelta(hours=2))  # again: replaced
    engine = store.registry.store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT count(*) FROM parity_monitor_quality WHERE source = 'served'")
        ).scalar()
    assert stored == len(records) == 4 + 4 + 2
