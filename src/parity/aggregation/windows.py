"""The one definition of which events count for (entity, t, window). Pure; no I/O.

Time is cut into tiles of the view's `tile_interval` T, aligned to the epoch: the tile of an
event at time e starts at `e - e mod T`. The value of a window W (a multiple of T) at time t
aggregates the events of the entity whose time e satisfies

    tile_start(t) + T - W  <=  e  <=  t

that is, the W/T - 1 whole tiles before t's tile, plus t's own tile up to and including t. The
window's tail is therefore tile-aligned: it covers between W - T and W of time, and moves in
steps of T. Both paths follow this rule: offline retrieval (a window frame per entity row, see
offline/duckdb_windows.py) and the online read (the tiles of those W/T tiles, merged).

An entity is seen at t when it has an event (whatever its values) in the view's longest window
at t; an entity not seen gets null for every aggregation (online: NOT_FOUND), a seen one the
empty value of a window without events (count 0). Events after t never count: online they wait
in a pending record until t reaches them (aggregation/tiles.py).

Worked example, T = 5 min, W = 15 min, t = 10:07:
    tile_start(t) = 10:05; window start = 10:05 + 5 min - 15 min = 09:55.
    Events at 09:54:59 (no), 09:55:00 (yes), 10:07:00 (yes), 10:07:00.000001 (no, after t).
At t = 10:10:00 the window starts at 10:00:00: the 09:55 tile has left it.
"""

from __future__ import annotations


def tile_start(moment_us: int, tile_us: int) -> int:
    """The start of the tile holding `moment_us` (floor, also for times before 1970)."""
    return moment_us - moment_us % tile_us


def window_start(t_us: int, window_us: int, tile_us: int) -> int:
    """The earliest event time that counts for the window at `t_us`."""
    return tile_start(t_us, tile_us) + tile_us - window_us


def counts(event_us: int, t_us: int, window_us: int, tile_us: int) -> bool:
    return window_start(t_us, window_us, tile_us) <= event_us <= t_us


def window_tiles(t_us: int, window_us: int, tile_us: int) -> range:
    """The starts of the tiles a window at `t_us` reads (the last one only up to t)."""
    last = tile_start(t_us, tile_us)
    return range(last + tile_us - window_us, last + 1, tile_us)
