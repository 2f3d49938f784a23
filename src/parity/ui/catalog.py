"""The catalog pages' data: search (ranking, `owner:`/`tag:` qualifiers) and the entity, view,
service and feature details as JSON-shaped dicts. Pure functions of values (catalog, usage,
freshness, quality, profile records); the one reader of the store is `read_usage` at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from parity.definitions import Entity, FeatureService, FeatureView
from parity.definitions.on_demand import OnDemandFeatureView
from parity.errors import FeatureNotFound, FeatureViewNotFound
from parity.registry.catalog import Catalog
from parity.ui.models_view import model_url

if TYPE_CHECKING:
    from parity.deploy.state import RolloutState
    from parity.feature_store import FeatureStore
    from parity.models.store import ModelVersion
    from parity.monitoring.profile import ColumnProfile, Profile
    from parity.monitoring.quality_store import QualityRecord
    from parity.registry.datasets import DatasetRecord

Kind = Literal["entity", "view", "feature", "service"]
KINDS: tuple[Kind, ...] = ("entity", "view", "feature", "service")
Json = dict[str, Any]
May = Callable[[str, str], bool]  # (scope, name) -> may the caller read it
QUALITY_WINDOW = timedelta(days=7)  # a feature page's quality covers the store's last 7 days
QUANTILES = (0.05, 0.5, 0.95)
TOP_VALUES = 10


def everything(_: str, __: str) -> bool:
    """The visibility predicate with auth off."""
    return True


def url_of(kind: str, name: str, view: str | None = None) -> str:
    return f"#/feature/{view}/{name}" if kind == "feature" else f"#/{kind}/{name}"


# --- search --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One searchable object; `ref` is `view:feature` for features, else the name."""

    kind: Kind
    name: str
    view: str | None
    description: str
    owner: str
    tags: Mapping[str, str]
    dtype: str | None

    @property
    def ref(self) -> str:
        return f"{self.view}:{self.name}" if self.view else self.name

    def json(self) -> Json:
        return {
            "kind": self.kind,
            "name": self.name,
            "view": self.view,
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
            "dtype": self.dtype,
            "url": url_of(self.kind, self.name, self.view),
        }


def all_views(catalog: Catalog) -> dict[str, FeatureView | OnDemandFeatureView]:
    return {**catalog.feature_views, **catalog.on_demand_feature_views}


def search_items(catalog: Catalog) -> list[Item]:
    """Every entity, view (batch, stream and on-demand), feature and service of `catalog`."""
    items = [
        Item("entity", e.name, None, e.description, e.owner, e.tags, None)
        for e in catalog.entities.values()
    ]
    for view in all_views(catalog).values():
        items.append(Item("view", view.name, None, view.description, view.owner, view.tags, None))
        for f in features_of(view):
            tags = {**view.tags, **f.tags}
            items.append(
                Item("feature", f.name, view.name, f.description, view.owner, tags, str(f.dtype))
            )
    items.extend(
        Item("service", s.name, None, s.description, s.owner, s.tags, None)
        for s in catalog.feature_services.values()
    )
    return items


@dataclass(frozen=True)
class Query:
    """Parsed `q`: plain words (lowercase, ANDed), `owner:` values, `tag:` (key, value|None)."""

    words: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    tags: tuple[tuple[str, str | None], ...] = ()


def parse_query(q: str) -> Query:
    words: list[str] = []
    owners: list[str] = []
    tags: list[tuple[str, str | None]] = []
    for token in q.lower().split():
        head, _, rest = token.partition(":")
        if head == "owner" and rest:
            owners.append(rest)
        elif head == "tag" and rest:
            key, equals, value = rest.partition("=")
            tags.append((key, value if equals else None))
        else:
            words.append(token)
    return Query(tuple(words), tuple(owners), tuple(tags))


