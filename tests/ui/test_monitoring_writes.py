"""The monitoring pages on copies of the fraud world that change: provisional performance windows,
a consistency replay in the background against the report computed directly, a model with no
monitor, and narrowed tokens with auth on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import duckdb
import pytest
from starlette.testclient import TestClient

from parity import FeatureStore
from parity.examples.fraud import model
from parity.serving.app import create_app
from parity.ui.app import create_ui_app
from tests.ui.world import World, copy_world

API = "/ui/api"
WEEK = timedelta(days=7)


def wait_done(client: TestClient, path: str, **headers: str) -> dict[str, Any]:
    for _ in range(600):
        body: dict[str, Any] = client.get(path, headers=headers).json()
        if body["state"] != "running":
            return body
        time.sleep(0.05)
    raise AssertionError(f"{path} still running")


def test_provisional_windows_show_the_coverage_labels_have_reached(fresh_world: World) -> None:
    store, now = fresh_world.store, fresh_world.clock.now()
    store.monitoring.performance("fraud/1", since="2026-03-26")
    with TestClient(create_ui_app(store)) as client:
        body = client.get(f"{API}/monitoring/fraud/performance").json()
    points = {
        p["window_start"]: p for p in {s["metric"]: s for s in body["series"]}["auc"]["points"]
    }
    provisional = [p for p in points.values() if not p["final"]]
    assert len(provisional) == 4 and len(points) == 6
    root = fresh_world.root
    for point in provisional:
        found = duckdb.sql(
            f"""WITH p AS (SELECT request_id FROM read_parquet(
                '{root}/data/prediction_log/**/*.parquet', hive_partitioning = true)
                WHERE model = 'fraud' AND version = 1 AND status = 'ok'  -- every role
                AND event_timestamp >= '{point["window_start"]}'
                AND event_timestamp < '{point["window_end"]}'),
            l AS (SELECT 'txn-' || transaction_id AS request_id
                FROM read_parquet('{root}/data/chargebacks.parquet')
                WHERE label_timestamp <= '{now.isoformat()}')
            SELECT count(*), count(l.request_id) FROM p LEFT JOIN l USING (request_id)"""
        ).fetchall()[0]
        assert (point["predictions"], point["labelled"]) == found
        assert point["coverage"] == pytest.approx(found[1] / found[0])
        assert 0 < point["coverage"] < 0.05  # labels come 30 days late: few are in yet


def served_skew(world: World) -> tuple[datetime, datetime]:
    """A transaction of account 7 pushed online only (as scripts/demo.sh does), then accounts
    1..20 served fraud_model_v2 through the feature server, whose log holds the rows."""
    store, now = world.store, world.clock.now()
    row = {"account_id": 7, "device_id": 7, "event_timestamp": now - timedelta(seconds=5)}
    store.push("transactions", [row | {"amount": 999.0}], to="online")
    ids = list(range(1, 21))
    entities = {"account_id": ids, "device_id": ids, "amount": [50.0] * len(ids)}
    with TestClient(create_app(store)) as server:  # the log is written when it stops
        body = {"feature_service": "fraud_model_v2", "entities": entities}
        assert server.post("/get-online-features", json=body).status_code == 200
    world.clock.set(now + timedelta(minutes=1))
    return now - timedelta(hours=1), now + timedelta(minutes=1)


def test_consistency_runs_in_the_background_and_matches_the_report(fresh_world: World) -> None:
    since, until = served_skew(fresh_world)
    path = f"{API}/consistency/fraud_model_v2"
    with TestClient(create_ui_app(fresh_world.store)) as client:
        assert client.get(path).json()["state"] == "none"
        started = client.post(path, json={"since": since.isoformat()})
        assert started.status_code == 202
        assert started.json()["state"] in ("running", "done")
        assert started.json()["until"] == until.isoformat()  # default: the store's clock
        body = wait_done(client, path)
    report = fresh_world.store.monitoring.consistency("fraud_model_v2", since=since, until=until)
    assert body["state"] == "done" and body["error"] is None
    assert body["rows"] == report.rows == 20
    expected = [
        (f.feature, f.counts.total, f.counts.mismatch, f.counts.mismatch / f.counts.total)
        for f in report.features
    ]
    shown = [(f["feature"], f["compared"], f["mismatches"], f["rate"]) for f in body["features"]]
    assert shown == expected
    assert any(f["mismatches"] for f in body["features"])  # the pushed skew is caught
    hours = {(b.feature, b.hour.isoformat()): b.counts.mismatch_rate for b in report.buckets}
    assert {(h["feature"], h["hour"]): h["rate"] for h in body["hours"]} == hours


def test_consistency_defaults_to_the_last_day_and_refuses_bad_windows(
    fresh_world: World,
) -> None:
    now = fresh_world.clock.now()
    path = f"{API}/consistency/fraud_model_v1"
    with TestClient(create_ui_app(fresh_world.store)) as client:
        bad = [
            ({"since": "2026-05-01", "until": "2026-04-01"}, "body.since"),
            ({"since": 5}, "body.since"),
            ({"until": "later"}, "body.until"),
            ({"since": None, "extra": 1}, "body.extra"),
            ({"until": "99999-01-01"}, "body.until"),
        ]
        for body, field in bad:
            response = client.post(path, json=body)
            assert response.status_code == 422, body
            assert response.json()["error"]["message"].startswith(field)
        assert client.post(path, content=b"[1, 2]").status_code == 422
        assert client.post(f"{API}/consistency/nope", json={}).status_code == 404
        done = client.post(path).json()
        assert done["since"] == (now - timedelta(hours=24)).isoformat()
        assert done["until"] == now.isoformat()
        body = wait_done(client, path)
    report = fresh_world.store.monitoring.consistency(
        "fraud_model_v1", since=now - timedelta(hours=24), until=now
    )
    assert body["state"] == "done" and body["rows"] == report.rows


def test_a_model_with_no_monitor_answers_empty(fresh_world: World) -> None:
    store = fresh_world.store
    model.train_and_register(store, "fraud_train_v1", name="fraud_shadow", alias=None)
    with TestClient(create_ui_app(store)) as client:
        listed = {m["model"]: m for m in client.get(f"{API}/monitoring").json()["models"]}
        drift = client.get(f"{API}/monitoring/fraud_shadow/drift").json()
        performance = client.get(f"{API}/monitoring/fraud_shadow/performance").json()
        triggers = client.get(f"{API}/monitoring/fraud_shadow/triggers").json()
    assert listed["fraud_shadow"] == {
        "model": "fraud_shadow",
        "monitor": None,
        "window_seconds": None,
        "latest_window": None,
        "columns": 0,
        "drifted_columns": 0,
        "firing_alerts": 0,
        "url": "#/monitoring/fraud_shadow",
    }
    assert drift["monitor"] is None and drift["columns"] == []
    assert performance == {"model": "fraud_shadow", "monitor": None, "series": []}
    assert triggers == {"model": "fraud_shadow", "policy": None, "decisions": []}


# --- auth on ----------------------------------------------------------------------------------


@pytest.fixture
def secured(fraud_world: World, tmp_path: Any) -> Iterator[World]:
    world = copy_world(fraud_world, tmp_path / "secured")
    world.store.close()
    config = world.root / "parity.yaml"
    config.write_text(config.read_text() + "\nauth:\n  enabled: true\n")
    world.store = FeatureStore(world.root, clock=world.clock.now)
    model.train_and_register(world.store, "fraud_train_v1", name="other", alias=None)
    yield world
    world.store.close()


def bearer(world: World, name: str, scopes: str) -> dict[str, str]:
    _, text = world.store.access.tokens.create(name, scopes)
    return {"authorization": f"Bearer {text}"}


def test_narrowed_tokens_see_only_their_models_and_services(secured: World) -> None:
    with TestClient(create_ui_app(secured.store)) as client:
        other = bearer(secured, "other-reader", "models:read:other")
        fraud = bearer(secured, "fraud-reader", "models:read:fraud features:read:fraud_model_v1")
        listed = client.get(f"{API}/monitoring", headers=other).json()["models"]
        assert [m["model"] for m in listed] == ["other"]
        alerts = client.get(f"{API}/alerts", headers=other).json()
        assert alerts == {"statuses": [], "events": []}  # fraud_monitor watches fraud
        for path in ("drift", "performance", "triggers"):
            assert client.get(f"{API}/monitoring/fraud/{path}", headers=other).status_code == 403
            assert client.get(f"{API}/monitoring/fraud/{path}", headers=fraud).status_code == 200
        refused = client.get(f"{API}/alerts?monitor=fraud_monitor", headers=other)
        assert refused.status_code == 403 and "models:read" in refused.json()["error"]["message"]
        assert client.get(f"{API}/alerts", headers=fraud).json()["statuses"]
        assert client.get(f"{API}/consistency/fraud_model_v1", headers=fraud).status_code == 200
        assert client.get(f"{API}/consistency/fraud_model_v2", headers=fraud).status_code == 403
        assert client.post(f"{API}/consistency/fraud_model_v2", headers=fraud).status_code == 403
        assert client.get(f"{API}/consistency/fraud_model_v1", headers=other).status_code == 403
        assert client.get(f"{API}/monitoring").status_code == 401


def test_a_long_history_shows_its_newest_100_windows_unless_asked(fresh_world: World) -> None:
    """120 older weekly windows recorded after the loop's (a backfill): the page's default is
    the 100 windows up to the newest window's end, whenever they were recorded."""
    from dataclasses import replace

    from parity.monitoring.drift_history import DriftHistory

    store = fresh_world.store
    newest = store.monitoring.drift_history("fraud", column="amount")
    last = newest[-1]
    backfill = [
        replace(last, run_id="backfill", window_start=r - WEEK, window_end=r)
        for r in (newest[0].window_start - k * WEEK for k in range(120))
    ]
    DriftHistory(store.registry.store.engine).record(backfill)
    with TestClient(create_ui_app(store)) as client:
        path = f"{API}/monitoring/fraud/drift"
        shown = client.get(path, params={"column": "amount"}).json()["columns"][0]["series"]
        every = client.get(path, params={"column": "amount", "since": "1970-01-01"}).json()
    starts = sorted([r.window_start for r in newest] + [r.window_start for r in backfill])
    assert [datetime.fromisoformat(p["window_start"]) for p in shown] == starts[-100:]
    assert len(every["columns"][0]["series"]) == len(starts) == 127
    assert shown[-1]["window_end"] == last.window_end.isoformat()
