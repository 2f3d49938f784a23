"""Shared by the rollout data-plane tests: a driver repo whose `trips` model has a champion, a good
candidate, a candidate that raises, one that sleeps, one that blocks on a gate and one on another
feature service; a fixed routes provider; the Parquet log read back with DuckDB."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from parity import FeatureStore
from parity.inference.routing import Routes, Shadow
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import TripsModel

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
SETTINGS = """
models:
  trusted: true
  serving:
    prediction_log: data/predictions
    alias_refresh_seconds: 0
    batching: {max_batch_size: 16, max_latency_ms: 2}
"""
RATE_SERVICE = """
from parity import FeatureService
from views import driver_stats
rate_service = FeatureService(name="rate_service", features=[driver_stats[["conv_rate"]]])
"""
# versions of "trips", in registration order
CHAMPION, CANDIDATE, RAISING, SLEEPY, OTHER_SERVICE, GATED = 1, 2, 3, 4, 5, 6
TRIPS = {1: 3, 2: 3, 3: 3}  # trips in the online store; every other driver is unknown
GATE = threading.Event()  # GatedModel waits on it (the server runs in this process)


class RaisingModel:
    def predict(self, frame: Any) -> Any:
        raise ValueError("this candidate is broken")


class SleepyModel(TripsModel):
    def predict(self, frame: Any) -> Any:
        time.sleep(1.0)
        return super().predict(frame)


class GatedModel(TripsModel):
    def predict(self, frame: Any) -> Any:
        GATE.wait(10)
        return super().predict(frame)


class RateModel:
    """1000 x conv_rate + bonus: reads the other feature service."""

    def predict(self, frame: Any) -> Any:
        return frame["conv_rate"].to_numpy() * 1000 + frame["bonus"].to_numpy()


def rollout_store(tmp_path: Path) -> FeatureStore:
    files = {**DRIVER_REPO, "rate.py": RATE_SERVICE}
    repo = write_repo(tmp_path / "repo", files, extra=SETTINGS)
    store = FeatureStore(repo, clock=lambda: NOW)
    store.apply()
    store.materialize(datetime(2025, 12, 31, tzinfo=UTC), NOW)
    trips = pd.DataFrame({"trips": [1.0, 2.0], "bonus": [0.0, 1.0]})
    rates = pd.DataFrame({"conv_rate": [0.5, 0.1], "bonus": [0.0, 1.0]})
    out = np.array([0.0, 0.0])
    register = store.models.register_model
    register("trips", TripsModel(), flavor="pyfunc", feature_service="driver_service",
             sample_input=trips, alias="champion")  # fmt: skip
    register("trips", TripsModel(scale=100.0), flavor="pyfunc",
             feature_service="driver_service", sample_input=trips)  # fmt: skip
    for model in (RaisingModel(), SleepyModel()):
        register("trips", model, flavor="pyfunc", feature_service="driver_service",
                 sample_input=trips, sample_output=out)  # fmt: skip
    register("trips", RateModel(), flavor="pyfunc", feature_service="rate_service",
             sample_input=rates)  # fmt: skip
    register("trips", GatedModel(), flavor="pyfunc", feature_service="driver_service",
             sample_input=trips, sample_output=out)  # fmt: skip
    return store


def trips_routes(
    weight: float = 0.0,
    *,
    candidate: int = CANDIDATE,
    shadows: tuple[Shadow, ...] = (),
    key: str = "driver_id",
    source: str = "entity",
    champion: int = CHAMPION,
) -> Routes:
    return Routes(
        model="trips",
        rollout="trips-1",
        champion_alias="champion",
        champion=champion,
        candidate=candidate,
        weight=weight,
        key=key,
        key_source=source,  # type: ignore[arg-type]
        shadows=shadows,
    )


def expected_trips(driver: int, bonus: float, scale: float) -> float:
    """TripsModel by hand: scale x trips (-1 for an unknown driver) + bonus."""
    return TRIPS.get(driver, -1) * scale + bonus


def logged_rows(store: FeatureStore) -> list[dict[str, Any]]:
    """Every row of the Parquet prediction log, as dicts, in (request_id, role, version) order."""
    folder = store.repo_path / "data" / "predictions"
    relation = duckdb.sql(
        "SELECT request_id, version, alias, role, status, entities, features, prediction, "
        f"latency_ms FROM read_parquet('{folder}/**/*.parquet', union_by_name = true) "
        "ORDER BY request_id, role, version"
    )
    names = relation.columns
    return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]
