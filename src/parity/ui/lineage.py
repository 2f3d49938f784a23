"""The lineage graph: source -> view -> (on-demand view) -> service -> dataset -> model version ->
alias / rollout, plus entities, and a node's neighbourhood both ways. `graph` and
`neighbourhood` are pure; `read_graph` is the one reader of the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from parity.registry.catalog import Catalog
from parity.ui.catalog import Usage, everything, read_usage, source_name
from parity.ui.models_view import model_url

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore
    from parity.registry.datasets import DatasetRecord

May = Callable[[str, str], bool]


@dataclass(frozen=True)
class Node:
    """`id` is `kind:name`; `readers`: (scope, name) pairs, any of which lets a caller see it
    (a source read by two views is seen by who may read either)."""

    id: str
    kind: str
    name: str
    label: str
    url: str | None
    readers: tuple[tuple[str, str], ...] = ()


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: set[tuple[str, str]] = field(default_factory=set)

    def add(self, node: Node) -> str:
        known = self.nodes.get(node.id)
        if known is None:
            self.nodes[node.id] = node
        elif not set(node.readers) <= set(known.readers):
            readers = tuple(dict.fromkeys((*known.readers, *node.readers)))
            self.nodes[node.id] = replace(known, readers=readers)
        return node.id

    def link(self, source: str, target: str) -> None:
        self.edges.add((source, target))


def _features(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple(("features:read", name) for name in names)


def graph(catalog: Catalog, usage: Usage) -> Graph:
    """Every node and edge of the project's lineage (edges point downstream)."""
    g = Graph()
    for entity in catalog.entities.values():
        g.add(_node("entity", entity.name, f"#/entity/{entity.name}", _features(entity.name)))
    for view in catalog.feature_views.values():
        vid = g.add(_view(view.name))
        source = source_name(view)
        g.link(g.add(_node("source", source, None, _features(view.name))), vid)
        for key in view.entity_names:  # an entity is seen by who may read a view of it
            g.link(g.add(_node("entity", key, f"#/entity/{key}", _features(key, view.name))), vid)
    for on_demand in catalog.on_demand_feature_views.values():
        vid = g.add(_view(on_demand.name))
        for source in on_demand.sources:
            g.link(g.add(_view(source)), vid)
        if on_demand.request is not None:
            name = on_demand.request.name
            g.link(g.add(_node("source", name, None, _features(on_demand.name))), vid)
    for service in catalog.feature_services.values():
        sid = g.add(
            _node("service", service.name, f"#/service/{service.name}", _features(service.name))
        )
        for projection in service.features:
            g.link(g.add(_view(projection.view)), sid)
    _add_models(g, usage)
    return g


def _view(name: str) -> Node:
    return _node("view", name, f"#/view/{name}", _features(name))


def _node(
    kind: str,
    name: str,
    url: str | None,
    readers: tuple[tuple[str, str], ...],
    label: str | None = None,
) -> Node:
    return Node(f"{kind}:{name}", kind, name, label or name, url, readers)


def _dataset_readers(dataset: DatasetRecord) -> tuple[tuple[str, str], ...]:
    """A training set is as readable as the service it was built from (else any of its views)."""
    if dataset.feature_service is not None:
        return _features(dataset.feature_service)
    return _features(*sorted({r.split(":")[0] for r in dataset.feature_refs}))