def _word_match(item: Item, word: str) -> tuple[int, list[str]] | None:
    """(tier, fields) of one word on one item: tier 0 exact name, 1 name prefix, 2 name
    contains, 3 another field; None when nothing matches."""
    names = (item.ref.lower(),) if ":" in word else (item.name.lower(),)
    fields: list[str] = []
    tier = 3
    if any(word in n for n in names):
        fields.append("name")
        tier = 0 if word in names else 1 if any(n.startswith(word) for n in names) else 2
    if word in item.description.lower():
        fields.append("description")
    if any(word in k.lower() or word in v.lower() for k, v in item.tags.items()):
        fields.append("tag")
    if word in item.owner.lower():
        fields.append("owner")
    return (tier, fields) if fields else None


def _qualified(item: Item, query: Query) -> bool:
    tags = {k.lower(): v.lower() for k, v in item.tags.items()}
    owner = item.owner.lower()
    if any(o not in owner for o in query.owners):
        return False
    return all(k in tags and (v is None or tags[k] == v) for k, v in query.tags)


def search(items: Iterable[Item], q: str, kind: Kind | None = None) -> list[tuple[Item, list[str]]]:
    """The items matching every word and qualifier of `q`, best first (exact name, name prefix,
    name contains, other fields; then name); each with the fields its words matched."""
    query = parse_query(q)
    found: list[tuple[tuple[Any, ...], Item, list[str]]] = []
    for item in items:
        if (kind is not None and item.kind != kind) or not _qualified(item, query):
            continue
        matches = [_word_match(item, w) for w in query.words]
        if any(m is None for m in matches):
            continue
        tiers = [m[0] for m in matches if m is not None]
        fields = sorted({f for m in matches if m is not None for f in m[1]}, key=_FIELD_ORDER.index)
        for qualifier, field_name in ((query.owners, "owner"), (query.tags, "tag")):
            if qualifier and field_name not in fields:
                fields.append(field_name)
        key = (min(tiers, default=0), sum(tiers), item.name.lower(), KINDS.index(item.kind))
        found.append(((*key, item.view or ""), item, fields))
    found.sort(key=lambda f: f[0])
    return [(item, fields) for _, item, fields in found]


_FIELD_ORDER = ["name", "description", "tag", "owner"]


# --- details -------------------------------------------------------------------------------


def features_of(view: FeatureView | OnDemandFeatureView) -> Sequence[Any]:
    return view.features if isinstance(view, FeatureView) else view.fields


def find_view(catalog: Catalog, name: str) -> FeatureView | OnDemandFeatureView:
    views = all_views(catalog)
    if name not in views:
        known = ", ".join(sorted(views)) or "none"
        raise FeatureViewNotFound(
            f"no feature view named '{name}' in project '{catalog.project}' (known: {known})"
        )
    return views[name]


def view_kind(view: FeatureView | OnDemandFeatureView) -> str:
    if isinstance(view, OnDemandFeatureView):
        return "on_demand"
    if view.aggregations:
        return "aggregated"
    return "batch" if view.source.type in ("file", "delta") else "stream"


def source_of(view: FeatureView | OnDemandFeatureView) -> Json:
    """`{kind, name, path, timestamp_field}`; an on-demand view's are the views and request
    source it reads (kind `on_demand`, their names joined by ', ')."""
    if isinstance(view, OnDemandFeatureView):
        names = [*view.sources, *([view.request.name] if view.request else [])]
        return {
            "kind": "on_demand",
            "name": ", ".join(names),
            "path": None,
            "timestamp_field": None,
        }
    source = view.source
    batch = view.batch_source
    return {
        "kind": source.type,
        "name": source_name(view),
        "path": batch.path,
        "timestamp_field": batch.timestamp_field,
    }


def source_name(view: FeatureView) -> str:
    """The name a source goes by in the catalog and the lineage: its own, else its path."""
    return view.source.name or view.batch_source.path


def view_entities(catalog: Catalog, view: FeatureView | OnDemandFeatureView) -> list[str]:
    if isinstance(view, FeatureView):
        return list(view.entity_names)
    names = (catalog.feature_views.get(s) for s in view.sources)
    return sorted({e for v in names if v is not None for e in v.entity_names})


def services_using(catalog: Catalog, view: str, feature: str | None = None) -> list[str]:
    return sorted(
        s.name
        for s in catalog.feature_services.values()
        if any(p.view == view and (feature is None or feature in p.features) for p in s.features)
    )


