"""Partial aggregates: what one tile keeps per aggregation, how tiles merge, and the final value.

Pure functions over msgpack-friendly values, so tiles can be stored as they are:

    count: n            sum: s            mean: [n, s]        stddev: [n, mean, m2]
    min / max: v        last: [ts, order, v]                  last_n: [[ts, order, v], ...]
    count_distinct: sorted list of the distinct values

None is the empty partial of every function. Values are folded in any order; `last` and `last_n`
rank by (event time, ingestion order), and stddev merges with Chan et al.'s pairwise update, so
merging tiles in any grouping gives the value of folding every event (floats up to rounding).
"""

from __future__ import annotations

import bisect
import heapq
import operator
from collections.abc import Callable, Iterable
from functools import partial as bind
from functools import reduce
from typing import Any

Merge = Callable[[Any, Any], Any]


def fold(function: str, n: int | None, partial: Any, value: Any, ts: int, order: int) -> Any:
    """`partial` with one more non-null value."""
    return merge(function, n, partial, single(function, value, ts, order))


def single(function: str, value: Any, ts: int, order: int) -> Any:
    """The partial of one value."""
    return singler(function)(value, ts, order)


Single = Callable[[Any, int, int], Any]


def singler(function: str) -> Single:
    """`single` for one function, resolved once."""
    try:
        return _SINGLES[function]
    except KeyError:
        raise ValueError(f"unknown aggregation function {function!r}") from None


_SINGLES: dict[str, Single] = {
    "count": lambda value, ts, order: 1,
    "sum": lambda value, ts, order: value,
    "min": lambda value, ts, order: value,
    "max": lambda value, ts, order: value,
    "mean": lambda value, ts, order: [1, value],
    "stddev": lambda value, ts, order: [1, float(value), 0.0],
    "last": lambda value, ts, order: [ts, order, value],
    "last_n": lambda value, ts, order: [[ts, order, value]],
    # NaN is one distinct value (as in DuckDB), but NaN != NaN and each decoded NaN is a new
    # object, so it is kept as None (never a value: nulls are skipped before single).
    "count_distinct": lambda value, ts, order: [None if value != value else value],
}


def merge(function: str, n: int | None, a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return merger(function, n)(a, b)


def merger(function: str, n: int | None) -> Merge:
    """The merge of two non-empty partials of `function`, resolved once (the hot paths fold
    thousands of partials with it). Never mutates its arguments."""
    if function == "last_n":
        return bind(_last_n, n)
    try:
        return _MERGERS[function]
    except KeyError:
        raise ValueError(f"unknown aggregation function {function!r}") from None


def _mean(a: Any, b: Any) -> Any:
    return [a[0] + b[0], a[1] + b[1]]


def _stddev(a: Any, b: Any) -> Any:
    count = a[0] + b[0]
    delta = b[1] - a[1]
    mean = a[1] + delta * b[0] / count
    return [count, mean, a[2] + b[2] + delta * delta * a[0] * b[0] / count]


def _last(a: Any, b: Any) -> Any:
    return a if (a[0], a[1]) >= (b[0], b[1]) else b


def _last_n(n: int | None, a: Any, b: Any) -> Any:
    return sorted([*a, *b], key=_rank, reverse=True)[:n]


def _rank(entry: Any) -> tuple[Any, Any]:
    return (entry[0], entry[1])


def _min(a: Any, b: Any) -> Any:
    """min in DuckDB's order, where NaN is above every other value (so it loses unless alone)."""
    if a != a:  # NaN
        return b
    return b if b < a else a


def _max(a: Any, b: Any) -> Any:
    """max in DuckDB's order, where NaN is above every other value (so it wins)."""
    if a != a:  # NaN
        return a
    return b if (b > a or b != b) else a


def _count_distinct(a: Any, b: Any) -> Any:
    if len(b) == 1:  # the common case: one more event
        value = b[0]
        if value in a:  # of a value seen before
            return a
        merged = list(a)  # a is sorted and distinct: insert in place of sorting the union
        bisect.insort(merged, value, key=_order)
        return merged
    return sorted(set(a) | set(b), key=_order)


_MERGERS: dict[str, Merge] = {
    "count": operator.add,
    "sum": operator.add,
    "min": _min,
    "max": _max,
    "mean": _mean,
    "stddev": _stddev,
    "last": _last,
    "count_distinct": _count_distinct,
}


def merge_all(function: str, n: int | None, partials: Iterable[Any]) -> Any:
    """All the non-empty partials merged (None when there are none)."""
    listed = list(partials)
    if not listed:
        return None
    if function in ("count", "sum"):
        return sum(listed[1:], listed[0])  # builtins: a window merges dozens of tiles per read
    if function == "min":
        numbers = [p for p in listed if p == p]  # NaN != NaN: min is NaN only when all are
        return min(numbers) if numbers else listed[0]
    if function == "max":
        nan = next((p for p in listed if p != p), None)  # NaN is the largest
        return max(listed) if nan is None else nan
    if function == "mean":
        return [sum(p[0] for p in listed), sum(p[1] for p in listed)]
    if function == "count_distinct":
        return sorted(set().union(*listed), key=_order)
    if function == "last":
        return max(listed, key=_rank)
    if function == "last_n":
        return heapq.nlargest(n or 0, (entry for p in listed for entry in p), key=_rank)
    return reduce(merger(function, n), listed)


def window_value(function: str, n: int | None, partials: list[Any]) -> Any:
    """finish(merge_all(...)) of a window's non-empty partials, without building the merged
    partial where the value needs less (the online read's hot path: dozens of tiles each)."""
    if function == "count_distinct":
        return len(set().union(*partials)) if partials else 0  # the set merge_all sorts
    if function == "last":
        return max(partials, key=_RANK)[2] if partials else None
    return finish(function, merge_all(function, n, partials))


_RANK = operator.itemgetter(0, 1)  # _rank in C: (event time, ingestion order)


def finish(function: str, partial: Any) -> Any:
    """The feature value of a merged partial (the empty-window values of Aggregation's doc)."""
    if function in ("count", "sum"):
        return 0 if partial is None else partial
    if function == "count_distinct":
        return 0 if partial is None else len(partial)
    if function == "last_n":
        return [] if partial is None else [entry[2] for entry in partial]
    if partial is None:
        return None
    if function == "mean":
        return partial[1] / partial[0]
    if function == "stddev":
        return (max(partial[2], 0.0) / (partial[0] - 1)) ** 0.5 if partial[0] > 1 else None
    if function == "last":
        return partial[2]
    return partial  # min, max


def _order(value: Any) -> tuple[str, Any]:
    """Sort key for mixed distinct values (kept sorted so a tile's bytes are deterministic)."""
    return (type(value).__name__, value)
