"""The batch fold of streaming ingestion (`fold_events`) against an oracle that aggregates each
tile's raw events directly, over awkward inputs: nulls, ties in time, out-of-order events,
repeated and mixed-type distinct values, events after the writer's clock."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import Aggregation, Entity, FeatureView, Field, FileSource, Float64, Int64, PushSource
from parity.aggregation.partials import merger
from parity.aggregation.tiles import fold_events, levels
from parity.online.encoding import PENDING, tile_name

MINUTE_US = 60_000_000
NOW_US = 1_780_000_000 * 1_000_000  # the writer's clock
VIEW = FeatureView(
    name="v",
    entities=[Entity(name="account", join_keys=["account_id"])],
    schema=[Field(name="amount", dtype=Float64), Field(name="device", dtype=Int64)],
    source=PushSource(name="p", batch_source=FileSource(path="p/")),
    tile_interval=timedelta(minutes=1),
    aggregations=[
        Aggregation(column="amount", function=f, window=timedelta(hours=1), name=f)
        for f in ("count", "sum", "mean", "stddev", "min", "max", "last")
    ]
    + [
        Aggregation(column="amount", function="last_n", n=2, window=timedelta(hours=1), name="l2"),
        Aggregation(
            column="device", function="count_distinct", window=timedelta(hours=1), name="d"
        ),
    ],
)


def expected_partial(function: str, rows: list[tuple[int, int, Any]]) -> Any:
    """The partial of `function` over one tile's (time, order, value) rows, values not null."""
    values = [v for _, _, v in rows]
    ranked = sorted(rows, key=lambda r: (r[0], r[1]), reverse=True)
    if function == "count":
        return len(values)
    if function in ("sum", "min", "max"):
        return {"sum": sum, "min": min, "max": max}[function](values)
    if function == "mean":
        return [len(values), sum(values)]
    if function == "stddev":
        mean = sum(values) / len(values)
        return [len(values), mean, sum((v - mean) ** 2 for v in values)]
    if function == "last":
        return list(ranked[0])
    if function == "l2":
        return [list(r) for r in ranked[:2]]
    return sorted(set(values), key=lambda v: (type(v).__name__, v))  # distinct


def oracle(events: list[tuple[bytes, int, int, Any, Any]]) -> dict[bytes, dict[str, Any]]:
    """Tiles by entity, computed per tile from its raw events; later ones wait in pending."""
    grouped: dict[tuple[bytes, str], list[tuple[int, int, Any, Any]]] = defaultdict(list)
    pending: dict[bytes, list[list[Any]]] = defaultdict(list)
    for key, moment, order, amount, device in events:
        if moment > NOW_US:
            pending[key].append([moment, order])
            continue
        for size in levels(VIEW):
            grouped[(key, tile_name(size, moment - moment % size))].append(
                (moment, order, amount, device)
            )
    tiles: dict[bytes, dict[str, Any]] = defaultdict(dict)
    for (key, name), rows in grouped.items():
        partials = {}
        for a in VIEW.aggregations:
            column = 2 if a.column == "amount" else 3
            kept = [(r[0], r[1], r[column]) for r in rows if r[column] is not None]
            if kept:
                partials[a.output_name] = expected_partial(a.output_name, kept)
        tiles[key][name] = partials
    for key, waiting in pending.items():
        tiles[key][PENDING] = waiting
    return tiles


def same(got: Any, want: Any) -> bool:
    if isinstance(want, float) or isinstance(got, float):
        return got == pytest.approx(want, rel=1e-9, abs=1e-9)
    if isinstance(want, list):
        return len(got) == len(want) and all(same(g, w) for g, w in zip(got, want, strict=True))
    return bool(got == want) and type(got) is type(want)


EVENTS = st.lists(
    st.tuples(
        st.sampled_from([b"a", b"b", b"c"]),
        # around the clock, on few distinct times (ties), some after it (pending)
        st.integers(-150, 3).map(lambda m: NOW_US + m * MINUTE_US // 2),
        st.one_of(st.none(), st.integers(-5, 5).map(float), st.floats(-1e3, 1e3, allow_nan=False)),
        st.one_of(st.none(), st.integers(0, 4), st.sampled_from(["x", "y", True, 2.5])),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.randoms())
def test_fold_events_equals_aggregating_each_tiles_events(events: list[Any], rng: Any) -> None:
    orders = rng.sample(range(10_000), len(events))  # ingestion order, not the list's order
    rows = [(k, m, o, a, d) for (k, m, a, d), o in zip(events, orders, strict=True)]
    got = fold_events(
        VIEW,
        [r[0] for r in rows],
        [r[1] for r in rows],
        orders,
        {"amount": [r[3] for r in rows], "device": [r[4] for r in rows]},
        now_us=NOW_US,
    )
    want = oracle(rows)
    assert set(got) == set(want)
    for key, tiles in want.items():
        assert set(got[key]) == set(tiles), key
        for name, partials in tiles.items():
            if name == PENDING:
                assert [e[:2] for e in got[key][PENDING]["events"]] == partials
                continue
            assert set(got[key][name]) == set(partials), (key, name)
            for output, partial in partials.items():
                assert same(got[key][name][output], partial), (key, name, output)


DISTINCT = st.one_of(
    st.integers(-3, 3),
    st.booleans(),
    st.sampled_from(["a", "b", "é"]),
    st.floats(-2, 2, allow_nan=False),
)


@given(st.lists(DISTINCT, max_size=12), DISTINCT)
def test_count_distinct_merge_of_one_value_equals_the_sorted_union(
    values: list[Any], value: Any
) -> None:
    def order(v: Any) -> tuple[str, Any]:
        return (type(v).__name__, v)

    stored = sorted(set(values), key=order)
    before = list(stored)
    merged = merger("count_distinct", None)(stored, [value])
    assert merged == sorted(set(stored) | {value}, key=order)
    assert stored == before  # never changed in place: tiles share partials