def entity_detail(catalog: Catalog, name: str, may: May = everything) -> Json:
    entity: Entity = catalog.get("entity", name)  # type: ignore[assignment]
    views = [v.name for v in catalog.feature_views.values() if name in v.entity_names]
    return {
        "name": entity.name,
        "join_keys": list(entity.join_keys),
        "value_type": str(entity.value_type),
        "description": entity.description,
        "owner": entity.owner,
        "tags": dict(entity.tags),
        "views": sorted(v for v in views if may("features:read", v)),
        "url": url_of("entity", name),
    }


def view_detail(catalog: Catalog, name: str, freshness: Json, may: May = everything) -> Json:
    view = find_view(catalog, name)
    ttl = view.ttl if isinstance(view, FeatureView) else None
    return {
        "name": view.name,
        "kind": view_kind(view),
        "entities": view_entities(catalog, view),
        "source": source_of(view),
        "ttl_seconds": None if ttl is None else ttl.total_seconds(),
        "description": view.description,
        "owner": view.owner,
        "tags": dict(view.tags),
        "features": [
            {
                "name": f.name,
                "dtype": str(f.dtype),
                "description": f.description,
                "url": url_of("feature", f.name, name),
            }
            for f in features_of(view)
        ],
        "freshness": freshness,
        "services": [s for s in services_using(catalog, name) if may("features:read", s)],
        "url": url_of("view", name),
    }


@dataclass(frozen=True)
class Usage:
    """What uses the catalog's objects: training sets, model versions (with each model's
    aliases) and rollouts, as read from the store."""

    datasets: tuple[DatasetRecord, ...] = ()
    versions: tuple[ModelVersion, ...] = ()
    aliases: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    rollouts: tuple[RolloutState, ...] = ()

    def aliases_of(self, model: str, version: int) -> list[str]:
        return sorted(a for a, v in self.aliases.get(model, {}).items() if v == version)

    def version_json(self, version: ModelVersion) -> Json:
        return {
            "model": version.name,
            "version": version.version,
            "aliases": self.aliases_of(version.name, version.version),
            "url": model_url(version.name),
        }


def service_detail(catalog: Catalog, name: str, usage: Usage, may: May = everything) -> Json:
    service: FeatureService = catalog.get("feature_service", name)  # type: ignore[assignment]
    views = all_views(catalog)
    features = [
        {
            "view": p.view,
            "name": f,
            "dtype": _dtype(views.get(p.view), f),
            "url": url_of("feature", f, p.view),
        }
        for p in service.features
        for f in p.features
    ]
    datasets = [d for d in usage.datasets if d.feature_service == name]
    versions = [
        v for v in usage.versions if v.feature_service == name and may("models:read", v.name)
    ]
    return {
        "name": service.name,
        "description": service.description,
        "owner": service.owner,
        "tags": dict(service.tags),
        "features": features,
        "datasets": [
            {"name": d.name, "created_at": d.created_at, "rows": d.row_count} for d in datasets
        ],
        "model_versions": [usage.version_json(v) for v in versions],
        "url": url_of("service", name),
    }


def _dtype(view: FeatureView | OnDemandFeatureView | None, feature: str) -> str | None:
    known = {f.name: f for f in features_of(view)} if view is not None else {}
    return str(known[feature].dtype) if feature in known else None


def freshness_json(
    newest: datetime | None, slo: timedelta | None, now: datetime, online: bool = True
) -> Json:
    """`{newest_value_at, age_seconds, slo_seconds, status}`: ok / late past the SLO, no_data
    without a known value, no_slo without an SLO (or for a view not served online)."""
    age = None if newest is None else max((now - newest).total_seconds(), 0.0)
    slo_seconds = None if slo is None or not online else slo.total_seconds()
    if slo_seconds is None:
        status = "no_slo"
    elif age is None:
        status = "no_data"
    else:
        status = "late" if age > slo_seconds else "ok"
    return {
        "newest_value_at": newest,
        "age_seconds": age,
        "slo_seconds": slo_seconds,
        "status": status,
    }


