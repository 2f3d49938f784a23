"""The monitoring pages' JSON on the fraud world (read-only): drift per column over time checked
against the stored table read through SQL and one window recomputed with scipy from the
prediction log, performance coverage against DuckDB counts, decisions against the loop's own."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import duckdb
import pandas as pd
import pytest
from scipy.stats import wasserstein_distance
from starlette.testclient import TestClient

from parity.ui.app import create_ui_app
from tests.ui.world import World

API = "/ui/api"


@pytest.fixture(scope="module")
def client(fraud_world: World) -> Iterator[TestClient]:
    with TestClient(create_ui_app(fraud_world.store)) as found:
        yield found


def sql(world: World, query: str, *args: Any) -> list[sqlite3.Row]:
    connection = sqlite3.connect(world.root / "data" / "registry.db")
    connection.row_factory = sqlite3.Row
    try:
        return list(connection.execute(query, args))
    finally:
        connection.close()


def drift_rows(world: World, column: str | None = None) -> list[sqlite3.Row]:
    query = "SELECT * FROM parity_monitor_drift WHERE model = 'fraud'"
    if column is not None:
        return sql(world, query + " AND column_name = ? ORDER BY id", column)
    return sql(world, query + " ORDER BY id")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- the list ---------------------------------------------------------------------------------


def test_the_list_shows_the_newest_window_its_drifted_columns_and_firing_alerts(
    client: TestClient, fraud_world: World
) -> None:
    body = client.get(f"{API}/monitoring").json()
    [fraud] = body["models"]
    rows = drift_rows(fraud_world)
    end = max(r["window_end"] for r in rows)
    version = max(r["version"] for r in rows if r["window_end"] == end)
    newest = {
        r["column_name"]: r for r in rows if (r["window_end"], r["version"]) == (end, version)
    }
    share = newest.pop("__dataset__")
    firing = sql(fraud_world, "SELECT * FROM parity_monitor_alert_state WHERE firing")
    assert fraud["model"] == "fraud" and fraud["monitor"] == "fraud_monitor"
    assert fraud["window_seconds"] == 7 * 24 * 3600
    assert at(fraud["latest_window"]["window_end"]) == at(end)
    assert at(fraud["latest_window"]["window_start"]) == at(share["window_start"])
    assert fraud["latest_window"]["version"] == version
    assert fraud["latest_window"]["drift_share"] == pytest.approx(share["statistic"])
    assert fraud["columns"] == len(newest) == 12
    assert fraud["drifted_columns"] == sum(1 for r in newest.values() if r["drifted"])
    assert fraud["firing_alerts"] == len(firing) > 0
    assert fraud["url"] == "#/monitoring/fraud"


# --- drift ------------------------------------------------------------------------------------


def test_drift_series_are_the_stored_rows_per_column_with_test_and_threshold(
    client: TestClient, fraud_world: World
) -> None:
    body = client.get(f"{API}/monitoring/fraud/drift").json()
    assert body["model"] == "fraud" and body["monitor"] == "fraud_monitor"
    rows = drift_rows(fraud_world)
    columns = list(
        dict.fromkeys(r["column_name"] for r in rows if r["column_name"] != "__dataset__")
    )
    assert [c["column"] for c in body["columns"]] == columns
    for shown in body["columns"]:
        stored = [r for r in rows if r["column_name"] == shown["column"]]
        assert shown["test"] == stored[-1]["test"]
        assert shown["threshold"] == stored[-1]["threshold"]
        assert shown["role"] == stored[-1]["kind"]
        # The loop judged each weekly window once: one point per stored row, oldest first.
        assert len(shown["series"]) == len(stored) == 7
        for point, row in zip(shown["series"], stored, strict=True):
            assert at(point["window_start"]) == at(row["window_start"])
            assert at(point["window_end"]) == at(row["window_end"])
            assert point["statistic"] == pytest.approx(row["statistic"])
            assert point["drifted"] == bool(row["drifted"])
            assert point["current_rows"] == row["rows"]
            assert point["drifted"] == (point["statistic"] >= shown["threshold"])
    roles = {c["column"]: c["role"] for c in body["columns"]}
    assert roles["amount"] == "input" and roles["output"] == "output"
    assert roles["txn_count_1d"] == "feature"
    share = [r for r in rows if r["column_name"] == "__dataset__"]
    assert body["drift_share"]["threshold"] == 0.5
    assert [p["statistic"] for p in body["drift_share"]["series"]] == pytest.approx(
        [r["statistic"] for r in share]
    )


def test_one_windows_statistic_is_the_normalised_wasserstein_scipy_gives(
    client: TestClient, fraud_world: World
) -> None:
    """txn_count_1d's reference has few distinct values (exact): W1(reference, window) over the
    reference's population std, from the training set and the logged features."""
    body = client.get(f"{API}/monitoring/fraud/drift", params={"column": "txn_count_1d"}).json()
    [column] = body["columns"]
    first = column["series"][0]
    root = fraud_world.root
    logged = duckdb.sql(
        f"""SELECT features FROM read_parquet('{root}/data/prediction_log/**/*.parquet',
        hive_partitioning = true) WHERE model = 'fraud' AND version = 1 AND role IS NULL
        AND event_timestamp >= '{first["window_start"]}' AND event_timestamp < '{first["window_end"]}'"""
    ).df()
    current = pd.Series([json.loads(f)["txn_count_1d"] for f in logged["features"]]).dropna()
    reference = pd.read_parquet(root / "training" / "v1.parquet")["txn_count_1d"].dropna()
    expected = wasserstein_distance(reference, current) / reference.std(ddof=0)
    assert first["current_rows"] == len(logged)
    assert first["statistic"] == pytest.approx(expected, rel=1e-9)


