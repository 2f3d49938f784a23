"""Training sets: retrieve point-in-time features to Parquet and record their lineage.

`Datasets` is `store.datasets`; it is given its engine, catalog and clock, and imports no backend.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from parity.definitions import FeatureService
from parity.definitions.base import check_identifier
from parity.errors import DatasetExists, DatasetNotFound, RetrievalError
from parity.offline.engine import OfflineEngine
from parity.offline.fingerprint import fingerprint_parquet
from parity.offline.request import RetrievalRequest, resolve
from parity.offline.retrieval import FeaturesArg, historical_features
from parity.registry.catalog import Catalog
from parity.registry.datasets import DatasetRecord, DatasetStore


@dataclass(frozen=True)
class DatasetRequest:
    name: str
    entity_df: Any
    features: FeaturesArg
    out: Path
    full_feature_names: bool = False
    timestamp_column: str = "event_timestamp"


class Datasets:
    """A project's saved training sets (`store.datasets`): `create` one, `get` or `list` the
    records. The engine is asked for only when a set is built (reading records needs none)."""

    def __init__(
        self,
        store: DatasetStore,
        project: str,
        *,
        engine: Callable[[], OfflineEngine],
        current: Callable[[], tuple[Catalog, int]],
        default_author: Callable[[], str],
        now: Callable[[], datetime],
        on_demand: Callable[[RetrievalRequest], None] | None = None,
    ) -> None:
        self.store = store
        self.project = project
        self._engine = engine
        self._current = current
        self._default_author = default_author
        self._now = now
        self._on_demand = on_demand

    def create(
        self,
        name: str,
        entity_df: Any,
        features: FeaturesArg,
        out: str | os.PathLike[str],
        *,
        full_feature_names: bool = False,
        event_timestamp_column: str = "event_timestamp",
        author: str | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> DatasetRecord:
        """Build a training set into the Parquet file `out` and record it in the registry with
        its feature refs, registry version, row count and content fingerprint."""
        request = DatasetRequest(
            name, entity_df, features, Path(out), full_feature_names, event_timestamp_column
        )
        catalog, version = self._current()
        return create_dataset(
            self._engine(),
            catalog,
            version,
            self.store,
            request,
            author=author or self._default_author(),
            now=self._now(),
            progress=progress,
            on_demand=self._on_demand,
        )

    def get(self, name: str) -> DatasetRecord:
        """The record of dataset `name`; DatasetNotFound if there is none."""
        return self.store.get_dataset(self.project, name)

    def list(self) -> builtins.list[DatasetRecord]:
        """Every recorded dataset of the project, oldest first."""
        return self.store.list_datasets(self.project)


def create_dataset(
    engine: OfflineEngine,
    catalog: Catalog,
    registry_version: int,
    store: DatasetStore,
    request: DatasetRequest,
    *,
    author: str,
    now: datetime,
    progress: Callable[[float], None] | None = None,
    on_demand: Callable[[RetrievalRequest], None] | None = None,
) -> DatasetRecord:
    """Write the training set to `request.out` and record it; the name must be new.
    `on_demand` binds on-demand views' functions (FeatureStore loads them from the repo)."""
    _check_new(store, catalog.project, request)
    resolved = resolve(catalog, request.features, full_feature_names=request.full_feature_names)
    job = historical_features(
        engine,
        catalog,
        request.entity_df,
        request.features,
        full_feature_names=request.full_feature_names,
        timestamp_column=request.timestamp_column,
        on_demand=on_demand,
    )
    rows = job.to_parquet(request.out, progress)
    record = DatasetRecord(
        project=catalog.project,
        name=request.name,
        created_at=now,
        author=author,
        registry_version=registry_version,
        feature_refs=_refs(resolved),
        feature_service=_service_name(catalog, request.features),
        row_count=rows,
        fingerprint=fingerprint_parquet(request.out),
        path=str(Path(request.out).resolve()),
        entity_source=_describe_entity(request.entity_df),
    )
    store.record_dataset(record)
    return record


def _check_new(store: DatasetStore, project: str, request: DatasetRequest) -> None:
    """Names and files of datasets are never reused: a recorded dataset must not change."""
    try:
        check_identifier(request.name, "dataset name")
    except ValueError as error:
        raise RetrievalError(str(error)) from None
    try:
        store.get_dataset(project, request.name)
    except DatasetNotFound:
        pass
    else:
        raise DatasetExists(
            f"dataset '{request.name}' already exists in project '{project}'; "
            "datasets are immutable, so choose a new name"
        )
    if request.out.exists():
        raise DatasetExists(
            f"{request.out} already exists; write the dataset to a new file (a recorded "
            "dataset's file must not change under it)"
        )


def _refs(resolved: RetrievalRequest) -> tuple[str, ...]:
    """The refs of the dataset's feature columns, in column order: the views' features (not
    those read only as on-demand inputs), then the on-demand features."""
    hidden = set(resolved.hidden)
    refs = [
        f"{v.view.name}:{f}"
        for v in resolved.views
        for f, column in zip(v.features, v.output_names, strict=True)
        if column not in hidden
    ]
    refs += [f"{d.view.name}:{f}" for d in resolved.on_demand for f in d.features]
    return tuple(refs)


def _service_name(catalog: Catalog, features: FeaturesArg) -> str | None:
    if isinstance(features, FeatureService):
        return features.name
    if isinstance(features, str) and features in catalog.feature_services:
        return features
    return None


def _describe_entity(entity_df: Any) -> str:
    if isinstance(entity_df, str | Path):
        return str(entity_df)
    rows = getattr(entity_df, "num_rows", None) or len(entity_df)
    return f"in-memory {type(entity_df).__name__} of {rows} rows"