def view_freshness(
    view: FeatureView | OnDemandFeatureView, newest: Mapping[str, datetime | None], now: datetime
) -> Json:
    if isinstance(view, OnDemandFeatureView):
        return freshness_json(None, None, now, online=False)
    return freshness_json(newest.get(view.name), view.freshness_slo, now, view.online)


def quality_json(records: Iterable[QualityRecord], feature: str, since: datetime) -> Json | None:
    """The feature's quality summed over `records` (its view's, since `since`); None without
    any record of it."""
    mine = [r for r in records if r.feature == feature]
    if not mine:
        return None
    counts = mine[0].quality.counts
    for record in mine[1:]:
        counts = counts + record.quality.counts
    return {
        "since": since,
        "rows": counts.rows,
        "null_rate": _share(counts.nulls, counts.rows),
        "inf_rate": _share(counts.infinite, counts.rows),
        "out_of_range_rate": _share(counts.below + counts.above, counts.ranged),
        "unseen_rate": _share(counts.unseen, counts.categorized),
    }


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def profile_json(column: ColumnProfile, dataset: str, levels: Sequence[float]) -> Json:
    """A stored column profile as the page draws it: bins (reference deciles, or one per value
    for a column of few values), the 5/50/95 % quantiles and the most frequent values."""
    valid = column.valid
    numeric = column.kind == "numeric"
    return {
        "dataset": dataset,
        "rows": column.count,
        "null_share": column.nulls / column.count if column.count else 0.0,
        "kind": "numeric" if numeric else "categorical",
        "bins": _bins(column) if numeric else [],
        "quantiles": _quantiles(column, levels) if numeric else {},
        "top": [
            {"value": value, "share": count / valid if valid else 0.0}
            for value, count in column.frequencies[:TOP_VALUES]
        ],
    }


def _bins(column: ColumnProfile) -> list[Json]:
    counts = column.psi_counts
    if not counts:  # few distinct values: one bin per value
        total = sum(c for _, c in column.frequencies) or 1
        pairs = sorted((float(v), c) for v, c in column.frequencies if not isinstance(v, str))
        return [{"label": f"{v:g}", "low": v, "high": v, "share": c / total} for v, c in pairs]
    lows = [column.min, *column.psi_edges]
    highs = [*column.psi_edges, column.max]
    total = sum(counts) or 1
    bins = []
    for low, high, count in zip(lows, highs, counts, strict=True):
        if count == 0 and low is not None and high is not None and low >= high:
            continue  # an empty bin of no width (the minimum is also the first edge)
        label = f"{_num(low)} to {_num(high)}"
        bins.append({"label": label, "low": low, "high": high, "share": count / total})
    return bins


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:.4g}"


def _quantiles(column: ColumnProfile, levels: Sequence[float]) -> dict[str, float]:
    found = {}
    for wanted in QUANTILES:
        index = min(range(len(levels)), key=lambda i: abs(levels[i] - wanted), default=None)
        if index is not None and index < len(column.quantiles):
            found[f"{wanted:g}"] = column.quantiles[index]
    return found


def feature_detail(
    catalog: Catalog,
    view_name: str,
    feature: str,
    usage: Usage,
    facts: Json,
    may: May = everything,
) -> Json:
    """The feature page: `facts` holds its `freshness`, `quality` and `profile` (read by the
    caller from stored records)."""
    view = find_view(catalog, view_name)
    fields = {f.name: f for f in features_of(view)}
    if feature not in fields:
        raise FeatureNotFound(
            f"feature view '{view_name}' has no feature '{feature}' (it has {', '.join(fields)})"
        )
    ttl = view.ttl if isinstance(view, FeatureView) else None
    return {
        "name": feature,
        "view": view_name,
        "dtype": str(fields[feature].dtype),
        "description": fields[feature].description,
        "owner": view.owner,
        "tags": {**view.tags, **fields[feature].tags},
        "entities": view_entities(catalog, view),
        "source": source_of(view),
        "ttl_seconds": None if ttl is None else ttl.total_seconds(),
        **facts,
        "used_by": used_by(catalog, view_name, feature, usage, may),
        "url": url_of("feature", feature, view_name),
    }


