"""Tiles: partial aggregates per (entity, tile), at several sizes, and the window value read
from the fewest of them. Pure; the stores keep tiles as opaque values.

A view's levels are its tile interval T, then 1 hour and 1 day where those are larger multiples
of T. An event updates one tile per level. A window (see windows.py) reads a greedy cover of its
tiles [window_start, tile_start(t) + T): at each position the largest aligned tile that fits, so
a 30-day window of 1-hour tiles reads at most 23 + 29 + 23 tiles instead of 720.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from parity.aggregation.partials import finish, fold, merge_all
from parity.aggregation.windows import tile_start, window_start
from parity.definitions import FeatureView
from parity.online.encoding import tile_name

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


def window_cover(view: FeatureView, window_us: int, t_us: int) -> list[TileId]:
    tile = view.tile_us
    return cover(window_start(t_us, window_us, tile), tile_start(t_us, tile) + tile, levels(view))


def read_plan(view: FeatureView, outputs: Iterable[str], t_us: int) -> list[TileId]:
    """Every tile the wanted aggregations read at t (their covers' union)."""
    by_output = {a.output_name: a for a in view.aggregations}
    wanted: dict[TileId, None] = {}
    for output in outputs:
        wanted.update(dict.fromkeys(window_cover(view, by_output[output].window_us, t_us)))
    return list(wanted)


def window_values(
    view: FeatureView, outputs: Sequence[str], tiles: Mapping[TileId, dict[str, Any]], t_us: int
) -> list[Any]:
    """The wanted aggregations' values at t from one entity's tiles (missing tiles are empty)."""
    by_output = {a.output_name: a for a in view.aggregations}
    values = []
    for output in outputs:
        aggregation = by_output[output]
        pieces = window_cover(view, aggregation.window_us, t_us)
        partials = (tiles[p].get(output) for p in pieces if p in tiles)
        merged = merge_all(aggregation.function, aggregation.n, partials)
        values.append(finish(aggregation.function, merged))
    return values


def build_tiles(
    view: FeatureView, events: Iterable[tuple[bytes, int, int, Mapping[str, Any]]]
) -> dict[tuple[bytes, TileId], dict[str, Any]]:
    """Fold events (entity key, event µs, ingestion order, input columns) into tiles at every
    level: {(entity key, tile): {aggregation output: partial}}."""
    sizes = levels(view)
    tiles: dict[tuple[bytes, TileId], dict[str, Any]] = {}
    for key, moment, order, row in events:
        for size in sizes:
            partials = tiles.setdefault((key, TileId(size, tile_start(moment, size))), {})
            fold_row(view, partials, moment, order, row)
    return tiles


def touched(view: FeatureView, moments: Iterable[int]) -> list[TileId]:
    """The tiles (every level) that events at these times update."""
    sizes = levels(view)
    return list(dict.fromkeys(TileId(s, tile_start(m, s)) for m in moments for s in sizes))


def fold_row(
    view: FeatureView, partials: dict[str, Any], moment: int, order: int, row: Mapping[str, Any]
) -> None:
    """Add one event to one tile's partials, in place."""
    for aggregation in view.aggregations:
        value = row.get(aggregation.column)
        if value is None:
            continue
        output = aggregation.output_name
        partials[output] = fold(
            aggregation.function, aggregation.n, partials.get(output), value, moment, order
        )
