"""QA finding 1: a materialize END in the future, and an incremental END before the watermark,
are refused (they used to move the watermark into the future and then print from-after-to rows)."""

from __future__ import annotations

from pathlib import Path

import pytest

from parity import FeatureStore
from parity.errors import EndBeforeWatermark, EndInFuture, InvalidTime
from parity.registry.materializations import MaterializationLog, MaterializationRecord
from tests.materialize.test_materialize import at, make_store


def _watermark(store: FeatureStore, view: str) -> object:
    log = store.registry.store
    assert isinstance(log, MaterializationLog)
    return log.watermark(store.project, view)


def test_materialize_refuses_an_end_after_the_store_clock(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo", clock_hours=8)
    with pytest.raises(EndInFuture, match=r"end 2026-04-01T09:00:00\+00:00 is after") as caught:
        store.materialize(at(-10), at(9))
    assert "store's clock 2026-04-01T08:00:00+00:00" in str(caught.value)
    assert isinstance(caught.value, InvalidTime) and caught.value.code == "end_in_future"
    with pytest.raises(EndInFuture):
        store.materialize_incremental(at(9))
    assert _watermark(store, "stats") is None  # nothing recorded
    assert [r.end for r in store.materialize(at(-10), at(8))] == [at(8), at(8)]  # now is fine


def test_incremental_refuses_an_end_before_the_watermark(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo", clock_hours=8)
    store.materialize_incremental(at(6))
    with pytest.raises(EndBeforeWatermark) as caught:
        store.materialize_incremental(at(2))
    message = str(caught.value)
    assert "of view 'pair'" in message and "2026-04-01T06:00:00+00:00" in message
    assert "parity materialize" in message
    assert _watermark(store, "stats") == at(6)
    # the recovery the message names: a full run over the interval, then incremental runs again
    store.materialize(at(-10), at(2))
    assert {r.view: (r.start, r.end) for r in store.materialize_incremental(at(8))}["stats"] == (
        at(2),
        at(8),
    )


def test_a_watermark_left_in_the_future_is_refused_then_recovered(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo", clock_hours=8)
    log = store.registry.store
    assert isinstance(log, MaterializationLog)
    for view in ("stats", "pair"):  # what an earlier version's `materialize ... 2030-01-01` left
        log.record_materialization(
            MaterializationRecord(store.project, view, at(-10), at(10_000), 1, at(1))
        )
    with pytest.raises(EndBeforeWatermark, match="parity materialize START"):
        store.materialize_incremental(at(8))
    store.materialize(at(-10), at(7))
    results = store.materialize_incremental(at(8))
    assert {r.view: (r.start, r.end) for r in results} == {
        "stats": (at(7), at(8)),
        "pair": (at(7), at(8)),
    }
    assert all(r.start <= r.end for r in results)
    # online equals offline at the clock: account 1's newest row (hour 5, n=3)
    assert store.get_online_features(["stats:n"], {"account_id": [1]}).values["n"] == [3]


def test_the_progress_tile_count_is_the_result_tile_count(tmp_path: Path) -> None:
    """QA finding 12: the bar counted one pending record per entity as a tile (30,814 shown for
    29,815 tiles in the summary table)."""
    from datetime import timedelta

    from tests.ingest.test_future_events import T, write_repo

    write_repo(tmp_path, "")
    store = FeatureStore(tmp_path, clock=lambda: T)
    store.apply()
    moments = [T - timedelta(minutes=m) for m in (1, 2, 30, 50)] * 3
    rows = {
        "account_id": [1, 2, 3] * 4,
        "event_timestamp": moments,
        "amount": [float(i) for i in range(12)],
    }
    store.push("events", rows, "offline")
    seen: list[tuple[str, int, int | None]] = []
    (result,) = store.materialize(T - timedelta(hours=1), T, progress=lambda v, *a: seen.append(a))
    assert result.entities == 3 and result.tiles > 3
    last = [report for report in seen if report[0] == "tiles"][-1]
    assert last == ("tiles", result.tiles, result.tiles)