def used_by(catalog: Catalog, view: str, feature: str, usage: Usage, may: May) -> Json:
    """Services, training sets, model versions and rollouts that use `view:feature`."""
    ref = f"{view}:{feature}"
    services = services_using(catalog, view, feature)
    datasets = [d for d in usage.datasets if ref in d.feature_refs]
    trained = {d.name for d in datasets}
    versions = [
        v
        for v in usage.versions
        if may("models:read", v.name)
        and (
            v.training_dataset in trained
            or (v.training_dataset is None and v.feature_service in services)
        )
    ]
    refs = {(v.name, v.version) for v in versions}
    rollouts = [
        r for r in usage.rollouts if (r.model, r.candidate) in refs or (r.model, r.champion) in refs
    ]
    return {
        "services": [s for s in services if may("features:read", s)],
        "datasets": [d.name for d in datasets],
        "model_versions": [usage.version_json(v) for v in versions],
        "rollouts": [
            {"model": r.model, "id": r.id, "status": r.status, "url": f"#/rollout/{r.model}"}
            for r in rollouts
        ],
    }


# --- reading the store ---------------------------------------------------------------------


def read_usage(store: FeatureStore) -> Usage:
    """Datasets, every model's versions and aliases, and the rollouts, as stored now."""
    models = store.models.models()
    versions = tuple(v for m in models for v in store.models.versions(m))
    return Usage(
        datasets=tuple(store.datasets.list()),
        versions=versions,
        aliases={m: store.models.aliases(m) for m in models},
        rollouts=tuple(store.rollouts.list()),
    )


def read_facts(
    store: FeatureStore,
    view: FeatureView | OnDemandFeatureView,
    feature: str,
    usage: Usage,
    profiles: ProfileCache,
) -> Json:
    """A feature's freshness, quality and profile from stored records (watermarks, the quality
    table, reference profiles): no feature data is read."""
    now = store.now()
    newest = store.monitoring.newest_values() if isinstance(view, FeatureView) else {}
    since = now - QUALITY_WINDOW
    recorder = store.monitoring.quality_recorder()
    records = [] if recorder is None else recorder.table.read(store.project, view.name, since)
    written = [r for r in records if r.source in ("materialize", "ingest")]
    return {
        "freshness": view_freshness(view, newest, now),
        "quality": quality_json(written, feature, since),
        "profile": profiles.feature(store, view.name, feature, usage),
    }


class ProfileCache:
    """Parsed reference profiles by dataset fingerprint (stored profiles never change)."""

    def __init__(self) -> None:
        self._parsed: dict[str, Profile] = {}
        self._levels: Sequence[float] | None = None

    def feature(self, store: FeatureStore, view: str, feature: str, usage: Usage) -> Json | None:
        """The profile of `view:feature` in the stored reference profile of the newest training
        set (by creation) that holds it and has one; None when there is none. Reads the
        profiles of one dataset at a time, newest first (usually one)."""
        from parity.monitoring.profile_store import FEATURES

        ref = f"{view}:{feature}"
        holders = [d for d in usage.datasets if ref in d.feature_refs]
        for dataset in sorted(holders, key=lambda d: d.created_at, reverse=True):
            stored = [
                p
                for p in store.monitoring.profiles(dataset.name)
                if p.subject == FEATURES and p.ok and p.profile
            ]
            for record in stored:
                profile = self._parse(record.fingerprint, record.profile or "")
                column = profile.columns.get(feature) or profile.columns.get(f"{view}__{feature}")
                if column is not None:
                    return profile_json(column, dataset.name, self.levels())
        return None

    def levels(self) -> Sequence[float]:
        if self._levels is None:
            from parity.monitoring.profile import quantile_levels

            self._levels = [float(x) for x in quantile_levels()]
        return self._levels

    def _parse(self, fingerprint: str, text: str) -> Profile:
        from parity.monitoring.profile import Profile

        if fingerprint not in self._parsed:
            self._parsed[fingerprint] = Profile.from_json(text)
        return self._parsed[fingerprint]
