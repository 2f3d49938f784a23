"""The fraud example's rollout driver on a small repo: every simulated payment goes through the
real model server and lands in the Parquet log at simulated time before each controller tick,
with the route the server chose; the controller's checks are recorded at the minutes' ends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from parity import FeatureStore
from parity.deploy.service import Rollouts
from parity.examples.fraud import model, scaffold
from parity.examples.fraud.rollout_sim import main, report, simulate
from parity.inference.predlog import ParquetLogSink, PredictionRecord

END = datetime(2026, 3, 1, tzinfo=UTC)
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # simulated time, after the data


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sim") / "fraud_detection"
    scaffold.scaffold(root, accounts=300, days=30, end=END)
    with FeatureStore(root) as store:
        store.apply(message="first")
        store.materialize(END - timedelta(days=30), END)
        labels = pq.read_table(root / "data" / "chargebacks.parquet").to_pandas()
        entities = labels[["transaction_id", "account_id", "device_id", "event_timestamp"]]
        entities = entities.assign(amount=labels["amount"], is_fraud=labels["is_fraud"])
        store.datasets.create("train", entities, "fraud_model_v1", root / "train.parquet")
        model.train_and_register(store, "train", alias="champion")
        model.train_and_register(store, "train", alias="challenger", drop=model.DEVICE_FEATURES)
    return root


def logged(repo: Path) -> list[tuple[str, int, str, datetime]]:
    """(role, version, request id, time) of every row the simulation logged, in time order."""
    files = str(repo / "data" / "prediction_log" / "**" / "*.parquet")
    rows = duckdb.sql(
        f"SELECT role, version, request_id, event_timestamp FROM read_parquet('{files}', "
        "union_by_name = true) WHERE role IS NOT NULL ORDER BY event_timestamp, request_id"
    ).fetchall()
    return [(r[0], r[1], r[2], r[3].astimezone(UTC)) for r in rows]


def test_each_simulated_minute_is_logged_at_simulated_time_before_its_tick(repo: Path) -> None:
    with FeatureStore(repo) as store:
        result = asyncio.run(simulate(store, rate=30, max_minutes=3, start=START))
        state = result.state
        assert (state.status, state.step, state.candidate, state.champion) == ("active", 0, 2, 1)
        assert (result.minutes, result.requests) == (3, 90)
        assert result.routes == {"champion": 90}  # shadow: the champion answers everything
        assert result.shadows == 90
        rows = logged(repo)
        assert sorted({(role, version) for role, version, _, _ in rows}) == [
            ("champion", 1),
            ("shadow", 2),
        ]
        assert len(rows) == 180
        times = [at for _, _, _, at in rows]
        assert min(times) >= START and max(times) < START + timedelta(minutes=3)
        # The same payment id on both arms: one champion row and its shadow per request.
        ids = {rid for _, _, rid, _ in rows}
        assert len(ids) == 90 and all(rid.startswith(f"{state.id}-") for rid in ids)
        # Each tick saw its minute's rows: the controller recorded one check per minute, at its
        # end, counting the rows of the step's window so far (200 pairs are not yet 1,500).
        checks = [e for e in result.events if e.kind == "check"]
        assert [e.at for e in checks] == [START + timedelta(minutes=m) for m in (1, 2, 3)]
        pairs = [r.reason for e in checks for r in e.results if r.gate.startswith("custom:")]
        assert [p.split(" shadow pairs")[0] for p in pairs] == ["30", "60", "90"]
        lines = report(result, width=100)
        assert lines[0].startswith(f"Rollout {state.id}: version 2 against champion version 1")
        assert "still active at step 0 after 3 min" in lines[2]
        assert all(len(line) <= 100 for line in lines[4:])
        Rollouts(store).abort("fraud", reason="test done")


def test_a_second_simulation_starts_after_the_first_one_ended_and_stops_its_rollout(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FeatureStore(repo) as store:
        ended = Rollouts(store).list()[0].updated_at
    page = tmp_path / "t.html"
    main(["--repo", str(repo), "--rate", "10", "--max-minutes", "1", "--html", str(page)])
    out = capsys.readouterr().out
    with FeatureStore(repo) as store:
        state = store.rollouts.status("fraud")
    assert state.started_at >= ended and state.id == "fraud-2"
    assert (state.status, state.reason) == (
        "aborted",
        "the simulation ended after 1 simulated minutes",
    )
    assert "Rollout fraud-2: version 2 against champion version 1, 1 simulated minutes" in out
    assert "ROLLED BACK" in out and f"wrote {page}" in out
    assert "Rollout fraud-2 of fraud" in page.read_text()


@pytest.mark.parametrize(("rate", "minutes"), [(0, 1), (1, 0), (-5, 3)])
def test_rate_and_minutes_must_be_positive(repo: Path, rate: int, minutes: int) -> None:
    with FeatureStore(repo) as store, pytest.raises(ValueError, match="at least 1"):
        asyncio.run(simulate(store, rate=rate, max_minutes=minutes, start=START))


def test_the_log_sink_is_the_servers_own_format(tmp_path: Path) -> None:
    """The driver's sink closes one ParquetLogSink per tick: files readable by every reader."""
    from parity.examples.fraud.rollout_sim import TickSink

    sink = TickSink(tmp_path)
    record = PredictionRecord("r", START, "fraud", 1, {}, {}, 0.5, 1.0, role="champion")
    sink.write([record])
    sink.write([])  # the logger's idle call writes nothing and opens nothing
    sink.rotate()
    sink.rotate()  # nothing open: no empty file
    sink.write([record])
    sink.close()
    files = sorted(tmp_path.rglob("*.parquet"))
    assert len(files) == 2 and sink.files == 2
    assert pq.read_table(files[0]).column("role").to_pylist() == ["champion"]
    assert not list(tmp_path.rglob(".*inprogress"))
    reference = ParquetLogSink(tmp_path / "ref")
    reference.write([record])
    reference.close()
    assert (
        pq.read_table(next((tmp_path / "ref").rglob("*.parquet"))).schema
        == pq.read_table(files[0]).schema
    )
