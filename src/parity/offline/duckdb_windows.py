"""SQL text of windowed aggregations for point-in-time retrieval on DuckDB. Pure string building.

Each distinct (keys, t) of the entity frame becomes a marker row in its entity's event stream;
one window function per aggregation then aggregates, for each marker, the frame
`RANGE BETWEEN (t - window_start(t)) PRECEDING AND CURRENT ROW` — exactly the events
`window_start(t) <= e <= t` of parity.aggregation.windows. DuckDB evaluates such frames with
segment trees, so no entity row scans its events one by one. Markers carry nulls, and every
function ignores nulls, so they never count.
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


def window_ctes(index: int, request: ViewRequest, scan: SourceScan, left: str) -> list[str]:
    """CTEs adding one aggregated view's window values to the rows of `left` (__rid, __ts)."""
    view = request.view
    tile = view.tile_us
    keys = [quote(k) for k in view.join_keys]
    key_list = ", ".join(keys)
    by_output = {a.output_name: a for a in view.aggregations}
    wanted = [by_output[name] for name in request.features]
    columns = list(dict.fromkeys(a.column for a in wanted))
    values = []
    for number, aggregation in enumerate(wanted):
        back = f"(((__ts % {tile}) + {tile}) % {tile} + {aggregation.window_us - tile})"
        value = (
            f"{_function_sql(aggregation, view)} OVER (PARTITION BY {key_list} ORDER BY __ts "
            f"RANGE BETWEEN {back} PRECEDING AND CURRENT ROW)"
        )
        if aggregation.function == "sum":  # integer sums come back as HUGEINT otherwise
            dtype = aggregation.output_dtype(view.input(aggregation.column).dtype)
            value = f"CAST({value} AS {duck_type(dtype)})"
        values.append(f"{value} AS __a{number}")
    # Seen: an event (whatever its values) in the view's longest window; else every output is
    # null, as online answers NOT_FOUND.
    longest = max(a.window_us for a in view.aggregations)
    back = f"(((__ts % {tile}) + {tile}) % {tile} + {longest - tile})"
    values.append(
        f"count(CASE WHEN NOT __mark THEN 1 END) OVER (PARTITION BY {key_list} ORDER BY __ts "
        f"RANGE BETWEEN {back} PRECEDING AND CURRENT ROW) AS __seen"
    )
    on = " AND ".join(f"l.{k} = w.{k}" for k in keys)
    outputs = ", ".join(
        f"CASE WHEN w.__seen > 0 THEN {_empty_value(a, f'w.__a{number}')} END AS {quote(output)}"
        for number, (a, output) in enumerate(zip(wanted, request.output_names, strict=True))
    )
    events = source_sql(view, columns, scan)
    return [
        f"marks_{index} AS (SELECT DISTINCT {key_list}, __ts FROM {left})",
        f"win_{index} AS (SELECT * FROM (SELECT {key_list}, __ts, __mark, {', '.join(values)} "
        f"FROM (SELECT {key_list}, __ts, __ord, {', '.join(quote(c) for c in columns)}, "
        f"FALSE AS __mark FROM ({events}) UNION ALL BY NAME "
        f"SELECT {key_list}, __ts, TRUE AS __mark FROM marks_{index})) WHERE __mark)",
        f"view_{index} AS (SELECT l.*, {outputs} FROM {left} l LEFT JOIN win_{index} w "
        f"ON {on} AND l.__ts = w.__ts)",
    ]
