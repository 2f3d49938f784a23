"""Data quality of a batch of feature values (pure): rows, null rate, ±inf, values outside the
reference range, categories the reference never showed, and a verdict per check. No I/O: the
registry table and the places that check live in quality_store.py; imports no other layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from parity.errors import QualityInputError

if TYPE_CHECKING:
    import pyarrow as pa

Verdict = Literal["ok", "breach", "no_data", "not_checked"]
CHECKS = ("null_rate", "infinite", "range", "categories")
EXAMPLES = 10  # unseen categories kept per feature (the most frequent first)


@dataclass(frozen=True)
class QualityThresholds:
    """When a check breaches (docs/monitoring.md, "Data quality", says why each default)."""

    null_rate_increase: float = 0.05  # over the reference's null rate (over 0 without one)
    infinite_share: float = 0.0  # any ±inf breaches: no model or drift test can use one
    out_of_range_share: float = 0.01  # of the finite values, below the reference min + above max
    unseen_share: float = 0.01  # of the non-null values, over the reference's "other" share


@dataclass(frozen=True)
class Reference:
    """What quality needs of a column's reference profile: its rows and nulls, its range
    (numeric columns) and its category counts (top-K, the rest summed in `other`)."""

    rows: int
    nulls: int = 0
    minimum: float | None = None
    maximum: float | None = None
    categories: Mapping[str, int] | None = None
    other: int = 0  # non-null reference values outside `categories` (top-K cut them off)

    @property
    def null_rate(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0

    @property
    def other_share(self) -> float:
        """The share of the reference's non-null values not listed in `categories`: a value
        outside them may be one of those (rare then), not necessarily new."""
        listed = sum(self.categories.values()) if self.categories else 0
        total = listed + self.other
        return self.other / total if total else 0.0


@dataclass(frozen=True)
class Counts:
    """Mergeable counts of one feature over one or more batches (`a + b`)."""

    rows: int = 0
    nulls: int = 0  # null or NaN
    infinite: int = 0  # +inf or -inf (not in `nulls`)
    below: int = 0  # finite values below the reference minimum
    above: int = 0  # finite values above the reference maximum
    ranged: int = 0  # finite values compared with the range (0: no range check)
    unseen: int = 0  # non-null values outside the reference's categories
    categorized: int = 0  # non-null values compared with the categories (0: no category check)
    examples: Mapping[str, int] = field(default_factory=dict)  # unseen value -> count

    def __add__(self, other: Counts) -> Counts:
        examples = dict(self.examples)
        for value, count in other.examples.items():
            examples[value] = examples.get(value, 0) + count
        if len(examples) > EXAMPLES:
            examples = dict(sorted(examples.items(), key=lambda i: (-i[1], i[0]))[:EXAMPLES])
        return Counts(
            rows=self.rows + other.rows,
            nulls=self.nulls + other.nulls,
            infinite=self.infinite + other.infinite,
            below=self.below + other.below,
            above=self.above + other.above,
            ranged=self.ranged + other.ranged,
            unseen=self.unseen + other.unseen,
            categorized=self.categorized + other.categorized,
            examples=examples,
        )


@dataclass(frozen=True)
class FeatureQuality:
    """One feature's quality: its counts, rates and a verdict per check (see `CHECKS`)."""

    feature: str
    counts: Counts
    checks: Mapping[str, Verdict]
    limits: Mapping[str, float]  # the threshold each judged check was held to

    @property
    def rows(self) -> int:
        return self.counts.rows

    @property
    def null_rate(self) -> float | None:
        return _share(self.counts.nulls, self.counts.rows)

    @property
    def infinite_share(self) -> float | None:
        return _share(self.counts.infinite, self.counts.rows)

    @property
    def out_of_range_share(self) -> float | None:
        return _share(self.counts.below + self.counts.above, self.counts.ranged)

    @property
    def unseen_share(self) -> float | None:
        return _share(self.counts.unseen, self.counts.categorized)

    @property
    def verdict(self) -> Verdict:
        """The worst check: breach, then ok, then no_data, then not_checked."""
        for worst in ("breach", "ok", "no_data"):
            if worst in self.checks.values():
                return worst
        return "not_checked"


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def count_column(feature: str, values: Any, reference: Reference | None = None) -> Counts:
    """Count one batch of a feature's values (an Arrow array or chunked array, a numpy array
    or a list). Without a reference only rows, nulls and ±inf are counted."""
    import pyarrow.compute as pc

    array = _as_arrow(feature, values)
    rows, nulls, infinite = len(array), array.null_count, 0
    floats = _is_float(array.type)
    if floats and rows > nulls:
        nulls += _true(pc.is_nan(array))
        infinite = _true(pc.is_inf(array))
    counts = Counts(rows=rows, nulls=nulls, infinite=infinite)
    if reference is None:
        return counts  # the push path: nothing more to count
    array = pc.filter(array, pc.is_finite(array)) if floats else array.drop_null()
    if reference.minimum is not None and reference.maximum is not None:
        below, above, ranged = _range(feature, array, reference.minimum, reference.maximum)
        counts = replace(counts, below=below, above=above, ranged=ranged)
    if reference.categories is not None:
        unseen, categorized, examples = _categories(array, reference.categories)
        counts = replace(counts, unseen=unseen, categorized=categorized, examples=examples)
    return counts


