"""Tiles: partial aggregates per (entity, tile), at several sizes, and the window value read
from the fewest of them. Pure; the stores keep tiles as opaque values.

A view's levels are its tile interval T, then 1 hour and 1 day where those are larger multiples
of T. An event updates one tile per level. A window (see windows.py) reads a greedy cover of its
tiles [window_start, tile_start(t) + T): at each position the largest aligned tile that fits, so
a 30-day window of 1-hour tiles reads at most 23 + 29 + 23 tiles instead of 720.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from parity.aggregation.partials import Merge, merger, singler, window_value
from parity.aggregation.windows import tile_start, window_start
from parity.definitions import FeatureView
from parity.online.encoding import PENDING, tile_name

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US


@dataclass(frozen=True, slots=True)
class TileId:
    size_us: int
    start_us: int

    @property
    def name(self) -> str:
        """The name a store keeps the tile under."""
        return tile_name(self.size_us, self.start_us)


def levels(view: FeatureView) -> tuple[int, ...]:
    tile = view.tile_us
    larger = [size for size in (HOUR_US, DAY_US) if size > tile and size % tile == 0]
    return (tile, *larger)


def cover(start_us: int, end_us: int, sizes: Sequence[int]) -> list[TileId]:
    """Aligned tiles exactly covering [start, end); both ends multiples of the smallest size."""
    pieces = []
    position = start_us
    while position < end_us:
        for size in reversed(sizes):
            if position % size == 0 and position + size <= end_us:
                pieces.append(TileId(size, position))
                position += size
                break
    return pieces


def window_names(view: FeatureView, window_us: int, t_us: int) -> tuple[str, ...]:
    """The names of the tiles a window reads at t (its cover)."""
    tile = view.tile_us
    return _cover_names(levels(view), window_us, tile_start(t_us, tile))


@lru_cache(maxsize=4_096)
def _cover_names(sizes: tuple[int, ...], window_us: int, tile_at: int) -> tuple[str, ...]:
    # A read at t needs only t's tile start: the cover is the same for the whole tile.
    tile = sizes[0]
    start = window_start(tile_at, window_us, tile)
    return tuple(piece.name for piece in cover(start, tile_at + tile, sizes))


@lru_cache(maxsize=4_096)
def _cover_set(sizes: tuple[int, ...], window_us: int, tile_at: int) -> frozenset[str]:
    return frozenset(_cover_names(sizes, window_us, tile_at))


@dataclass(frozen=True, slots=True)
class ReadShape:
    """What a window read needs of a view, resolved once per view (reads run per request):
    its tile sizes, longest window, and per aggregation output its window, function and n."""

    levels: tuple[int, ...]
    longest_us: int
    windows: dict[str, int]
    functions: dict[str, tuple[str, int | None]]


_SHAPES: dict[int, tuple[FeatureView, ReadShape]] = {}


def read_shape(view: FeatureView) -> ReadShape:
    """The view's ReadShape, cached by identity (definitions are frozen; the registry hands out
    the same objects until the catalog changes, and a new object gets a new entry)."""
    entry = _SHAPES.get(id(view))
    if entry is not None and entry[0] is view:
        return entry[1]
    aggregations = view.aggregations
    shape = ReadShape(
        levels(view),
        longest_window_us(view),
        {a.output_name: a.window_us for a in aggregations},
        {a.output_name: (a.function, a.n) for a in aggregations},
    )
    if len(_SHAPES) >= 256:  # catalogs reloaded again and again: start afresh
        _SHAPES.clear()
    _SHAPES[id(view)] = (view, shape)
    return shape


def read_plan(view: FeatureView, outputs: Iterable[str], t_us: int) -> list[str]:
    """The names of every tile the wanted aggregations read at t (their covers' union), plus
    the longest window's cover (whether the entity is known) and the pending record."""
    shape = read_shape(view)
    windows = tuple(dict.fromkeys([*(shape.windows[o] for o in outputs), shape.longest_us]))
    return list(_plan(shape.levels, windows, tile_start(t_us, shape.levels[0])))


@lru_cache(maxsize=4_096)
def _plan(sizes: tuple[int, ...], windows: tuple[int, ...], tile_at: int) -> tuple[str, ...]:
    # The same for the whole tile at t, like the covers.
    wanted: dict[str, None] = {}
    for window in windows:
        wanted.update(dict.fromkeys(_cover_names(sizes, window, tile_at)))
    wanted[PENDING] = None
    return tuple(wanted)


def longest_window_us(view: FeatureView) -> int:
    return max(a.window_us for a in view.aggregations)


def stale_outputs(
    view: FeatureView,
    outputs: Iterable[str],
    t_us: int,
    prepared: tuple[int, int, int],
) -> tuple[frozenset[str], bool]:
    """Which wanted windows at t may need tiles that a materialization of events up to END, for
    reads at t in [since, until] (`prepared`: (END, since, until)), did not write
    (materialize/tiles.py keeps only those), and whether the view's longest window may (then
    "not seen" is unknown too). A window is exact at t when since <= t <= until, or when it
    starts after END: its tiles then hold only later events, which push and stream ingestion
    write at every level. Pure; the same for every entity."""
    end_us, since_us, until_us = prepared
    if since_us <= t_us <= until_us:
        return frozenset(), False
    tile, by_output = view.tile_us, view.aggregation_by_output
    stale = frozenset(
        o for o in outputs if window_start(t_us, by_output[o].window_us, tile) <= end_us
    )
    return stale, window_start(t_us, longest_window_us(view), tile) <= end_us


def window_values(
    view: FeatureView, outputs: Sequence[str], tiles: Mapping[str, dict[str, Any]], t_us: int
) -> list[Any] | None:
    """The wanted aggregations' values at t from one entity's tiles by name (missing tiles are
    empty), or None when the entity is unknown at t: no event in the view's longest window.

    Stored tiles hold only events at or before their writer's clock; events stamped later wait
    in the pending record and count once t reaches them, so nothing after t is counted."""
    shape = read_shape(view)
    sizes, tile = shape.levels, shape.levels[0]
    tile_at = tile_start(t_us, tile)
    pending = tiles.get(PENDING)
    due = (
        [(m, partials) for m, _, partials in pending.get("events", ()) if m <= t_us]
        if pending
        else []
    )
    if not _known(shape, tiles, due, t_us):
        return None
    in_window: dict[int, list[dict[str, Any]]] = {}  # the entity's tiles in each window
    values = []
    for output in outputs:
        window = shape.windows[output]
        found = in_window.get(window)
        if found is None:
            found = [tiles[name] for name in _cover_names(sizes, window, tile_at) if name in tiles]
            if due:
                start = window_start(t_us, window, tile)
                found += [partials for moment, partials in due if moment >= start]
            in_window[window] = found
        partials = [partial for part in found if (partial := part.get(output)) is not None]
        function, n = shape.functions[output]
        values.append(window_value(function, n, partials))
    return values


def _known(
    shape: ReadShape,
    tiles: Mapping[str, dict[str, Any]],
    due: Sequence[tuple[int, Any]],
    t_us: int,
) -> bool:
    """Whether the entity has an event in the longest window at t (a tile of its cover, or a
    pending event now due in it): the online side of the NOT_FOUND rule."""
    window, tile = shape.longest_us, shape.levels[0]
    if not _cover_set(shape.levels, window, tile_start(t_us, tile)).isdisjoint(tiles.keys()):
        return True
    start = window_start(t_us, window, tile)
    return any(moment >= start for moment, _ in due)


Tiles = dict[bytes, dict[str, dict[str, Any]]]  # {entity key: {tile name: {output: partial}}}


def fold_events(
    view: FeatureView,
    keys: Sequence[bytes],
    moments: Sequence[int],
    orders: Sequence[int],
    columns: Mapping[str, Sequence[Any]],
    into: Tiles | None = None,
    *,
    sizes: Sequence[int] | None = None,
    outputs: Collection[str] | None = None,
    now_us: int | None = None,
) -> Tiles:
    """Fold events (entity key, event µs, ingestion order, input columns by name) into tiles at
    every level (or only `sizes`), for every aggregation (or only those named in `outputs`),
    adding to `into` when given. An event's null inputs are skipped, but its tiles exist (the
    entity was seen). Events after `now_us` (the writer's clock) go to the entity's pending
    record instead. The hot path of streaming ingestion and materialization, so the functions
    are resolved once per call."""
    tiles: Tiles = {} if into is None else into
    sizes = levels(view) if sizes is None else sizes
    parts = [
        (a.output_name, singler(a.function), columns[a.column])
        for a in view.aggregations
        if outputs is None or a.output_name in outputs
    ]
    mergers = {a.output_name: merger(a.function, a.n) for a in view.aggregations}
    names: dict[tuple[int, int], str] = {}
    future = (1 << 63) if now_us is None else now_us
    for index, key in enumerate(keys):
        moment, order = moments[index], orders[index]
        singles = {
            output: single(value, moment, order)
            for output, single, column in parts
            if (value := column[index]) is not None
        }
        entity = tiles.get(key)
        if entity is None:
            tiles[key] = entity = {}
        if moment > future:
            pending = entity.setdefault(PENDING, {"events": []})
            pending["events"].append([moment, order, singles])
            continue
        for size in sizes:
            start = moment - moment % size
            name = names.get((size, start))
            if name is None:
                names[(size, start)] = name = tile_name(size, start)
            partials = entity.get(name)
            if partials is None:
                entity[name] = dict(singles)  # partials are never changed in place: share them
                continue
            for output, partial in singles.items():
                old = partials.get(output)
                partials[output] = partial if old is None else mergers[output](old, partial)
    return tiles


def merge_pending(
    stored: dict[str, Any], fresh: Mapping[str, Any], drop_before_us: int
) -> dict[str, Any]:
    """A pending record with fresh pending events added, less events at or before the drop
    time (out of every window)."""
    kept = [e for e in stored.get("events", ()) if e[0] > drop_before_us]
    return {"events": kept + [e for e in fresh.get("events", ()) if e[0] > drop_before_us]}


def with_pending(tiles: Tiles) -> Tiles:
    """Give every entity a pending record (empty if it has none): a rebuild writing its tiles
    also replaces what earlier merges left pending, which the rebuild folded in or re-pended."""
    for entity in tiles.values():
        entity.setdefault(PENDING, {})
    return tiles


def merge_partials(
    mergers: Mapping[str, Merge], stored: dict[str, Any], fresh: Mapping[str, Any]
) -> dict[str, Any]:
    """A stored tile's partials with a fresh tile's merged in (updates and returns `stored`);
    `mergers` from view_mergers."""
    for output, partial in fresh.items():
        old = stored.get(output)
        stored[output] = partial if old is None else mergers[output](old, partial)
    return stored


def view_mergers(view: FeatureView) -> dict[str, Merge]:
    return {a.output_name: merger(a.function, a.n) for a in view.aggregations}
