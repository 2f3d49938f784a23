"""numpy_of: NumPy views of Arrow arrays, checked against Python lists of the same values."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from parity.arrays import numpy_of


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([-(1 << 63), -1, 0, (1 << 63) - 1, 5], pa.int64()),
        ([-128, 0, 127, 3, 4], pa.int8()),
        ([1.5, -0.0, math.inf, -math.inf, 2.5], pa.float64()),
        ([1.5, -0.0, math.inf, 0.25, 2.5], pa.float32()),
    ],
)
def test_a_view_of_a_slice_holds_the_slice_s_values(values: list[float], kind: pa.DataType) -> None:
    array = pa.array(values, kind)
    for start, stop in [(0, 5), (1, 4), (3, 5), (2, 2)]:
        assert numpy_of(array.slice(start, stop - start)).tolist() == values[start:stop]


def test_arrays_with_nulls_or_other_types_are_refused() -> None:
    with pytest.raises(TypeError):
        numpy_of(pa.array([1, None], pa.int64()))
    with pytest.raises(TypeError):
        numpy_of(pa.array([1, 2], pa.uint64()))
