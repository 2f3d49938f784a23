"""The online window read (aggregation/tiles.py window_values, partials.window_value) against
an oracle over the raw events: events folded into tiles at every level, stored and read back as
msgpack like the stores do, then read at times on and around tile, hour and day edges. Also
window_value against the merge-then-finish path it short-cuts."""

from __future__ import annotations

import math
import statistics
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity import Aggregation, Entity, FeatureView, Field, FileSource, Float64, String
from parity.aggregation.partials import finish, merge_all, single, window_value
from parity.aggregation.tiles import fold_events, read_plan, window_values
from parity.online.encoding import decode_payload, encode_payload
from parity.timeutil import to_micros

account = Entity(name="account", join_keys=["account_id"])
DAY = timedelta(days=1)
BASE = to_micros(datetime.fromisoformat("2026-03-31T00:00:00+00:00"))  # a day edge
FUNCTIONS = ["count", "sum", "mean", "min", "max", "stddev", "last", "count_distinct"]


def view_of(aggregations: list[Aggregation], tile: timedelta) -> FeatureView:
    return FeatureView(
        name="history",
        entities=[account],
        schema=[Field(name="amount", dtype=Float64), Field(name="device", dtype=String)],
        source=FileSource(path="events"),
        aggregations=aggregations,
        tile_interval=tile,
    )


