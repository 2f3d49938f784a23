"""The alias timeline's pure logic (ui/models_view.py): event kinds, [start, end) segments and the
versions at a moment, against hand-worked histories and against the registry's own `alias_at`
on a small real registry whose moves go back and forth in time, tie and delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import FeatureStore
from parity.models.store import AliasEvent
from parity.ui.models_view import (
    Segment,
    alias_segments,
    deleted_numbers,
    event_kinds,
    job_of,
    signature_fields,
    versions_at,
)
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import Affine

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def move(alias: str, version: int | None, previous: int | None, hours: float) -> AliasEvent:
    return AliasEvent("p", "m", alias, version, previous, at(hours), "ann", f"{alias}->{version}")


def test_event_kinds_tell_a_first_set_a_move_a_rollback_and_a_deletion() -> None:
    events = [
        move("prod", 1, None, 0),  # set
        move("prod", 2, 1, 1),  # moved
        move("prod", 1, 2, 2),  # rollback: back to where the move before came from
        move("prod", 2, 1, 3),  # rollback of the rollback (rollback twice returns it)
        move("prod", 3, 2, 4),  # moved
        move("prod", None, 3, 5),  # deleted
        move("prod", 3, None, 6),  # set again
        move("stage", 2, None, 1),  # another alias: its own history
    ]
    assert event_kinds(events) == [
        "set",
        "moved",
        "rollback",
        "rollback",
        "moved",
        "deleted",
        "set",
        "set",
    ]


def test_segments_run_from_each_move_to_the_next_one_of_the_same_alias() -> None:
    events = [move("prod", 1, None, 0), move("stage", 2, None, 1), move("prod", 2, 1, 3)]
    assert alias_segments(events) == [
        Segment("prod", 1, at(0), at(3), "prod->1", "ann"),
        Segment("prod", 2, at(3), None, "prod->2", "ann"),
        Segment("stage", 2, at(1), None, "stage->2", "ann"),
    ]


def test_segments_follow_time_not_the_order_the_moves_were_made() -> None:
    # A move recorded with an earlier time than the one before (a simulated clock, a backfill)
    # takes its place in time, as alias_at reads it.
    events = [move("prod", 1, None, 10), move("prod", 2, 1, 2), move("prod", 3, 2, 5)]
    assert [(s.version, s.start, s.end) for s in alias_segments(events)] == [
        (2, at(2), at(5)),
        (3, at(5), at(10)),
        (1, at(10), None),
    ]


def test_a_deletion_leaves_a_gap_and_moves_at_one_instant_keep_the_last() -> None:
    events = [
        move("prod", 1, None, 0),
        move("prod", None, 1, 2),
        move("prod", 2, None, 4),
        move("prod", 3, 2, 4),  # same instant: the later move wins
    ]
    segments = alias_segments(events)
    assert [(s.version, s.start, s.end) for s in segments] == [(1, at(0), at(2)), (3, at(4), None)]
    assert versions_at(segments, ["prod"], at(1)) == {"prod": 1}
    assert versions_at(segments, ["prod"], at(2)) == {"prod": None}  # [start, end): end excluded
    assert versions_at(segments, ["prod"], at(3)) == {"prod": None}
    assert versions_at(segments, ["prod"], at(4)) == {"prod": 3}
    assert versions_at(segments, ["prod", "other"], at(-1)) == {"prod": None, "other": None}


def oracle(events: list[AliasEvent], alias: str, moment: datetime) -> int | None:
    """alias_at as the SQL store states it: the latest move at or before `moment` (ties: the
    last made)."""
    best: datetime | None = None
    found: int | None = None
    for event in events:  # in the order made: a tie goes to the later one
        if event.alias != alias or event.moved_at > moment:
            continue
        if best is None or event.moved_at >= best:
            best, found = event.moved_at, event.version
    return found


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["prod", "stage"]),
            st.one_of(st.none(), st.integers(1, 4)),
            st.integers(0, 12),
        ),
        max_size=12,
    ),
    st.integers(-1, 14),
)
def test_versions_at_agree_with_alias_at_on_any_history(
    moves: list[tuple[str, int | None, int]], probe: int
) -> None:
    events = [move(alias, version, None, hours) for alias, version, hours in moves]
    segments = alias_segments(events)
    for alias in ("prod", "stage"):
        for moment in (at(probe), at(probe) - timedelta(microseconds=1), at(probe + 0.5)):
            expected = oracle(events, alias, moment)
            assert versions_at(segments, [alias], moment) == {alias: expected}
    for segment in segments:  # segments of one alias never overlap and are never empty
        assert segment.end is None or segment.start < segment.end


@pytest.fixture
def small_store(tmp_path: Path) -> FeatureStore:
    """`m` with versions 1-3, its aliases moved on a clock that goes back and forth."""
    repo = write_repo(tmp_path / "repo", DRIVER_REPO, extra="models: {trusted: true}\n")
    moments = [at(0)]
    store = FeatureStore(repo, clock=lambda: moments[-1])
    store.apply()
    models = store.models
    for weight in (1.0, 2.0, 3.0):
        models.register_model(
            "m", Affine([weight], 0.0), flavor="pyfunc", sample_input=np.ones((2, 1))
        )
    script = [
        (1, "prod", 1),
        (5, "prod", 2),
        (5, "stage", 3),
        (3, "prod", 3),  # recorded at an earlier time than the move before
        (8, "prod", None),
        (9, "stage", 1),
        (9, "stage", 2),  # same instant
        (11, "prod", 1),
    ]
    for hours, alias, version in script:
        moments.append(at(hours))
        if version is None:
            models.delete_alias("m", alias)
        else:
            models.set_alias("m", alias, version)
    moments.append(at(12))
    return store


def test_versions_at_agree_with_the_registrys_alias_at_at_every_boundary(
    small_store: FeatureStore,
) -> None:
    history = small_store.models.history("m")
    segments = alias_segments(history)
    probes = sorted({e.moved_at for e in history})
    instants = [
        p + d
        for p in probes
        for d in (timedelta(microseconds=-1), timedelta(0), timedelta(minutes=30))
    ]
    for moment in [at(-1), *instants, at(100)]:
        for alias in ("prod", "stage"):
            found = small_store.models.alias_at("m", alias, moment)
            expected = None if found is None else found.version
            assert versions_at(segments, [alias], moment) == {alias: expected}, (alias, moment)


def test_signature_fields_keep_names_and_dtypes() -> None:
    stored = {
        "inputs": [{"name": "x", "dtype": "float64", "shape": [-1]}],
        "outputs": [{"name": "y", "dtype": "int64"}],
        "input_kind": "dataframe",
    }
    assert signature_fields(stored) == {
        "inputs": [{"name": "x", "dtype": "float64"}],
        "outputs": [{"name": "y", "dtype": "int64"}],
    }
    assert signature_fields(None) is None
    assert signature_fields({"inputs": None}) == {"inputs": [], "outputs": []}


def test_deleted_numbers_are_the_gaps_and_the_versions_history_names() -> None:
    assert deleted_numbers([1, 2, 3], [1, 2]) == []
    assert deleted_numbers([1, 4], [4]) == [2, 3]
    assert deleted_numbers([2], [1, 3]) == [1, 3]
    assert deleted_numbers([], []) == []


def test_job_of_reads_the_training_jobs_tags() -> None:
    assert job_of({"job": "fraud_training", "job_id": "7"}) == (7, "fraud_training")
    assert job_of({"team": "risk"}) == (None, None)
    assert job_of({"job_id": "x"}) == (None, None)
