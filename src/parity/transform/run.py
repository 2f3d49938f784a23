"""Run on-demand feature views' functions over retrieved columns: the same function and the same
value rule online (the request's entity rows) and offline (each batch of the training rows).

Functions come from the repo (the registry keeps their name and code hash): `bind` loads them
once and refuses a repo whose function differs from the applied one. Every output is checked
against the view's schema (transform/values.py), so a bad function is a typed error naming the
view and the feature, never a value that differs between the two paths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from parity.definitions.on_demand import OnDemandFeatureView
from parity.errors import EntityFrameError, InvalidDefinition, OnDemandError
from parity.offline.request import OnDemandInput, OnDemandRequest, RetrievalRequest
from parity.transform.values import BadValue, conform_column

if TYPE_CHECKING:
    import pyarrow as pa


def bind(request: RetrievalRequest, load: Callable[[], Mapping[str, OnDemandFeatureView]]) -> None:
    """Give each requested on-demand view its functions, from `load()` (the repo's views)."""
    unbound = [d.view for d in request.on_demand if d.view.udf is None]
    if not unbound:
        return
    repo = load()
    for view in unbound:
        found = repo.get(view.name)
        if found is None or found.udf is None:
            raise InvalidDefinition(
                f"on-demand feature view '{view.name}' is registered but its function is not in "
                "the repo; restore it or run 'parity apply'"
            )
        if found.code_hash != view.code_hash or found.mode != view.mode:
            raise InvalidDefinition(
                f"on-demand feature view '{view.name}': the repo's function differs from the "
                "applied one; run 'parity apply' (or check out the applied version)"
            )
        view.bind(found.udf, found.vectorized_function)


def apply_rows(request: RetrievalRequest, columns: dict[str, list[Any]], rows: int) -> None:
    """Add each on-demand output column to `columns` (online: the function in its mode over the
    entity rows), then drop the columns read only as inputs."""
    for demand in request.on_demand:
        columns.update(compute(demand, columns, rows, vectorized=False))
    for name in request.hidden:
        columns.pop(name, None)


def apply_table(request: RetrievalRequest, table: pa.Table) -> pa.Table:
    """The same over an Arrow table of retrieved rows (offline, a batch at a time); output
    columns have their declared Arrow types, even when there are no rows."""
    import pyarrow as pa

    wanted = {i.column for d in request.on_demand for i in d.inputs}
    columns = {c: table.column(c).to_pylist() for c in wanted if c in table.column_names}
    for demand in request.on_demand:
        outputs = compute(demand, columns, table.num_rows, vectorized=True)
        for feature, output in zip(demand.features, demand.output_names, strict=True):
            arrow_type = demand.view.fields[_index(demand, feature)].dtype.to_arrow()
            table = table.append_column(
                pa.field(output, arrow_type), pa.array(outputs[output], type=arrow_type)
            )
    return table.drop_columns([c for c in request.hidden if c in table.column_names])


def compute(
    demand: OnDemandRequest, columns: Mapping[str, Sequence[Any]], rows: int, *, vectorized: bool
) -> dict[str, list[Any]]:
    """Output column name -> values of each requested feature of `demand`, for `rows` rows.
    `vectorized`: use the row-mode view's vectorized function when it has one (offline)."""
    inputs = {i.name: _input(demand, i, columns) for i in demand.inputs}
    if rows == 0:
        return {output: [] for output in demand.output_names}
    view = demand.view
    if view.udf is None:
        raise InvalidDefinition(f"on-demand feature view '{view.name}' is not bound")
    if view.mode == "pandas":
        result = _by_pandas(demand, view.udf, inputs, rows)
    elif view.mode == "python":
        returned = _call(demand, view.udf, {name: list(values) for name, values in inputs.items()})
        result = _columns_of(demand, returned, rows, inputs)
    elif vectorized and view.vectorized_function is not None:
        result = _by_pandas(demand, view.vectorized_function, inputs, rows)
    else:
        result = _by_row(demand, view.udf, inputs, rows)
    return {
        output: _conform(demand, feature, result[feature])
        for feature, output in zip(demand.features, demand.output_names, strict=True)
    }


def _input(
    demand: OnDemandRequest, given: OnDemandInput, columns: Mapping[str, Sequence[Any]]
) -> list[Any]:
    """One input column; request fields are checked against their declared dtype."""
    values = columns.get(given.column)
    if values is None:
        raise EntityFrameError(
            f"on-demand feature view '{demand.view.name}' needs request field '{given.name}'; "
            "pass it with the entity rows (or as a column of the entity frame)"
        )
    if not given.request:
        return list(values)
    try:
        return conform_column(values, given.dtype)
    except BadValue as bad:
        raise EntityFrameError(
            f"request field '{given.name}' of on-demand feature view '{demand.view.name}' is "
            f"{given.dtype}, but row {bad.index} has {bad.value!r} ({bad.reason})"
        ) from None


def _by_row(
    demand: OnDemandRequest, function: Callable[[Any], Any], inputs: dict[str, list[Any]], rows: int
) -> dict[str, list[Any]]:
    names = demand.view.feature_names
    declared = set(names)
    returns: list[Any] = []
    for values in zip(*inputs.values(), strict=True) if inputs else [()] * rows:
        returned = _call(demand, function, dict(zip(inputs, values, strict=True)))
        if not isinstance(returned, Mapping):
            raise OnDemandError(
                f"on-demand feature view '{demand.view.name}' returned "
                f"{type(returned).__name__}, not a dict of its features"
            )
        if returned.keys() != declared:  # the exact keys are the common case
            _check_names(demand, returned.keys(), inputs, "dict")
        returns.append(returned)
    return {name: [returned[name] for returned in returns] for name in names}


def _columns_of(
    demand: OnDemandRequest, returned: Any, rows: int, inputs: Mapping[str, Any]
) -> dict[str, list[Any]]:
    """The feature columns of what a vectorized function returned: a dict of lists (mode
    "python") or a DataFrame; each checked for its names and length."""
    if _is_frame(returned):
        return _frame_columns(demand, returned, rows, inputs)
    if not isinstance(returned, Mapping):
        raise OnDemandError(
            f"on-demand feature view '{demand.view.name}' returned {type(returned).__name__}, "
            "not a dict of lists (one per feature)"
        )
    _check_names(demand, returned.keys(), inputs, "dict")
    result = {}
    for name in demand.view.feature_names:
        values = returned[name]
        if isinstance(values, str | bytes | Mapping) or not hasattr(values, "__len__"):
            raise OnDemandError(
                f"on-demand feature view '{demand.view.name}': feature '{name}' is a "
                f"{type(values).__name__}, not a list of {rows} values"
            )
        if len(values) != rows:
            raise OnDemandError(
                f"on-demand feature view '{demand.view.name}': feature '{name}' has "
                f"{len(values)} values for {rows} input rows; return one value per row"
            )
        result[name] = list(values)
    return result


def _by_pandas(
    demand: OnDemandRequest, function: Any, inputs: dict[str, list[Any]], rows: int
) -> dict[str, list[Any]]:
    """mode="pandas": a DataFrame in (columns of their declared dtypes), a DataFrame out (row
    mode's vectorized form may return a dict of columns)."""
    import pyarrow as pa

    types = {i.name: i.dtype.to_arrow() for i in demand.inputs}
    arrays = {name: pa.array(values, type=types[name]) for name, values in inputs.items()}
    frame = pa.table(arrays).to_pandas() if arrays else _empty_frame(rows)
    returned = _call(demand, function, frame)
    if demand.view.mode == "pandas" and not _is_frame(returned):
        raise OnDemandError(
            f"on-demand feature view '{demand.view.name}' returned a "
            f"{type(returned).__name__}, not a DataFrame (mode='pandas')"
        )
    return _columns_of(demand, returned, rows, inputs)


def _empty_frame(rows: int) -> Any:
    import pandas as pd

    return pd.DataFrame(index=pd.RangeIndex(rows))


def _is_frame(value: Any) -> bool:
    return type(value).__name__ == "DataFrame" and hasattr(value, "columns")


def _frame_columns(
    demand: OnDemandRequest, frame: Any, rows: int, inputs: Mapping[str, Any]
) -> dict[str, list[Any]]:
    name = demand.view.name
    if len(frame) != rows:
        raise OnDemandError(
            f"on-demand feature view '{name}' returned {len(frame)} rows for {rows} input "
            "rows; return one row per input row"
        )
    if not frame.index.equals(_empty_frame(rows).index):
        raise OnDemandError(
            f"on-demand feature view '{name}' returned rows with another index than its "
            "input's; keep the input's rows in their order (no sort, filter or reset)"
        )
    columns = [str(c) for c in frame.columns]
    _check_names(demand, columns, inputs, "DataFrame")
    return {feature: frame[feature].tolist() for feature in demand.view.feature_names}


def _check_names(
    demand: OnDemandRequest, returned: Any, inputs: Mapping[str, Any], container: str
) -> None:
    """Every declared feature is returned; nothing else is, except inputs passed through."""
    names = list(returned)
    for feature in demand.view.feature_names:
        if feature not in names:
            kind = "column" if container == "DataFrame" else "value"
            raise OnDemandError(
                f"on-demand feature view '{demand.view.name}': feature '{feature}': no {kind} "
                f"in the returned {container} (it has {sorted(map(str, names))})"
            )
    declared = set(demand.view.feature_names)
    extra = [str(n) for n in names if n not in declared and n not in inputs]
    if extra:
        raise OnDemandError(
            f"on-demand feature view '{demand.view.name}' returned {extra[:5]}, which its "
            f"schema does not declare (it declares {sorted(declared)}); declare or drop them"
        )


def _conform(demand: OnDemandRequest, feature: str, values: list[Any]) -> list[Any]:
    dtype = demand.view.fields[_index(demand, feature)].dtype
    try:
        return conform_column(values, dtype)
    except BadValue as bad:
        raise OnDemandError(
            f"on-demand feature view '{demand.view.name}': feature '{feature}' got "
            f"{bad.value!r} (row {bad.index}) from the function: {bad.reason} (declared {dtype})"
        ) from None


def _index(demand: OnDemandRequest, feature: str) -> int:
    return demand.view.feature_names.index(feature)


def _call(demand: OnDemandRequest, function: Callable[[Any], Any], inputs: Any) -> Any:
    try:
        return function(inputs)
    except Exception as error:  # the user's code: report it as this view's failure
        shown = f" (inputs {inputs})" if demand.view.mode == "row" else ""
        raise OnDemandError(
            f"on-demand feature view '{demand.view.name}' raised {type(error).__name__}: "
            f"{error}{shown}"
        ) from None
