"""/ui/api routes of the catalog: search, entity/view/service/feature pages, lineage and the
registry history. Wiring only: reads through ui/catalog.py, ui/lineage.py and ui/history.py,
filters by what the caller may read, and answers with the response models below."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel

from parity.errors import FeatureServiceNotFound
from parity.registry.catalog import Catalog
from parity.ui import catalog as cat
from parity.ui import history, lineage
from parity.ui.api_session import ERRORS, context

router = APIRouter(tags=["catalog"])
MAX_QUERY = 1000  # characters of `q`
Name = Annotated[str, Path(max_length=200)]


# --- response models -----------------------------------------------------------------------


class SearchResult(BaseModel):
    kind: Literal["entity", "view", "feature", "service"]
    name: str
    view: str | None
    description: str
    owner: str
    tags: dict[str, str]
    dtype: str | None
    matched: list[str]
    url: str


class SearchPage(BaseModel):
    query: str
    total: int
    results: list[SearchResult]


class EntityPage(BaseModel):
    name: str
    join_keys: list[str]
    value_type: str
    description: str
    owner: str
    tags: dict[str, str]
    views: list[str]
    url: str


class Source(BaseModel):
    """`kind`: file, delta, push, stream, or on_demand (then `name` lists what it reads)."""

    kind: str
    name: str
    path: str | None
    timestamp_field: str | None


class Freshness(BaseModel):
    newest_value_at: datetime | None
    age_seconds: float | None
    slo_seconds: float | None
    status: Literal["ok", "late", "no_data", "no_slo"]


class ViewFeature(BaseModel):
    name: str
    dtype: str
    description: str
    url: str


class ViewPage(BaseModel):
    name: str
    kind: Literal["batch", "stream", "aggregated", "on_demand"]
    entities: list[str]
    source: Source | None
    ttl_seconds: float | None
    description: str
    owner: str
    tags: dict[str, str]
    features: list[ViewFeature]
    freshness: Freshness
    services: list[str]
    url: str


class ServiceFeature(BaseModel):
    view: str
    name: str
    dtype: str | None
    url: str


class DatasetRef(BaseModel):
    name: str
    created_at: datetime
    rows: int


class ModelVersionRef(BaseModel):
    model: str
    version: int
    aliases: list[str]
    url: str


class ServicePage(BaseModel):
    name: str
    description: str
    owner: str
    tags: dict[str, str]
    features: list[ServiceFeature]
    datasets: list[DatasetRef]
    model_versions: list[ModelVersionRef]
    url: str


class Quality(BaseModel):
    """Summed over what materializations and pushes recorded since `since` (7 days)."""

    since: datetime
    rows: int
    null_rate: float | None
    inf_rate: float | None
    out_of_range_rate: float | None
    unseen_rate: float | None


class Bin(BaseModel):
    label: str
    low: float | None
    high: float | None
    share: float


class TopValue(BaseModel):
    value: bool | float | str
    share: float


class ProfileView(BaseModel):
    """The feature in the newest stored reference profile of a training set holding it."""

    dataset: str
    rows: int
    null_share: float
    kind: Literal["numeric", "categorical"]
    bins: list[Bin]
    quantiles: dict[str, float]
    top: list[TopValue]


class RolloutRef(BaseModel):
    model: str
    id: str
    status: str
    url: str


class UsedBy(BaseModel):
    services: list[str]
    datasets: list[str]
    model_versions: list[ModelVersionRef]
    rollouts: list[RolloutRef]


class FeaturePage(BaseModel):
    name: str
    view: str
    dtype: str
    description: str
    owner: str
    tags: dict[str, str]
    entities: list[str]
    source: Source | None
    ttl_seconds: float | None
    freshness: Freshness
    quality: Quality | None
    profile: ProfileView | None
    used_by: UsedBy
    url: str


class LineageNode(BaseModel):
    id: str
    kind: str
    name: str
    label: str
    url: str | None


class LineageEdge(BaseModel):
    source: str
    target: str


class LineagePage(BaseModel):
    focus: str | None
    nodes: list[LineageNode]
    edges: list[LineageEdge]
    hidden: int


class VersionRow(BaseModel):
    version: int
    created_at: datetime
    message: str
    actor: str
    fingerprint: str
    added: int
    changed: int
    removed: int


class VersionList(BaseModel):
    versions: list[VersionRow]


class FieldChange(BaseModel):
    field: str
    old: Any
    new: Any


class Change(BaseModel):
    kind: str
    name: str
    action: Literal["added", "changed", "removed"]
    breaking: bool
    fields: list[FieldChange]


class VersionPage(BaseModel):
    version: int
    created_at: datetime
    message: str
    actor: str
    previous: int | None
    changes: list[Change]


# --- caches (per app: the search index per registry version, parsed profiles) --------------


class CatalogCache:
    """Kept per catalog object, not per version number: a teardown and a re-apply can land on
    the same number with other contents, and the registry's reader then loads a new catalog."""

    def __init__(self) -> None:
        self.index: tuple[Catalog | None, list[cat.Item]] = (None, [])
        self.profiles = cat.ProfileCache()
        self.versions: dict[int, tuple[dict[str, Any], Catalog]] = {}
        self.versions_of: Catalog | None = None

    def items(self, catalog: Catalog, version: int) -> list[cat.Item]:
        if self.index[0] is not catalog:
            self.index = (catalog, cat.search_items(catalog))
        return self.index[1]

    def version_pages(self, current: Catalog) -> dict[int, tuple[dict[str, Any], Catalog]]:
        """The cached version pages, emptied when the registry loaded another catalog."""
        if self.versions_of is not current:
            self.versions, self.versions_of = {}, current
        return self.versions


