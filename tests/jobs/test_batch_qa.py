"""Batch predictions, replayed as a user would (QA of issue 15): each test is a defect found that
way, failing before its fix. Output paths that would destroy the run's own data or cannot be
written, a zero batch size, a NaT as_of, a DataFrame with duplicate column names."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from parity.errors import (
    EntityFrameError,
    InvalidPredictionInput,
    OnlineStoreUnavailable,
    PredictFailed,
    ScoreViewMismatch,
)
from parity.jobs.batch_predict import read_metadata
from tests.jobs.batch_helpers import T0, make_store

MODEL = "driver_model@champion"
VIEW = "driver_scores"  # batch_helpers: a Float64 field "score" reading out/scores.parquet
runner = CliRunner()


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return make_store(tmp_path / "repo")


def _entities(days: tuple[int, ...] = (2, 3, 4)) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "driver_id": [1 + i % 3 for i in range(len(days))],
            "amount": [5.0 + i for i in range(len(days))],
            "event_timestamp": [T0 + timedelta(days=d) for d in days],
        }
    )


def test_out_equal_to_the_entities_file_is_refused_and_the_file_kept(store: FeatureStore) -> None:
    # Before: the scores were renamed over the input, silently destroying it.
    path = store.repo_path / "entities.parquet"
    _entities().to_parquet(path)
    before = path.read_bytes()
    for given in (str(path), str(store.repo_path / "ent*.parquet")):
        with pytest.raises(InvalidPredictionInput, match="entities file itself"):
            store.jobs.predict_batch(MODEL, given, out=str(path))
    assert path.read_bytes() == before


def test_out_read_by_a_view_of_the_models_features_is_refused(store: FeatureStore) -> None:
    # Before: --out data/driver_stats.parquet replaced the feature data the model reads.
    source = store.repo_path / "data" / "driver_stats.parquet"
    before = source.read_bytes()
    with pytest.raises(InvalidPredictionInput, match="feature view 'driver_stats'"):
        store.jobs.predict_batch(MODEL, _entities(), out=str(source))
    assert source.read_bytes() == before
    # a score view outside the model's features may be written (its documented use)
    scores = store.repo_path / "out" / "scores.parquet"
    assert store.jobs.predict_batch(MODEL, _entities(), out=str(scores)).rows == 3


def test_out_that_is_a_folder_is_refused_before_any_work(store: FeatureStore) -> None:
    # Before: IsADirectoryError from os.replace, after the whole run.
    folder = store.repo_path / "out"
    folder.mkdir()
    with pytest.raises(InvalidPredictionInput, match="is a folder"):
        store.jobs.predict_batch(MODEL, _entities(), out=str(folder))


def test_out_that_cannot_be_written_is_a_typed_error(store: FeatureStore, tmp_path: Path) -> None:
    # Before: a bare FileNotFoundError / NotADirectoryError (a traceback in the CLI).
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(InvalidPredictionInput, match="cannot be written"):
        store.jobs.predict_batch(MODEL, _entities(), out=str(blocker / "scores.parquet"))
    assert blocker.read_text() == "not a folder"


def test_cli_output_path_errors_are_one_line(store: FeatureStore, tmp_path: Path) -> None:
    entities = tmp_path / "ents.parquet"
    _entities().to_parquet(entities)
    base = ["predict", "batch", "--model", MODEL, "--entities", str(entities)]
    for out in (str(tmp_path), str(entities), str(tmp_path / "ents.parquet" / "x.parquet")):
        result = runner.invoke(app, [*base, "--out", out, "--repo", str(store.repo_path)])
        assert result.exit_code == 1, result.output
        assert "[invalid_prediction_input]" in result.output
        assert "Traceback" not in result.output


def test_a_zero_batch_size_is_refused_not_read_as_the_default(store: FeatureStore) -> None:
    # Before: store.jobs.predict_batch(batch_size=0) (and --batch-size 0) silently used 65,536.
    out = str(store.repo_path / "out" / "scores.parquet")
    with pytest.raises(InvalidPredictionInput, match="batch_size must be at least 1"):
        store.jobs.predict_batch(MODEL, _entities(), out=out, batch_size=0)
    assert not Path(out).exists()


def test_a_nat_as_of_is_a_typed_error(store: FeatureStore) -> None:
    # Before: ValueError "NaTType does not support astimezone".
    frame = _entities().drop(columns="event_timestamp")
    with pytest.raises(InvalidPredictionInput, match="not a time"):
        store.jobs.predict_batch(MODEL, frame, out=str(store.repo_path / "o.parquet"), as_of=pd.NaT)


def test_duplicate_column_names_in_a_dataframe_are_a_typed_error(store: FeatureStore) -> None:
    # Before: pyarrow's bare ValueError "Duplicate column names found".
    frame = _entities()
    frame.columns = ["driver_id", "driver_id", "event_timestamp"]
    with pytest.raises(EntityFrameError, match="Duplicate column names"):
        store.jobs.predict_batch(MODEL, frame, out=str(store.repo_path / "o.parquet"))


def test_scores_are_right_after_the_checks(store: FeatureStore) -> None:
    """The checks refuse only what they must: a normal run to a new file in a new folder still
    writes one score per entity row, in order."""
    out = store.repo_path / "new" / "deeper" / "scores.parquet"
    frame = _entities((2, 3, 4, 2))
    result = store.jobs.predict_batch(MODEL, frame, out=str(out))
    table = pq.read_table(out)
    assert result.rows == table.num_rows == 4
    assert table.column("driver_id").to_pylist() == frame["driver_id"].tolist()


def test_a_score_view_typed_other_than_the_output_is_refused(store: FeatureStore) -> None:
    # Before: an Int64 score view took the float scores truncated to 0, online and offline alike.
    (store.repo_path / "int_scores.py").write_text(
        "from drivers import driver\n"
        "from parity import FeatureView, Field, FileSource, Int64\n"
        "int_scores = FeatureView(name='int_scores', entities=[driver],\n"
        "    schema=[Field(name='score', dtype=Int64)], source=FileSource(path='out/int.parquet'))\n"
    )
    store.apply(check_sources=False)
    out = store.repo_path / "out" / "int.parquet"
    with pytest.raises(ScoreViewMismatch, match="'score' is declared Int64"):
        store.jobs.predict_batch(MODEL, _entities(), out=str(out), to_online="int_scores")
    assert not out.exists()
    # the Float64 view of the same output is taken
    result = store.jobs.predict_batch(
        MODEL,
        _entities(),
        out=str(store.repo_path / "out" / "scores.parquet"),
        to_online="driver_scores",
    )
    assert result.online_rows == 3


def _closed_port() -> int:
    with socket.socket() as probe:  # bound then closed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_an_online_store_that_fails_leaves_the_previous_output(tmp_path: Path) -> None:
    # Before: the file was renamed over --out, then the online write failed (exit 1): the
    # "failed run leaves the previous output untouched" promise broken, offline ahead of online.
    extra = f"online:\n  type: redis\n  connection_string: redis://127.0.0.1:{_closed_port()}/0\n"
    store = make_store(tmp_path / "repo", extra=extra)
    out = store.repo_path / "out" / "scores.parquet"
    out.parent.mkdir()
    pq.write_table(pa.table({"previous": ["run"]}), out)
    before = out.read_bytes()
    with pytest.raises(OnlineStoreUnavailable):
        store.jobs.predict_batch(MODEL, _entities(), out=str(out), to_online="driver_scores")
    assert out.read_bytes() == before
    assert [p.name for p in out.parent.iterdir()] == ["scores.parquet"]  # no temporary left


def test_as_of_now_is_the_runs_clock_reading_in_json_and_lineage(
    store: FeatureStore, tmp_path: Path
) -> None:
    # Before: "now" read the clock a second time (as_of later than created_at), and --json
    # printed as_of as str(datetime) ("2026-01-11 00:00:00+00:00"), not ISO 8601.
    entities = tmp_path / "ents.parquet"
    _entities().drop(columns="event_timestamp").to_parquet(entities)
    out = tmp_path / "now.parquet"
    args = ["predict", "batch", "--model", MODEL, "--entities", str(entities), "--out", str(out)]
    result = runner.invoke(app, [*args, "--as-of", "now", "--json", "--repo", str(store.repo_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    lineage = read_metadata(out)
    assert summary["as_of"] == lineage["as_of"] == lineage["created_at"]
    assert datetime.fromisoformat(summary["as_of"]).tzinfo is not None
    times = pq.read_table(out).column("event_timestamp").to_pylist()
    assert {t.isoformat() for t in times} == {summary["as_of"]}


def test_times_in_different_zones_are_the_same_instants_as_in_utc(store: FeatureStore) -> None:
    # Before: an object column of aware datetimes (or ISO texts) whose zones differ was refused,
    # "Give datetimes of one kind: all timezone-aware, or all naive", though all were aware.
    frame = _entities((2, 3, 4))
    zones = [timezone(timedelta(hours=h)) for h in (0, 2, -5)]
    moments = [
        t.to_pydatetime().astimezone(z) for t, z in zip(frame.event_timestamp, zones, strict=True)
    ]
    utc = store.repo_path / "utc.parquet"
    expected = store.jobs.predict_batch(MODEL, frame, out=str(utc))
    assert expected.rows == 3
    for column in (pd.Series(moments, dtype=object), [m.isoformat() for m in moments]):
        out = store.repo_path / "zones.parquet"
        store.jobs.predict_batch(MODEL, frame.assign(event_timestamp=column), out=str(out))
        assert pq.read_table(out).to_pydict() == pq.read_table(utc).to_pydict()
    naive_and_aware = pd.Series([moments[0].replace(tzinfo=None), *moments[1:]], dtype=object)
    with pytest.raises(EntityFrameError, match="one kind"):
        store.jobs.predict_batch(
            MODEL, frame.assign(event_timestamp=naive_and_aware), out=str(store.repo_path / "x")
        )


def test_an_arrow_table_with_a_key_twice_is_a_typed_error(store: FeatureStore) -> None:
    # Before: KeyError 'Field "driver_id" exists 2 times in schema' from Table.select.
    frame = _entities()
    table = pa.table(
        [pa.array(frame[c]) for c in ("driver_id", "amount", "amount", "event_timestamp")],
        names=["driver_id", "driver_id", "amount", "event_timestamp"],  # amount as a second key
    )
    with pytest.raises(InvalidPredictionInput, match="2 columns named 'driver_id'"):
        store.jobs.predict_batch(MODEL, table, out=str(store.repo_path / "o.parquet"))


def test_a_half_float_request_input_scores_as_its_exact_value(store: FeatureStore) -> None:
    # Before: DuckDB's NotImplementedException "Unsupported Internal Arrow Type e" (a traceback).
    frame = _entities()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    half = pa.array(frame.amount.to_numpy().astype(np.float16))
    table = table.set_column(table.schema.get_field_index("amount"), "amount", half)
    out, reference = store.repo_path / "half.parquet", store.repo_path / "double.parquet"
    store.jobs.predict_batch(MODEL, table, out=str(out))
    store.jobs.predict_batch(MODEL, frame, out=str(reference))  # 5.0, 6.0, 7.0 are exact halves
    assert pq.read_table(out).to_pydict() == pq.read_table(reference).to_pydict()


class MixedOutputModel:
    """Answers a number for some rows and text for others (an object array of both)."""

    def predict(self, frame: Any) -> Any:
        return np.array([1.0 if i % 2 else "high" for i in range(len(frame))], dtype=object)


def test_a_model_output_of_mixed_types_fails_the_run_typed(store: FeatureStore) -> None:
    # Before: pyarrow's bare ArrowInvalid "Could not convert 'high' with type str".
    sample = pd.DataFrame({"conv_rate": [0.5, 0.1], "trips": [3.0, 4.0], "amount": [1.0, 2.0]})
    store.models.register_model(
        "mixed",
        MixedOutputModel(),
        flavor="pyfunc",
        feature_service="driver_service",
        sample_input=sample,
        alias="champion",
    )
    out = store.repo_path / "mixed.parquet"
    with pytest.raises(PredictFailed, match="model output 'output' cannot be stored"):
        store.jobs.predict_batch("mixed@champion", _entities(), out=str(out))
    assert not out.exists()


def test_empty_entities_text_is_refused(store: FeatureStore, tmp_path: Path) -> None:
    # Before: "" was the working folder, so every Parquet file under it was read as entities.
    out = str(store.repo_path / "o.parquet")
    for text in ("", "  "):
        with pytest.raises(InvalidPredictionInput, match="entities is empty"):
            store.jobs.predict_batch(MODEL, text, out=out)
    args = ["predict", "batch", "--model", MODEL, "--entities", "", "--out", out]
    result = runner.invoke(app, [*args, "--repo", str(store.repo_path)])
    assert result.exit_code == 1 and "entities is empty" in result.output


class TwoClassModel:
    """predict_proba: [1 - p, p] per row with p = amount / 100 (predict: p)."""

    def predict(self, frame: Any) -> Any:
        return self.predict_proba(frame)[:, 1]

    def predict_proba(self, frame: Any) -> Any:
        p = frame["amount"].to_numpy(dtype="float64") / 100.0
        return np.stack([1.0 - p, p], axis=1)


def test_a_list_output_into_a_scalar_score_view_is_refused(store: FeatureStore) -> None:
    # Before: DuckDB's ConversionException (DOUBLE[] -> DOUBLE), a traceback after scoring.
    sample = pd.DataFrame({"conv_rate": [0.5, 0.1], "trips": [3.0, 4.0], "amount": [1.0, 2.0]})
    store.models.register_model(
        "two_class",
        TwoClassModel(),
        flavor="pyfunc",
        feature_service="driver_service",
        sample_input=sample,
        predict_method={"score": "predict_proba"},
        alias="champion",
    )
    out = store.repo_path / "out" / "scores.parquet"
    with pytest.raises(ScoreViewMismatch, match=r"'score' is declared Float64.*list<"):
        store.jobs.predict_batch("two_class@champion", _entities(), out=str(out), to_online=VIEW)
    assert not out.exists()
    written = store.jobs.predict_batch("two_class@champion", _entities(), out=str(out))
    scores = pq.read_table(out).column("score").to_pylist()
    assert written.rows == 3 and scores == [[1 - a / 100, a / 100] for a in (5.0, 6.0, 7.0)]


def test_out_that_is_an_existing_file_other_than_parquet_is_refused(store: FeatureStore) -> None:
    # Before: --out data/registry.db (or parity.yaml) was replaced by the scores.
    registry = store.repo_path / "data" / "registry.db"
    config = store.repo_path / "parity.yaml"
    for path in (registry, config):
        before = path.read_bytes()
        with pytest.raises(InvalidPredictionInput, match="not a Parquet file"):
            store.jobs.predict_batch(MODEL, _entities(), out=str(path))
        assert path.read_bytes() == before
    assert store.models.resolve(MODEL).version == 1  # the registry still answers
    empty = store.repo_path / "touched.parquet"  # an empty file (`touch`) may be written
    empty.touch()
    assert store.jobs.predict_batch(MODEL, _entities(), out=str(empty)).rows == 3


def test_two_runs_of_one_process_to_the_same_out_both_finish(store: FeatureStore) -> None:
    # Before: both wrote the temporary file .NAME.PID.tmp; one removed the other's, which then
    # failed ("cannot be written"), or renamed a file the other was still writing.
    frame = pd.concat([_entities((2, 3, 4, 5))] * 2_000, ignore_index=True)
    out = store.repo_path / "same.parquet"

    def run(_: int) -> int:
        result = store.jobs.predict_batch(MODEL, frame, out=str(out), batch_size=500)
        return int(result.rows)

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(run, range(2))) == [8_000, 8_000]
    single = store.repo_path / "single.parquet"
    store.jobs.predict_batch(MODEL, frame, out=str(single))
    assert pq.read_table(out).to_pydict() == pq.read_table(single).to_pydict()


def test_an_empty_run_writes_the_columns_a_run_with_rows_writes(store: FeatureStore) -> None:
    # Before: a 2-D output's column was float64 in an empty file and a list with rows, so a
    # folder or glob of batch files mixed two types for one column.
    sample = pd.DataFrame({"conv_rate": [0.5, 0.1], "trips": [3.0, 4.0], "amount": [1.0, 2.0]})
    store.models.register_model(
        "two_class",
        TwoClassModel(),
        flavor="pyfunc",
        feature_service="driver_service",
        sample_input=sample,
        predict_method={"label": "predict", "score": "predict_proba"},
        alias="champion",
    )
    full, empty = store.repo_path / "full.parquet", store.repo_path / "empty.parquet"
    store.jobs.predict_batch("two_class@champion", _entities(), out=str(full))
    store.jobs.predict_batch("two_class@champion", _entities().head(0), out=str(empty))
    assert pq.read_table(empty).num_rows == 0
    assert pq.read_schema(empty).remove_metadata() == pq.read_schema(full).remove_metadata()


def test_as_of_is_recorded_in_utc_to_the_microsecond_the_rows_hold(store: FeatureStore) -> None:
    # Before: a +05:00 or nanosecond as_of was recorded as given (lineage and summary differed
    # from the rows' event_timestamp), and one before year 1 in UTC raised OverflowError.
    frame = _entities().drop(columns="event_timestamp")
    out = store.repo_path / "o.parquet"
    given = pd.Timestamp("2026-01-05T05:00:00.123456789+05:00")
    result = store.jobs.predict_batch(MODEL, frame, out=str(out), as_of=given)
    stamped = pq.read_table(out).column("event_timestamp")[0].as_py()
    assert result.as_of == stamped == datetime(2026, 1, 5, 0, 0, 0, 123456, tzinfo=UTC)
    assert read_metadata(out)["as_of"] == "2026-01-05T00:00:00.123456+00:00"
    with pytest.raises(InvalidPredictionInput, match="before 0001-01-01"):
        store.jobs.predict_batch(MODEL, frame, out=str(out), as_of="0001-01-01T00:00:00+05:00")