def _add_models(g: Graph, usage: Usage) -> None:
    for dataset in usage.datasets:
        did = g.add(_node("dataset", dataset.name, None, _dataset_readers(dataset)))
        if dataset.feature_service is not None:
            g.link(f"service:{dataset.feature_service}", did)
        else:
            for view in sorted({r.split(":")[0] for r in dataset.feature_refs}):
                g.link(f"view:{view}", did)
    datasets = {d.name for d in usage.datasets}
    for version in usage.versions:
        ref = version.ref
        label = f"{version.name} v{version.version}"
        readers = (("models:read", version.name),)
        mid = g.add(_node("model_version", ref, model_url(version.name), readers, label))
        if version.training_dataset in datasets:
            g.link(f"dataset:{version.training_dataset}", mid)
        elif version.feature_service is not None:
            g.link(f"service:{version.feature_service}", mid)
    for model, aliases in usage.aliases.items():
        for alias, number in aliases.items():
            name = f"{model}@{alias}"
            aid = g.add(_node("alias", name, model_url(model), (("models:read", model),)))
            g.link(f"model_version:{model}/{number}", aid)
    for rollout in usage.rollouts:
        url = f"#/rollout/{rollout.model}"
        rid = g.add(_node("rollout", rollout.id, url, (("models:read", rollout.model),)))
        for number in sorted({rollout.candidate, rollout.champion}):
            g.link(f"model_version:{rollout.model}/{number}", rid)
    _drop_dangling(g)


def _drop_dangling(g: Graph) -> None:
    """Edges to objects that are not in the graph (a dataset of a removed service)."""
    g.edges = {(a, b) for a, b in g.edges if a in g.nodes and b in g.nodes}


def neighbourhood(g: Graph, focus: str, depth: int) -> Graph:
    """`focus` with what lies upstream of it and downstream of it within `depth` edges (each
    direction followed on its own, so siblings are not pulled in)."""
    kept = {focus}
    for forward in (True, False):
        frontier = {focus}
        for _ in range(depth):
            step = {b if forward else a for a, b in g.edges if (a if forward else b) in frontier}
            frontier = step - kept
            kept |= step
            if not frontier:
                break
    return Graph(
        {i: n for i, n in g.nodes.items() if i in kept},
        {(a, b) for a, b in g.edges if a in kept and b in kept},
    )


def visible(g: Graph, may: May = everything) -> tuple[Graph, int]:
    """The graph without the nodes the caller may not read (and their edges); how many."""
    shown = {i: n for i, n in g.nodes.items() if _may_see(n, may)}
    edges = {(a, b) for a, b in g.edges if a in shown and b in shown}
    return Graph(shown, edges), len(g.nodes) - len(shown)


def _may_see(node: Node, may: May) -> bool:
    return any(may(scope, name) for scope, name in node.readers)


def as_json(g: Graph, focus: str | None, hidden: int) -> dict[str, object]:
    nodes = sorted(g.nodes.values(), key=lambda n: (_ORDER.index(n.kind), n.name))
    return {
        "focus": focus,
        "nodes": [
            {"id": n.id, "kind": n.kind, "name": n.name, "label": n.label, "url": n.url}
            for n in nodes
        ],
        "edges": [{"source": a, "target": b} for a, b in sorted(g.edges)],
        "hidden": hidden,
    }


_ORDER = ["entity", "source", "view", "service", "dataset", "model_version", "alias", "rollout"]


def lineage(
    catalog: Catalog, usage: Usage, focus: str | None, depth: int, may: May = everything
) -> dict[str, object]:
    """The lineage JSON: the whole graph, or `focus`'s neighbourhood within `depth`; KeyError
    for an unknown `focus`."""
    whole = graph(catalog, usage)
    if focus is not None and focus not in whole.nodes:
        raise KeyError(focus)
    part = whole if focus is None else neighbourhood(whole, focus, depth)
    shown, hidden = visible(part, may)
    return as_json(shown, focus, hidden)


def node_readers(catalog: Catalog, usage: Usage, node: str) -> tuple[tuple[str, str], ...] | None:
    """The (scope, name) pairs that let a caller see `node`; None when there is no such node."""
    found = graph(catalog, usage).nodes.get(node)
    return None if found is None else found.readers


def read_graph(store: FeatureStore) -> tuple[Catalog, Usage]:
    """The values the graph is built from: the current catalog and what uses it."""
    catalog, _ = store.registry.current()
    return catalog, read_usage(store)
