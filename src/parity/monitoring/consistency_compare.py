"""Online/offline comparison of one feature's values row by row, and the counts per hour: pure
(Arrow arrays and numpy in, outcome codes and counts out). Must not read logs or stores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from parity.timeutil import from_micros

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

# Outcome of one row: values equal; both present and different; null on one side; both null.
MATCH, MISMATCH, ONLINE_NULL, OFFLINE_NULL, BOTH_NULL = 0, 1, 2, 3, 4
OUTCOMES = 5
# Relative tolerance of float equality: online values went through encoding (JSON in the log),
# so a float64 may differ in its last bits; a float32 was widened from 24-bit precision.
FLOAT64_REL_TOL = 1e-9
FLOAT32_REL_TOL = 1e-6
HOUR_US = 3_600_000_000


@dataclass(frozen=True)
class Comparison:
    """Per row: `codes` (MATCH ... BOTH_NULL); `smape` the SMAPE term |a-b|/((|a|+|b|)/2) where
    both values are present numbers (NaN elsewhere), None for a non-numeric feature."""

    codes: np.ndarray[Any, Any]
    smape: np.ndarray[Any, Any] | None


@dataclass(frozen=True)
class Counts:
    """Agreement counts of one feature (in one hour, or overall).

    `mismatch` counts every disagreement: both present and unequal, or null on exactly one
    side; `online_only_null` and `offline_only_null` are the parts of it with a null on one
    side. `both_null` rows agree. `stale` is the part of `mismatch` explained by lag: the online
    value equals the offline value at the online value's own event time (see docs). `smape` is
    the mean SMAPE term over rows where both are present numbers (None: not numeric, or none)."""

    total: int
    mismatch: int
    online_only_null: int
    offline_only_null: int
    both_null: int
    stale: int
    smape: float | None

    @property
    def mismatch_rate(self) -> float:
        return self.mismatch / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "mismatch": self.mismatch,
            "online_only_null": self.online_only_null,
            "offline_only_null": self.offline_only_null,
            "both_null": self.both_null,
            "stale": self.stale,
            "mismatch_rate": self.mismatch_rate,
            "smape": self.smape,
        }


@dataclass(frozen=True)
class Bucket:
    """Counts of one feature in the hour starting at `hour` (UTC) of request time."""

    feature: str
    hour: datetime
    counts: Counts


def float_tolerance(arrow_type: pa.DataType) -> float | None:
    """The relative tolerance of equality for a column of `arrow_type`; None for exact types."""
    import pyarrow.types as t

    if t.is_float32(arrow_type) or t.is_float16(arrow_type):
        return FLOAT32_REL_TOL
    if t.is_floating(arrow_type) or t.is_decimal(arrow_type):
        return FLOAT64_REL_TOL
    return None


def compare(online: pa.Array | pa.ChunkedArray, offline: pa.Array | pa.ChunkedArray) -> Comparison:
    """Compare served values with replayed ones, row by row. Equality follows the offline
    column's type: floats within a relative tolerance (NaN and +-inf count as null on both
    sides: the log cannot hold them), integers, booleans, strings and timestamps exactly; lists
    element by element with the element's rule; bytes by their base64 text (as logged)."""
    import pyarrow.types as t

    kind = offline.type
    if len(online) != len(offline):
        raise ValueError(f"{len(online)} online values against {len(offline)} offline values")
    if t.is_floating(kind) or t.is_integer(kind) or t.is_decimal(kind):
        return _numbers(online, offline, float_tolerance(kind))
    if t.is_list(kind) or t.is_large_list(kind) or t.is_binary(kind) or t.is_large_binary(kind):
        return _python(online.to_pylist(), offline.to_pylist(), float_tolerance(_element(kind)))
    return _exact(online, offline)


def _numbers(
    online: pa.Array | pa.ChunkedArray, offline: pa.Array | pa.ChunkedArray, tol: float | None
) -> Comparison:
    import numpy as np
    import pyarrow as pa

    target = pa.float64() if tol is not None else pa.int64()
    a = _values(online.cast(target, safe=False))
    b = _values(offline.cast(target, safe=False))
    a_null = _nulls(online)
    b_null = _nulls(offline)
    if tol is not None:
        a_null |= ~np.isfinite(a)
        b_null |= ~np.isfinite(b)
        a = np.where(a_null, 0.0, a)
        b = np.where(b_null, 0.0, b)
        with np.errstate(over="ignore", invalid="ignore"):  # |a - b| may overflow to inf
            gap = np.abs(a - b)
        equal = (a == b) | (gap <= tol * np.maximum(np.abs(a), np.abs(b)))
    else:
        equal = a == b
    codes = _codes(a_null, b_null, equal)
    terms = smape_terms(a.astype(np.float64, copy=False), b.astype(np.float64, copy=False))
    terms[a_null | b_null] = np.nan
    return Comparison(codes, terms)