def _cache(request: Request) -> CatalogCache:
    state = request.app.state
    found = getattr(state, "catalog_cache", None)
    if found is None:
        found = state.catalog_cache = CatalogCache()
    return found


def _may(request: Request) -> cat.May:
    ui = context(request)
    return lambda scope, name: bool(ui.can(request, scope, name))


# --- routes --------------------------------------------------------------------------------


@router.get("/search", response_model=SearchPage, responses=ERRORS)
def search(
    request: Request,
    q: str = Query("", max_length=MAX_QUERY),
    kind: Literal["entity", "view", "feature", "service"] | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> SearchPage:
    """Features, views, services and entities whose name, description, tags or owner hold every
    word of `q` (`owner:x`, `tag:k`, `tag:k=v` narrow), best first; empty `q`: all by name."""
    catalog, version = context(request).store.registry.current()
    may = _may(request)
    found = [
        (item, matched)
        for item, matched in cat.search(_cache(request).items(catalog, version), q, kind)
        if _item_visible(catalog, item, may)
    ]
    page = found[offset : offset + limit]
    results = [SearchResult(**item.json(), matched=matched) for item, matched in page]
    return SearchPage(query=q, total=len(found), results=results)


def catalog_counts(request: Request) -> dict[str, int]:
    """How many entities, views, features and services the catalog page lists for the caller
    (on-demand views included; a narrowed token counts what it may read): the overview's tiles."""
    catalog, version = context(request).store.registry.current()
    may = _may(request)
    counts = dict.fromkeys(("entity", "view", "feature", "service"), 0)
    for item in _cache(request).items(catalog, version):
        if _item_visible(catalog, item, may):
            counts[item.kind] += 1
    return counts


def _item_visible(catalog: Catalog, item: cat.Item, may: cat.May) -> bool:
    if item.kind == "entity":
        views = [v.name for v in catalog.feature_views.values() if item.name in v.entity_names]
        return may("features:read", item.name) or any(may("features:read", v) for v in views)
    return may("features:read", item.view or item.name)


@router.get("/entities/{name}", response_model=EntityPage, responses=ERRORS)
def entity(request: Request, name: Name) -> EntityPage:
    catalog, _ = context(request).store.registry.current()
    page = cat.entity_detail(catalog, name, _may(request))
    if not page["views"] and not _may(request)("features:read", name):
        _forbid(request, name, "entity")
    return EntityPage(**page)


def _forbid(request: Request, name: str, what: str) -> None:
    context(request).require(request, "features:read", name, what)


@router.get("/views/{name}", response_model=ViewPage, responses=ERRORS)
def view(request: Request, name: Name) -> ViewPage:
    ui = context(request)
    store = ui.store
    ui.require(request, "features:read", name, "feature view")
    catalog, _ = store.registry.current()
    found = cat.find_view(catalog, name)
    newest = store.monitoring.newest_values() if not _on_demand(found) else {}
    freshness = cat.view_freshness(found, newest, store.now())
    return ViewPage(**cat.view_detail(catalog, name, freshness, _may(request)))


def _on_demand(view: Any) -> bool:
    return cat.view_kind(view) == "on_demand"


@router.get("/services/{name}", response_model=ServicePage, responses=ERRORS)
def service(request: Request, name: Name) -> ServicePage:
    ui = context(request)
    ui.require(request, "features:read", name, "feature service")
    catalog, _ = ui.store.registry.current()
    if name not in catalog.feature_services:
        known = ", ".join(sorted(catalog.feature_services)) or "none"
        raise FeatureServiceNotFound(f"no feature service named '{name}' (known: {known})")
    usage = cat.read_usage(ui.store)
    return ServicePage(**cat.service_detail(catalog, name, usage, _may(request)))


@router.get("/features/{view}/{feature}", response_model=FeaturePage, responses=ERRORS)
def feature(request: Request, view: Name, feature: Name) -> FeaturePage:
    ui = context(request)
    store = ui.store
    ui.require(request, "features:read", view, "feature view")
    catalog, _ = store.registry.current()
    found = cat.find_view(catalog, view)
    usage = cat.read_usage(store)
    if feature in {f.name for f in cat.features_of(found)}:
        facts = cat.read_facts(store, found, feature, usage, _cache(request).profiles)
    else:
        facts = {}  # feature_detail names the missing feature
    page = cat.feature_detail(catalog, view, feature, usage, facts, _may(request))
    return FeaturePage(**page)


@router.get("/lineage", response_model=LineagePage, responses=ERRORS)
def lineage_graph(
    request: Request,
    node: str | None = Query(None, max_length=400),
    depth: int = Query(3, ge=1, le=10),
) -> LineagePage:
    """The lineage graph (edges point downstream), or `node`'s neighbourhood within `depth` both
    ways; `hidden` counts the nodes left out for a narrowed token."""
    ui = context(request)
    catalog, usage = lineage.read_graph(ui.store)
    may = _may(request)
    if node is not None:
        readers = lineage.node_readers(catalog, usage, node)
        if readers is None:
            raise HTTPException(
                404,
                f"no lineage node '{node}': ids are kind:name, such as "
                "'view:account_txn_stats' or 'model_version:fraud/1'",
            )
        if not any(may(scope, name) for scope, name in readers):
            ui.require(request, readers[0][0], readers[0][1], node.split(":", 1)[0])
    return LineagePage(**lineage.lineage(catalog, usage, node, depth, may))


@router.get("/registry/versions", response_model=VersionList, responses=ERRORS)
def versions(request: Request) -> VersionList:
    """Newest first. A narrowed token's counts are those of the changes it may read (as each
    version's page shows them), never the whole version's."""
    ui = context(request)
    listed = history.read_versions(ui.store)
    if ui.sees_all(request, "features:read", "models:read"):
        return VersionList(**listed)
    current = ui.store.registry.current()[0]
    pages = _cache(request).version_pages(current)
    for row in listed["versions"]:
        if row["version"] not in pages:
            pages[row["version"]] = history.read_version(ui.store, row["version"])
        page, catalog = pages[row["version"]]
        shown = history.readable(page["changes"], catalog, _may(request))
        for action in ("added", "changed", "removed"):
            row[action] = sum(1 for change in shown if change["action"] == action)
    return VersionList(**listed)


@router.get("/registry/versions/{version}", response_model=VersionPage, responses=ERRORS)
def version(request: Request, version: int) -> VersionPage:
    """Version `version` and its changes against the one before it."""
    store = context(request).store
    current, head = store.registry.current()
    history.check_version(version, head)
    pages = _cache(request).version_pages(current)
    if version not in pages:
        pages[version] = history.read_version(store, version)
    page, catalog = pages[version]
    changes = history.readable(page["changes"], catalog, _may(request))
    return VersionPage(**{**page, "changes": changes})