def test_drift_filters_by_column_and_by_window_start(
    client: TestClient, fraud_world: World
) -> None:
    rows = drift_rows(fraud_world, "amount")
    since, until = rows[2]["window_start"], rows[5]["window_start"]
    params = {"column": "amount", "since": since, "until": until}
    body = client.get(f"{API}/monitoring/fraud/drift", params=params).json()
    [column] = body["columns"]
    expected = [r for r in rows if at(since) <= at(r["window_start"]) < at(until)]
    assert [at(p["window_start"]) for p in column["series"]] == [
        at(r["window_start"]) for r in expected
    ]
    assert len(expected) == 3
    assert body["drift_share"]["series"] == []  # one column asked: not the dataset row
    unknown = client.get(f"{API}/monitoring/fraud/drift", params={"column": "no_such"})
    assert unknown.status_code == 422  # not an empty answer, read as "never drifted"
    assert unknown.json()["error"]["message"].startswith("query.column:")


# --- performance ------------------------------------------------------------------------------


def test_performance_points_carry_coverage_counted_from_the_log_and_the_labels(
    client: TestClient, fraud_world: World
) -> None:
    body = client.get(f"{API}/monitoring/fraud/performance").json()
    assert body["monitor"] == "fraud_monitor"
    series = {s["metric"]: s["points"] for s in body["series"]}
    assert {"auc", "recall", "precision", "dollar_weighted_recall"} <= set(series)
    stored = sql(
        fraud_world, "SELECT * FROM parity_monitor_performance WHERE model = 'fraud' ORDER BY id"
    )
    points = series["recall"]
    assert len(points) == len(stored) == 2
    for point, row in zip(points, stored, strict=True):
        predictions, labelled = counted(
            fraud_world, point["window_start"], point["window_end"], row
        )
        assert (point["predictions"], point["labelled"]) == (predictions, labelled)
        assert point["coverage"] == pytest.approx(labelled / predictions)
        assert point["final"] is True and point["version"] == 1
        assert point["value"] == pytest.approx(json.loads(row["metrics"])["metrics"]["recall"])


def counted(world: World, start: str, end: str, row: sqlite3.Row) -> tuple[int, int]:
    """Served predictions of version 1 in [start, end), and how many had a label by `as_of`."""
    root = world.root
    found = duckdb.sql(
        f"""WITH p AS (SELECT request_id FROM read_parquet(
            '{root}/data/prediction_log/**/*.parquet', hive_partitioning = true)
            WHERE model = 'fraud' AND version = {row["version"]} AND role IS NULL
            AND status = 'ok' AND event_timestamp >= '{start}' AND event_timestamp < '{end}'),
        l AS (SELECT 'txn-' || transaction_id AS request_id
            FROM read_parquet('{root}/data/chargebacks.parquet')
            WHERE label_timestamp <= '{row["as_of"]}')
        SELECT count(*), count(l.request_id) FROM p LEFT JOIN l USING (request_id)"""
    ).fetchall()
    return int(found[0][0]), int(found[0][1])


# --- triggers and alerts ----------------------------------------------------------------------


def test_trigger_decisions_are_the_loops_oldest_first_with_their_job(
    client: TestClient, fraud_world: World
) -> None:
    body = client.get(f"{API}/monitoring/fraud/triggers").json()
    assert body["policy"] == "fraud_retrain"
    expected = sorted(fraud_world.result.decisions, key=lambda d: d.id or 0)
    shown = body["decisions"]
    assert [d["id"] for d in shown] == [d.id for d in expected]
    for decision, made in zip(shown, expected, strict=True):
        assert at(decision["at"]) == made.at
        assert (decision["action"], decision["policy"]) == (made.action, made.policy)
        assert decision["reasons"] == list(made.reasons)
        assert decision["job"] == made.job_id
        assert decision["signals"]["asking"] == made.signals["asking"]
        assert decision["url"] == "#/monitoring/fraud"
    fired = [d for d in shown if d["action"] == "fire"]
    assert fired and fired[0]["job"] is not None
    job = fraud_world.store.jobs.get(fired[0]["job"])
    assert fired[0]["job_status"] == str(job.status) == "succeeded"