def smape_terms(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """|a-b| / ((|a|+|b|)/2) per pair; 0 where both are 0 (0/0 = 0)."""
    import numpy as np

    half_a = a * 0.5  # halves: no overflow near the largest floats
    half_b = b * 0.5
    scale = np.abs(half_a) + np.abs(half_b)
    np.subtract(half_a, half_b, out=half_a)
    np.abs(half_a, out=half_a)
    out = np.zeros(len(a))
    np.divide(half_a, scale, out=out, where=scale > 0)
    out *= 2.0
    return out


def _exact(online: pa.Array | pa.ChunkedArray, offline: pa.Array | pa.ChunkedArray) -> Comparison:
    import pyarrow.compute as pc

    same = pc.equal(online.cast(offline.type), offline).fill_null(False)
    return Comparison(_codes(_nulls(online), _nulls(offline), _bools(same)), None)


def _python(online: list[Any], offline: list[Any], tol: float | None) -> Comparison:
    import numpy as np

    a_null = np.array([v is None for v in online], dtype=bool)
    b_null = np.array([v is None for v in offline], dtype=bool)
    equal = np.array([_same(x, y, tol) for x, y in zip(online, offline, strict=True)], dtype=bool)
    return Comparison(_codes(a_null, b_null, equal), None)


def _same(online: Any, offline: Any, tol: float | None) -> bool:
    if isinstance(offline, bytes):
        from base64 import b64encode

        return bool(online == b64encode(offline).decode("ascii"))
    if isinstance(offline, list) and isinstance(online, list):
        return len(online) == len(offline) and all(
            _same(x, y, tol) for x, y in zip(online, offline, strict=True)
        )
    if tol is not None and isinstance(offline, float) and not math.isfinite(offline):
        return online is None  # the log holds NaN and +-inf as null
    if tol is not None and isinstance(online, int | float) and isinstance(offline, int | float):
        a, b = float(online), float(offline)
        return a == b or abs(a - b) <= tol * max(abs(a), abs(b))
    return bool(online == offline)


def _element(kind: pa.DataType) -> pa.DataType:
    import pyarrow.types as t

    return kind.value_type if t.is_list(kind) or t.is_large_list(kind) else kind


def _codes(
    a_null: np.ndarray[Any, Any], b_null: np.ndarray[Any, Any], equal: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    import numpy as np

    codes = np.where(equal, MATCH, MISMATCH).astype(np.int8)
    codes[b_null & ~a_null] = OFFLINE_NULL
    codes[a_null & ~b_null] = ONLINE_NULL
    codes[a_null & b_null] = BOTH_NULL
    return codes


def _nulls(values: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, Any]:
    return _bools(values.is_null())


def _bools(values: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, Any]:
    import numpy as np

    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=bool).copy()


def _values(values: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, Any]:
    import numpy as np

    return np.asarray(values.fill_null(0).to_numpy(zero_copy_only=False))


def is_mismatch(codes: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Rows whose values disagree (a different value, or a null on exactly one side)."""
    import numpy as np

    return np.asarray((codes == MISMATCH) | (codes == ONLINE_NULL) | (codes == OFFLINE_NULL))


def counts(comparison: Comparison, stale: np.ndarray[Any, Any] | None = None) -> Counts:
    """The counts of a whole comparison; `stale` marks rows explained by lag."""
    import numpy as np

    tally = np.bincount(comparison.codes, minlength=OUTCOMES)
    mismatch = is_mismatch(comparison.codes)
    late = 0 if stale is None else int(np.count_nonzero(stale & mismatch))
    return _counts(tally, late, _mean(comparison.smape))


def _counts(tally: Any, stale: int, smape: float | None) -> Counts:
    return Counts(
        total=int(tally.sum()),
        mismatch=int(tally[MISMATCH] + tally[ONLINE_NULL] + tally[OFFLINE_NULL]),
        online_only_null=int(tally[ONLINE_NULL]),
        offline_only_null=int(tally[OFFLINE_NULL]),
        both_null=int(tally[BOTH_NULL]),
        stale=stale,
        smape=smape,
    )


def _mean(terms: np.ndarray[Any, Any] | None) -> float | None:
    import numpy as np

    if terms is None:
        return None
    present = terms[~np.isnan(terms)]
    return float(present.mean()) if len(present) else None


@dataclass(frozen=True)
class Hours:
    """The distinct hours of request time (`starts`, epoch microseconds, ascending) and each
    row's position among them (`index`); computed once for all features."""

    starts: np.ndarray[Any, Any]
    index: np.ndarray[Any, Any]


def hours_of(at_us: np.ndarray[Any, Any]) -> Hours:
    """Hour buckets of request times given as epoch microseconds per row."""
    import numpy as np

    starts, index = np.unique(np.asarray(at_us) // HOUR_US, return_inverse=True)
    return Hours(starts * HOUR_US, index.reshape(-1))


def hourly(
    feature: str,
    hours: Hours,
    comparison: Comparison,
    stale: np.ndarray[Any, Any] | None = None,
) -> list[Bucket]:
    """Counts per hour of request time, hours in order."""
    import numpy as np

    index, n = hours.index, len(hours.starts)
    tally = np.bincount(index * OUTCOMES + comparison.codes, minlength=n * OUTCOMES)
    tally = tally.reshape(n, OUTCOMES)
    late = np.zeros(n, dtype=np.int64)
    if stale is not None:
        late = np.bincount(index, weights=stale & is_mismatch(comparison.codes), minlength=n)
    smape: list[float | None] = [None] * n
    if comparison.smape is not None:
        present = ~np.isnan(comparison.smape)
        sums = np.bincount(index[present], weights=comparison.smape[present], minlength=n)
        seen = np.bincount(index[present], minlength=n)
        smape = [float(s / c) if c else None for s, c in zip(sums, seen, strict=True)]
    return [
        Bucket(feature, from_micros(int(start)), _counts(tally[i], int(late[i]), smape[i]))
        for i, start in enumerate(hours.starts)
    ]