def moments(tile_us: int, clock: int) -> st.SearchStrategy[int]:
    """µs around BASE over 35 days back: on tile, hour and day edges (+- 1 µs), on the tile
    edges around the writer's clock (where pending events become due), or anywhere."""
    near = st.builds(
        lambda k, d: clock + k * tile_us + d, st.integers(-3, 3), st.sampled_from([0, 1, -1])
    )
    edge = st.builds(
        lambda size, k, d: BASE + k * size + d,
        st.sampled_from([tile_us, 3_600_000_000, 86_400_000_000]),
        st.integers(-35, 2),
        st.sampled_from([0, 0, 1, -1]),
    )
    anywhere = st.integers(BASE - 35 * 86_400_000_000, BASE + 2 * 3_600_000_000)
    return st.one_of(edge, near, anywhere)


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    tile = draw(st.sampled_from([timedelta(minutes=1), timedelta(minutes=15), timedelta(hours=1)]))
    tile_us = int(tile.total_seconds()) * 1_000_000
    clock = BASE + draw(st.integers(-2, 2)) * tile_us
    windows = st.sampled_from([1, 2, 5, 24 * 60 // 15 * 15, 30 * 24 * 60]).map(
        lambda minutes: max(tile, tile * (timedelta(minutes=minutes) // tile))
    )
    aggregations = [
        Aggregation(column="amount", function=f, window=draw(windows), name=f"a_{f}")
        for f in FUNCTIONS
    ]
    aggregations.append(
        Aggregation(column="device", function="count_distinct", window=draw(windows), name="d_cd")
    )
    aggregations.append(
        Aggregation(column="device", function="last_n", n=3, window=draw(windows), name="d_last")
    )
    # Two entities: b"x" maybe without events; a few distinct amounts so ties in value happen.
    event = st.tuples(
        moments(tile_us, clock),
        st.one_of(st.none(), st.sampled_from([-2.5, 0.0, 1.0, 3.0, 1e6])),
        st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
    )
    events = draw(st.lists(event, max_size=40))
    events += [(m, a, d) for m, a, d in draw(st.lists(event, max_size=3)) for _ in range(2)]  # ties
    reads = draw(
        st.lists(st.one_of(moments(tile_us, clock), st.just(clock)), min_size=1, max_size=6)
    )
    return {
        "view": view_of(aggregations, tile),
        "events": events,
        "clock": clock,
        "reads": [t for t in reads if t >= clock] or [clock],
    }


def oracle(view: FeatureView, events: list[tuple[int, Any, Any]], t: int) -> list[Any] | None:
    """The rule of aggregation/windows.py, straight over the events (in ingestion order)."""
    tile = view.tile_us

    def start(window: int) -> int:
        return t - t % tile + tile - window

    longest = max(a.window_us for a in view.aggregations)
    if not any(start(longest) <= m <= t for m, _, _ in events):
        return None
    values = []
    for a in view.aggregations:
        column = 1 if a.column == "amount" else 2
        got = [
            (e[0], i, e[column]) for i, e in enumerate(events) if start(a.window_us) <= e[0] <= t
        ]
        got = [g for g in got if g[2] is not None]
        plain = [g[2] for g in got]
        newest = [g[2] for g in sorted(got, key=lambda g: (g[0], g[1]), reverse=True)]
        values.append(evaluate(a.function, a.n, plain, newest))
    return values


def evaluate(function: str, n: int | None, plain: list[Any], newest: list[Any]) -> Any:
    """One function over a window's non-null values (`newest`: newest first)."""
    if function == "count":
        return len(plain)
    if function == "sum":
        return sum(plain)
    if function == "count_distinct":
        return len(set(plain))
    if function == "last_n":
        return newest[:n]
    if not plain:
        return None
    if function == "mean":
        return sum(plain) / len(plain)
    if function == "stddev":
        return statistics.stdev(plain) if len(plain) > 1 else None
    if function in ("min", "max"):
        return min(plain) if function == "min" else max(plain)
    return newest[0]  # last


def close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return bool(a == b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_window_reads_equal_the_raw_events(case: dict[str, Any]) -> None:
    view, events = case["view"], case["events"]
    outputs = [a.output_name for a in view.aggregations]
    key = b"k"
    tiles = fold_events(
        view,
        [key] * len(events),
        [m for m, _, _ in events],
        list(range(len(events))),
        {"amount": [e[1] for e in events], "device": [e[2] for e in events]},
        now_us=case["clock"],
    )
    stored = {name: encode_payload(partials) for name, partials in tiles.get(key, {}).items()}
    for t in case["reads"]:
        plan = read_plan(view, outputs, t)
        read = {name: decode_payload(stored[name]) for name in plan if name in stored}
        got, want = window_values(view, outputs, read, t), oracle(view, events, t)
        if want is None:
            assert got is None, (t, got)
            continue
        assert got is not None, (t, want)
        for name, g, w in zip(outputs, got, want, strict=True):
            assert close(g, w), (name, t, g, w)


def test_an_entity_without_events_is_unknown_and_one_value_has_no_stddev() -> None:
    hour = timedelta(hours=1)
    view = view_of(
        [
            Aggregation(column="amount", function="stddev", window=30 * DAY, name="s"),
            Aggregation(column="device", function="count_distinct", window=hour, name="d"),
        ],
        hour,
    )
    assert window_values(view, ["s", "d"], {}, BASE) is None
    # One event exactly at the window's first µs (BASE + 1 h - 30 d, read at BASE + 30 min).
    t = BASE + 1_800_000_000
    first = BASE + 3_600_000_000 - 30 * 86_400_000_000
    tiles = fold_events(view, [b"k"], [first], [0], {"amount": [2.0], "device": ["a"]}, now_us=t)
    read = {n: decode_payload(encode_payload(p)) for n, p in tiles[b"k"].items()}
    assert window_values(view, ["s", "d"], read, t) == [None, 0]  # the hour window is empty
    assert window_values(view, ["s", "d"], read, t + 1_800_000_000) is None  # out of 30 days


partial_lists = st.lists(
    st.tuples(
        st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b"]), st.floats(-5, 5)),
        st.integers(0, 5),
        st.integers(0, 3),
    ),
    max_size=12,
)


@given(values=partial_lists, function=st.sampled_from([*FUNCTIONS, "last_n"]))
def test_window_value_equals_merging_then_finishing(values: list[Any], function: str) -> None:
    if function not in ("count", "count_distinct", "last", "last_n"):
        values = [(float(v), ts, o) for v, ts, o in values if not isinstance(v, str)]
    partials = [single(function, v, ts, o) for v, ts, o in values]
    n = 2 if function == "last_n" else None
    want = finish(function, merge_all(function, n, partials))
    assert window_value(function, n, partials) == want
