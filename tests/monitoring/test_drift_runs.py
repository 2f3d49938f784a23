"""Drift runs end to end: a model registered with a training set gets its reference profiles,
a real prediction log (ParquetLogSink) with a shifted window is flagged and an unshifted one not;
too few rows, no rows, unknown models, versions and columns; the stored history."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats as scipy_stats

from parity import FeatureStore
from parity.errors import (
    InsufficientData,
    ModelNotFound,
    ModelVersionNotFound,
    NoReference,
    UnknownMonitorColumn,
)
from parity.inference.predlog import ParquetLogSink, PredictionRecord
from parity.monitoring.drift_history import DATASET
from parity.monitoring.profile import Profile
from tests.conftest import write_parquet

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # the log's first window
HOUR = timedelta(hours=1)
REFERENCE_ROWS = 2000
CITIES = ["paris", "rome", "oslo"]

VIEWS = """
    from datetime import timedelta
    from parity import Entity, FeatureView, Field, FileSource, Float64, Int64, String

    driver = Entity(name="driver", join_keys=["driver_id"])
    driver_stats = FeatureView(
        name="driver_stats",
        entities=[driver],
        schema=[
            Field(name="conv_rate", dtype=Float64),
            Field(name="trips", dtype=Int64),
            Field(name="city", dtype=String),
        ],
        source=FileSource(path="data/driver_stats.parquet"),
        ttl=timedelta(days=30),
    )
