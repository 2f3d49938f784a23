"""Gates see the prediction log's rows before they are rotated into Parquet: the in-progress
segments a live `ParquetLogSink` appends to are read with the files (complete lines only, torn
ones skipped, never the flock taken), each row once even when a segment is converted mid-read."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity import FeatureStore, Gate, Phase
from parity.deploy.evidence import check_gates, read_window
from parity.inference import predlog_live
from parity.inference.app import create_model_app, prediction_logger
from parity.inference.predlog import (
    ParquetLogSink,
    PredictionLogger,
    PredictionRecord,
    _json_encoder,
    log_schema,
)
from parity.inference.predlog_live import lines_sql, live_lines, unrotated
from parity.inference.predlog_segment import convert, encode_lines, final_name
from parity.monitoring import logs
from parity.monitoring.logs import connect_duckdb, log_files, log_segments
from tests.deploy.test_gates_log import (
    ERRORS,
    LATENCY,
    NOW,
    STEP,
    log_folder,
    rollout,
    state_of,
    store,
)
from tests.inference.rollout_helpers import NOW as SERVED_AT
from tests.inference.rollout_helpers import RAISING, rollout_store
from tests.inference.serving_helpers import running

__all__ = ["store"]  # the fixture, shared with test_gates_log

INSIDE = STEP + timedelta(minutes=10)


def record(
    i: int, version: int, role: str | None, *, at: datetime = INSIDE, **changes: Any
) -> PredictionRecord:
    fields: dict[str, Any] = {
        "request_id": f"r{i}-{version}-{role}",
        "at": at + timedelta(milliseconds=i),
        "model": "fraud",
        "version": version,
        "entities": {"account_id": i},
        "features": {"amount": 1.5},
        "prediction": 0.5,
        "latency_ms": 1.0 + i,
        "role": role,
    }
    fields.update(changes)
    return PredictionRecord(**fields)


def traffic() -> list[PredictionRecord]:
    """10 canary rows (4 errors), 20 champion rows, and rows the window must not count."""
    canary = [
        record(i, 2, "canary", status="error" if i < 4 else "ok", prediction=None if i < 4 else 0.7)
        for i in range(10)
    ]
    champion = [record(i, 1, "champion") for i in range(20)]
    outside = [
        record(0, 2, "canary", at=STEP - timedelta(seconds=1), status="error"),  # before the step
        record(0, 1, "champion", at=NOW),  # at now: excluded
        record(1, 1, "champion", at=NOW + timedelta(minutes=1)),
        record(0, 2, "canary", model="other", status="error"),  # another model
        record(1, 2, None),  # asked for by version: not routed
    ]
    return canary + champion + outside


@pytest.fixture
def logger(store: FeatureStore) -> Iterator[PredictionLogger]:
    """The model server's logger and sink: rotation only after 300 s (never in a test)."""
    with PredictionLogger(ParquetLogSink(log_folder(store)), flush_interval_s=0.05) as opened:
        yield opened


def written(store: FeatureStore, logger: PredictionLogger, records: list[PredictionRecord]) -> Path:
    """Log the records, wait until they are in the segment; the one live segment."""
    for item in records:
        assert logger.log(item)
    assert logger.flush(timeout=10)
    (segment,) = log_segments(log_folder(store), STEP, NOW)
    return segment


def p99(values: list[float]) -> float:
    return float(np.quantile(values, 0.99, method="inverted_cdf"))


# --- rows not yet rotated ----------------------------------------------------------------------


def test_rows_not_yet_rotated_are_counted_and_fail_the_error_gate(
    store: FeatureStore, logger: PredictionLogger
) -> None:
    written(store, logger, traffic())
    assert log_files(log_folder(store), STEP, NOW) == []  # nothing rotated into Parquet yet
    outcome = check_gates(store, state_of(rollout(LATENCY, ERRORS)), NOW)
    assert outcome.samples == {"candidate": 10, "champion": 20}
    latency, errors = outcome.results
    assert (errors.verdict, errors.candidate, errors.champion) == ("fail", 0.4, 0.0)
    answered = [1.0 + i for i in range(4, 10)]  # the canary's ok rows
    assert (latency.candidate, latency.champion) == (
        p99(answered),
        p99([1.0 + i for i in range(20)]),
    )
    logger.close()  # rotates the segment into its Parquet file: the same rows, read once
    assert log_segments(log_folder(store), STEP, NOW) == []
    assert len(log_files(log_folder(store), STEP, NOW)) == 1
    again = check_gates(store, state_of(rollout(LATENCY, ERRORS)), NOW)
    assert again.samples == outcome.samples
    assert [(r.candidate, r.champion) for r in again.results] == [
        (r.candidate, r.champion) for r in outcome.results
    ]


