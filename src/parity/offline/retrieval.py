"""get_historical_features: resolve the request, check the entity frame, hand both to an engine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from parity.definitions import FeatureService
from parity.errors import RetrievalError
from parity.offline import entity_frame
from parity.offline.engine import OfflineEngine, RetrievalJob
from parity.offline.request import RetrievalRequest, resolve
from parity.registry.catalog import Catalog

FeaturesArg = Sequence[str] | FeatureService | str


def historical_features(
    engine: OfflineEngine,
    catalog: Catalog,
    entity_df: Any,
    features: FeaturesArg,
    *,
    full_feature_names: bool = False,
    start: datetime | None = None,
    end: datetime | None = None,
    timestamp_column: str = "event_timestamp",
    on_demand: Callable[[RetrievalRequest], None] | None = None,
) -> RetrievalJob:
    """Point-in-time features for each entity row, or every row of the views in [start, end].
    `on_demand` binds on-demand views' functions when the request has any."""
    request = resolve(catalog, features, full_feature_names=full_feature_names)
    if request.on_demand:
        names = ", ".join(d.view.name for d in request.on_demand)
        if entity_df is None:
            raise RetrievalError(
                f"on-demand features ({names}) are computed for the rows of an entity frame "
                "(which also carries their request fields); pass one instead of start= and end="
            )
        if on_demand is None:
            raise RetrievalError(
                f"on-demand features ({names}) need their functions from the repo; retrieve "
                "them through FeatureStore"
            )
        on_demand(request)
    if entity_df is None:
        if start is None or end is None:
            raise RetrievalError(
                "pass an entity frame, or both start= and end= to get the views' rows in "
                "that interval"
            )
        if start > end:
            raise RetrievalError(f"start {start} is after end {end}; swap them")
        return engine.interval(request, start, end, timestamp_column)
    if start is not None or end is not None:
        raise RetrievalError("start= and end= apply only without an entity frame; drop them")
    if isinstance(entity_df, str | Path):
        sql = isinstance(entity_df, str) and entity_frame.is_sql(entity_df)
        # A relative path that exists from the working directory means that file; otherwise
        # the engine resolves it against the repo root.
        local = Path(entity_df)
        text = str(local.resolve()) if not sql and local.exists() else str(entity_df)
        frame = entity_frame.from_path_or_sql(text, engine.describe(text, sql=sql), sql=sql)
    else:
        frame = entity_frame.from_memory(entity_df, timestamp_column)
    entity_frame.check(frame, request, timestamp_column)
    job = engine.historical(request, frame, timestamp_column)
    if request.on_demand:
        from parity.transform.job import OnDemandJob

        return OnDemandJob(job, request)
    return job
