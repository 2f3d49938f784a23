"""A repo for the retrain trigger tests on a real store: the drift tests' driver repo plus a
feature service, a Monitor, a TrainingJob and a RetrainPolicy for model `scorer`, with a settable
clock and a registration helper (with or without a training set)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from parity import FeatureStore
from tests.monitoring.test_drift_runs import HOUR, T0, Scorer
from tests.monitoring.test_drift_runs import repo as drift_repo

__all__ = ["HOUR", "T0", "drift_repo"]

IMPORTANCE = {"conv_rate": 3.0, "trips": 1.0, "bonus": 0.5}
LIFECYCLE = """
    from datetime import timedelta
    from parity import FeatureService, LabelSource, Monitor, RetrainPolicy, TrainingJob
    from views import driver_stats

    scorer_service = FeatureService(name="scorer_service", features=[driver_stats])
    scorer_monitor = Monitor(name="scorer_monitor", model="scorer", window=timedelta(hours=1),
                             min_samples=50)


    def train_scorer(frame, context):
        raise RuntimeError("never run by these tests")


    scorer_training = TrainingJob(
        name="scorer_training", model="scorer", feature_service="scorer_service",
        labels=LabelSource(path="data/entities.parquet", label="label", join_keys=("driver_id",),
                           timestamp_field="event_timestamp"),
        train=train_scorer,
    )
    scorer_retrain = RetrainPolicy(name="scorer_retrain", model="scorer", job="scorer_training",
                                   sustain=1, drift_fire_at=0.5, drift_clear_at=0.2)
"""


@dataclass
class Clock:
    now: datetime = T0 + 6 * HOUR

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(drift_repo: Path, clock: Clock) -> Iterator[FeatureStore]:
    opened = open_store(drift_repo, clock)
    yield opened
    opened.close()


def open_store(repo: Path, clock: Clock, lifecycle: str = LIFECYCLE) -> FeatureStore:
    """The repo with `lifecycle.py` written, applied, and its training set `train_v1` saved."""
    (repo / "lifecycle.py").write_text(textwrap.dedent(lifecycle).lstrip())
    opened = FeatureStore(repo, clock=clock)
    opened.apply()
    opened.datasets.create(
        "train_v1",
        str(repo / "data" / "entities.parquet"),
        ["driver_stats:conv_rate", "driver_stats:trips", "driver_stats:city"],
        repo / "data" / "train_v1.parquet",
    )
    return opened


def register(store: FeatureStore, *, dataset: str | None = "train_v1", **extra: Any) -> int:
    frame = pd.read_parquet(store.datasets.get("train_v1").path)
    version = store.models.register_model(
        "scorer",
        Scorer(),
        flavor="pyfunc",
        training_dataset=dataset,
        sample_input=frame[["conv_rate", "trips", "bonus"]].head(5),
        alias="champion",
        **extra,
    )
    return version.version
