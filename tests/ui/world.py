"""The fraud example's world for the UI's tests: scaffolded, applied, a training set, the champion
trained, then the closed loop on simulated time (drift runs, performance, alerts, one retrain, a
rollout promoted), then a rollback of the champion (so the alias timeline shows one). Built once
per test session (`fraud_world`); a test that changes it works on a copy (`fresh_world`)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from parity import FeatureStore
from parity.examples.fraud import model, scaffold
from parity.examples.fraud.lifecycle_sim import Loop, LoopResult
from parity.examples.fraud.rollout_sim import SimClock

END = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)  # the recorded data's end
ACCOUNTS = 1000
ROLLBACK_REASON = "ui world: the retrained champion rolled back"


@dataclass
class World:
    """`root`: the repo folder. `clock`: the simulated clock `store` runs on (advance it with
    `clock.set(clock.now() + delta)`). `result`: what the loop did. `rolled_back`: the champion's version
    after the rollback (the loop's promoted version is `result.candidate.version`)."""

    root: Path
    store: FeatureStore
    clock: SimClock
    result: LoopResult
    rolled_back: int


def build_world(root: Path, accounts: int = ACCOUNTS) -> World:
    scaffold.scaffold(root, accounts=accounts, days=60, end=END)
    clock = SimClock(END)  # everything on simulated time, from the first apply on
    with FeatureStore(root, clock=clock.now) as store:
        store.apply(message="first")
        labels = pq.read_table(root / "data" / "chargebacks.parquet").to_pandas()
        first = labels[labels["event_timestamp"] < pd.Timestamp(END) - timedelta(days=42)]
        entities = first[["transaction_id", "account_id", "device_id", "event_timestamp"]]
        entities = entities.assign(amount=first["amount"], is_fraud=first["is_fraud"])
        store.datasets.create(
            "fraud_train_v1", entities, "fraud_model_v1", root / "training" / "v1.parquet"
        )
        model.train_and_register(store, "fraud_train_v1", alias="champion")
    clock.set(END + timedelta(hours=1))
    store = FeatureStore(root, clock=clock.now)
    result = Loop(store, clock, seed=5).run()
    clock.set(clock.now() + timedelta(hours=1))
    event = store.models.rollback("fraud", "champion", reason=ROLLBACK_REASON)
    assert event.version is not None
    return World(root, store, clock, result, event.version)


def copy_world(world: World, target: Path) -> World:
    """An independent copy of `world` (its own registry, online store and logs) at `target`, on
    a clock of its own starting at `world`'s time."""
    shutil.copytree(world.root, target)
    clock = SimClock(world.clock.now())
    store = FeatureStore(target, clock=clock.now)
    return World(target, store, clock, world.result, world.rolled_back)
