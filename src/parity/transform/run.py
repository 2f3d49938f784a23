"""Run on-demand feature views' functions over retrieved columns: the same row function online
(per entity row) and offline (per training row, or the vectorized form when one is given).

Functions come from the repo (the registry keeps their name and code hash): `bind` loads them
once and refuses a repo whose function differs from the applied one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from parity.definitions.on_demand import OnDemandFeatureView
from parity.errors import EntityFrameError, InvalidDefinition, OnDemandError
from parity.offline.request import OnDemandRequest, RetrievalRequest


def bind(request: RetrievalRequest, load: Callable[[], Mapping[str, OnDemandFeatureView]]) -> None:
    """Give each requested on-demand view its functions, from `load()` (the repo's views)."""
    unbound = [d.view for d in request.on_demand if d.view.row_function is None]
    if not unbound:
        return
    repo = load()
    for view in unbound:
        found = repo.get(view.name)
        if found is None or found.row_function is None:
            raise InvalidDefinition(
                f"on-demand feature view '{view.name}' is registered but its function is not in "
                "the repo; restore it or run 'parity apply'"
            )
        if found.code_hash != view.code_hash:
            raise InvalidDefinition(
                f"on-demand feature view '{view.name}': the repo's function differs from the "
                "applied one; run 'parity apply' (or check out the applied version)"
            )
        view.bind(found.row_function, found.vectorized_function)


def apply_rows(request: RetrievalRequest, columns: dict[str, list[Any]], rows: int) -> None:
    """Add each on-demand output column to `columns` (row functions, row by row), then drop the
    columns read only as inputs."""
    for demand in request.on_demand:
        _check_inputs(demand, columns)
        function = demand.view.row_function
        if function is None:
            raise InvalidDefinition(f"on-demand feature view '{demand.view.name}' is not bound")
        outputs: list[list[Any]] = [[] for _ in demand.features]
        for i in range(rows):
            row = {name: columns[column][i] for name, column in demand.inputs}
            result = _call(demand, function, row)
            for output, feature in zip(outputs, demand.features, strict=True):
                output.append(result.get(feature))
        columns.update(zip(demand.output_names, outputs, strict=True))
    for name in request.hidden:
        columns.pop(name, None)


def apply_frame(request: RetrievalRequest, frame: Any) -> Any:
    """The same over a pandas DataFrame, using a view's vectorized function when it has one."""
    for demand in request.on_demand:
        _check_inputs(demand, {c: None for c in frame.columns})
        vectorized = demand.view.vectorized_function
        if vectorized is None:
            columns = {c: frame[c].tolist() for c in {c for _, c in demand.inputs}}
            columns = {k: [_plain(v) for v in values] for k, values in columns.items()}
            scratch = dict(columns)
            single = RetrievalRequest((), False, (demand,), ())
            apply_rows(single, scratch, len(frame))
            for output in demand.output_names:
                frame[output] = scratch[output]
            continue
        inputs = frame[[c for _, c in demand.inputs]].copy()
        inputs.columns = [name for name, _ in demand.inputs]
        try:
            result = vectorized(inputs)
        except Exception as error:  # the user's code: report it as this view's failure
            raise OnDemandError(
                f"on-demand feature view '{demand.view.name}' (vectorized) raised "
                f"{type(error).__name__}: {error}"
            ) from None
        for feature, output in zip(demand.features, demand.output_names, strict=True):
            if feature not in result:
                raise OnDemandError(
                    f"on-demand feature view '{demand.view.name}' (vectorized) returned no "
                    f"column '{feature}'"
                )
            frame[output] = list(result[feature])
    return frame.drop(columns=[c for c in request.hidden if c in frame.columns])


def _check_inputs(demand: OnDemandRequest, columns: Mapping[str, Any]) -> None:
    for name, column in demand.inputs:
        if column not in columns:
            raise EntityFrameError(
                f"on-demand feature view '{demand.view.name}' needs request field '{name}'; "
                "pass it with the entity rows (or as a column of the entity frame)"
            )


def _call(
    demand: OnDemandRequest,
    function: Callable[[dict[str, Any]], dict[str, Any]],
    row: dict[str, Any],
) -> dict[str, Any]:
    try:
        result = function(row)
    except Exception as error:  # the user's code: report it as this view's failure
        raise OnDemandError(
            f"on-demand feature view '{demand.view.name}' raised {type(error).__name__}: {error} "
            f"(inputs {row})"
        ) from None
    if not isinstance(result, dict):
        raise OnDemandError(
            f"on-demand feature view '{demand.view.name}' returned {type(result).__name__}, not "
            "a dict of its features"
        )
    return result


def _plain(value: Any) -> Any:
    """pandas' missing values as None, numpy scalars as Python ones."""
    try:
        import pandas as pd

        if not isinstance(value, list | tuple) and pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value.item() if hasattr(value, "item") else value
