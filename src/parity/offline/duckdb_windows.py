"""SQL text of windowed aggregations for point-in-time retrieval on DuckDB. Pure string building.

Each distinct (keys, t) of the entity frame becomes a marker row in its entity's event stream;
window functions then aggregate, for each marker, the frame
`RANGE BETWEEN (t - window_start(t)) PRECEDING AND CURRENT ROW` — exactly the events
`window_start(t) <= e <= t` of parity.aggregation.windows. DuckDB evaluates such frames with
segment trees, so no entity row scans its events one by one. Markers carry nulls, and every
function ignores nulls, so they never count.

A window function is evaluated at every row of its input, events included, though only the
markers' values are kept. So the events are first pruned, per window length W: an ASOF join gives
each event the first marker at or after it (same keys), and an event is kept for W only when it
lies in that marker's window. No marker's frame loses an event: a later marker's window starts
no earlier (window_start grows with t), so an event outside the first following marker's window
is outside every marker's window. Each window length then gets its own pass over its events,
which for short windows over long histories is a small fraction of them.
"""

from __future__ import annotations

from parity.definitions import Aggregation, FeatureView
from parity.offline.duckdb_sql import SourceScan, duck_type, quote, source_sql
from parity.offline.request import ViewRequest


def _function_sql(aggregation: Aggregation, view: FeatureView) -> str:
    column = quote(aggregation.column)
    newest = f"CASE WHEN {column} IS NOT NULL THEN (__ts, __ord) END"
    function = aggregation.function
    if function == "count":
        return f"count({column})"
    if function == "count_distinct":
        return f"count(DISTINCT {column})"
    if function == "sum":
        return f"sum({column})"
    if function == "mean":
        return f"avg({column})"
    if function == "stddev":
        return f"stddev_samp({column})"
    if function in ("min", "max"):
        return f"{function}({column})"
    if function == "last":
        return f"arg_max({column}, {newest})"
    return f"max_by({column}, {newest}, {aggregation.n})"  # last_n, newest first


def _empty_value(aggregation: Aggregation, expression: str) -> str:
    """What a window with no values is: 0 for counts and sums, [] for last_n, else null."""
    if aggregation.function in ("count", "count_distinct", "sum"):
        return f"coalesce({expression}, 0)"
    if aggregation.function == "last_n":
        return f"coalesce({expression}, [])"
    return expression


def _window_start_sql(moment: str, window_us: int, tile_us: int) -> str:
    """windows.window_start in SQL: tile_start(t) + T - W, the floor also before 1970."""
    return (
        f"({moment} - ((({moment} % {tile_us}) + {tile_us}) % {tile_us}) + {tile_us - window_us})"
    )


def _frame_sql(window_us: int, tile_us: int) -> str:
    back = f"(((__ts % {tile_us}) + {tile_us}) % {tile_us} + {window_us - tile_us})"
    return f"RANGE BETWEEN {back} PRECEDING AND CURRENT ROW"


def window_ctes(index: int, request: ViewRequest, scan: SourceScan, left: str) -> list[str]:
    """CTEs adding one aggregated view's window values to the rows of `left` (__rid, __ts)."""
    view = request.view
    by_output = {a.output_name: a for a in view.aggregations}
    wanted = [by_output[name] for name in request.features]
    # Seen: an event (whatever its values) in the view's longest window; else every output is
    # null, as online answers NOT_FOUND. Decided from the longest window's pass.
    longest = max(a.window_us for a in view.aggregations)
    shorter = sorted({a.window_us for a in wanted} - {longest})
    keys = ", ".join(quote(k) for k in view.join_keys)
    return [
        f"marks_{index} AS (SELECT DISTINCT {keys}, __ts FROM {left})",
        _long_pass(index, view, wanted, scan, longest, bool(shorter)),
        *(
            _short_pass(index, number, view, wanted, window)
            for number, window in enumerate(shorter)
        ),
        f"view_{index} AS {_joined(index, request, wanted, [longest, *shorter], left)}",
    ]