"""


class Scorer:
    """A pyfunc model of conv_rate, trips and the request-time `bonus`."""

    def predict(self, frame: Any) -> Any:
        return np.asarray(frame["conv_rate"] + 0.01 * frame["trips"] + 0.1 * frame["bonus"])


class Broken:
    def predict(self, frame: Any) -> Any:
        if len(frame) > 5:  # the registration's sample passes, the dataset's rows do not
            raise RuntimeError("cannot score that many rows")
        return np.zeros(len(frame))


def draw(rng: np.random.Generator, rows: int, *, shifted: bool = False) -> dict[str, Any]:
    """Feature and request values: the reference's distribution, or a shifted one (conv_rate
    +0.3, cities mostly oslo, bonus doubled; trips unchanged)."""
    city_p = [0.1, 0.1, 0.8] if shifted else [0.5, 0.3, 0.2]
    return {
        "conv_rate": rng.normal(0.8 if shifted else 0.5, 0.1, rows),
        "trips": rng.poisson(20, rows),
        "city": rng.choice(CITIES, rows, p=city_p),
        "bonus": rng.exponential(2.0 if shifted else 1.0, rows),
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "parity.yaml").write_text("project: drifty\nmodels:\n  trusted: true\n")
    (root / "views.py").write_text(textwrap.dedent(VIEWS).lstrip())
    rng = np.random.default_rng(7)
    values = draw(rng, REFERENCE_ROWS)
    write_parquet(
        root / "data" / "driver_stats.parquet",
        {
            "driver_id": pa.array(range(REFERENCE_ROWS), pa.int64()),
            "event_timestamp": pa.array([T0 - timedelta(days=10)] * REFERENCE_ROWS),
            "conv_rate": values["conv_rate"],
            "trips": pa.array(values["trips"], pa.int64()),
            "city": values["city"].tolist(),
        },
    )
    write_parquet(
        root / "data" / "entities.parquet",
        {
            "driver_id": pa.array(range(REFERENCE_ROWS), pa.int64()),
            "event_timestamp": pa.array([T0 - timedelta(days=5)] * REFERENCE_ROWS),
            "bonus": values["bonus"],
            "label": pa.array(rng.integers(0, 2, REFERENCE_ROWS), pa.int64()),
        },
    )
    return root


@pytest.fixture
def store(repo: Path) -> Iterator[FeatureStore]:
    opened = FeatureStore(repo, clock=lambda: T0 + 6 * HOUR)
    opened.apply()
    opened.datasets.create(
        "train_v1",
        str(repo / "data" / "entities.parquet"),
        ["driver_stats:conv_rate", "driver_stats:trips", "driver_stats:city"],
        repo / "data" / "train_v1.parquet",
    )
    yield opened
    opened.close()


def register(
    store: FeatureStore,
    model: Any = None,
    dataset: str | None = "train_v1",
    frame: pd.DataFrame | None = None,
) -> int:
    if frame is None:
        frame = pd.read_parquet(store.datasets.get("train_v1").path)
    version = store.models.register_model(
        "scorer",
        model or Scorer(),
        flavor="pyfunc",
        training_dataset=dataset,
        sample_input=frame[["conv_rate", "trips", "bonus"]].head(5),
        alias="champion",
    )
    return version.version


def log_window(
    log: list[PredictionRecord], rng: np.random.Generator, start: datetime, rows: int, **kw: Any
) -> dict[str, Any]:
    values = draw(rng, rows, **kw)
    frame = pd.DataFrame(values)
    scores = Scorer().predict(frame)
    for i in range(rows):
        log.append(
            PredictionRecord(
                request_id=f"r{len(log)}",
                at=start + timedelta(seconds=i * 3000 / max(rows, 1)),
                model="scorer",
                version=1,
                alias="champion",
                entities={"driver_id": i, "bonus": float(values["bonus"][i])},
                features={
                    "conv_rate": float(values["conv_rate"][i]),
                    "trips": int(values["trips"][i]),
                    "city": str(values["city"][i]),
                },
                prediction=float(scores[i]),
                latency_ms=1.0,
            )
        )
    return values


def write_log(store: FeatureStore, records: list[PredictionRecord]) -> None:
    sink = ParquetLogSink(store.repo_path / "data" / "prediction_log", max_rows_per_file=400)
    sink.write(records)
    sink.close()


def test_registration_stores_the_reference_profiles(store: FeatureStore) -> None:
    register(store)
    subjects = {p.subject: p for p in store.monitoring.profiles("train_v1")}
    assert set(subjects) == {"features", "model:scorer/1:outputs", "model:scorer/1:inputs"}
    assert all(p.ok and p.rows == REFERENCE_ROWS for p in subjects.values())
    features = Profile.from_json(str(subjects["features"].profile)).columns
    assert sorted(features) == ["city", "conv_rate", "trips"]  # no keys, time or label
    outputs = Profile.from_json(str(subjects["model:scorer/1:outputs"].profile)).columns
    frame = pd.read_parquet(store.datasets.get("train_v1").path)
    expected = Scorer().predict(frame)  # the model run on the dataset's rows, computed here
    (output,) = outputs.values()
    assert output.count == REFERENCE_ROWS
    assert output.mean == pytest.approx(float(np.mean(expected)), rel=1e-9)
    inputs = Profile.from_json(str(subjects["model:scorer/1:inputs"].profile)).columns
    assert list(inputs) == ["bonus"]


def test_a_shifted_window_is_flagged_and_an_unshifted_one_not(store: FeatureStore) -> None:
    register(store)
    rng = np.random.default_rng(11)
    records: list[PredictionRecord] = []
    same = log_window(records, rng, T0, 600)
    moved = log_window(records, rng, T0 + HOUR, 600, shifted=True)
    log_window(records, rng, T0 + 2 * HOUR, 40)  # too few rows
    write_log(store, records)

    report = store.monitoring.drift("scorer@champion", since=T0, until=T0 + 4 * HOUR)
    assert report.versions == (1,)
    first, second, small, empty = report.windows
    verdicts = {c.column: c.status for c in first.columns}
    assert verdicts == dict.fromkeys(["conv_rate", "trips", "city", "bonus", "output"], "no_drift")
    assert (first.status, first.drifted, first.rows) == ("no_drift", False, 600)
    shifted = {c.column: c.status for c in second.columns}
    assert shifted == {
        "conv_rate": "drift",
        "trips": "no_drift",
        "city": "drift",
        "bonus": "drift",
        "output": "drift",
    }
    assert (second.status, second.drifted, second.share) == ("drift", True, 0.8)
    assert {c.status for c in small.columns} == {"insufficient_data"}
    assert (small.status, small.share, small.rows) == ("insufficient_data", None, 40)
    assert {c.status for c in empty.columns} == {"no_data"} and empty.rows == 0

    # the statistic against scipy on the raw values: Wasserstein / reference std (Evidently's)
    train = pd.read_parquet(store.datasets.get("train_v1").path)
    for window, values in ((first, same), (second, moved)):
        (conv,) = [c for c in window.columns if c.column == "conv_rate"]
        expected = scipy_stats.wasserstein_distance(train["conv_rate"], values["conv_rate"])
        assert conv.test == "wasserstein"
        assert conv.statistic == pytest.approx(expected / np.std(train["conv_rate"]), abs=0.01)


def test_the_run_is_stored_and_read_back_as_history(store: FeatureStore) -> None:
    register(store)
    rng = np.random.default_rng(3)
    records: list[PredictionRecord] = []
    log_window(records, rng, T0, 1000)  # Wasserstein's noise at 300 rows nears its 0.1
    log_window(records, rng, T0 + HOUR, 1000, shifted=True)
    write_log(store, records)
    report = store.monitoring.drift("scorer", since=T0, until=T0 + 2 * HOUR, window="1h")
    rows = store.monitoring.drift_history("scorer")
    assert len(rows) == 2 * (5 + 1)  # two windows x (five columns + the dataset row)
    assert {r.run_id for r in rows} == {report.run_id}
    dataset = [r for r in rows if r.column == DATASET]
    assert [(r.window_start, r.status, r.statistic) for r in dataset] == [
        (T0, "no_drift", 0.0),
        (T0 + HOUR, "drift", 0.8),
    ]
    latest = {r.column: r for r in store.monitoring.latest_drift()}
    assert latest["conv_rate"].window_start == T0 + HOUR and latest["conv_rate"].drifted
    not_stored = store.monitoring.drift("scorer/1", since=T0, until=T0 + HOUR, persist=False)
    assert len(store.monitoring.drift_history("scorer")) == 12
    assert json.loads(json.dumps(not_stored.to_dict()))["windows"][0]["rows"] == 1000


def test_the_monitor_chooses_columns_tests_and_thresholds(store: FeatureStore) -> None:
    (store.repo_path / "monitors.py").write_text(
        "from datetime import timedelta\nfrom parity import Monitor\n"
        "m = Monitor(name='m', model='scorer', window=timedelta(minutes=30), min_samples=10,\n"
        "            columns=('conv_rate', 'city'), tests={'conv_rate': 'psi'},\n"
        "            thresholds={'city': 0.9})\n"
    )
    store.apply()
    register(store)
    records: list[PredictionRecord] = []
    log_window(records, np.random.default_rng(5), T0 + HOUR, 300, shifted=True)
    write_log(store, records)
    report = store.monitoring.drift("scorer", since=T0 + HOUR, until=T0 + 2 * HOUR)
    assert len(report.windows) == 2  # 30-minute windows from the Monitor
    window = report.windows[0]
    assert [(c.column, c.test) for c in window.columns] == [
        ("conv_rate", "psi"),
        ("city", "jensen_shannon"),
    ]
    assert [c.status for c in window.columns] == ["drift", "no_drift"]  # city: JS < 0.9
    assert window.columns[1].threshold == 0.9
    assert report.settings.monitor == "m"


def test_a_monitor_naming_an_unknown_column_is_refused(store: FeatureStore) -> None:
    (store.repo_path / "monitors.py").write_text(
        "from parity import Monitor\nm = Monitor(name='m', model='scorer', columns=('nope',))\n"
    )
    store.apply()
    register(store)
    records: list[PredictionRecord] = []
    log_window(records, np.random.default_rng(5), T0, 10)
    write_log(store, records)
    with pytest.raises(UnknownMonitorColumn, match=r"\['nope'\].*conv_rate"):
        store.monitoring.drift("scorer", since=T0, until=T0 + HOUR)


def test_unknown_models_versions_and_empty_ranges(store: FeatureStore) -> None:
    register(store)
    records: list[PredictionRecord] = []
    log_window(records, np.random.default_rng(5), T0, 10)
    write_log(store, records)
    with pytest.raises(ModelNotFound, match="nobody"):
        store.monitoring.drift("nobody", since=T0, until=T0 + HOUR)
    with pytest.raises(ModelVersionNotFound, match="no version 9"):
        store.monitoring.drift("scorer/9", since=T0, until=T0 + HOUR)
    with pytest.raises(InsufficientData, match=r"no rows of scorer@champion.*holds no rows"):
        store.monitoring.drift("scorer@champion", since=T0 - HOUR, until=T0)
    assert store.monitoring.drift("scorer", since=T0, until=T0 + HOUR).windows[0].rows == 10


def test_an_empty_log_is_insufficient_data(store: FeatureStore) -> None:
    register(store)
    (store.repo_path / "data" / "prediction_log").mkdir()
    with pytest.raises(InsufficientData, match="no rows"):
        store.monitoring.drift("scorer", since=T0, until=T0 + HOUR)


def test_null_nan_and_infinite_logged_values_are_counted_not_fatal(store: FeatureStore) -> None:
    register(store)
    records: list[PredictionRecord] = []
    log_window(records, np.random.default_rng(5), T0, 1000)
    for i, bad in enumerate([None, float("nan"), float("inf"), "text"] * 25):
        records[i].features["conv_rate"] = bad
    records[0].features["city"] = None
    write_log(store, records)
    report = store.monitoring.drift("scorer", since=T0, until=T0 + HOUR)
    conv = next(c for c in report.windows[0].columns if c.column == "conv_rate")
    city = next(c for c in report.windows[0].columns if c.column == "city")
    assert (conv.count, conv.nulls, conv.status) == (1000, 100, "no_drift")
    assert (city.nulls, city.status) == (1, "no_drift")


def test_a_version_without_training_set_has_no_reference(store: FeatureStore) -> None:
    register(store, dataset=None)
    records: list[PredictionRecord] = []
    log_window(records, np.random.default_rng(5), T0, 10)
    write_log(store, records)
    with pytest.raises(NoReference, match="without a training dataset"):
        store.monitoring.drift("scorer", since=T0, until=T0 + HOUR)


def test_a_failed_profile_keeps_the_registration_and_is_recomputed(store: FeatureStore) -> None:
    path = Path(store.datasets.get("train_v1").path)
    frame = pd.read_parquet(path)
    moved = path.with_suffix(".away")
    path.rename(moved)
    assert register(store, frame=frame) == 1  # registered, though its training set is gone
    failed = {p.subject: p for p in store.monitoring.profiles("train_v1")}
    assert not failed["features"].ok and "no longer exists" in failed["features"].error
    records: list[PredictionRecord] = []
    log_window(records, np.random.default_rng(5), T0, 10)
    write_log(store, records)
    with pytest.raises(NoReference, match="parity monitor profile --dataset train_v1"):
        store.monitoring.drift("scorer", since=T0, until=T0 + HOUR)
    moved.rename(path)
    outcomes = store.monitoring.profile_dataset("train_v1")
    assert [(o.subject, o.stored.ok) for o in outcomes] == [
        ("features", True),
        ("model:scorer/1:outputs", True),
    ]
    assert store.monitoring.drift("scorer", since=T0, until=T0 + HOUR).windows[0].rows == 10


def test_a_model_that_fails_on_the_training_rows_is_recorded_as_failed(
    store: FeatureStore,
) -> None:
    assert register(store, model=Broken()) == 1
    profiles = {p.subject: p for p in store.monitoring.profiles("train_v1")}
    assert profiles["features"].ok
    assert not profiles["model:scorer/1:outputs"].ok
    assert "cannot score that many rows" in profiles["model:scorer/1:outputs"].error


def test_the_cli_computes_profiles_and_prints_drift(store: FeatureStore) -> None:
    from typer.testing import CliRunner

    from parity.cli.main import app

    runner = CliRunner()
    register(store)
    records: list[PredictionRecord] = []
    rng = np.random.default_rng(11)
    log_window(records, rng, T0, 600)
    log_window(records, rng, T0 + HOUR, 600, shifted=True)
    write_log(store, records)
    repo = str(store.repo_path)
    env = {"COLUMNS": "200"}
    listed = runner.invoke(
        app, ["monitor", "profile", "--dataset", "train_v1", "-r", repo], env=env
    )
    assert listed.exit_code == 0, listed.output
    assert "model:scorer/1:outputs" in listed.output and "failed" not in listed.output
    common = ["--model", "scorer@champion", "--since", T0.isoformat(), "-r", repo]
    shown = runner.invoke(
        app, ["monitor", "drift", *common, "--until", (T0 + 2 * HOUR).isoformat()], env=env
    )
    assert shown.exit_code == 0, shown.output
    assert (
        "scorer/1  2026-03-02 01:00 to 2026-03-02 02:00 UTC  600 rows  drift share 80%: DRIFT"
        in (shown.output)
    )
    as_json = runner.invoke(
        app,
        ["monitor", "drift", *common, "--window", "2h", "--until", "2026-03-02T02:00Z", "--json"],
        env=env,
    )
    assert as_json.exit_code == 0, as_json.output
    (window,) = json.loads(as_json.output)["windows"]
    assert (window["rows"], window["start"], window["end"]) == (
        1200,
        "2026-03-02T00:00:00+00:00",
        "2026-03-02T02:00:00+00:00",
    )
    page = store.repo_path / "drift.html"
    with_html = runner.invoke(
        app, ["monitor", "drift", *common, "--until", "2026-03-02T02:00Z", "--html", str(page)]
    )
    assert with_html.exit_code == 0, with_html.output
    assert f"wrote {page}" in with_html.output.replace("\n", "")
    assert page.read_text().startswith("<!DOCTYPE html>") and "conv_rate" in page.read_text()
    bad = runner.invoke(app, ["monitor", "drift", *common, "--window", "soon"], env=env)
    assert bad.exit_code == 1 and "invalid_window" in bad.output


def test_the_model_server_exports_the_latest_drift_over_http(store: FeatureStore) -> None:
    from parity.inference.app import create_model_app
    from tests.inference.serving_helpers import running

    register(store)
    records: list[PredictionRecord] = []
    rng = np.random.default_rng(11)
    log_window(records, rng, T0, 600)
    log_window(records, rng, T0 + HOUR, 600, shifted=True)
    write_log(store, records)
    report = store.monitoring.drift("scorer", since=T0, until=T0 + 2 * HOUR)
    latest = {c.column: c for c in report.windows[-1].columns}
    with running(create_model_app(store)) as address:
        text = _get(f"http://{address}/metrics")
    conv = latest["conv_rate"]
    assert (
        f'parity_feature_drift{{feature="conv_rate",model="scorer",test="wasserstein",'
        f'version="1"}} {conv.statistic}' in text
    )
    assert 'parity_dataset_drift_share{model="scorer",version="1"} 0.8' in text


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_columns_tested_in_parallel_give_the_serial_verdicts(store: FeatureStore) -> None:
    from parity.monitoring import drift

    register(store)
    records: list[PredictionRecord] = []
    rng = np.random.default_rng(11)
    log_window(records, rng, T0, 600)
    log_window(records, rng, T0 + HOUR, 600, shifted=True)
    write_log(store, records)
    serial = store.monitoring.drift("scorer", since=T0, until=T0 + 2 * HOUR, persist=False)
    saved = drift.PARALLEL_ROWS
    drift.PARALLEL_ROWS = 1
    try:
        parallel = store.monitoring.drift("scorer", since=T0, until=T0 + 2 * HOUR, persist=False)
    finally:
        drift.PARALLEL_ROWS = saved
    assert [w.columns for w in parallel.windows] == [w.columns for w in serial.windows]
    assert [c.column for c in parallel.windows[1].columns] == [
        "conv_rate",
        "trips",
        "city",
        "bonus",
        "output",
    ]


def test_a_feature_the_log_never_holds_is_named_not_taken_for_nulls(store: FeatureStore) -> None:
    register(store)
    records: list[PredictionRecord] = []
    log_window(records, np.random.default_rng(5), T0, 200)
    for record in records:
        record.features["driver_stats__city"] = record.features.pop("city")
    write_log(store, records)
    window = store.monitoring.drift("scorer", since=T0, until=T0 + HOUR).windows[0]
    city = next(c for c in window.columns if c.column == "city")
    assert city.status == "no_data"
    assert "'city' is not in the logged features of scorer/1" in city.reason
    assert "driver_stats__city" in city.reason
    conv = next(c for c in window.columns if c.column == "conv_rate")
    assert "not in the logged" not in conv.reason


class TwoOutputs(Scorer):
    def label(self, frame: Any) -> Any:
        return (self.predict(frame) > 0.8).astype(np.int64)

    def proba(self, frame: Any) -> Any:
        score = np.clip(self.predict(frame), 0, 1)
        return np.column_stack([1 - score, score])


def test_each_one_value_output_of_a_several_output_model_is_tested(store: FeatureStore) -> None:
    frame = pd.read_parquet(store.datasets.get("train_v1").path)
    store.models.register_model(
        "scorer",
        TwoOutputs(),
        flavor="pyfunc",
        training_dataset="train_v1",
        sample_input=frame[["conv_rate", "trips", "bonus"]].head(5),
        predict_method={"score": "predict", "label": "label", "proba": "proba"},
    )
    outputs = next(p for p in store.monitoring.profiles() if p.subject.endswith(":outputs"))
    assert list(Profile.from_json(str(outputs.profile)).columns) == ["score", "label"]
    records: list[PredictionRecord] = []
    rng = np.random.default_rng(11)
    log_window(records, rng, T0, 600)
    log_window(records, rng, T0 + HOUR, 600, shifted=True)
    for record in records:
        score = float(record.prediction)
        record.prediction = {"score": score, "label": int(score > 0.8), "proba": [1 - score, score]}
    write_log(store, records)
    first, second = store.monitoring.drift("scorer", since=T0, until=T0 + 2 * HOUR).windows
    kinds = {c.column: (c.kind, c.status) for c in first.columns}
    assert kinds["score"] == ("output", "no_drift") and kinds["label"] == ("output", "no_drift")
    assert {c.column: c.status for c in second.columns}["score"] == "drift"
    assert {c.column: c.count - c.nulls for c in second.columns}["label"] == 600