def test_alerts_are_the_stored_states_and_events(client: TestClient, fraud_world: World) -> None:
    body = client.get(f"{API}/alerts").json()
    states = sql(fraud_world, "SELECT * FROM parity_monitor_alert_state ORDER BY rule")
    assert sorted((s["rule"], s["firing"], s["streak"]) for s in body["statuses"]) == [
        (s["rule"], bool(s["firing"]), s["streak"]) for s in states
    ]
    events = sql(fraud_world, "SELECT * FROM parity_monitor_alert_events ORDER BY at, id")
    assert [(e["rule"], e["kind"], at(e["at"])) for e in body["events"]] == [
        (e["rule"], e["state"], at(e["at"])) for e in events
    ]
    assert all(e["monitor"] == "fraud_monitor" for e in body["events"])
    one = client.get(f"{API}/alerts", params={"monitor": "fraud_monitor"}).json()
    assert one == body


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/monitoring/nope/drift",
        "/monitoring/nope/performance",
        "/monitoring/nope/triggers",
        "/consistency/nope",
        "/alerts?monitor=nope",
        "/monitoring/fraud/nothing",
    ],
)
def test_unknown_names_are_404_with_an_error_body(client: TestClient, path: str) -> None:
    response = client.get(API + path)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"].endswith("not_found") and error["message"]


@pytest.mark.parametrize(
    ("since", "until", "field"),
    [
        ("yesterday-ish", None, "since"),
        (None, "12", "until"),
        ("1700000000", None, "since"),
        ("2026-04-01", "2026-03-01", "since"),
        ("2026-04-01", "2026-04-01", "since"),
        ("0001-01-01T00:00:00+14:00", None, "since"),
        (None, "9999-12-31T23:59:59-12:00", "until"),
        ("x" * 20_000, None, "since"),
        ("2026-01-01\x00", None, "since"),
        ("nan", None, "since"),
        ("", None, "since"),
    ],
)
def test_bad_windows_are_422_naming_the_field(
    client: TestClient, since: str | None, until: str | None, field: str
) -> None:
    params = {k: v for k, v in (("since", since), ("until", until)) if v is not None}
    response = client.get(f"{API}/monitoring/fraud/drift", params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith(f"query.{field}:")


def test_a_date_and_now_are_times(client: TestClient, fraud_world: World) -> None:
    params = {"since": "2026-03-12", "until": "now", "column": "output"}
    body = client.get(f"{API}/monitoring/fraud/drift", params=params).json()
    rows = [r for r in drift_rows(fraud_world, "output") if r["window_start"] >= "2026-03-12"]
    assert len(body["columns"][0]["series"]) == len(rows) == 5


def test_every_monitoring_route_is_in_the_spec_with_its_response_model(
    client: TestClient,
) -> None:
    spec = client.get(f"{API}/openapi.json").json()
    routes = {
        ("get", "/monitoring"): "MonitoredModels",
        ("get", "/monitoring/{model}/drift"): "Drift",
        ("get", "/monitoring/{model}/performance"): "Performance",
        ("get", "/monitoring/{model}/triggers"): "Decisions",
        ("get", "/alerts"): "Alerts",
        ("get", "/consistency/{service}"): "Consistency",
        ("post", "/consistency/{service}"): "Consistency",
    }
    for (method, path), model in routes.items():
        operation = spec["paths"][API + path][method]
        status = "202" if method == "post" else "200"
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/" + model)
        assert "404" in operation["responses"]


def test_a_real_server_answers_the_same_json(client: TestClient, fraud_world: World) -> None:
    import urllib.request

    from tests.inference.serving_helpers import running

    paths = ["/monitoring", "/monitoring/fraud/drift?column=amount", "/alerts"]
    with running(create_ui_app(fraud_world.store)) as address:
        for path in paths:
            with urllib.request.urlopen(f"http://{address}{API}{path}", timeout=30) as answer:
                assert answer.status == 200
                assert json.loads(answer.read()) == client.get(API + path).json()


def test_limit_keeps_the_newest_rows_and_says_so(client: TestClient, fraud_world: World) -> None:
    full = client.get(f"{API}/monitoring/fraud/drift").json()
    assert full["truncated"] is False
    newest = client.get(f"{API}/monitoring/fraud/drift", params={"limit": 13}).json()
    rows = drift_rows(fraud_world)[-13:]  # the last run: one window, 12 columns and its share
    assert newest["truncated"] is True
    assert [(c["column"], len(c["series"])) for c in newest["columns"]] == [
        (r["column_name"], 1) for r in rows if r["column_name"] != "__dataset__"
    ]
    assert newest["columns"][0]["series"] == [full["columns"][0]["series"][-1]]
    for bad in ("0", "-1", "x", "1.5", str(10**12), ""):
        response = client.get(f"{API}/monitoring/fraud/drift", params={"limit": bad})
        assert response.status_code == 422, bad
        assert response.json()["error"]["message"].startswith("query.limit")
