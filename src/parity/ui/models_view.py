"""The models pages' data: the model list, a model's versions with their lineage, and its alias
timeline (events, [start, end) segments, the versions at a moment). Reads the model registry
only (no Parquet); pure functions build the timeline. Must not import FastAPI."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from parity.errors import ParityError

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore
    from parity.models.store import AliasEvent, ModelVersion

EventKind = Literal["set", "moved", "rollback", "deleted"]


def model_url(name: str) -> str:
    return f"#/model/{name}"


# --- the alias timeline (pure) -----------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """The alias named `version` from `start` (inclusive) to `end` (exclusive; None: still)."""

    alias: str
    version: int
    start: datetime
    end: datetime | None
    reason: str
    actor: str


def event_kinds(events: Sequence[AliasEvent]) -> list[EventKind]:
    """Each move's kind, the events in the order they were made (the registry's history order):
    `deleted` (no version), `set` (the alias did not exist), `rollback` (back to where the
    alias's previous move took it from), else `moved`."""
    kinds: list[EventKind] = []
    last: dict[str, AliasEvent] = {}
    for event in events:
        before = last.get(event.alias)
        if event.version is None:
            kinds.append("deleted")
        elif event.previous is None:
            kinds.append("set")
        elif (
            before is not None
            and before.previous == event.version
            and before.version == event.previous
        ):
            kinds.append("rollback")
        else:
            kinds.append("moved")
        last[event.alias] = event
    return kinds


def alias_segments(events: Sequence[AliasEvent]) -> list[Segment]:
    """Per alias, where it pointed over time, as the registry answers `alias_at`: the moves in
    time order (ties in the order made), each holding from its time until the next move. A
    deletion holds no version; moves at the same instant leave only the last one's segment.
    Aliases by name, each oldest first."""
    by_alias: dict[str, list[AliasEvent]] = {}
    for event in events:
        by_alias.setdefault(event.alias, []).append(event)
    segments: list[Segment] = []
    for alias in sorted(by_alias):
        moves = sorted(by_alias[alias], key=lambda e: e.moved_at)  # stable: ties keep order
        for i, event in enumerate(moves):
            end = moves[i + 1].moved_at if i + 1 < len(moves) else None
            if event.version is None or (end is not None and end <= event.moved_at):
                continue
            segments.append(
                Segment(alias, event.version, event.moved_at, end, event.reason, event.author)
            )
    return segments


def versions_at(
    segments: Iterable[Segment], aliases: Iterable[str], at: datetime
) -> dict[str, int | None]:
    """The version each of `aliases` named at `at` (None: it did not exist then)."""
    found: dict[str, int | None] = dict.fromkeys(aliases)
    for segment in segments:
        held = segment.start <= at and (segment.end is None or at < segment.end)
        if held and segment.alias in found:
            found[segment.alias] = segment.version
    return found


# --- versions (pure) --------------------------------------------------------------------------


def signature_fields(signature: dict[str, Any] | None) -> dict[str, list[dict[str, str]]] | None:
    """A stored signature as `{inputs: [{name, dtype}], outputs: [...]}`; None without one."""
    if not isinstance(signature, dict):
        return None
    return {
        part: [
            {"name": str(item.get("name", "")), "dtype": str(item.get("dtype", ""))}
            for item in signature.get(part) or []
            if isinstance(item, dict)
        ]
        for part in ("inputs", "outputs")
    }


def deleted_numbers(live: Iterable[int], mentioned: Iterable[int]) -> list[int]:
    """Version numbers that were registered and deleted: the gaps below the highest live one
    (numbers are never reused) and those the alias history names but the registry no longer
    has."""
    have = set(live)
    gone = {n for n in range(1, max(have, default=0)) if n not in have}
    gone |= {n for n in mentioned if n not in have and n >= 1}
    return sorted(gone)


def job_of(tags: dict[str, str]) -> tuple[int | None, str | None]:
    """(job id, job name) a training job tagged its version with; (None, None) otherwise."""
    text = tags.get("job_id", "")
    ident = int(text) if text.isdigit() else None
    return ident, tags.get("job")


# --- reads -------------------------------------------------------------------------------------


def models_list(store: FeatureStore, names: Iterable[str]) -> list[dict[str, Any]]:
    """One row per model of `names`: version count, latest, aliases, active rollout, when it
    last changed."""
    active = {r.model: r.id for r in store.rollouts.list(active_only=True)}
    rows = []
    for name in names:
        versions = store.models.versions(name)
        history = store.models.history(name)
        times = [v.created_at for v in versions] + [e.moved_at for e in history]
        rows.append(
            {
                "name": name,
                "versions": len(versions),
                "latest": versions[-1].version if versions else None,
                "aliases": store.models.aliases(name),
                "active_rollout": active.get(name),
                "updated_at": max(times) if times else None,
                "url": model_url(name),
            }
        )
    return rows


def model_detail(store: FeatureStore, name: str) -> dict[str, Any]:
    """A model's aliases and every version (deleted ones as stubs), newest first."""
    versions = store.models.versions(name)
    aliases = store.models.aliases(name)
    history = store.models.history(name)
    held: dict[int, list[str]] = {}
    for alias, number in sorted(aliases.items()):
        held.setdefault(number, []).append(alias)
    datasets: dict[str, Any] = {}
    rows = [_version_row(store, v, held.get(v.version, []), datasets) for v in versions]
    mentioned = [n for e in history for n in (e.version, e.previous) if n is not None]
    rows += [
        _deleted_row(name, n) for n in deleted_numbers([v.version for v in versions], mentioned)
    ]
    rows.sort(key=lambda row: row["version"], reverse=True)
    return {"name": name, "aliases": aliases, "versions": rows, "url": model_url(name)}


def version_url(name: str, version: int) -> str:
    return f"#/model/{name}?version={version}"


def _version_row(
    store: FeatureStore, version: ModelVersion, aliases: list[str], datasets: dict[str, Any]
) -> dict[str, Any]:
    return {
        "version": version.version,
        "registered_at": version.created_at,
        "author": version.author,
        "flavor": version.flavor,
        "description": version.description,
        "metrics": dict(version.metrics),
        "params": dict(version.params),
        "tags": dict(version.tags),
        "signature": signature_fields(version.signature),
        "lineage": _lineage(store, version, datasets),
        "artifact": version.artifact,
        "artifact_size": version.artifact_size,
        "aliases": aliases,
        "deleted": False,
        "url": version_url(version.name, version.version),
    }


def _deleted_row(name: str, number: int) -> dict[str, Any]:
    return {
        "version": number,
        "registered_at": None,
        "author": None,
        "flavor": None,
        "description": "",
        "metrics": {},
        "params": {},
        "tags": {},
        "signature": None,
        "lineage": None,
        "artifact": None,
        "artifact_size": None,
        "aliases": [],
        "deleted": True,
        "url": version_url(name, number),
    }


def _lineage(
    store: FeatureStore, version: ModelVersion, datasets: dict[str, Any]
) -> dict[str, Any]:
    """Where the version came from: its training set, feature service and features (the set's
    columns as built; else the service's features now), fingerprint, code and job."""
    dataset = _dataset(store, version.training_dataset, datasets)
    features = list(dataset.feature_refs) if dataset is not None else _service_refs(store, version)
    job_id, job_name = job_of(version.tags)
    return {
        "dataset": version.training_dataset,
        "dataset_rows": dataset.row_count if dataset is not None else None,
        "dataset_created_at": dataset.created_at if dataset is not None else None,
        "feature_service": version.feature_service,
        "feature_service_url": (
            None if version.feature_service is None else f"#/service/{version.feature_service}"
        ),
        "features": features,
        "training_fingerprint": version.dataset_fingerprint,
        "dataset_registry_version": version.dataset_registry_version,
        "registry_version": version.registry_version,
        "code": version.code_version,
        "job": None if job_id is None and job_name is None else {"id": job_id, "name": job_name},
    }


def _dataset(store: FeatureStore, name: str | None, cache: dict[str, Any]) -> Any:
    if name is None:
        return None
    if name not in cache:
        try:
            cache[name] = store.datasets.get(name)
        except ParityError:  # deleted since, or another project's: the version still names it
            cache[name] = None
    return cache[name]


def _service_refs(store: FeatureStore, version: ModelVersion) -> list[str]:
    if version.feature_service is None:
        return []
    service = store.registry.catalog.feature_services.get(version.feature_service)
    return [] if service is None else list(service.refs)


def alias_timeline(store: FeatureStore, name: str, at: datetime) -> dict[str, Any]:
    """The model's alias moves (oldest first, as made), each alias's segments, and the version
    each alias named at `at`."""
    history = store.models.history(name)
    kinds = event_kinds(history)
    segments = alias_segments(history)
    names = sorted({e.alias for e in history} | set(store.models.aliases(name)))
    return {
        "model": name,
        "events": [
            {
                "alias": e.alias,
                "version": e.version,
                "previous": e.previous,
                "at": e.moved_at,
                "actor": e.author,
                "reason": e.reason,
                "kind": kind,
            }
            for e, kind in zip(history, kinds, strict=True)
        ],
        "timeline": [
            {
                "alias": s.alias,
                "version": s.version,
                "start": s.start,
                "end": s.end,
                "reason": s.reason,
                "actor": s.actor,
            }
            for s in segments
        ],
        "at": at,
        "at_versions": versions_at(segments, names, at),
        "url": model_url(name),
    }
