"""Helpers for users' own tests: small in-memory fakes that follow Parity's protocols exactly.

InMemoryRegistryStore is the reference RegistryStore and `reference_historical_features` the
reference point-in-time join: written for clarity, and the fast backends are checked against them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from parity.errors import (
    DatasetExists,
    DatasetNotFound,
    ProjectNotFound,
    RegistryConflict,
    RegistryVersionNotFound,
)
from parity.offline.request import RetrievalRequest, ViewRequest
from parity.registry.catalog import Catalog
from parity.registry.datasets import DatasetRecord
from parity.registry.materializations import MaterializationRecord
from parity.registry.plan import ObjectChange
from parity.registry.store import Snapshot, VersionInfo


class InMemoryRegistryStore:
    """A RegistryStore in a dict, safe across threads (not processes)."""

    def __init__(self) -> None:
        self._versions: dict[str, list[Snapshot]] = {}
        self._datasets: dict[tuple[str, str], DatasetRecord] = {}
        self._materializations: list[MaterializationRecord] = []
        self._lock = threading.Lock()

    def head(self, project: str) -> int:
        return len(self._versions.get(project, []))

    def head_info(self, project: str) -> VersionInfo | None:
        versions = self._versions.get(project)
        return versions[-1].info if versions else None

    def read(self, project: str, version: int | None = None) -> Snapshot:
        versions = self._versions.get(project)
        if not versions:
            raise ProjectNotFound(f"project '{project}' has no registry versions")
        wanted = version or len(versions)
        if not 1 <= wanted <= len(versions):
            raise RegistryVersionNotFound(f"project '{project}' has no registry version {wanted}")
        return versions[wanted - 1]

    def commit(
        self,
        catalog: Catalog,
        *,
        expected_version: int,
        changes: tuple[ObjectChange, ...],
        author: str,
        message: str,
        committed_at: datetime,
    ) -> VersionInfo:
        # Round-trip through JSON so callers get the same isolation a database gives.
        stored = Catalog.from_json(catalog.to_json())
        with self._lock:
            versions = self._versions.setdefault(catalog.project, [])
            if len(versions) != expected_version:
                raise RegistryConflict(
                    f"the registry of project '{catalog.project}' moved past version "
                    f"{expected_version}; nothing was written"
                )
            info = VersionInfo(
                catalog.project,
                expected_version + 1,
                committed_at,
                author,
                message,
                changes,
                stored.fingerprint(),
            )
            versions.append(Snapshot(info, stored))
        return info

    def history(self, project: str) -> list[VersionInfo]:
        return [s.info for s in self._versions.get(project, [])]

    def projects(self) -> list[str]:
        return sorted(p for p, versions in self._versions.items() if versions)

    def delete_project(self, project: str, *, expected_version: int) -> None:
        with self._lock:
            if self.head(project) == 0:
                raise ProjectNotFound(f"project '{project}' is not in the registry")
            if self.head(project) != expected_version:
                raise RegistryConflict(
                    f"the registry of project '{project}' moved past version {expected_version}"
                )
            self._versions.pop(project, None)
            for key in [k for k in self._datasets if k[0] == project]:
                del self._datasets[key]
            self._materializations = [r for r in self._materializations if r.project != project]

    def record_dataset(self, record: DatasetRecord) -> None:
        with self._lock:
            key = (record.project, record.name)
            if key in self._datasets:
                raise DatasetExists(f"dataset '{record.name}' already exists; choose a new name")
            self._datasets[key] = record

    def get_dataset(self, project: str, name: str) -> DatasetRecord:
        found = self._datasets.get((project, name))
        if found is None:
            raise DatasetNotFound(f"no dataset '{name}' in project '{project}'")
        return found

    def record_materialization(self, record: MaterializationRecord) -> None:
        with self._lock:
            self._materializations.append(record)

    def watermark(self, project: str, view: str) -> datetime | None:
        ends = [r.end for r in self._materializations if (r.project, r.view) == (project, view)]
        return max(ends) if ends else None

    def list_datasets(self, project: str) -> list[DatasetRecord]:
        records = [r for (p, _), r in self._datasets.items() if p == project]
        return sorted(records, key=lambda r: (r.created_at, r.name))

    def close(self) -> None:
        return None


def reference_historical_features(
    entity_df: Any,
    request: RetrievalRequest,
    sources: Mapping[str, Any],
    *,
    timestamp_column: str = "event_timestamp",
) -> Any:
    """The point-in-time join written for clarity with pandas `merge_asof`, one view at a time.

    `sources` maps each requested view's name to its raw source rows (a pandas DataFrame in
    ingestion order, source column names). Returns a DataFrame: the entity frame's columns (its
    timestamp normalized to UTC), then the requested features, in the entity frame's row order.
    Fast engines are checked against this; it is not meant to be fast.
    """
    import pandas as pd

    out = entity_df.reset_index(drop=True).copy()
    out[timestamp_column] = pd.to_datetime(out[timestamp_column], utc=True)
    out["__rid"] = range(len(out))
    for view_request in request.views:
        if view_request.view.is_aggregated:
            windows = _reference_windows(
                view_request, sources[view_request.view.name], out, timestamp_column
            )
            out = out.join(windows, on="__rid")
            continue
        chosen = _latest_rows(view_request, sources[view_request.view.name])
        view = view_request.view
        left = out[[*view.join_keys, timestamp_column, "__rid"]].dropna(subset=list(view.join_keys))
        left = left.sort_values(timestamp_column, kind="stable")
        matched = pd.merge_asof(
            left,
            chosen.sort_values("__ts", kind="stable"),
            left_on=timestamp_column,
            right_on="__ts",
            by=list(view.join_keys),
            direction="backward",
            allow_exact_matches=True,
        )
        if view.ttl is not None:
            fresh = ~(matched["__ts"] < matched[timestamp_column] - view.ttl)
            for name in view_request.features:
                matched[name] = matched[name].astype(object).where(fresh, None)
        renamed = dict(zip(view_request.features, view_request.output_names, strict=True))
        values = matched.set_index("__rid")[list(view_request.features)].rename(columns=renamed)
        out = out.join(values, on="__rid")
    return out.drop(columns="__rid")


def _reference_windows(view_request: ViewRequest, raw: Any, out: Any, timestamp_column: str) -> Any:
    """Window values row by row, straight from the rule in parity.aggregation.windows: plain
    loops over the events, no tiles, no SQL."""
    import pandas as pd

    from parity.aggregation.windows import counts

    view = view_request.view
    source = view.batch_source
    rows = raw.reset_index(drop=True).rename(columns=dict(source.field_mapping))
    events: dict[tuple[Any, ...], list[tuple[int, int, dict[str, Any]]]] = {}
    for order, row in enumerate(rows.to_dict("records")):
        moment = row[source.timestamp_field]
        key = tuple(row[k] for k in view.join_keys)
        if _missing(moment) or any(_missing(k) for k in key):
            continue
        events.setdefault(key, []).append((_micros(moment), order, row))
    by_output = {a.output_name: a for a in view.aggregations}
    longest = max(a.window_us for a in view.aggregations)
    result: dict[str, list[Any]] = {name: [] for name in view_request.output_names}
    for _, entity_row in out.iterrows():
        key = tuple(entity_row[k] for k in view.join_keys)
        t = _micros(entity_row[timestamp_column])
        history = sorted(events.get(key, []), key=lambda e: (e[0], e[1]))
        # Never seen (no event at all in the longest window): null, whatever the function.
        seen = any(counts(moment, t, longest, view.tile_us) for moment, _, _ in history)
        for feature, output in zip(view_request.features, view_request.output_names, strict=True):
            aggregation = by_output[feature]
            if not seen:
                result[output].append(None)
                continue
            values = [
                row[aggregation.column]
                for moment, _, row in history
                if counts(moment, t, aggregation.window_us, view.tile_us)
                and not _missing(row[aggregation.column])
            ]
            result[output].append(_evaluate(aggregation.function, aggregation.n, values))
    return pd.DataFrame(result, index=out["__rid"].to_list())


def _evaluate(function: str, n: int | None, values: list[Any]) -> Any:
    """One aggregation over non-null values in event order (oldest first)."""
    import statistics

    if function == "count":
        return len(values)
    if function == "count_distinct":
        return len(set(values))
    if function == "sum":
        return sum(values) if values else 0
    if function == "last_n":
        return list(reversed(values))[:n]
    if not values:
        return None
    if function == "mean":
        return sum(values) / len(values)
    if function == "stddev":
        return statistics.stdev(values) if len(values) > 1 else None
    if function == "min":
        return min(values)
    if function == "max":
        return max(values)
    return values[-1]  # last


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or (not isinstance(value, list | tuple) and bool(pd.isna(value)))


def _micros(moment: Any) -> int:
    import pandas as pd

    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.value // 1000)


def _latest_rows(view_request: ViewRequest, raw: Any) -> Any:
    """Per (keys, event time): the row with the newest created time, then the last ingested."""
    import pandas as pd

    view = view_request.view
    source = view.batch_source
    rows = raw.reset_index(drop=True).rename(columns=dict(source.field_mapping))
    rows["__ts"] = pd.to_datetime(rows[source.timestamp_field], utc=True)
    if source.created_timestamp_column:
        rows["__created"] = pd.to_datetime(rows[source.created_timestamp_column], utc=True)
    else:
        rows["__created"] = pd.NaT
    rows["__order"] = range(len(rows))
    rows = rows.dropna(subset=[*view.join_keys, "__ts"])
    # A missing created time ranks below any present one.
    rows["__has_created"] = rows["__created"].notna()
    rows = rows.sort_values(["__ts", "__has_created", "__created", "__order"], kind="stable")
    rows = rows.drop_duplicates(subset=[*view.join_keys, "__ts"], keep="last")
    return rows[[*view.join_keys, "__ts", *view_request.features]]


__all__ = ["InMemoryRegistryStore", "reference_historical_features"]