def test_segment_rows_join_the_parquet_files_of_the_window(
    store: FeatureStore, logger: PredictionLogger
) -> None:
    with PredictionLogger(ParquetLogSink(log_folder(store))) as earlier:  # rotated at close
        for i in range(3):
            earlier.log(record(100 + i, 2, "canary"))
    assert len(log_files(log_folder(store), STEP, NOW)) == 1
    written(store, logger, traffic())
    read = read_window(log_folder(store), "fraud", (2, 1), STEP, NOW, detail=True)
    assert read.samples() == {"candidate": 13, "champion": 20}
    assert read.detail is not None
    ids = read.detail.column("request_id").to_pylist()
    assert len(ids) == len(set(ids)) == 33
    times = read.detail.column("event_timestamp").to_pylist()
    assert all(STEP <= t < NOW and t.tzinfo is not None for t in times)


def test_scores_of_segment_rows_are_read_like_the_files(
    store: FeatureStore, logger: PredictionLogger
) -> None:
    outputs = {"label": 1, "probability": 0.75}
    written(store, logger, [record(0, 2, "canary", prediction=outputs), record(1, 1, "champion")])
    scores = {"probability": ("probability", None)}
    read = read_window(log_folder(store), "fraud", (2, 1), STEP, NOW, scores=scores)
    candidate, champion = read.masks()
    assert read.scores["probability"][candidate].tolist() == [0.75]
    assert read.scores["probability"][champion].tolist() == [0.5]


def test_a_partial_trailing_line_or_a_torn_line_is_skipped(
    store: FeatureStore, logger: PredictionLogger
) -> None:
    segment = written(store, logger, traffic())
    line = segment.read_bytes().split(b"\n")[0]  # a canary error row of the window
    inside = str(int((INSIDE - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)))
    with segment.open("ab") as handle:  # what a reader can see of another writer's segment
        for bad in BAD_LINES + HUGE:  # not rows, some in the window: skipped, never an error
            handle.write(bad.replace(b'["a", 1,', b'["a", ' + inside.encode() + b","))
        handle.write(line[:-5])  # a row being appended right now
    outcome = check_gates(store, state_of(rollout(ERRORS)), NOW)
    assert outcome.samples == {"candidate": 10, "champion": 20}
    with segment.open("ab") as handle:
        handle.write(line[-5:])  # the rest of it, without its newline yet
    assert check_gates(store, state_of(rollout(ERRORS)), NOW).samples["candidate"] == 10
    with segment.open("ab") as handle:
        handle.write(b"\n")  # now it is complete
    assert check_gates(store, state_of(rollout(ERRORS)), NOW).samples["candidate"] == 11


def decoded(segment: Path) -> list[dict[str, Any]]:
    """The segment's rows as the gates read them: its complete lines through `lines_sql`."""
    with connect_duckdb() as connection:
        connection.register("lines", pa.table({"line": live_lines(segment)}))
        table = connection.sql(lines_sql("lines")).to_arrow_table()
    return table.cast(log_schema()).to_pylist()  # type: ignore[no-any-return]


