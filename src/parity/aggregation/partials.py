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

from collections.abc import Iterable
from typing import Any


def fold(function: str, n: int | None, partial: Any, value: Any, ts: int, order: int) -> Any:
    """`partial` with one more non-null value."""
    return merge(function, n, partial, single(function, value, ts, order))


def single(function: str, value: Any, ts: int, order: int) -> Any:
    """The partial of one value."""
    if function == "count":
        return 1
    if function in ("sum", "min", "max"):
        return value
    if function == "mean":
        return [1, value]
    if function == "stddev":
        return [1, float(value), 0.0]
    if function == "last":
        return [ts, order, value]
    if function == "last_n":
        return [[ts, order, value]]
    if function == "count_distinct":
        return [value]
    raise ValueError(f"unknown aggregation function {function!r}")


def merge(function: str, n: int | None, a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    if function in ("count", "sum"):
        return a + b
    if function == "min":
        return min(a, b)
    if function == "max":
        return max(a, b)
    if function == "mean":
        return [a[0] + b[0], a[1] + b[1]]
    if function == "stddev":
        count = a[0] + b[0]
        delta = b[1] - a[1]
        mean = a[1] + delta * b[0] / count
        return [count, mean, a[2] + b[2] + delta * delta * a[0] * b[0] / count]
    if function == "last":
        return a if (a[0], a[1]) >= (b[0], b[1]) else b
    if function == "last_n":
        return sorted([*a, *b], key=lambda e: (e[0], e[1]), reverse=True)[:n]
    if function == "count_distinct":
        return sorted(set(a) | set(b), key=_order)
    raise ValueError(f"unknown aggregation function {function!r}")


def merge_all(function: str, n: int | None, partials: Iterable[Any]) -> Any:
    result = None
    for partial in partials:
        result = merge(function, n, result, partial)
    return result


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
