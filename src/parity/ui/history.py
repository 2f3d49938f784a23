"""Registry history pages: every version newest first with who applied it (the `registry.apply`
audit records), and one version's diff against the previous one (registry/plan.py's pure diff of
the two snapshots). Pure functions first; `read_*` at the end are the store's readers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from parity.errors import RegistryVersionNotFound
from parity.registry.catalog import Catalog
from parity.registry.plan import ObjectChange, plan

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore
    from parity.registry.audit import AuditRecord
    from parity.registry.store import VersionInfo

Json = dict[str, Any]
May = Callable[[str, str], bool]
ACTIONS = {"add": "added", "update": "changed", "delete": "removed"}
KINDS = {"feature_view": "view", "on_demand_feature_view": "view", "feature_service": "service"}
_MODEL_OBJECTS = ("monitor", "rollout", "training_job", "retrain_policy")


def actors(records: Iterable[AuditRecord]) -> dict[int, str]:
    """Registry version -> who applied it, from `registry.apply` audit records (the newest
    record of a version wins)."""
    found: dict[int, str] = {}
    for record in sorted(records, key=lambda r: r.seq):
        version = record.detail.get("version")
        if record.action == "registry.apply" and isinstance(version, int):
            found[version] = record.actor.name
    return found


def versions_json(infos: Sequence[VersionInfo], who: Mapping[int, str]) -> Json:
    """Every version, newest first, with its stored change counts."""
    rows = []
    for info in sorted(infos, key=lambda i: i.version, reverse=True):
        kinds = [c.kind for c in info.changes]
        rows.append(
            {
                "version": info.version,
                "created_at": info.committed_at,
                "message": info.message,
                "actor": who.get(info.version, info.author),
                "fingerprint": info.fingerprint,
                "added": kinds.count("add"),
                "changed": kinds.count("update"),
                "removed": kinds.count("delete"),
            }
        )
    return {"versions": rows}


def change_json(change: ObjectChange) -> Json:
    return {
        "kind": KINDS.get(change.object_type, change.object_type),
        "name": change.name,
        "action": ACTIONS[change.kind],
        "breaking": change.breaking,
        "fields": [{"field": f.path, "old": f.old, "new": f.new} for f in change.fields],
    }


def version_json(
    info: VersionInfo,
    catalog: Catalog,
    previous: Catalog | None,
    actor: str,
) -> Json:
    """Version `info` and its changes against `previous` (None: the first version, so
    everything was added)."""
    base = previous if previous is not None else Catalog(catalog.project)
    changes = plan(base, catalog, info.version - 1).changes
    return {
        "version": info.version,
        "created_at": info.committed_at,
        "message": info.message,
        "actor": actor,
        "previous": info.version - 1 if previous is not None else None,
        "changes": [change_json(c) for c in changes],
    }


def readable(changes: list[Json], catalog: Catalog, may: May) -> list[Json]:
    """The changes a narrowed token may see: views and services it may read, model objects
    (monitors, rollouts, jobs, policies) of models it may read; entities of a view it may read
    (as the catalog shows them)."""
    models = {
        name: getattr(obj, "model", "")
        for kind in _MODEL_OBJECTS
        for name, obj in catalog.objects(kind).items()  # type: ignore[arg-type]
    }
    kept = []
    for change in changes:
        kind, name = change["kind"], change["name"]
        if kind in ("view", "service") and not may("features:read", name):
            continue
        if kind in _MODEL_OBJECTS and not may("models:read", models.get(name, "")):
            continue
        if kind == "entity" and not _entity_readable(catalog, name, may):
            continue
        kept.append(change)
    return kept


def _entity_readable(catalog: Catalog, name: str, may: May) -> bool:
    views = [v.name for v in catalog.feature_views.values() if name in v.entity_names]
    return may("features:read", name) or any(may("features:read", v) for v in views)


def check_version(version: int, head: int) -> None:
    if not 1 <= version <= head:
        known = f"1 to {head}" if head else "none yet; run 'parity apply'"
        raise RegistryVersionNotFound(f"no registry version {version} (versions: {known})")


# --- reading the store ---------------------------------------------------------------------


def read_actors(store: FeatureStore) -> dict[int, str]:
    """Who applied each version, as far as the audit trail knows (empty without one)."""
    from parity.errors import BackendNotInstalled
    from parity.registry.audit import MAX_LIMIT

    try:
        records = store.access.audit.query(action="registry.apply", limit=MAX_LIMIT)
    except BackendNotInstalled:
        return {}
    return actors(records)


def read_versions(store: FeatureStore) -> Json:
    return versions_json(store.registry.history(), read_actors(store))


def read_version(store: FeatureStore, version: int) -> tuple[Json, Catalog]:
    """Version `version`'s page (unfiltered) and its catalog; RegistryVersionNotFound."""
    check_version(version, store.registry.store.head(store.project))
    snapshot = store.registry.snapshot(version)
    previous = store.registry.snapshot(version - 1).catalog if version > 1 else None
    actor = read_actors(store).get(version, snapshot.info.author)
    return version_json(snapshot.info, snapshot.catalog, previous, actor), snapshot.catalog
