"""Materialize an aggregated view: fold the events that reads at about `end` use into tiles and
write them to the online store.

Only the tiles a read at t in [end, end + read slack] uses are written (the slack is
materialize.read_slack in parity.yaml, READ_SLACK by default), and in each only the
partials of the aggregations that read it (see keep_rules): every window's largest usable tiles
back to its start at `end`, its smaller tiles only at the two ends of its cover. So a 30-day
window of 1-minute tiles keeps its day tiles and a few hours of minute and hour tiles, not
every minute of 30 days. START does not cut the span (docs/aggregations.md). Tiles are rebuilt
whole and written with replace semantics, so a run killed part-way and run again converges.
After the tiles, the run records (end, the earlier of end and its clock, end + slack) in the
online store: reads refuse the windows those tiles do not cover (aggregation.tiles.stale_outputs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

import msgpack
import pyarrow as pa
import pyarrow.compute as pc

from parity.aggregation.tiles import Tiles, fold_events, levels, with_pending
from parity.aggregation.windows import tile_start, window_start
from parity.definitions import FeatureView
from parity.errors import BackendNotInstalled
from parity.materialize.batch import MaterializeResult, Progress
from parity.offline.engine import OfflineEngine
from parity.online.encoding import PENDING, entity_keys, tile_name
from parity.online.store import OnlineStore, Prepared, TileStore
from parity.registry.materializations import MaterializationLog, MaterializationRecord
from parity.timeutil import from_micros, to_micros

log = logging.getLogger(__name__)
READ_SLACK = timedelta(days=1)  # the default of materialize.read_slack
WRITE_CHUNK = 100_000  # tiles per write transaction (and per progress step)


@dataclass(frozen=True)
class Keep:
    """Output `output` reads the tiles of `size` µs whose start lies in one of `starts`:
    (lo, hi, skip) is [lo, hi) less the starts that are multiples of `skip` (when skip > 0)."""

    output: str
    size: int
    starts: tuple[tuple[int, int, int], ...]

    def reads(self, start: int) -> bool:
        return any(
            lo <= start < hi and not (skip and start % skip == 0) for lo, hi, skip in self.starts
        )


def keep_rules(
    view: FeatureView, end_us: int, slack_us: int, since_us: int | None = None
) -> list[Keep]:
    """Which tiles reads at t in [since, end + slack] use (since: `end` by default, earlier when
    the run's clock is before `end`), per output and tile size. Pure.

    A window W at t reads the greedy cover of [ws(t), we(t)), ws(t) = its start, we(t) = the end
    of t's tile. Its largest size that fits in W is read anywhere in the cover; a smaller size s
    only where the next size s' does not: the tail [ws, ceil_s'(ws)) off s' boundaries, and the
    head [floor_s'(we), we). ws and we only grow with t."""
    since = end_us if since_us is None else min(since_us, end_us)
    tile, sizes = view.tile_us, levels(view)
    rules = []
    for a in view.aggregations:
        ws_lo = window_start(since, a.window_us, tile)
        ws_hi = window_start(end_us + slack_us, a.window_us, tile)
        we_lo = tile_start(since, tile) + tile
        usable = [size for size in sizes if size <= a.window_us]
        for index, size in enumerate(usable):
            if index == len(usable) - 1:
                rules.append(Keep(a.output_name, size, ((ws_lo, end_us + 1, 0),)))
                continue
            larger = usable[index + 1]
            tail = (ws_lo, -(-ws_hi // larger) * larger, larger)
            head = (we_lo - we_lo % larger, end_us + 1, 0)
            rules.append(Keep(a.output_name, size, (tail, head)))
    return rules


def span_start(view: FeatureView, end: datetime) -> datetime:
    """The earliest event a read at or after `end` can count: the longest window's start."""
    end_us = to_micros(end)
    earliest = min(window_start(end_us, a.window_us, view.tile_us) for a in view.aggregations)
    return from_micros(earliest)


def longest_window_us(view: FeatureView) -> int:
    return max(a.window_us for a in view.aggregations)


def prune(rules: list[Keep], tiles: Tiles) -> dict[tuple[bytes, str], dict[str, Any]]:
    """Per (entity key, tile name), the partials the rules keep (tiles no rule reads are dropped),
    and each entity's pending record."""
    used: dict[str, tuple[str, ...]] = {}  # tile name -> the outputs that read it
    kept: dict[tuple[bytes, str], dict[str, Any]] = {}
    for key, named in tiles.items():
        for name, partials in named.items():
            if name == PENDING:
                kept[(key, name)] = partials
                continue
            outputs = used.get(name)
            if outputs is None:
                size, _, start = name.partition(":")
                outputs = used[name] = _readers(rules, int(size), int(start))
            if all(o in outputs for o in partials):
                kept[(key, name)] = partials  # the usual case: nothing to drop
                continue
            if outputs:  # kept even when empty: an event with null inputs still says "seen"
                kept[(key, name)] = {o: partials[o] for o in outputs if o in partials}
    return kept


def _readers(rules: list[Keep], size: int, start: int) -> tuple[str, ...]:
    return tuple(dict.fromkeys(r.output for r in rules if r.size == size and r.reads(start)))


def _fold(
    view: FeatureView,
    rules: list[Keep],
    batch: pa.RecordBatch,
    into: Tiles,
    grouped: dict[int, list[pa.Table]],
) -> None:
    """Fold a batch of events into the tiles the rules keep: per size, only the events in its
    kept ranges and only the outputs that read it. Events of the outputs a group-by computes are
    set aside in `grouped` (by size) for _fold_grouped; the others are folded now."""
    keys = entity_keys(view.join_keys, [batch.column(k).to_pylist() for k in view.join_keys])
    events = pa.Table.from_batches([batch]).append_column("__key", pa.array(keys, pa.binary()))
    moments = events.column("__ts").cast(pa.int64())
    for size in sorted({r.size for r in rules}):
        mine = [r for r in rules if r.size == size]
        mask = None
        for lo, hi, _ in {span for r in mine for span in r.starts}:
            inside = pc.and_(pc.greater_equal(moments, lo), pc.less(moments, hi + size))
            mask = inside if mask is None else pc.or_(mask, inside)
        chosen = events.filter(mask) if mask is not None else None
        if chosen is None or not chosen.num_rows:
            continue
        outputs = {r.output for r in mine}
        if any(a.function in _GROUPED for a in view.aggregations if a.output_name in outputs):
            grouped.setdefault(size, []).append(chosen)
        rest = {
            a.output_name
            for a in view.aggregations
            if a.output_name in outputs and a.function not in _GROUPED
        }
        if rest:
            columns = chosen.to_pydict()
            fold_events(
                view, columns["__key"], columns["__ts"], columns["__ord"], columns, into,
                sizes=[size], outputs=rest,
            )  # fmt: skip


# Functions whose tile partial a group-by computes directly (see aggregation/partials.py).
_GROUPED = {"count", "sum", "mean", "min", "max"}


def _fold_grouped(
    view: FeatureView, rules: list[Keep], size: int, events: pa.Table, into: Tiles
) -> None:
    """The count, sum, mean, min and max partials of the tiles of `size` the rules keep, by one
    group-by on (key, tile start) over all their events, set into `into` as fold_events would
    fold them (null inputs skipped; no partial where all are null)."""
    moments = events.column("__ts").cast(pa.int64()).to_numpy()
    wanted = {r.output for r in rules if r.size == size}
    aggregations = [
        a for a in view.aggregations if a.function in _GROUPED and a.output_name in wanted
    ]
    columns = sorted({a.column for a in aggregations})
    table = pa.table(
        {"__key": events.column("__key"), "__start": moments - moments % size}
        | {c: events.column(c) for c in columns}
    )
    specs = [(c, kind) for c in columns for kind in ("count", "sum", "min", "max")]
    result = table.group_by(["__key", "__start"]).aggregate(specs).to_pydict()
    starts = result["__start"]
    names = [tile_name(size, start) for start in starts]
    for a in aggregations:
        keep = [r for r in rules if r.size == size and r.output == a.output_name]
        reads = {start: any(r.reads(start) for r in keep) for start in set(starts)}
        counts = result[f"{a.column}_count"]
        if a.function == "count":
            values: list[Any] = counts
        elif a.function == "mean":
            values = [[n, s] for n, s in zip(counts, result[f"{a.column}_sum"], strict=True)]
        else:
            values = result[f"{a.column}_{a.function}"]
        output = a.output_name
        rows = zip(result["__key"], starts, names, counts, values, strict=True)
        for key, start, name, n, value in rows:
            if reads[start]:  # the tile exists even if all inputs are null (the entity was seen)
                tile = into.setdefault(key, {}).setdefault(name, {})
                if n:
                    tile[output] = value


def materialize_tiles(
    engine: OfflineEngine,
    online: OnlineStore,
    history: MaterializationLog,
    project: str,
    view: FeatureView,
    end: datetime,
    *,
    now: Callable[[], datetime],
    progress: Progress | None = None,
    slack: timedelta = READ_SLACK,
) -> MaterializeResult:
    if not isinstance(online, TileStore):
        raise BackendNotInstalled(
            f"the online store {type(online).__name__} keeps no tiles, so it cannot serve the "
            f"aggregated view '{view.name}'"
        )
    now_us = to_micros(now())
    end_us, slack_us = to_micros(end), slack // timedelta(microseconds=1)
    # Reads from the earlier of END and now: a run past now serves reads until END too (its
    # events after now wait in the pending record).
    since_us = min(end_us, now_us)
    begin = span_start(view, from_micros(since_us))
    rules = keep_rules(view, end_us, slack_us, since_us)
    tiles: Tiles = {}
    grouped: dict[int, list[pa.Table]] = {}
    events = 0
    for batch in engine.events(view, begin, end):
        _fold(view, rules, _due(view, batch, now_us, tiles), tiles, grouped)
        events += batch.num_rows
        if progress is not None:
            progress("events", events, None)
    for size, parts in grouped.items():
        _fold_grouped(view, rules, size, pa.concat_tables(parts), tiles)
    with_pending(tiles)  # events after now wait in the pending record, replacing the old one
    kept = prune(rules, tiles)
    entities = len(tiles)
    total = sum(1 for _, name in kept if name != PENDING)  # tiles, not the pending records
    count = 0
    pack = msgpack.Packer(use_bin_type=True).pack
    for chunk in _chunks(kept):
        encoded = {name: pack(partials) for name, partials in chunk.items()}
        online.write_tiles(project, view.name, encoded, to_micros(now()), longest_window_us(view))
        count += sum(1 for _, name in chunk if name != PENDING)
        if progress is not None:
            progress("tiles", count, total)
    online.mark_materialized(project, view.name, Prepared(end_us, since_us, end_us + slack_us))
    history.record_materialization(
        MaterializationRecord(project, view.name, begin, end, count, now())
    )
    log.info("materialized %d tiles of %d entities of %s for [%s, %s]", count, entities,
             view.name, begin, end)  # fmt: skip
    return MaterializeResult(view.name, begin, end, entities, count)


def _due(view: FeatureView, batch: pa.RecordBatch, now_us: int, into: Tiles) -> pa.RecordBatch:
    """The batch's events at or before now; the later ones go to their entities' pending
    records in `into` (they count online once a read's time reaches them)."""
    moments = batch.column("__ts").cast(pa.int64())
    later = pc.greater(moments, now_us)
    if not pc.any(later).as_py():
        return batch
    ahead = batch.filter(later).to_pydict()
    keys = entity_keys(view.join_keys, [ahead[k] for k in view.join_keys])
    fold_events(view, keys, ahead["__ts"], ahead["__ord"], ahead, into, now_us=now_us)
    return batch.filter(pc.invert(later))


def _chunks(
    tiles: Mapping[tuple[bytes, str], dict[str, Any]],
) -> Iterator[dict[tuple[bytes, str], dict[str, Any]]]:
    items = iter(tiles.items())
    while chunk := dict(islice(items, WRITE_CHUNK)):
        yield chunk
