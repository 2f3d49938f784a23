"""The lineage graph's pure functions on small hand-built catalogs: shared sources and entities
are seen by who may read any of their views, datasets without a service hang off their views,
and a neighbourhood follows each direction on its own."""

from __future__ import annotations

from datetime import UTC, datetime

from parity import Entity, FeatureService, FeatureView, Field, FileSource, Float64
from parity.registry.catalog import Catalog
from parity.registry.datasets import DatasetRecord
from parity.ui.catalog import Usage
from parity.ui.lineage import graph, lineage, neighbourhood, visible

ACCOUNT = Entity(name="account", join_keys=["account_id"])
SHARED = FileSource(path="data/shared.parquet")


def _view(name: str, feature: str) -> FeatureView:
    return FeatureView(
        name=name, entities=[ACCOUNT], schema=[Field(name=feature, dtype=Float64)], source=SHARED
    )


A, B = _view("a", "fa"), _view("b", "fb")
SERVICE = FeatureService(name="s", features=[A])
CATALOG = Catalog.build("p", [ACCOUNT, A, B, SERVICE])


def _dataset(name: str, refs: tuple[str, ...], service: str | None) -> DatasetRecord:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    return DatasetRecord("p", name, moment, "me", 1, refs, service, 10, "f" * 64, "x", "y")


def test_shared_source_and_entity_are_seen_through_either_view() -> None:
    whole = graph(CATALOG, Usage())
    only_b, hidden = visible(whole, lambda scope, name: name == "b")
    assert set(only_b.nodes) == {"view:b", "source:data/shared.parquet", "entity:account"}
    assert hidden == 2  # view:a and service:s
    assert only_b.edges == {
        ("source:data/shared.parquet", "view:b"),
        ("entity:account", "view:b"),
    }


def test_datasets_hang_off_their_service_or_their_views() -> None:
    usage = Usage(
        datasets=(
            _dataset("by_service", ("a:fa",), "s"),
            _dataset("by_refs", ("a:fa", "b:fb"), None),
        )
    )
    whole = graph(CATALOG, usage)
    assert ("service:s", "dataset:by_service") in whole.edges
    assert {("view:a", "dataset:by_refs"), ("view:b", "dataset:by_refs")} <= whole.edges
    hidden_b, _ = visible(whole, lambda scope, name: name == "b")
    assert "dataset:by_refs" in hidden_b.nodes and "dataset:by_service" not in hidden_b.nodes


def test_neighbourhood_does_not_pull_in_siblings() -> None:
    whole = graph(CATALOG, Usage())
    around_a = neighbourhood(whole, "view:a", 5)
    assert set(around_a.nodes) == {
        "view:a",
        "source:data/shared.parquet",
        "entity:account",
        "service:s",
    }
    body = lineage(CATALOG, Usage(), "service:s", 1)
    assert [n["id"] for n in body["nodes"]] == ["view:a", "service:s"]
    assert body["edges"] == [{"source": "view:a", "target": "service:s"}]
