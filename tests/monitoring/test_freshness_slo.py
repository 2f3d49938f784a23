"""Freshness SLOs: the age of each view's newest value (its event time) against its
freshness_slo, with an injected clock, in Python, as alert signals and as the feature server's
gauges over HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from parity import FeatureStore
from parity.monitoring.freshness import ViewFreshness, evaluate, signals
from parity.serving.app import create_app
from tests.conftest import write_parquet, write_repo

T = datetime(2026, 3, 1, tzinfo=UTC)
US = pa.timestamp("us", tz="UTC")
REPO = {
    "defs.py": """
        from datetime import timedelta
        from parity import Entity, FeatureView, Field, FileSource, Float64, PushSource

        account = Entity(name="account", join_keys=["account_id"])
        hourly = FeatureView(
            name="hourly", entities=[account], schema=[Field(name="a", dtype=Float64)],
            source=FileSource(path="data/stats.parquet"), freshness_slo=timedelta(hours=1),
        )
        daily = FeatureView(
            name="daily", entities=[account], schema=[Field(name="b", dtype=Float64)],
            source=FileSource(path="data/stats.parquet"), freshness_slo=timedelta(days=1),
        )
        no_slo = FeatureView(
            name="no_slo", entities=[account], schema=[Field(name="a", dtype=Float64)],
            source=FileSource(path="data/stats.parquet"),
        )
        clicks = PushSource(name="clicks", batch_source=FileSource(path="data/clicks/"))
        pushed = FeatureView(
            name="pushed", entities=[account], schema=[Field(name="c", dtype=Float64)],
            source=clicks, freshness_slo=timedelta(minutes=10),
        )
    """
}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make_store(
    root: Path, clock: object, event_time: datetime = T - timedelta(minutes=10)
) -> FeatureStore:
    write_repo(root, REPO)
    write_parquet(
        root / "data" / "stats.parquet",
        {
            "account_id": pa.array([1, 2], pa.int64()),
            "event_timestamp": pa.array([event_time - timedelta(minutes=5), event_time], US),
            "a": pa.array([1.0, 2.0]),
            "b": pa.array([3.0, 4.0]),
        },
    )
    store = FeatureStore(root, clock=clock)  # type: ignore[arg-type]
    store.apply()
    return store


def test_evaluate_by_hand() -> None:
    now = T + timedelta(hours=3)
    results = evaluate(
        {
            "a": T,
            "b": T + timedelta(hours=2, minutes=30),
            "c": None,
            "d": T,
            "e": now + timedelta(1),
        },
        {
            "a": timedelta(hours=2),
            "b": timedelta(hours=2),
            "c": timedelta(hours=1),
            "e": timedelta(1),
        },
        now,
    )
    assert [(r.view, r.age_seconds, r.status) for r in results] == [
        ("a", 10800.0, "breached"),
        ("b", 1800.0, "ok"),
        ("c", None, "unknown"),
        ("d", 10800.0, "no_slo"),
        ("e", 0.0, "ok"),  # written after this clock: age 0, never negative
    ]
    assert signals(results) == {"freshness:a": 1.5, "freshness:b": 0.25, "freshness:e": 0.0}


def test_age_equal_to_the_slo_is_not_a_breach() -> None:
    assert ViewFreshness("v", T, 3600.0, 3600.0).status == "ok"
    assert ViewFreshness("v", T, 3600.5, 3600.0).status == "breached"


def test_a_stale_view_breaches_its_slo_on_the_injected_clock(tmp_path: Path) -> None:
    clock = Clock(T)
    store = make_store(tmp_path / "repo", clock)
    store.materialize(T - timedelta(days=90), T, ["hourly", "daily", "no_slo"])
    clock.now = T + timedelta(minutes=49)  # the newest value (T - 10 min) is 59 minutes old
    assert {r.view: r.status for r in store.monitoring.freshness_slo()} == {
        "daily": "ok",
        "hourly": "ok",
        "no_slo": "no_slo",
        "pushed": "unknown",  # never written (as far as this process knows)
    }
    clock.now = T + timedelta(hours=2)
    # Materializing again with no newer data writes the same values: they stay as old as they
    # are (the newest write is now, the newest value is not).
    store.materialize(T, clock.now, ["hourly", "daily"])
    by_view = {r.view: r for r in store.monitoring.freshness_slo()}
    assert by_view["hourly"].status == "breached"
    assert by_view["hourly"].newest == T - timedelta(minutes=10)
    assert by_view["hourly"].age_seconds == 7800.0
    assert store.monitoring.freshness_signals() == {
        "freshness:hourly": pytest.approx(7800 / 3600),
        "freshness:daily": pytest.approx(7800 / 86400),
    }
    store.push("clicks", {"account_id": [1], "event_timestamp": [clock.now], "c": [1.0]})
    clock.now += timedelta(minutes=5)
    assert store.monitoring.freshness_signals()["freshness:pushed"] == pytest.approx(0.5)


def test_feature_server_exports_slo_and_breach_gauges(tmp_path: Path) -> None:
    clock = Clock(T)
    store = make_store(tmp_path / "repo", clock)
    store.materialize(T - timedelta(days=90), T, ["hourly", "daily", "no_slo"])
    clock.now = T + timedelta(hours=2)
    text = TestClient(create_app(store)).get("/metrics").text
    assert 'parity_feature_freshness_seconds{view="hourly"} 7200.0' in text
    assert 'parity_feature_freshness_slo_seconds{view="hourly"} 3600.0' in text
    assert 'parity_feature_freshness_slo_seconds{view="daily"} 86400.0' in text
    assert 'parity_feature_freshness_slo_seconds{view="pushed"} 600.0' in text
    assert 'parity_feature_freshness_slo_breached{view="hourly"} 1.0' in text
    assert 'parity_feature_freshness_slo_breached{view="daily"} 0.0' in text
    assert 'parity_feature_freshness_slo_breached{view="pushed"}' not in text  # unknown here
    assert 'parity_feature_freshness_slo_seconds{view="no_slo"}' not in text
    assert 'parity_feature_freshness_slo_breached{view="no_slo"}' not in text


def test_gauges_over_real_http_from_parity_serve(tmp_path: Path) -> None:
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    store = make_store(tmp_path / "repo", lambda: datetime.now(UTC), two_hours_ago)
    store.materialize(T - timedelta(days=90), two_hours_ago, ["hourly", "daily"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "parity.cli.main", "serve", "--repo", str(store.repo_path)]
    server = subprocess.Popen([*command, "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as reply:
                    assert json.load(reply)["status"] == "ok"
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)  # waiting for a real process to listen, not for time to pass
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    finally:
        server.terminate()
        server.wait(10)
    assert 'parity_feature_freshness_slo_breached{view="hourly"} 1.0' in text
    assert 'parity_feature_freshness_slo_breached{view="daily"} 0.0' in text
    assert 'parity_feature_freshness_slo_seconds{view="hourly"} 3600.0' in text


def test_a_push_another_process_recorded_counts_once_flushed(tmp_path: Path) -> None:
    worker_clock, reader_clock = Clock(T), Clock(T + timedelta(minutes=2))
    worker = make_store(tmp_path / "repo", worker_clock)
    reader = FeatureStore(worker.repo_path, clock=reader_clock)  # another server worker
    row = {"account_id": [1], "c": [1.0]}
    worker.push("clicks", {**row, "event_timestamp": [T]})
    by_view = {r.view: r for r in reader.monitoring.freshness_slo()}
    assert by_view["pushed"].status == "unknown"  # counted in the worker's memory only
    worker_clock.now = T + timedelta(seconds=61)
    worker.push("clicks", {**row, "event_timestamp": [worker_clock.now]})  # flush is due
    by_view = {r.view: r for r in reader.monitoring.freshness_slo()}
    assert by_view["pushed"].newest == T + timedelta(seconds=61)
    assert by_view["pushed"].age_seconds == 59.0
    assert by_view["pushed"].status == "ok"
