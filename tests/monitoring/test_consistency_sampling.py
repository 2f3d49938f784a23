"""The served log's sampling by a stable hash of the entity key: every request of a sampled key
is kept, about `percent` of keys are, and the choice is the same in every process."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from parity import FeatureStore
from parity.inference.predlog import MemoryLogSink, PredictionLogger
from parity.monitoring.served_log import ServedLog, is_sampled, key_text
from parity.online.reads import OnlineResponse, Status
from parity.serving.app import create_app
from tests.conftest import write_repo
from tests.monitoring.test_consistency_replay import REPO, T, speeds, stats_rows


def md5_bucket(text: str) -> float:
    """The documented rule, written out: first 4 bytes of md5, big-endian, scaled to [0, 100)."""
    return int(hashlib.md5(text.encode()).hexdigest()[:8], 16) / 2**32 * 100


def test_key_text_is_canonical_for_python_numpy_and_order() -> None:
    import numpy as np

    assert key_text({"b": 2, "a": "x"}) == "a=x\x1fb=2"
    assert key_text({"a": np.int64(7)}) == key_text({"a": 7}) == "a=7"
    assert key_text({"flag": True}) == "flag=true"
    assert key_text({"raw": b"\x00\x01"}) == "raw=AAE="


def test_sampling_follows_the_md5_rule_and_keeps_about_percent_of_keys() -> None:
    keys = [key_text({"account_id": i}) for i in range(20_000)]
    chosen = [k for k in keys if is_sampled(k, 10.0)]
    assert chosen == [k for k in keys if md5_bucket(k) < 10.0]
    # Binomial(20000, 0.1) has sd 42.4: 2,000 +- 4 sd.
    assert 1_830 <= len(chosen) <= 2_170
    assert not any(is_sampled(k, 0.0) for k in keys[:1000])
    assert all(is_sampled(k, 100.0) for k in keys[:1000])
    # Nested: a key sampled at 5% is sampled at 10%.
    assert {k for k in keys if is_sampled(k, 5.0)} <= set(chosen)


def test_sampling_is_the_same_in_another_process_with_another_hash_seed() -> None:
    script = (
        "from parity.monitoring.served_log import is_sampled, key_text\n"
        "print(''.join('1' if is_sampled(key_text({'k': str(i)}), 30.0) else '0' "
        "for i in range(500)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    here = "".join("1" if is_sampled(key_text({"k": str(i)}), 30.0) else "0" for i in range(500))
    assert out.stdout.strip() == here
    assert hash("k=1") != int(md5_bucket("k=1"))  # sanity: the sample is not Python's hash()


def response(ids: list[int]) -> OnlineResponse:
    return OnlineResponse(
        {"driver_id": ids, "amount": [1.5] * len(ids)},
        {"speed": [float(i) for i in ids]},
        {"speed": [Status.PRESENT] * len(ids)},
        {"speed": [T] * len(ids)},
    )


def test_every_request_of_a_sampled_key_is_kept_and_no_other() -> None:
    sink = MemoryLogSink()
    log = ServedLog(lambda: PredictionLogger(sink), 25.0)
    ids = list(range(200))
    for minute in range(3):  # the same keys asked three times
        log.log("svc", response(ids), ["driver_id"], T + timedelta(minutes=minute))
    log.close()
    sampled = {i for i in ids if md5_bucket(f"driver_id={i}") < 25.0}
    logged = [r.entities["driver_id"] for r in sink.records]
    assert sorted(logged) == sorted(list(sampled) * 3)
    record = sink.records[0]
    assert record.model == "svc" and record.entities["amount"] == 1.5
    assert record.prediction == {"statuses": {"speed": "PRESENT"}, "event_timestamps": {"speed": T}}


def test_a_log_that_samples_nothing_starts_no_writer() -> None:
    started: list[int] = []

    def make() -> PredictionLogger:
        started.append(1)
        return PredictionLogger(MemoryLogSink())

    log = ServedLog(make, 0.0)
    assert log.log("svc", response(list(range(100))), ["driver_id"], T) == 0
    log.close()
    assert started == [] and log.logger is None


def test_feature_server_logs_exactly_the_sampled_keys(tmp_path: Path) -> None:
    yaml = "feature_server:\n  log_sample_percent: 30\n  served_log: logs/served\n"
    root = write_repo(tmp_path / "repo", REPO, extra=yaml)
    pq.write_table(stats_rows(), root / "data" / "driver_stats.parquet")
    store = FeatureStore(root, clock=lambda: T)
    store.apply()
    store.push("live", speeds(T - timedelta(hours=5), 10.0), to="both")
    ids = list(range(1, 21))
    with TestClient(create_app(store)) as client:
        for _ in range(2):
            body = {"feature_service": "driver_all", "entities": {"driver_id": ids}}
            assert client.post("/get-online-features", json=body).status_code == 200
    files = sorted((root / "logs" / "served").glob("date=*/*.parquet"))
    table = pq.read_table(files, columns=["entities", "model", "event_timestamp"])
    logged = sorted(int(e.split(":")[1].strip("}")) for e in table["entities"].to_pylist())
    expected = [i for i in ids if md5_bucket(f"driver_id={i}") < 30.0]
    assert logged == sorted(expected * 2) and 0 < len(expected) < 20
    assert set(table["model"].to_pylist()) == {"driver_all"}
    assert set(table["event_timestamp"].to_pylist()) == {T}
    store.close()


@pytest.mark.parametrize("percent", [10.0, 50.0])
def test_replay_sample_percent_keeps_the_same_keys_as_the_log(
    tmp_path: Path, percent: float
) -> None:
    from tests.monitoring.test_consistency_replay import Clock, serve

    root = write_repo(tmp_path / "repo", REPO, extra="feature_server:\n  log_sample_percent: 100\n")
    pq.write_table(stats_rows(), root / "data" / "driver_stats.parquet")
    clock = Clock(T)
    store = FeatureStore(root, clock=clock)
    store.apply()
    store.push("live", speeds(T - timedelta(hours=5), 10.0), to="both")
    store.materialize(T - timedelta(days=3), T)
    serve(store, clock, [(T + timedelta(minutes=1), list(range(1, 21)))])
    report = store.monitoring.consistency(
        "driver_all", until=T + timedelta(hours=1), sample_percent=percent
    )
    expected = sum(md5_bucket(f"driver_id={i}") < percent for i in range(1, 21))
    assert report.rows == expected
    assert report.mismatches == 0
    store.close()