def _as_arrow(feature: str, values: Any) -> pa.Array:
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        try:
            values = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as error:
            raise QualityInputError(
                f"feature '{feature}': its values cannot be read as one column ({error}); "
                "pass one type per feature (an Arrow array, a numpy array or a list)"
            ) from None
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    return values


def _is_float(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_floating(kind))


def _true(mask: pa.Array) -> int:
    import pyarrow.compute as pc

    return int(pc.sum(mask).as_py() or 0)


def _is_numeric(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    )


def _range(feature: str, array: pa.Array, low: float, high: float) -> tuple[int, int, int]:
    """(below, above, compared) of the finite values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_null(array.type):  # an all-null column: nothing to compare
        return 0, 0, 0
    if not _is_numeric(array.type):
        raise QualityInputError(
            f"feature '{feature}' holds {array.type} values but its reference is numeric "
            f"(range [{low}, {high}]); check that the column matches the reference's feature"
        )
    numbers = array.cast(pa.float64())
    return _true(pc.less(numbers, low)), _true(pc.greater(numbers, high)), len(numbers)


def _categories(array: pa.Array, known: Mapping[str, int]) -> tuple[int, int, dict[str, int]]:
    """(unseen, compared, the most frequent unseen values with their counts)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_null(array.type) or len(array) == 0:
        return 0, 0, {}
    seen = pc.value_counts(array)
    values = [category_key(v) for v in seen.field("values").to_pylist()]
    tallies = seen.field("counts").to_pylist()
    unseen = {v: int(n) for v, n in zip(values, tallies, strict=True) if v not in known}
    kept = sorted(unseen.items(), key=lambda item: (-item[1], item[0]))[:EXAMPLES]
    return sum(unseen.values()), len(array), dict(kept)


def category_key(value: Any) -> str:
    """How a category is compared with the reference's: its text (`True` -> 'true', 1 -> '1')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def judge(
    feature: str,
    counts: Counts,
    reference: Reference | None = None,
    thresholds: QualityThresholds | None = None,
) -> FeatureQuality:
    """A verdict per check. Null rate and ±inf are always judged (no_data without rows); range
    and categories only with a reference that has them (else not_checked), no_data when no
    value could be compared."""
    limits_of = thresholds or QualityThresholds()
    base_nulls = reference.null_rate if reference is not None else 0.0
    limits = {
        "null_rate": base_nulls + limits_of.null_rate_increase,
        "infinite": limits_of.infinite_share,
    }
    checks: dict[str, Verdict] = {
        "null_rate": _against(_share(counts.nulls, counts.rows), limits["null_rate"]),
        "infinite": _against(_share(counts.infinite, counts.rows), limits["infinite"]),
        "range": "not_checked",
        "categories": "not_checked",
    }
    if reference is not None and reference.minimum is not None and reference.maximum is not None:
        limits["range"] = limits_of.out_of_range_share
        checks["range"] = _against(
            _share(counts.below + counts.above, counts.ranged), limits["range"]
        )
    if reference is not None and reference.categories is not None:
        limits["categories"] = reference.other_share + limits_of.unseen_share
        checks["categories"] = _against(
            _share(counts.unseen, counts.categorized), limits["categories"]
        )
    return FeatureQuality(feature, counts, checks, limits)


def _against(value: float | None, limit: float) -> Verdict:
    if value is None:
        return "no_data"
    return "breach" if value > limit else "ok"


def check_batch(
    columns: Mapping[str, Any],
    references: Mapping[str, Reference] | None = None,
    thresholds: QualityThresholds | None = None,
) -> list[FeatureQuality]:
    """Quality of each column of one batch (feature name -> values), each against its reference
    when `references` has one. Columns of unequal length are refused."""
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise QualityInputError(
            f"the batch's columns differ in length ({lengths}); pass one batch of rows"
        )
    refs = references or {}
    return [
        judge(name, count_column(name, values, refs.get(name)), refs.get(name), thresholds)
        for name, values in columns.items()
    ]


def signals(results: list[FeatureQuality]) -> dict[str, float]:
    """Alert signals (monitoring/alerts.py): `null_rate:<feature>` for each feature with rows."""
    return {f"null_rate:{q.feature}": rate for q in results if (rate := q.null_rate) is not None}
