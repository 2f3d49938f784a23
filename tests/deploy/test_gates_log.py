"""`check_gates` over a real Parquet prediction log read with DuckDB: which rows each arm holds
(version and role), the window boundaries, files written before the `role` column, missing or
damaged logs."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import FeatureStore, Gate, Phase, Rollout
from parity.deploy.evidence import check_gates, output_key, read_window, score_sql, window_sql
from parity.deploy.state import RolloutState
from parity.errors import GateError
from parity.inference.predlog import log_schema
from tests.conftest import DRIVER_REPO, write_repo

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
STEP = T0 + timedelta(minutes=30)  # the current step started here
NOW = T0 + timedelta(hours=1)


def row(
    at: datetime,
    version: int,
    role: str | None,
    *,
    latency: float | None = 1.0,
    status: str = "ok",
    score: float | None = 0.5,
    request_id: str = "",
    model: str = "fraud",
    prediction: str | None = None,
) -> dict[str, Any]:
    return {
        "request_id": request_id or f"q{version}-{at.timestamp()}-{role}",
        "event_timestamp": at,
        "model": model,
        "version": version,
        "alias": "champion",
        "entities": json.dumps({"account_id": 1}),
        "features": "{}",
        "prediction": prediction if prediction is not None else json.dumps(score),
        "latency_ms": latency,
        "status": status,
        "role": role,
    }


def write_log(
    folder: Path, rows: Sequence[dict[str, Any]], name: str, *, role: bool = True
) -> None:
    """One Parquet file per UTC day, the log's schema plus the `role` column (unless `role` is
    False: a file written before the column existed)."""
    schema = pa.schema([f for f in log_schema() if f.name != "role"])
    schema = schema.append(pa.field("role", pa.string())) if role else schema
    days: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        days.setdefault(r["event_timestamp"].date().isoformat(), []).append(r)
    for day, chosen in days.items():
        table = pa.table({f.name: [r[f.name] for r in chosen] for f in schema}, schema=schema)
        path = folder / f"date={day}" / f"predictions-{name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)


def rollout(*gates: Gate, **changes: Any) -> Rollout:
    fields: dict[str, Any] = {
        "name": "fraud_rollout",
        "model": "fraud",
        "candidate": 2,
        "shadow": Phase(weight=0),
        "steps": (Phase(weight=5), Phase(weight=50)),
        "gates": gates,
    }
    fields.update(changes)
    return Rollout(**fields)


def state_of(definition: Rollout, *, step: int = 1, **changes: Any) -> RolloutState:
    fields: dict[str, Any] = {
        "id": "fraud-1",
        "project": "demo",
        "model": "fraud",
        "definition": definition,
        "candidate": 2,
        "champion": 1,
        "status": "active",
        "step": step,
        "step_started": STEP,
        "failures": 0,
        "started_at": T0,
        "updated_at": STEP,
    }
    fields.update(changes)
    return RolloutState(**fields)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with FeatureStore(write_repo(tmp_path / "repo", DRIVER_REPO)) as opened:
        yield opened


def log_folder(store: FeatureStore) -> Path:
    return store.monitoring.prediction_log_folder()


LATENCY = Gate(metric="latency_p99", min_samples=1)
ERRORS = Gate(metric="error_rate", min_samples=1)


def test_each_arm_holds_its_version_and_roles_in_the_step_window(store: FeatureStore) -> None:
    inside = STEP + timedelta(minutes=5)
    champion = [row(inside, 1, "champion", latency=float(i)) for i in range(1, 11)]
    canary = [row(inside, 2, "canary", latency=float(10 * i)) for i in range(1, 6)]
    shadow = [row(inside, 2, "shadow", latency=7.0, status="timeout")]
    ignored = [
        row(inside, 2, None, latency=1e6),  # an explicit fraud/2 request: not routed
        row(inside, 1, None, latency=1e6),  # fraud/1 asked by version
        row(inside, 1, "shadow", latency=1e6),  # the champion's version in a candidate role
        row(inside, 2, "champion", latency=1e6),
        row(inside, 3, "shadow", latency=1e6),  # an also_shadow version
        row(inside, 2, "canary", latency=1e6, model="other"),
        row(STEP - timedelta(microseconds=1), 2, "canary", latency=1e6),  # before the step
        row(NOW, 1, "champion", latency=1e6),  # at now: excluded
    ]
    at_start = [row(STEP, 1, "champion", latency=11.0), row(STEP, 2, "canary", latency=60.0)]
    write_log(log_folder(store), champion + canary + shadow + ignored + at_start, "a")
    outcome = check_gates(store, state_of(rollout(LATENCY, ERRORS)), NOW)
    assert outcome.samples == {"candidate": 7, "champion": 11}
    latency, errors = outcome.results
    answered = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]  # the timeout is not an answer
    expected = np.quantile(answered, 0.99, method="inverted_cdf")
    assert (latency.candidate, latency.champion) == (expected, 11.0)
    assert latency.samples == {"candidate": 6, "champion": 11}
    # both over their limits, but six and seven rows prove nothing at 95 %: held, not failed
    assert latency.verdict == "inconclusive"
    assert latency.reason.startswith("over the limit but not yet significant: candidate p99 60")
    assert (errors.candidate, errors.champion) == (1 / 7, 0.0)
    assert errors.verdict == "inconclusive"
    assert errors.reason.startswith("over the limit but not yet significant: ")


def test_a_step_without_rows_is_inconclusive_and_counts_zero(store: FeatureStore) -> None:
    write_log(log_folder(store), [row(STEP - timedelta(minutes=1), 2, "canary")], "a")
    outcome = check_gates(store, state_of(rollout(LATENCY, ERRORS)), NOW)
    assert outcome.samples == {"candidate": 0, "champion": 0}
    assert [r.verdict for r in outcome.results] == ["inconclusive", "inconclusive"]
    assert "too few" in outcome.results[0].reason


def test_files_from_before_the_role_column_read_as_role_null(store: FeatureStore) -> None:
    folder = log_folder(store)
    inside = STEP + timedelta(minutes=1)
    write_log(folder, [row(inside, 1, None), row(inside, 2, None)], "old", role=False)
    only_old = check_gates(store, state_of(rollout(ERRORS)), NOW)
    assert only_old.samples == {"candidate": 0, "champion": 0}
    assert "no role column" in only_old.results[0].reason
    write_log(folder, [row(inside, 1, "champion"), row(inside, 2, "canary")], "new")
    both = check_gates(store, state_of(rollout(ERRORS)), NOW)
    assert both.samples == {"candidate": 1, "champion": 1}
    assert both.results[0].verdict == "pass"


def test_drift_over_the_log_uses_ok_rows_and_drops_null_scores(store: FeatureStore) -> None:
    inside = STEP + timedelta(minutes=2)
    rows = [row(inside, 1, "champion", score=0.1) for _ in range(50)]
    rows += [row(inside, 1, "champion", score=0.9) for _ in range(50)]
    rows += [row(inside, 2, "canary", score=0.1) for _ in range(80)]
    rows += [row(inside, 2, "canary", score=0.9) for _ in range(20)]
    rows += [row(inside, 2, "canary", score=None)]  # NaN is logged as null
    rows += [row(inside, 2, "canary", prediction='"oops"')]  # not a number
    rows += [row(inside, 2, "canary", score=0.9, status="error") for _ in range(30)]
    write_log(log_folder(store), rows, "a")
    gate = Gate(metric="prediction_drift", min_samples=100)
    (result,) = check_gates(store, state_of(rollout(gate)), NOW).results
    expected = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert result.candidate == pytest.approx(expected, rel=1e-12)
    assert result.verdict == "fail" and "candidate 2" in result.reason


def test_no_log_folder_or_a_damaged_file_is_inconclusive_with_the_reason(
    store: FeatureStore,
) -> None:
    outcome = check_gates(store, state_of(rollout(LATENCY)), NOW)
    assert outcome.results[0].verdict == "inconclusive"
    assert "does not exist" in outcome.results[0].reason
    broken = log_folder(store) / f"date={STEP.date().isoformat()}" / "predictions-x.parquet"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"PAR1 not really")
    damaged = check_gates(store, state_of(rollout(LATENCY)), NOW)
    assert damaged.results[0].verdict == "inconclusive"
    assert "could not be read" in damaged.results[0].reason


def test_a_window_that_spans_two_days_reads_both_folders(store: FeatureStore) -> None:
    midnight = datetime(2026, 5, 2, tzinfo=UTC)
    rows = [row(midnight - timedelta(minutes=1), 1, "champion")]
    rows += [row(midnight + timedelta(minutes=1), 2, "canary")]
    write_log(log_folder(store), rows, "a")
    start, end = midnight - timedelta(hours=1), midnight + timedelta(hours=1)
    read = read_window(log_folder(store), "fraud", (2, 1), start, end)
    assert read.samples() == {"candidate": 1, "champion": 1}
    assert read_window(log_folder(store), "fraud", (2, 1), end, start).samples() == {
        "candidate": 0,
        "champion": 0,
    }


# --- which output is the score ------------------------------------------------------------------

TWO = {"outputs": [{"name": "label"}, {"name": "probability"}]}


def test_output_key_follows_the_signature() -> None:
    assert output_key(None, None, "m/1") is None
    assert output_key({"outputs": [{"name": "p"}]}, None, "m/1") is None
    assert output_key({"outputs": [{"name": "p"}]}, "p", "m/1") is None
    assert output_key(TWO, None, "m/1") == "label"
    assert output_key(TWO, "probability", "m/1") == "probability"
    with pytest.raises(GateError, match=r"model m/1 has the outputs \['label', 'probability'\]"):
        output_key(TWO, "proba", "m/1")


def test_scores_of_multi_output_predictions_read_their_key(store: FeatureStore) -> None:
    inside = STEP + timedelta(minutes=2)
    rows = [row(inside, 1, "champion", score=0.25)]
    rows += [row(inside, 2, "canary", prediction='{"label": 1, "probability": 0.75}')]
    write_log(log_folder(store), rows, "a")
    scores = {"probability": ("probability", None)}
    read = read_window(log_folder(store), "fraud", (2, 1), STEP, NOW, scores=scores)
    candidate, champion = read.masks()
    assert read.scores["probability"][candidate].tolist() == [0.75]
    assert read.scores["probability"][champion].tolist() == [0.25]
    assert "CASE WHEN version = 2" in window_sql(2, 1, scores, False)
    assert score_sql('we"ird') == (
        'TRY_CAST(json_extract_string(prediction, \'$."we\\"ird"\') AS DOUBLE)'
    )


def test_naive_times_are_utc_and_a_rollout_without_gates_still_counts(
    store: FeatureStore,
) -> None:
    inside = STEP + timedelta(minutes=1)
    write_log(log_folder(store), [row(inside, 1, "champion"), row(inside, 2, "canary")], "a")
    naive = state_of(rollout(ERRORS), step_started=STEP.replace(tzinfo=None))
    outcome = check_gates(store, naive, NOW.replace(tzinfo=None))
    assert outcome.samples == {"candidate": 1, "champion": 1}
    assert outcome.results[0].verdict == "pass"
    bare = check_gates(store, state_of(rollout()), NOW)
    assert (bare.results, bare.samples) == ((), {"candidate": 1, "champion": 1})
    backwards = check_gates(store, state_of(rollout(ERRORS)), STEP - timedelta(hours=1))
    assert backwards.samples == {"candidate": 0, "champion": 0}
    assert "the window is empty" in backwards.results[0].reason


ROLES = st.sampled_from([None, "champion", "canary", "shadow"])
OFFSETS = st.integers(-90, 90).map(lambda s: timedelta(seconds=s))


@given(
    st.lists(st.tuples(OFFSETS, st.sampled_from([1, 2, 3]), ROLES), max_size=40),
    st.sampled_from([STEP, NOW]),
)
@settings(max_examples=40, deadline=None)
def test_read_window_counts_match_a_python_filter(
    rows: list[tuple[timedelta, int, str | None]], near: datetime
) -> None:
    """Rows near a boundary (step start or now), any version and role: each arm's count is what a
    plain filter of the same rows says."""
    logged = [row(near + offset, version, role) for offset, version, role in rows]
    with tempfile.TemporaryDirectory() as folder:
        if logged:
            write_log(Path(folder), logged, "a")
        else:
            (Path(folder) / "date=2026-05-01").mkdir()
        read = read_window(Path(folder), "fraud", (2, 1), STEP, NOW)
    inside = [(v, r) for offset, v, r in rows if STEP <= near + offset < NOW]
    expected = {
        "candidate": sum(1 for v, r in inside if v == 2 and r in ("shadow", "canary")),
        "champion": sum(1 for v, r in inside if v == 1 and r == "champion"),
    }
    assert read.samples() == expected


def test_rows_written_by_the_model_servers_sink_are_read_by_arm(store: FeatureStore) -> None:
    from parity.inference.predlog import ParquetLogSink, PredictionRecord

    def record(i: int, version: int, role: str | None, prediction: Any) -> PredictionRecord:
        at = STEP + timedelta(seconds=i)
        return PredictionRecord(
            f"r{i}", at, "fraud", version, {"account_id": i}, {}, prediction, 2.0, role=role
        )

    sink = ParquetLogSink(log_folder(store))
    sink.write(
        [record(i, 1, "champion", 0.25) for i in range(3)]
        + [record(i, 2, "shadow", float("nan")) for i in range(3)]  # NaN: logged as null
        + [record(9, 2, None, 0.5)]
    )
    sink.close()
    gate = Gate(metric="prediction_drift", min_samples=1)
    outcome = check_gates(store, state_of(rollout(gate, ERRORS), step=0), NOW)
    assert outcome.samples == {"candidate": 3, "champion": 3}
    drift, errors = outcome.results
    assert drift.verdict == "inconclusive" and "candidate 0" in drift.reason
    assert errors.verdict == "pass"
