"""Windowed aggregations for point-in-time retrieval on Spark: `add_windows`, the same rule and
values as offline/duckdb_windows.py. Spark's RANGE frames take literal bounds only, and a window's
start depends on its row's tile, so each window is split into whole tiles and the current one.

For a marker (keys, t) in tile k and a window of m tiles, the events that count are those of
tiles k - m + 1 .. k - 1 (whole) plus those of tile k up to t (parity.aggregation.windows):

- whole tiles: the events are grouped per (keys, tile) into mergeable partials (the online
  tiles' partials, aggregation/partials.py); each distinct marker tile is joined to the partials
  of its entity's tiles k - m + 1 .. k - 1 (an equi-join on keys and a block of as many tiles as
  the longest window, the block of k and the one before) and grouped into one partial;
- the current tile: each distinct marker is joined to its own tile's events at or before t, on
  (keys, tile), and grouped into the same partials;
- the two are merged (count and sum add, min/max, mean from count and sum, stddev by Chan et
  al.'s update, last/last_n by (event time, ingestion order), count_distinct by set union) and
  finished into the value; an entity with no event in the longest window gets nulls.

Cost: a group-by of the events per (keys, tile); per marker tile, at most 2 x (longest window in
tiles) tile partials of its entity; per marker, the events of its own tile. See docs/scale.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from parity.definitions import Aggregation, DType, FeatureView
from parity.offline.request import ViewRequest

_TILE = "__pw_tile"  # the tile index of an event or a marker: floor(__ts / tile)
_BLOCK = "__pw_block"  # a tile's block: floor(tile index / tiles in the longest window)
_SEEN = "__pw_seen"  # the event count (values or not) of the view's longest window
_SUM_TYPES = {"Int64": "bigint", "Float64": "double"}


def add_windows(left: DataFrame, events: DataFrame, view_request: ViewRequest) -> DataFrame:
    """`left` (entity columns, __rid, __ts) with one column per `view_request.output_names`
    appended, in that order: each aggregation over the entity's `events` (keys, __ts, __ord and
    the input columns) in its window at the row's __ts; null for an entity not seen."""
    view = view_request.view
    keys = list(view.join_keys)
    by_output = {a.output_name: a for a in view.aggregations}
    wanted = [by_output[name] for name in view_request.features]
    columns = list(dict.fromkeys(a.column for a in wanted))
    values = {column: f"__pw_v{number}" for number, column in enumerate(columns)}
    tile = view.tile_us
    longest = max(a.window_us for a in view.aggregations)
    plain = events.select(
        *[F.col(k).alias(f"__pw_e{i}") for i, k in enumerate(keys)],
        F.col("__ts").alias("__pw_ts"),
        F.col("__ord").alias("__pw_ord"),
        _tile_index("__ts", tile),
        *[F.col(c).alias(values[c]) for c in columns],
    )
    partials = [_partial(a, _value(view, a, values[a.column])) for a in wanted]
    seen = F.count("__pw_ts")
    marks = left.select(*keys, "__ts").distinct().withColumn(_TILE, _tile_expr("__ts", tile))
    joined = _current_tile(marks, plain, keys, [*partials, seen])
    if longest > tile:
        whole = _whole_tiles(marks, plain, keys, wanted, partials, tile, longest // tile)
        joined = joined.join(whole, on=[*keys, _TILE], how="left")
    else:  # one-tile windows only: no whole tiles
        joined = joined.withColumn(_SEEN, F.lit(None).cast("bigint"))
    result = joined.select(*keys, "__ts", *_outputs(view_request, wanted))
    appended = left.join(result, on=[*keys, "__ts"], how="left")
    return appended.select(*left.columns, *view_request.output_names)


def _outputs(view_request: ViewRequest, wanted: Sequence[Aggregation]) -> list[Column]:
    """Each feature: the current tile's partial `__pw_p<i>` merged with the whole tiles'
    `__pw_w<i>` (windows of more than one tile), finished; null unless the entity is seen (an
    event in the longest window: `__pw_p<last>` of the current tile plus _SEEN of the others)."""
    view = view_request.view
    seen = F.coalesce(F.col(f"__pw_p{len(wanted)}"), F.lit(0)) + F.coalesce(F.col(_SEEN), F.lit(0))
    outputs = []
    for i, (aggregation, name) in enumerate(zip(wanted, view_request.output_names, strict=True)):
        part = F.col(f"__pw_p{i}")
        if aggregation.window_us > view.tile_us:
            part = _merge(aggregation, F.col(f"__pw_w{i}"), part)
        value = _finish(aggregation, view.input(aggregation.column).dtype, part)
        outputs.append(F.when(seen > 0, value).alias(name))
    return outputs


def _tile_expr(column: str, tile: int) -> Column:
    return F.expr(f"(`{column}` - pmod(`{column}`, {tile}L)) div {tile}L")


def _tile_index(column: str, tile: int) -> Column:
    return _tile_expr(column, tile).alias(_TILE)


def _current_tile(
    marks: DataFrame, plain: DataFrame, keys: Sequence[str], partials: Sequence[Column]
) -> DataFrame:
    """Per marker: the partials of its own tile's events at or before t."""
    same = [F.col(f"m.`{k}`") == F.col(f"e.__pw_e{i}") for i, k in enumerate(keys)]
    condition = reduce(
        lambda a, b: a & b,
        [
            *same,
            F.col(f"m.{_TILE}") == F.col(f"e.{_TILE}"),
            F.col("e.__pw_ts") <= F.col("m.__ts"),
        ],
    )
    joined = marks.alias("m").join(plain.alias("e"), condition, "left")
    groups = [F.col(f"m.`{k}`").alias(k) for k in keys]
    return joined.groupBy(*groups, F.col("m.__ts").alias("__ts"), F.col(f"m.{_TILE}")).agg(
        *[p.alias(f"__pw_p{i}") for i, p in enumerate(partials)]
    )


def _whole_tiles(
    marks: DataFrame,
    plain: DataFrame,
    keys: Sequence[str],
    wanted: Sequence[Aggregation],
    partials: Sequence[Column],
    tile: int,
    span: int,
) -> DataFrame:
    """Per marker tile k (keys, _TILE): for each window of m > 1 tiles, the merged partial of
    the whole tiles k - m + 1 .. k - 1 (`__pw_w<i>`), and the event count of the longest window
    (`span` tiles) in _SEEN.

    The events' per-tile partials are joined to the marker tiles in blocks of `span` tiles: the
    tiles a marker tile reads lie in its own block or the one before, so the join is on (keys,
    block), and a marker tile meets at most 2 x span tiles of its entity."""
    groups = [F.col(f"__pw_e{i}").alias(k) for i, k in enumerate(keys)]
    tiles = plain.groupBy(*groups, _TILE).agg(
        *[p.alias(f"__pw_p{i}") for i, p in enumerate(partials)],
        F.count(F.lit(1)).alias(_SEEN),
    )
    block = _tile_expr(_TILE, span)
    tiles = tiles.withColumn(_BLOCK, block)
    marked = marks.select(*keys, _TILE).distinct()
    marked = marked.withColumn(_BLOCK, F.explode(F.array(block, block - 1)))
    back = F.col(f"m.{_TILE}") - F.col(f"t.{_TILE}")  # how many tiles before the marker's
    condition = reduce(
        lambda a, b: a & b,
        [
            *[F.col(f"m.`{k}`") == F.col(f"t.`{k}`") for k in keys],
            F.col(f"m.{_BLOCK}") == F.col(f"t.{_BLOCK}"),
            back >= 1,
            back < span,
        ],
    )
    joined = marked.alias("m").join(tiles.alias("t"), condition)
    merged = [
        _over(a, F.when(back < a.window_us // tile, F.col(f"t.__pw_p{i}"))).alias(f"__pw_w{i}")
        for i, a in enumerate(wanted)
        if a.window_us > tile
    ]
    groups = [F.col(f"m.`{k}`").alias(k) for k in keys]
    return joined.groupBy(*groups, F.col(f"m.{_TILE}").alias(_TILE)).agg(
        *merged, F.sum(F.col(f"t.{_SEEN}")).alias(_SEEN)
    )


# Partials per function, the shapes of aggregation/partials.py as Spark values:
#   count, sum, min, max: the value      mean: {n, s}      stddev: {n, m, m2}
#   last: {t, o, v}      last_n: [{t, o, v}], newest first      count_distinct: array of values


def _entry(value: Column, ts: Column, order: Column) -> Column:
    return F.when(value.isNotNull(), F.struct(ts.alias("t"), order.alias("o"), value.alias("v")))


def _value(view: FeatureView, aggregation: Aggregation, column: str) -> Column:
    """The aggregated column; for count_distinct of floats -0.0 is 0.0 (they are equal, and
    DuckDB counts them once, but Spark's collect_set keeps both)."""
    value = F.col(column)
    if aggregation.function == "count_distinct" and view.input(aggregation.column).dtype.kind in (
        "Float32",
        "Float64",
    ):
        return F.when(value == 0, F.abs(value)).otherwise(value)
    return value


def _partial(aggregation: Aggregation, value: Column) -> Column:
    """The aggregate of a group of events (columns __pw_ts, __pw_ord) into one partial."""
    ts, order = F.col("__pw_ts"), F.col("__pw_ord")
    function = aggregation.function
    number = value.cast("double")
    if function == "count":
        return F.count(value)
    if function == "sum":
        return F.sum(value)
    if function == "min":
        return F.min(value)
    if function == "max":
        return F.max(value)
    if function == "mean":
        return F.struct(F.count(value).alias("n"), F.sum(number).alias("s"))
    if function == "stddev":
        n = F.count(value)
        return F.struct(n.alias("n"), F.avg(number).alias("m"), (F.var_pop(number) * n).alias("m2"))
    if function == "last":
        return F.max(_entry(value, ts, order))
    if function == "last_n":
        return _newest(F.collect_list(_entry(value, ts, order)), aggregation.n)
    return F.collect_set(value)  # count_distinct


def _newest(entries: Column, n: int | None) -> Column:
    return F.slice(F.sort_array(entries, asc=False), 1, n or 0)


def _over(aggregation: Aggregation, partial: Column) -> Column:
    """The aggregate merging a group's partials (null partials ignored)."""
    function = aggregation.function
    if function in ("count", "sum"):
        return F.sum(partial)
    if function == "min":
        return F.min(partial)
    if function in ("max", "last"):
        return F.max(partial)
    if function == "mean":
        return F.struct(F.sum(partial["n"]).alias("n"), F.sum(partial["s"]).alias("s"))
    listed = F.collect_list(partial)
    if function == "stddev":
        zero = F.struct(
            F.lit(0).cast("bigint").alias("n"),
            F.lit(0.0).alias("m"),
            F.lit(0.0).alias("m2"),
        )
        return F.aggregate(listed, zero, _chan)
    if function == "last_n":
        return _newest(F.flatten(listed), aggregation.n)
    return F.array_distinct(F.flatten(listed))  # count_distinct


def _chan(a: Column, b: Column) -> Column:
    """Two stddev partials merged (Chan et al.), as aggregation/partials.py does online."""
    n = a["n"] + b["n"]
    delta = b["m"] - a["m"]
    both = F.struct(
        n.alias("n"),
        (a["m"] + delta * b["n"] / n).alias("m"),
        (a["m2"] + b["m2"] + delta * delta * a["n"] * b["n"] / n).alias("m2"),
    )
    empty: Callable[[Column], Column] = lambda p: p.isNull() | (p["n"] == 0)  # noqa: E731
    return F.when(empty(a), b).when(empty(b), a).otherwise(both)


def _merge(aggregation: Aggregation, a: Column, b: Column) -> Column:
    """The whole tiles' partial `a` (null if none) merged with the current tile's `b`."""
    function = aggregation.function
    if function in ("count", "sum"):
        return F.coalesce(a + b, a, b)
    if function == "min":
        return F.least(a, b)
    if function in ("max", "last"):
        return F.greatest(a, b)
    if function == "mean":
        return F.struct(
            (F.coalesce(a["n"], F.lit(0)) + F.coalesce(b["n"], F.lit(0))).alias("n"),
            F.coalesce(a["s"] + b["s"], a["s"], b["s"]).alias("s"),
        )
    if function == "stddev":
        return _chan(a, b)
    if function == "last_n":
        return _either(a, b, _newest(F.concat(a, b), aggregation.n))
    return _either(a, b, F.array_union(a, b))  # count_distinct


def _either(a: Column, b: Column, both: Column) -> Column:
    """`both` when `a` and `b` are set, else the one that is."""
    return F.when(a.isNull(), b).when(b.isNull(), a).otherwise(both)


def _finish(aggregation: Aggregation, column: DType, partial: Column) -> Column:
    """The feature value of a merged partial (the empty-window values of Aggregation's doc)."""
    function = aggregation.function
    if function == "count":
        return F.coalesce(partial, F.lit(0)).cast("bigint")
    if function == "sum":
        kind = _SUM_TYPES[aggregation.output_dtype(column).kind]
        return F.coalesce(partial.cast(kind), F.lit(0).cast(kind))
    if function == "count_distinct":
        return F.when(partial.isNull(), F.lit(0)).otherwise(F.size(partial)).cast("bigint")
    if function == "last_n":
        return F.transform(partial, lambda entry: entry["v"])
    if function == "mean":
        return F.when(partial["n"] > 0, partial["s"] / partial["n"])
    if function == "stddev":
        variance = F.greatest(partial["m2"], F.lit(0.0)) / (partial["n"] - 1)
        return F.when(partial["n"] > 1, F.sqrt(variance))
    if function == "last":
        return partial["v"]
    return partial  # min, max
