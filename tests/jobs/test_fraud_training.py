"""The fraud example's `fraud_training` job, for real: `parity init fraud_detection --accounts
200`, applied, with a champion; the job registers fraud/2 on the matured chargebacks only, with
its lineage, the candidate alias and a reference profile, and starts fraud_rollout. A second run
while that rollout is active still registers, and says why the rollout did not start."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from parity import FeatureStore
from parity.examples.fraud import model, scaffold

END = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def fraud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    root = tmp_path_factory.mktemp("fraud") / "fraud_detection"
    scaffold.scaffold(root, accounts=200, end=END)
    with FeatureStore(root, clock=lambda: END) as store:
        store.apply(message="first")
        labels = pq.read_table(root / "data" / "chargebacks.parquet").to_pandas()
        columns = ["transaction_id", "account_id", "device_id", "event_timestamp", "amount"]
        entities = labels[[*columns, "is_fraud"]].head(3000)
        store.datasets.create("champion_set", entities, "fraud_model_v1", root / "c.parquet")
        model.train_and_register(store, "champion_set", alias="champion")
        yield store


def matured(root: Path) -> pd.DataFrame:
    """The chargebacks whose label is final at END (event 30 days before it or earlier, label
    known by END), read with pandas: the oracle of the training set's rows."""
    frame = pq.read_table(root / "data" / "chargebacks.parquet").to_pandas()
    cutoff = pd.Timestamp(END - timedelta(days=30))
    return frame[(frame.event_timestamp <= cutoff) & (frame.label_timestamp <= pd.Timestamp(END))]


def test_fraud_training_registers_the_candidate_and_starts_the_rollout(
    fraud: FeatureStore,
) -> None:
    store = fraud
    job = store.jobs.submit("fraud_training", reason="drift", trigger_decision=7)
    [done] = store.jobs.run_pending(now=lambda: END)
    assert done.status == "succeeded", (done.error, done.logs)
    assert done.reason == "drift" and done.trigger_decision == 7 and done.id == job.id
    oracle = matured(store.repo_path)
    everything = pq.read_table(store.repo_path / "data" / "chargebacks.parquet").num_rows
    assert 0 < len(oracle) < everything  # the recent, unlabelled rows were left out
    dataset = store.datasets.get(f"fraud_training_{job.id}")
    assert dataset.row_count == len(oracle) == done.result["labels"]["kept"]
    built = pd.read_parquet(dataset.path)
    assert sorted(built.transaction_id) == sorted(oracle.transaction_id)
    assert built.is_fraud.sum() == oracle.is_fraud.sum()
    version = store.models.get_version("fraud", 2)
    assert done.result["version"] == 2
    assert version.training_dataset == dataset.name
    assert version.dataset_fingerprint == dataset.fingerprint
    assert version.feature_service == "fraud_model_v1"
    assert version.tags == {"job": "fraud_training", "job_id": str(job.id)}
    assert set(version.params["feature_importance"]) == {*model.FEATURES, *model.REQUEST_INPUTS}
    assert version.metrics["train_rows"] + version.metrics["test_rows"] == len(oracle)
    assert store.models.get_alias("fraud", "candidate").version == 2
    assert store.models.get_alias("fraud", "champion").version == 1
    profiles = {p.subject: p for p in store.monitoring.profiles(dataset.name)}
    assert "model:fraud/2:outputs" in profiles  # the reference of drift for the new version
    assert all(p.ok and p.rows == len(oracle) for p in profiles.values()), profiles
    rollout = store.rollouts.status("fraud")
    assert (rollout.status, rollout.candidate, rollout.champion) == ("active", 2, 1)
    assert rollout.definition.name == "fraud_rollout"
    assert done.result["rollout"] == rollout.id
    fraud_rate = 100 * oracle.is_fraud.mean()
    assert f"{len(oracle)} payments up to 2026-01-30 (labels final by 2026-03-01), " in done.logs
    assert f"{fraud_rate:.2f}% fraud" in done.logs


def test_a_rollout_that_cannot_start_does_not_undo_the_registration(
    fraud: FeatureStore,
) -> None:
    store = fraud
    store.jobs.submit("fraud_training")
    [done] = store.jobs.run_pending(now=lambda: END)
    assert done.status == "succeeded"
    assert done.result["version"] == 3
    assert store.models.get_alias("fraud", "candidate").version == 3
    assert "[rollout_active]" in done.result["rollout_error"]
    assert "did not start" in done.logs
    assert store.rollouts.status("fraud").candidate == 2  # the running one is untouched