def _long_pass(
    index: int,
    view: FeatureView,
    wanted: list[Aggregation],
    scan: SourceScan,
    longest: int,
    pruning: bool,
) -> str:
    """The longest window's pass over every event and marker. Navigation functions (cheaper
    than the aggregates' segment trees) give each marker the newest event at or before it
    (__newest: seen when in the longest window), and, when shorter windows prune by it, each
    event the first marker at or after it (__next). RANGE frames include the row's peers:
    events and markers at the same time."""
    keys = ", ".join(quote(k) for k in view.join_keys)
    partition = f"PARTITION BY {keys} ORDER BY __ts"
    before = f"OVER ({partition} RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    after = f"OVER ({partition} RANGE BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING)"
    newest = f"last_value(CASE WHEN NOT __mark THEN __ts END IGNORE NULLS) {before} AS __newest"
    following = f"first_value(CASE WHEN __mark THEN __ts END IGNORE NULLS) {after} AS __next"
    fields = _fields(view, wanted)
    columns = [*_values(view, wanted, longest), newest, *([following] if pruning else [])]
    return (
        f"long_{index} AS {'MATERIALIZED ' if pruning else ''}(SELECT {fields}, __mark, "
        f"{', '.join(columns)} FROM (SELECT {fields}, FALSE AS __mark FROM "
        f"({_events_sql(view, wanted, scan)}) UNION ALL BY NAME "
        f"SELECT {keys}, __ts, TRUE AS __mark FROM marks_{index}))"
    )


def _short_pass(
    index: int, number: int, view: FeatureView, wanted: list[Aggregation], window: int
) -> str:
    """A shorter window's pass: the events in their next marker's window, and the markers with
    an event in theirs (the others' values are those of an empty window, as the outer join and
    _empty_value give them)."""
    tile = view.tile_us
    keys = ", ".join(quote(k) for k in view.join_keys)
    kept = f"__ts >= {_window_start_sql('__next', window, tile)}"
    filled = f"__newest >= {_window_start_sql('__ts', window, tile)}"
    return (
        f"win_{index}_{number} AS (SELECT * FROM (SELECT {keys}, __ts, __mark, "
        f"{', '.join(_values(view, wanted, window))} FROM long_{index} "
        f"WHERE (NOT __mark AND {kept}) OR (__mark AND {filled})) WHERE __mark)"
    )


def _joined(
    index: int, request: ViewRequest, wanted: list[Aggregation], lengths: list[int], left: str
) -> str:
    """`left`'s rows with each pass's markers joined on (keys, t), then the outputs (pass 0 is
    the longest window's, which decides seen)."""
    view = request.view
    keys = [quote(k) for k in view.join_keys]
    sources = [f"(SELECT * FROM long_{index} WHERE __mark)"]
    sources += [f"win_{index}_{number}" for number in range(len(lengths) - 1)]
    joins = " ".join(
        f"LEFT JOIN {source} w{number} ON "
        + " AND ".join(f"l.{k} = w{number}.{k}" for k in keys)
        + f" AND l.__ts = w{number}.__ts"
        for number, source in enumerate(sources)
    )
    seen = f"w0.__newest >= {_window_start_sql('w0.__ts', lengths[0], view.tile_us)}"
    outputs = ", ".join(
        f"CASE WHEN {seen} THEN "
        f"{_empty_value(a, f'w{lengths.index(a.window_us)}.__a{position}')} END AS {quote(output)}"
        for position, (a, output) in enumerate(zip(wanted, request.output_names, strict=True))
    )
    return f"(SELECT l.*, {outputs} FROM {left} l {joins})"


def _values(view: FeatureView, wanted: list[Aggregation], window: int) -> list[str]:
    """The window functions of the wanted aggregations of one window length, named by their
    position among the wanted (__a<i>)."""
    keys = ", ".join(quote(k) for k in view.join_keys)
    over = f"OVER (PARTITION BY {keys} ORDER BY __ts {_frame_sql(window, view.tile_us)})"
    return [
        f"{_value_sql(a, view, over)} AS __a{position}"
        for position, a in enumerate(wanted)
        if a.window_us == window
    ]


def _fields(view: FeatureView, wanted: list[Aggregation]) -> str:
    columns = ", ".join(quote(c) for c in dict.fromkeys(a.column for a in wanted))
    return f"{', '.join(quote(k) for k in view.join_keys)}, __ts, __ord, {columns}"


def _events_sql(view: FeatureView, wanted: list[Aggregation], scan: SourceScan) -> str:
    return source_sql(view, list(dict.fromkeys(a.column for a in wanted)), scan)


def _value_sql(aggregation: Aggregation, view: FeatureView, over: str) -> str:
    """The window function; integer sums come back as HUGEINT without the cast."""
    value = f"{_function_sql(aggregation, view)} {over}"
    if aggregation.function == "sum":
        dtype = aggregation.output_dtype(view.input(aggregation.column).dtype)
        return f"CAST({value} AS {duck_type(dtype)})"
    return value