def recovered(segment: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """The same segment's rows as recovery writes them to Parquet (the independent decoder)."""
    copy = tmp_path / "recovered" / segment.name
    copy.parent.mkdir()
    shutil.copy(segment, copy)
    _, unreadable = convert(copy, 1_000)  # never fails on a line: counts it unreadable
    assert unreadable == len(BAD_LINES) - 1 + len(HUGE)  # (a blank line is not counted)
    final = final_name(copy)
    return pq.read_table(final).to_pylist() if final.exists() else []


def good_lines() -> list[bytes]:
    records = [
        record(0, 2, "canary", prediction={"label": 1, "p": 0.25}, alias="champion"),
        record(1, 1, "champion", prediction=float("nan"), latency_ms=float("inf")),
        record(2, 2, "shadow", request_id='ünïcødé "quoted" \\ \n', status="timeout"),
        record(3, 1, None, entities={"k": [1, 2, {"x": None}]}, at=datetime(1, 1, 1, tzinfo=UTC)),
    ]
    lines = encode_lines(records, _json_encoder())
    old = ["old", 1_777_636_800_000_000, "fraud", 1, None, "{}", "{}", "0.5", 7, "ok"]
    return [*lines, orjson.dumps(old) + b"\n"]  # written before the role column


BAD_LINES = [
    b'["torn", 17\n',
    b'{"not": "an array"}\n',
    b"5\n",
    b"\n",
    b"[]\n",
    b'["a", 1, "fraud", "2", null, "{}", "{}", "1", 1.0, "ok", "canary"]\n',  # version as text
    b'["a", 1.5, "fraud", 2, null, "{}", "{}", "1", 1.0, "ok", "canary"]\n',  # time not an int
    b'["a", 1, "fraud", true, null, "{}", "{}", "1", 1.0, "ok", "canary"]\n',
    b'["a", 1, null, 2, null, "{}", "{}", "1", 1.0, "ok", "canary"]\n',  # no model
    b'["a", 1, "fraud", 2, null, "{}", "{}", "1", 1.0, "ok", 5]\n',  # role not text
    b'["a", 1, "fraud", 2, null, "{}", "{}", "1", 1.0]\n',  # too short
    b'["a", 1, "fraud", 2, null, "{}", "{}", "1", 1.0, "ok", "canary", 1]\n',  # too long
    b'["\xff\xfe", 1, "fraud", 2, null, "{}", "{}", "1", 1.0, "ok", "canary"]\n',  # not UTF-8
]
HUGE = [  # numbers no log column holds (a time past year 9999): recovery skips them too
    b'["a", 100000000000000000000, "fraud", 2, null, "{}", "{}", "1", 1.0, "ok", "canary"]\n',
    b'["a", 9000000000000000000, "fraud", 2, null, "{}", "{}", "1", 1.0, "ok", "canary"]\n',
    b'["a", 1, "fraud", 18446744073709551615, null, "{}", "{}", "1", 1.0, "ok", "canary"]\n',
]


def test_live_lines_read_like_recovery_reads_them(tmp_path: Path) -> None:
    segment = tmp_path / ".predictions-x.parquet.inprogress"
    good = good_lines()
    segment.write_bytes(b"".join(good[:2] + BAD_LINES + HUGE + good[2:]))
    expected = recovered(segment, tmp_path)
    assert len(expected) == len(good)  # the bad lines are not rows to recovery either
    with segment.open("ab") as handle:
        handle.write(good[0][:-1])  # a line being appended right now: no newline yet
    rows = decoded(segment)
    assert rows == expected
    assert rows[1]["prediction"] == "null" and rows[1]["latency_ms"] is None  # NaN, inf
    assert rows[2]["request_id"] == 'ünïcødé "quoted" \\ \n'
    assert rows[3]["event_timestamp"] == datetime(1, 1, 1, 0, 0, 0, 3000, tzinfo=UTC)  # + 3 ms
    assert (rows[4]["role"], rows[4]["latency_ms"]) == (None, 7.0)
    for empty in (b"", b"\n\n", b'["no newline yet"'):
        segment.write_bytes(empty)
        assert decoded(segment) == []


# --- a segment converted while the gates read ---------------------------------------------------


def test_a_segment_and_its_parquet_file_both_listed_count_once(
    store: FeatureStore, logger: PredictionLogger
) -> None:
    segment = written(store, logger, traffic())
    kept = segment.read_bytes()
    logger.close()  # converted: NAME.parquet written, the segment removed
    assert final_name(segment).exists() and not segment.exists()
    segment.write_bytes(kept)  # as a listing between the rename and the unlink sees it
    outcome = check_gates(store, state_of(rollout(ERRORS)), NOW)
    assert outcome.samples == {"candidate": 10, "champion": 20}


def test_rotation_between_the_two_listings_counts_once(
    store: FeatureStore, logger: PredictionLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    written(store, logger, traffic())
    real = logs.log_files

    def rotating(*args: Any) -> list[str]:  # the writer rotates after the segments are listed
        logger.close()
        return real(*args)

    monkeypatch.setattr(logs, "log_files", rotating)
    outcome = check_gates(store, state_of(rollout(ERRORS)), NOW)
    assert outcome.samples == {"candidate": 10, "champion": 20}


def test_rotation_after_the_listings_reads_the_new_parquet_file(
    store: FeatureStore, logger: PredictionLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    segment = written(store, logger, traffic())
    real = predlog_live.live_lines

    def rotating(path: Path) -> Any:  # converted after both listings, before it is read
        logger.close()
        return real(path)

    monkeypatch.setattr(predlog_live, "live_lines", rotating)
    outcome = check_gates(store, state_of(rollout(ERRORS)), NOW)
    assert outcome.samples == {"candidate": 10, "champion": 20}
    assert not segment.exists()


def test_unrotated_prefers_the_parquet_file_and_skips_a_vanished_empty_segment(
    tmp_path: Path,
) -> None:
    segment = tmp_path / ".predictions-a.parquet.inprogress"
    segment.write_bytes(b"")
    final = str(final_name(segment))
    assert final == str(tmp_path / "predictions-a.parquet")
    assert unrotated([segment], [final]) == ([final], None)  # converted between the listings
    segment.unlink()
    assert unrotated([segment], []) == ([], None)  # gone with no rows: nothing to read
    Path(final).write_bytes(b"PAR1")
    assert unrotated([segment], []) == ([final], None)  # converted after both listings


# --- which segments -----------------------------------------------------------------------------


def test_only_the_window_days_segments_are_listed(store: FeatureStore) -> None:
    folder = log_folder(store)
    day = STEP.date()
    names = {}
    for offset in (-1, 0, 1):
        sub = folder / f"date={day + timedelta(days=offset)}"
        sub.mkdir(parents=True)
        names[offset] = sub / f".predictions-{offset}.parquet.inprogress"
        names[offset].write_bytes(b"")
        (sub / f".predictions-{offset}.parquet.converting").write_bytes(b"")
        (sub / f"predictions-{offset}.parquet").write_bytes(b"")
    (folder / "date=junk").mkdir()
    (folder / "date=junk" / ".predictions-j.parquet.inprogress").write_bytes(b"")
    assert log_segments(folder, STEP, NOW) == [names[0]]
    midnight = datetime.combine(day, datetime.min.time(), UTC) + timedelta(days=1)
    assert log_segments(folder, midnight - timedelta(hours=1), midnight + timedelta(hours=1)) == [
        names[0],
        names[1],
    ]
    assert log_segments(folder / "missing", STEP, NOW) == []


def test_a_log_of_segments_only_before_the_role_column_counts_nothing(
    store: FeatureStore,
) -> None:
    folder = log_folder(store) / f"date={STEP.date()}"
    folder.mkdir(parents=True)
    us = int((INSIDE - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)
    line = ["a", us, "fraud", 2, None, "{}", "{}", "0.5", 2.5, "error"]  # no role: not routed
    (folder / ".predictions-old.parquet.inprogress").write_bytes(orjson.dumps(line) + b"\n")
    outcome = check_gates(store, state_of(rollout(ERRORS)), NOW)
    assert outcome.samples == {"candidate": 0, "champion": 0}
    assert outcome.results[0].verdict == "inconclusive"


def test_an_unreadable_segment_makes_the_gates_inconclusive(store: FeatureStore) -> None:
    folder = log_folder(store) / f"date={STEP.date()}"
    folder.mkdir(parents=True)
    (folder / ".predictions-dir.parquet.inprogress").mkdir()  # not a file: cannot be read
    outcome = check_gates(store, state_of(rollout(ERRORS)), NOW)
    assert outcome.results[0].verdict == "inconclusive"
    assert "could not be read" in outcome.results[0].reason


# --- end to end: a live model server, no rotation -----------------------------------------------


def test_a_live_servers_failing_canary_is_aborted_without_waiting_for_rotation(
    tmp_path: Path,
) -> None:
    """Real HTTP to the model server (its own logger and sink, rotation after 300 s): one
    controller tick right after the requests sees the canary's errors and aborts."""
    served = rollout_store(tmp_path)
    gate = Gate(metric="error_rate", min_samples=5)
    steps = (Phase(weight=50, duration=timedelta(hours=1), min_samples=5),)
    served.rollouts.start(
        model="trips", candidate=RAISING, shadow=None, steps=steps, gates=(gate,), actor="test"
    )
    at = SERVED_AT + timedelta(seconds=30)
    log = prediction_logger(served)
    assert log is not None
    drivers = range(1, 41)
    with running(create_model_app(served, prediction_log=log, now=lambda: at)) as url:
        replies = [
            httpx.post(
                f"http://{url}/v1/models/trips/predict",
                json={"entities": {"driver_id": [d], "bonus": [0.5]}},
            )
            for d in drivers
        ]
        assert log.flush(timeout=10)
        folder = served.monitoring.prediction_log_folder()
        assert log_files(folder, SERVED_AT, at + timedelta(minutes=5)) == []  # not rotated
        events = served.rollouts.step(now=SERVED_AT + timedelta(minutes=2))
        state = served.rollouts.status("trips")
    routes = [r.headers.get("x-parity-route") for r in replies]
    canaries = routes.count("canary")
    assert 0 < canaries < len(drivers) and routes.count("champion") == len(drivers) - canaries
    failed = [r.status_code for r, route in zip(replies, routes, strict=True) if route == "canary"]
    assert failed == [400] * canaries  # predict_failed: the candidate raises
    assert state.status == "aborted", [(e.kind, e.reason) for e in events]
    (aborted,) = [e for e in events if e.kind == "aborted"]
    assert "error_rate" in aborted.reason
    (result,) = aborted.results
    assert (result.verdict, result.candidate, result.champion) == ("fail", 1.0, 0.0)
    assert result.samples == {"candidate": canaries, "champion": len(drivers) - canaries}
