"""NumPy views of Arrow arrays that do not import pandas (pyarrow's Array.to_numpy does, a third
of a second in a fresh process, in pyarrow 26). Imports numpy and pyarrow: load it when used."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_NUMPY_TYPES = {
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "float": np.float32,
    "double": np.float64,
}


def numpy_of(array: pa.Array) -> np.ndarray:
    """The values of a signed-integer or float array without nulls, as a NumPy view of its
    buffer (Array.to_numpy would import pandas, a third of a second, in pyarrow 26)."""
    kind = _NUMPY_TYPES.get(str(array.type))
    if kind is None or array.null_count:
        raise TypeError(f"no NumPy view of {array.type} with {array.null_count} nulls")
    width = np.dtype(kind).itemsize
    return np.frombuffer(array.buffers()[1], kind, len(array), array.offset * width)
